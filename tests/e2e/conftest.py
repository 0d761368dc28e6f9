"""End-to-end fixtures: Debian's Chromium driven by pytest-playwright, against a real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from server.app import create_app
from server.assets import ensure_pysync_wheel
from server.config import Settings
from server.db import dynamodb_client
from server.dynamo_local import DynamoDBLocal
from server.tables import TableNames
from tests.support import serve, wait_until

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BOOT_TIMEOUT_MS = 120_000


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def live_server(dynamodb_local: DynamoDBLocal) -> Iterator[str]:
    ensure_pysync_wheel()
    settings = Settings(dev=True, dynamodb_endpoint=dynamodb_local.endpoint,
                        table_prefix=f"e2e{uuid.uuid4().hex[:8]}_")
    with serve(create_app(settings)) as url:
        yield url


@dataclass(frozen=True)
class SyncServer:
    url: str
    tables: TableNames
    dynamodb: DynamoDBClient
    settings: Settings


def sync_settings(dynamodb_local: DynamoDBLocal, prefix: str, **overrides: Any) -> Settings:
    """A dev server's settings with the change feed on (short polls) and no rate limit."""
    options: dict[str, Any] = {"dev": True, "dynamodb_endpoint": dynamodb_local.endpoint,
                               "table_prefix": prefix, "feed_enabled": True,
                               "feed_poll_s": 0.05, "events_poll_s": 0.1,
                               "rate_limit_per_s": 0, **overrides}
    return Settings(**options)


@pytest.fixture(scope="session")
def sync_server(dynamodb_local: DynamoDBLocal) -> Iterator[SyncServer]:
    """A dev server with the change feed on (short polls), for the sync tests. Tests share
    it and keep apart by using their own user (scope)."""
    ensure_pysync_wheel()
    prefix = f"sync{uuid.uuid4().hex[:8]}_"
    settings = sync_settings(dynamodb_local, prefix)
    with serve(create_app(settings)) as url:
        yield SyncServer(url, TableNames.with_prefix(prefix), dynamodb_client(settings),
                         settings)


class ForeignRequest(AssertionError):
    pass


# The test page without a service worker or a Pyodide memory snapshot (boot.js's plain path):
# Playwright's routes do not see the requests of a page a service worker controls, and the
# snapshot (31 MB) and the worker's cache would count against the origin's storage quota that
# tests set; every fresh context would also pay for storing them. tests/e2e/test_boot.py and
# test_offline.py test those paths (and index.html, used by the demo tests, has both).
TEST_PAGE = "/test.html?sw=0&snapshot=0"


def open_test_page(context: BrowserContext, base_url: str, path: str = TEST_PAGE) -> Page:
    """A page on test.html with pysync booted; fails the test on any request to another origin.
    `path` may choose test.html's options (?sw=0, ?snapshot=0: web/app/test.html)."""
    return open_test_pages([context], base_url, path)[0]


def open_test_pages(contexts: list[BrowserContext], base_url: str,
                    path: str = TEST_PAGE) -> list[Page]:
    """One booted test page per context; the pages boot Pyodide at the same time."""
    pages = [_goto_test_page(context, base_url, path) for context in contexts]
    for page in pages:
        _wait_for_boot(page)
    return pages


def _goto_test_page(context: BrowserContext, base_url: str, path: str) -> Page:
    page = context.new_page()
    origin = urlsplit(base_url).netloc
    foreign: list[str] = []

    def check(request: Any) -> None:
        netloc = urlsplit(request.url).netloc
        if request.url.startswith(("data:", "blob:")) or netloc == origin:
            return
        foreign.append(request.url)

    page.on("request", check)
    page.goto(f"{base_url}{path}")
    page.__dict__["foreign_requests"] = foreign
    return page


def _wait_for_boot(page: Page) -> None:
    page.wait_for_function("window.pysyncTest !== undefined", timeout=BOOT_TIMEOUT_MS)
    page.evaluate("window.pysyncTest.ready")  # rejects, and so fails here, if the boot failed
    page.set_default_timeout(60_000)


@pytest.fixture
def app_page(context: BrowserContext, live_server: str) -> Iterator[Page]:
    page = open_test_page(context, live_server)
    yield page
    foreign = page.__dict__["foreign_requests"]
    if foreign:
        raise ForeignRequest(f"the page requested other origins: {foreign}")


def run_py(page: Page, code: str) -> Any:
    """Run Python in the page (top-level await allowed); return its last expression as JSON."""
    return page.evaluate("code => window.pysyncTest.run(code)", code)


WAIT_S = 30.0  # how long a test waits for the feed, pokes and pulls to bring a change


def eventually(page: Page, code: str, expected: Any) -> None:
    """Poll `code` in the page until it returns `expected` (the feed and pokes are async)."""
    last: list[Any] = []

    def arrived() -> bool:
        last[:] = [run_py(page, code)]
        return bool(last[0] == expected)

    try:
        wait_until(arrived, timeout=WAIT_S, interval=0.1)
    except AssertionError:
        status = run_py(page, "str(client.status) if 'client' in globals() else None")
        raise AssertionError(f"{code!r} gave {last[0]!r}, expected {expected!r}; "
                             f"{status}") from None


# What IndexedDB itself holds, read with plain JS (not through pysync).
RAW_COUNTS = """async (name) => {
  const db = await new Promise((ok, ko) => {
    const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => ko(r.error);
  });
  const tx = db.transaction(["records", "outbox"]);
  const count = (s) => new Promise((ok) => { const r = tx.objectStore(s).count();
                                            r.onsuccess = () => ok(r.result); });
  const out = { records: await count("records"), outbox: await count("outbox") };
  db.close();
  return out;
}"""


def raw_counts(page: Page, name: str) -> dict[str, int]:
    return page.evaluate(RAW_COUNTS, name)  # type: ignore[no-any-return]


__all__ = ["Browser", "SyncServer", "eventually", "open_test_page", "open_test_pages",
           "raw_counts", "run_py"]
