"""Offline open: the service worker (web/app/sw.js) opens the app with the network off, from
this build's cached files, and a new build replaces the old one whole (docs/server.md,
"Boot and offline open")."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from starlette.applications import Starlette

from server.assets import ensure_pysync_wheel
from server.paths import APP_DIR
from server.static import static_routes
from tests.e2e.conftest import BOOT_TIMEOUT_MS, SyncServer, open_test_page, raw_counts
from tests.support import serve

CACHED_BUILD = "x-pysync-cached-build"  # sw.js's mark on what it served from its cache


def settled(page: Page) -> dict[str, Any]:
    """boot.js's report once the snapshot is stored and the service worker is active."""
    info: dict[str, Any] = page.evaluate(
        "async () => { const i = await window.pysyncBoot.settled; return {...i, settled: 0}; }")
    assert info["serviceWorker"] == "active", info
    return info


def cache_names(page: Page) -> list[str]:
    return sorted(page.evaluate("caches.keys()"))


def titles(user: str, server: SyncServer) -> list[str]:
    items = server.dynamodb.query(
        TableName=server.tables.items, ConsistentRead=True,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"u#{user}"}})["Items"]
    return sorted(i["title"]["S"] for i in items if "title" in i)


def add(page: Page, title: str) -> None:
    page.fill("#title", title)
    page.press("#title", "Enter")
    expect(page.locator("li .title", has_text=title)).to_have_count(1)


@pytest.fixture
def signed_in(browser: Browser) -> Iterator[tuple[BrowserContext, str]]:
    """A context whose demo is signed in (as if the user had typed a name and pressed Sync)."""
    user = f"offline{uuid.uuid4().hex[:8]}"
    context = browser.new_context()
    context.add_init_script(f"localStorage.setItem('pysync-demo-user', {json.dumps(user)})")
    yield context, user
    context.close()


def test_a_reload_offline_opens_the_demo_with_its_data_and_outbox_and_syncs_once_online(
        signed_in: tuple[BrowserContext, str], sync_server: SyncServer) -> None:
    context, user = signed_in
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{sync_server.url}/")
    page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
    build = settled(page)["build"]
    add(page, "Synced before")
    expect(page.locator("li .pending")).to_have_count(0)
    context.set_offline(True)
    add(page, "Written offline")
    expect(page.locator("li", has_text="Written offline").locator(".pending")).to_have_count(1)

    response = page.reload()
    assert response is not None
    assert response.headers.get(CACHED_BUILD) == build
    page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
    assert page.evaluate("window.pysyncBoot.offline") is True
    expect(page.locator("li .title")).to_have_text(["Synced before", "Written offline"])
    expect(page.locator("#status")).to_have_text("1 change(s) saved locally, waiting to sync")
    assert raw_counts(page, f"pysync-demo:{user}") == {"records": 2, "outbox": 1}
    add(page, "Written after the offline reload")
    expect(page.locator("#status")).to_have_text("2 change(s) saved locally, waiting to sync")
    assert titles(user, sync_server) == ["Synced before"]

    context.set_offline(False)
    expect(page.locator("li .pending")).to_have_count(0)
    expect(page.locator("#status")).to_have_text("all changes saved")
    assert titles(user, sync_server) == [
        "Synced before", "Written after the offline reload", "Written offline"]


@pytest.fixture
def app_copy(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A server of a copy of web/app (with the real Pyodide and wheels), to change its build."""
    ensure_pysync_wheel()
    app_dir = tmp_path / "app"
    shutil.copytree(APP_DIR, app_dir)
    with serve(Starlette(routes=static_routes(app_dir))) as url:
        yield app_dir, url


def test_a_new_build_is_picked_up_on_the_next_online_load_and_the_old_cache_deleted(
        context: BrowserContext, app_copy: tuple[Path, str]) -> None:
    app_dir, url = app_copy
    page = open_test_page(context, url, "/test.html")
    old = settled(page)["build"]
    assert cache_names(page) == [f"pysync-{old}", f"pysync-snapshot-{old}"]

    page_file = app_dir / "test.html"
    page_file.write_text(page_file.read_text().replace(
        "<title>pysync test page</title>", "<title>pysync test page, build 2</title>"))
    page.reload()
    page.wait_for_function("window.pysyncTest !== undefined")
    page.evaluate("window.pysyncTest.ready")
    new = settled(page)["build"]
    assert new != old
    assert page.title() == "pysync test page, build 2"
    assert cache_names(page) == [f"pysync-{new}", f"pysync-snapshot-{new}"]

    # Offline, the worker serves the new build whole: its page, and its snapshot boots.
    context.set_offline(True)
    response = page.reload()
    assert response is not None
    assert response.headers.get(CACHED_BUILD) == new
    page.wait_for_function("window.pysyncTest !== undefined")
    page.evaluate("window.pysyncTest.ready")
    assert page.title() == "pysync test page, build 2"
    info = page.evaluate("({...window.pysyncBoot, settled: 0})")
    assert (info["build"], info["offline"], info["snapshot"]) == (new, True, "loaded")
    context.set_offline(False)
    assert page.__dict__["foreign_requests"] == []

