"""The demo todo app (web/app/index.html) on the local store, driven like a user would."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import BOOT_TIMEOUT_MS


def open_demo(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)


def add(page: Page, title: str) -> None:
    page.fill("#title", title)
    page.press("#title", "Enter")
    expect(page.locator("li .title", has_text=title)).to_be_visible()


def test_todos_add_toggle_delete_survive_reload_and_work_offline(
        context: BrowserContext, live_server: str) -> None:
    page = context.new_page()
    open_demo(page, live_server)
    add(page, "Buy milk")
    add(page, "Write docs")
    add(page, "Call mum")
    page.locator("li", has_text="Buy milk").locator("input.toggle").check()
    expect(page.locator("li.done", has_text="Buy milk")).to_be_visible()
    page.locator("li", has_text="Call mum").locator("button.delete").click()
    expect(page.locator("li", has_text="Call mum")).to_have_count(0)

    page.reload()
    page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
    expect(page.locator("li .title")).to_have_text(["Buy milk", "Write docs"])
    expect(page.locator("li.done .title")).to_have_text(["Buy milk"])
    expect(page.locator("#count")).to_have_text("1 of 2 left")

    context.set_offline(True)
    expect(page.locator("#network")).to_contain_text("offline")
    add(page, "Offline idea")
    expect(page.locator("li .title")).to_have_text(["Buy milk", "Write docs", "Offline idea"])
    expect(page.locator("#status")).to_have_text("3 change(s) saved locally, waiting to sync")
    context.set_offline(False)
