"""The demo driven like a person (click, type, keyboard) through README.md's walkthrough: two
devices (two browser contexts: two windows that do not share storage, like a normal and a
private window) signed in with the same name, on the real server with the feed and the real
DynamoDB Local; then the README's boto3 snippet, run as written.

Screenshots are saved as artifacts in artifacts/demo/ at the repository's root (or
$PYSYNC_ARTIFACTS/demo/; .gitignored), one per step; docs/demo.png is one of them.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, ViewportSize, expect

from tests.e2e.conftest import BOOT_TIMEOUT_MS, SyncServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PYSYNC_ARTIFACTS", ROOT / "artifacts")) / "demo"
LAPTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}


def shot(page: Page, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


@pytest.fixture
def devices(browser: Browser) -> Iterator[list[BrowserContext]]:
    contexts = [browser.new_context(viewport=LAPTOP) for _ in range(2)]
    yield contexts
    for context in contexts:
        context.close()


def sign_in(context: BrowserContext, url: str, user: str) -> Page:
    """Open the demo, type the name, press Sync (the page reloads with the user's database)."""
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{url}/")
    page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
    page.get_by_label("Your name").fill(user)
    page.get_by_role("button", name="Sync").click()
    page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
    expect(page.locator("#badge")).to_have_text("Synced")
    return page


def todo(page: Page, title: str) -> Locator:
    return page.locator("li.todo").filter(has=page.locator(".title", has_text=title))


def test_the_readme_walkthrough_two_windows_offline_edit_and_the_conflicts_panel(
        devices: list[BrowserContext], sync_server: SyncServer) -> None:
    user = f"walk{uuid.uuid4().hex[:8]}"
    a, b = (sign_in(context, sync_server.url, user) for context in devices)

    # 1. Add a todo in window A; it shows in window B.
    a.get_by_label("New todo").fill("Buy milk")
    a.keyboard.press("Enter")
    expect(b.locator("li.todo .title")).to_have_text(["Buy milk"])
    shot(a, "1-both-windows-synced")

    # 2. Window A goes offline with the switch; its edit (a click on ✎, typing) stays local.
    a.get_by_role("switch", name="Work offline").check()
    expect(a.locator("#badge")).to_have_text("Offline")
    a.get_by_role("button", name="Edit Buy milk").click()
    edit = a.get_by_label("Edit title of Buy milk")
    expect(edit).to_be_focused()
    edit.fill("Buy oat milk")
    edit.press("Enter")
    expect(a.locator("li.todo .title")).to_have_text(["Buy oat milk"])
    expect(a.locator("li.todo .pending")).to_have_count(1)
    expect(a.locator("#sync")).to_contain_text("1 waiting")
    shot(a, "2-window-a-offline-edit")

    # 3. Window B edits the same title afterwards, by keyboard only (Tab to ✎, Enter).
    b.get_by_label("Done: Buy milk").focus()
    b.keyboard.press("Tab")
    expect(b.get_by_role("button", name="Edit Buy milk")).to_be_focused()
    b.keyboard.press("Enter")
    expect(b.get_by_label("Edit title of Buy milk")).to_be_focused()
    b.keyboard.press("ControlOrMeta+a")
    b.keyboard.type("Buy soy milk")
    b.keyboard.press("Enter")
    expect(b.locator("li.todo .title")).to_have_text(["Buy soy milk"])
    expect(b.locator("li.todo .pending")).to_have_count(0)  # on the server
    expect(b.locator("#badge")).to_have_text("Synced")

    # 4. Window A comes back online: its older edit lost, and its conflicts panel says so.
    switch = a.get_by_role("switch", name="Work offline")
    switch.focus()
    a.keyboard.press("Space")
    expect(switch).not_to_be_checked()
    panel = a.locator("#conflict-list li")
    expect(panel).to_have_count(1)
    expect(panel).to_contain_text("Todo “Buy soy milk”")
    expect(panel).to_contain_text("title: yours “Buy oat milk”, kept “Buy soy milk”")
    expect(a.locator("#conflict-count")).to_have_text("1")
    expect(a.locator("li.todo .title")).to_have_text(["Buy soy milk"])
    expect(a.locator("#badge")).to_have_text("Synced")
    expect(a.locator("#sync")).to_contain_text("last synced")
    expect(b.locator("#conflict-count")).to_have_text("0")  # B's edit did not lose
    shot(a, "3-window-a-conflicts-panel")
    a.set_viewport_size(PHONE)
    shot(a, "4-window-a-phone", full_page=True)
    a.set_viewport_size(LAPTOP)

    # 5. The README's boto3 snippet, as written (its endpoint, table and name replaced).
    run_readme_boto3_snippet(sync_server, user)
    for page in (a, b):
        expect(todo(page, "Added with boto3")).to_have_count(1)
    shot(a, "5-window-a-boto3-todo")  # docs/demo.png


def run_readme_boto3_snippet(server: SyncServer, user: str) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    snippet = next(b for b in blocks if "boto3.client" in b)
    endpoint = server.settings.dynamodb_endpoint
    assert endpoint is not None
    snippet = (snippet.replace("http://127.0.0.1:8001", endpoint)
               .replace('"pysync_items"', repr(server.tables.items))
               .replace('"u#alice"', repr(f"u#{user}")))
    exec(compile(snippet, "README.md (boto3 snippet)", "exec"), {})


def test_lists_filters_reorder_and_edit_by_keyboard_on_one_device(
        context: BrowserContext, live_server: str) -> None:
    page = context.new_page()
    page.set_viewport_size(LAPTOP)
    page.goto(f"{live_server}/")
    page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
    new = page.get_by_label("New todo")
    expect(new).to_be_focused()
    for title in ("Milk", "Bread", "Eggs"):
        page.keyboard.type(title)
        page.keyboard.press("Enter")
    titles = page.locator("li.todo .title")
    expect(titles).to_have_text(["Milk", "Bread", "Eggs"])

    # Reorder with the keyboard: Alt+Up twice on Eggs, then the ↓ button on Milk.
    page.get_by_role("button", name="Move Eggs up").focus()
    page.keyboard.press("Alt+ArrowUp")
    expect(titles).to_have_text(["Milk", "Eggs", "Bread"])
    expect(page.get_by_role("button", name="Move Eggs up")).to_be_focused()
    page.keyboard.press("Alt+ArrowUp")
    expect(titles).to_have_text(["Eggs", "Milk", "Bread"])
    page.get_by_role("button", name="Move Milk down").click()
    expect(titles).to_have_text(["Eggs", "Bread", "Milk"])

    # Complete one with Space, filter; F2 edits a title and Escape cancels the edit.
    page.get_by_label("Done: Bread").focus()
    page.keyboard.press("Space")
    expect(page.locator("li.todo.done .title")).to_have_text(["Bread"])
    page.get_by_role("button", name="Active").click()
    expect(titles).to_have_text(["Eggs", "Milk"])
    page.get_by_role("button", name="Done", exact=True).click()
    expect(titles).to_have_text(["Bread"])
    page.get_by_role("button", name="All").click()
    page.get_by_label("Done: Milk").focus()
    page.keyboard.press("F2")
    edit = page.get_by_label("Edit title of Milk")
    expect(edit).to_be_focused()
    page.keyboard.type("Oat milk")
    page.keyboard.press("Escape")
    expect(titles).to_have_text(["Eggs", "Bread", "Milk"])
    expect(page.get_by_role("button", name="Edit Milk")).to_be_focused()

    # A second list keeps its own todos; the order survives a reload.
    page.get_by_label("New list name").fill("Work")
    page.get_by_role("button", name="Add list").click()
    expect(page.get_by_role("textbox", name="List name", exact=True)).to_have_value("Work")
    expect(new).to_be_focused()
    page.keyboard.type("Ship the demo")
    page.keyboard.press("Enter")
    expect(titles).to_have_text(["Ship the demo"])
    shot(page, "6-two-lists")
    page.locator("button.list-link", has_text="Inbox").click()
    expect(titles).to_have_text(["Eggs", "Bread", "Milk"])
    page.reload()
    page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
    expect(titles).to_have_text(["Eggs", "Bread", "Milk"])
    expect(page.locator("button.list-link")).to_have_text([re.compile("Inbox"),
                                                           re.compile("Work")])
