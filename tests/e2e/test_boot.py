"""The page boots Pyodide and pysync from our own origin only, on each of boot.js's paths:
plain (no snapshot), from this build's Pyodide memory snapshot, and the fallback when the
stored snapshot cannot be used."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.e2e.conftest import ForeignRequest, open_test_page, run_py

# Writes bytes that are no snapshot under this build's snapshot key (boot.js's names).
CORRUPT_SNAPSHOT = """async () => {
  const cache = await caches.open("pysync-snapshot-" + window.pysyncBoot.build);
  await cache.put("/snapshot.bin", new Response(new Uint8Array(4096).fill(7)));
}"""


def boot_info(page: Page) -> dict[str, Any]:
    """boot.js's report once its background work (snapshot stored, worker active) is done."""
    info: dict[str, Any] = page.evaluate(
        "async () => { const i = await window.pysyncBoot.settled; return {...i, settled: 0}; }")
    return info


def reload_and_boot(page: Page) -> None:
    page.reload()
    page.wait_for_function("window.pysyncTest !== undefined")
    page.evaluate("window.pysyncTest.ready")


@pytest.fixture(params=["plain", "making", "snapshot", "fallback"])
def booted(request: pytest.FixtureRequest, context: BrowserContext,
           live_server: str) -> Iterator[Page]:
    """A test page booted on one path: plain (?snapshot=0), the first boot that makes the
    snapshot, from that snapshot, or with it replaced by garbage (boot.js falls back to the
    plain way)."""
    mode = request.param
    page = open_test_page(context, live_server,
                          "/test.html?sw=0" + ("&snapshot=0" if mode == "plain" else ""))
    if mode == "plain":
        assert boot_info(page)["snapshot"] == "off"
    elif mode == "making":
        assert boot_info(page)["snapshot"] == "stored"
    else:
        assert boot_info(page)["snapshot"] == "stored"
        if mode == "fallback":
            page.evaluate(CORRUPT_SNAPSHOT)
        reload_and_boot(page)
        info = boot_info(page)
        if mode == "snapshot":
            assert info["snapshot"] == "loaded"
        else:
            assert info["fallback"].startswith('boot step "runtime" failed: ')
            assert "imports" in info["steps"]  # it booted the plain way
            assert info["snapshot"] == "stored"  # and replaced the bad snapshot
    yield page
    foreign = page.__dict__["foreign_requests"]
    if foreign:
        raise ForeignRequest(f"the page requested other origins: {foreign}")


def test_page_boots_pyodide_with_pysync_and_httpx(booted: Page) -> None:
    code = "import sys, httpx, pysync\n[sys.version_info[:2], httpx.__version__]"
    result = run_py(booted, code)
    assert result == [[3, 14], "0.28.1"]


def test_page_makes_no_request_to_another_origin(booted: Page) -> None:
    reload_and_boot(booted)
    assert booted.__dict__["foreign_requests"] == []


def test_the_page_opens_a_database_and_reads_package_data(booted: Page) -> None:
    # idb_helper.js is read from the file system when the first database opens: after a
    # snapshot the files must be there too, not only the modules imported before it.
    result = run_py(booted, """
import pysync
db = await pysync.open_database("boot-check", pysync.Schema(pysync.Collection("notes")))
await db.collection("notes").put("a", {"text": "hi"})
value = await db.collection("notes").get("a")
db.close()
value
""")
    assert result == {"text": "hi"}


def test_the_page_reads_the_browsers_globals(booted: Page) -> None:
    # The page that took a snapshot must not keep Pyodide's path-recording proxy of
    # globalThis as `js`: platform getters called through it throw "Illegal invocation".
    result = run_py(booted, "import js\n[js.document.title, js.navigator.onLine, "
                            "js.indexedDB is not None, js.location.pathname]")
    assert result == ["pysync test page", True, True, "/test.html"]


def test_pages_started_from_one_snapshot_draw_different_random_numbers(
        context: BrowserContext, live_server: str) -> None:
    # The retry jitter of every device would otherwise be the same sequence.
    page = open_test_page(context, live_server, "/test.html?sw=0")
    assert boot_info(page)["snapshot"] == "stored"
    draws = []
    for _ in range(2):
        reload_and_boot(page)
        assert boot_info(page)["snapshot"] == "loaded"
        draws.append(run_py(page, "import random\nrandom.random()"))
    assert draws[0] != draws[1]


def test_a_failed_boot_step_is_named(context: BrowserContext, live_server: str) -> None:
    page = context.new_page()
    page.route("**/build/*/site-packages.bin", lambda route: route.fulfill(status=503))
    page.goto(f"{live_server}/test.html?sw=0")
    page.wait_for_function("window.pysyncBootError !== undefined", timeout=120_000)
    error = page.evaluate("window.pysyncBootError")
    assert error.startswith('BootError: boot step "packages" failed: ')
    assert "HTTP 503" in error
