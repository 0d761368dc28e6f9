"""Sharing a list in the demo (issue 11): two users, each in their own browser context,
on the real server with the feed and the real DynamoDB Local. Alice shares a list with Bob
as an editor: it appears in Bob's lists, both see who can see it, and edits flow both ways;
made a viewer, Bob can no longer add to it; removed, he no longer sees it. Screenshots in
artifacts/demo/."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import BOOT_TIMEOUT_MS, SyncServer
from tests.e2e.test_demo_walkthrough import LAPTOP, shot

# A page's events stream learns of a scope its user joined or created at its heartbeat (15 s
# by default, docs/sharing.md), and the pokes for it start then.
SHARE_WAIT_MS = 90_000


@pytest.fixture
def users(browser: Browser, sync_server: SyncServer) -> Iterator[tuple[Page, Page]]:
    """Alice's and Bob's demo pages, signed in (Bob first: only users who have signed in
    once can be shared with)."""
    contexts = []
    pages = []
    for name in ("bob", "alice"):
        user = f"{name}{uuid.uuid4().hex[:6]}"
        context = browser.new_context(viewport=LAPTOP)
        context.add_init_script(f"localStorage.setItem('pysync-demo-user', {json.dumps(user)})")
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{sync_server.url}/")
        page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
        expect(page.locator("#badge")).to_have_text("Synced")
        contexts.append(context)
        pages.append(page)
    yield pages[1], pages[0]
    for context in contexts:
        context.close()


def name_of(page: Page) -> str:
    return page.locator("#user").input_value()


def test_a_list_shared_with_another_user_as_editor_then_viewer(
        users: tuple[Page, Page]) -> None:
    alice, bob = users
    alice.get_by_label("New list name").fill("Groceries")
    alice.get_by_role("button", name="Add list").click()
    alice.get_by_label("New todo").fill("Milk")
    alice.keyboard.press("Enter")
    expect(alice.get_by_text("Only you can see this list.")).to_be_visible()

    alice.get_by_role("button", name="Share this list").click()
    expect(alice.get_by_label("Share with")).to_be_focused()
    alice.keyboard.type(name_of(bob))
    alice.get_by_label("Role").select_option("editor")
    alice.get_by_role("button", name="Share", exact=True).click()
    expect(alice.locator("#share-status")).to_have_text(f"{name_of(bob)} can edit this list now.")
    members = alice.get_by_role("list", name="Who can see this list").locator("li")
    expect(members).to_have_count(2)
    expect(members.filter(has_text=name_of(bob))).to_contain_text("can edit")
    expect(members.filter(has_text=name_of(alice))).to_contain_text("owner")
    expect(alice.locator("li.todo .title")).to_have_text(["Milk"])
    shot(alice, "9-alice-shares-a-list")

    shared = bob.locator("button.list-link", has_text="Groceries")
    expect(shared).to_contain_text("shared", timeout=SHARE_WAIT_MS)
    shared.click()
    expect(bob.locator("li.todo .title")).to_have_text(["Milk"])
    bob_members = bob.get_by_role("list", name="Who can see this list").locator("li")
    expect(bob_members).to_have_count(2)
    expect(bob_members.filter(has_text=name_of(alice))).to_contain_text("owner")
    expect(bob.get_by_label("Share with")).to_be_hidden()  # only owners manage members
    bob.get_by_label("New todo").fill("Eggs")
    bob.keyboard.press("Enter")
    # (Alice's events stream learns of the scope she created at its next heartbeat too.)
    expect(alice.locator("li.todo .title")).to_have_text(["Milk", "Eggs"],
                                                         timeout=SHARE_WAIT_MS)
    shot(bob, "10-bob-sees-the-shared-list")

    # Made a viewer, Bob can read what Alice adds but no longer write.
    alice.get_by_label("Share with").fill(name_of(bob))
    alice.get_by_label("Role").select_option("viewer")
    alice.get_by_role("button", name="Share", exact=True).click()
    expect(members.filter(has_text=name_of(bob))).to_contain_text("can view")
    alice.get_by_label("New todo").fill("Bread")
    alice.keyboard.press("Enter")
    expect(bob.locator("li.todo .title")).to_have_text(["Milk", "Eggs", "Bread"])
    expect(bob.get_by_label("New todo")).to_be_disabled(timeout=SHARE_WAIT_MS)
    expect(bob.get_by_role("button", name="Delete Milk")).to_have_count(0)

    # Removed, Bob no longer sees the list: it leaves his lists (and his device).
    alice.get_by_role("button", name=f"Remove {name_of(bob)} from Groceries").click()
    expect(members).to_have_count(1)
    expect(bob.locator("button.list-link", has_text="Groceries")).to_have_count(
        0, timeout=SHARE_WAIT_MS)
    expect(bob.get_by_role("textbox", name="List name", exact=True)).to_have_value("Inbox")
