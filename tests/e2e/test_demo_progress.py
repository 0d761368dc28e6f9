"""The demo's progress bar during a first sync of a big account: the dev-mode button writes
5,000 sample todos on the server (through the push API, as another device would), and a
fresh window of the same user (another browser context: empty storage) shows the bar moving
up to the total while its first sync brings them. Real server with the feed, real DynamoDB
Local; a screenshot in artifacts/demo/ (see test_demo_walkthrough.py)."""

from __future__ import annotations

import json
import re
import uuid

from playwright.sync_api import Browser, BrowserContext, expect

from tests.e2e.conftest import BOOT_TIMEOUT_MS, SyncServer
from tests.e2e.test_demo_walkthrough import LAPTOP, shot

# Records every text the progress bar's label shows while the bar is visible, from the
# first moment the page exists (the first sync may begin before the page says it is ready).
RECORD_PROGRESS = """
window.progressSeen = [];
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("progress");
  const text = document.getElementById("progress-text");
  new MutationObserver(() => {
    if (!box.hidden) window.progressSeen.push(text.textContent);
  }).observe(box, { subtree: true, childList: true, characterData: true, attributes: true });
});
"""


def signed_in(browser: Browser, user: str) -> BrowserContext:
    context = browser.new_context(viewport=LAPTOP)
    context.add_init_script(f"localStorage.setItem('pysync-demo-user', {json.dumps(user)})")
    context.add_init_script(RECORD_PROGRESS)
    return context


def test_a_fresh_window_shows_the_progress_bar_up_to_the_total_while_5000_todos_arrive(
        browser: Browser, sync_server: SyncServer) -> None:
    user = f"big{uuid.uuid4().hex[:8]}"
    first, fresh = signed_in(browser, user), signed_in(browser, user)
    try:
        page = first.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{sync_server.url}/")
        page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
        page.get_by_role("button", name="Add 5,000 sample todos").click()
        expect(page.locator("#sample-status")).to_have_text(
            "5,000 sample todos written on the server; they arrive by sync", timeout=240_000)
        sample = page.locator("button.list-link", has_text="5,000 sample todos")
        expect(sample.locator(".list-count")).to_have_text("5,000", timeout=240_000)

        other = fresh.new_page()
        other.set_default_timeout(60_000)
        other.goto(f"{sync_server.url}/")
        other.wait_for_function("window.progressSeen.length > 0", timeout=BOOT_TIMEOUT_MS)
        if other.locator("#progress").is_visible():  # most likely; its own screenshot
            shot(other, "7-fresh-window-first-sync-progress")
        other.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
        sample = other.locator("button.list-link", has_text="5,000 sample todos")
        expect(sample.locator(".list-count")).to_have_text("5,000", timeout=240_000)
        expect(other.locator("#progress")).to_be_hidden()
        expect(other.locator("#badge")).to_have_text("Synced")

        seen = [tuple(int(n.replace(",", "")) for n in re.findall(r"[\d,]+", text))
                for text in other.evaluate("window.progressSeen")]
        print("progress shown:", seen)
        received = [r for r, _ in seen]
        assert len(set(received)) >= 2  # it moved while the todos came
        assert received == sorted(received)
        assert all(r <= t for r, t in seen)
        assert seen[-1][0] == seen[-1][1] >= 5000  # up to the total

        sample.click()
        expect(other.locator("li.todo .title").first).to_have_text("Sample todo 1")
        expect(other.locator("#count")).to_have_text("3333 of 5000 left")
        shot(other, "8-fresh-window-5000-todos")
    finally:
        first.close()
        fresh.close()
