"""The browser client under faults, each produced by a real part: a tab closed in the middle
of a transaction or of a push (Playwright's page.close), a request dropped or its answer lost
(a Playwright route), IndexedDB full (Chromium's CDP Storage.overrideQuotaForOrigin), a
token expiring while the client runs, and the server's tables dropped and re-created.

Each test has its own browser context (its own IndexedDB) and its own user.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route

from server.app import create_app
from server.auth import LEEWAY_S, TokenVerifier
from server.db import dynamodb_client
from server.dynamo_local import DynamoDBLocal, free_port
from server.tables import TableNames
from tests import support
from tests.e2e.conftest import (
    WAIT_S,
    ForeignRequest,
    SyncServer,
    eventually,
    open_test_pages,
    raw_counts,
    run_py,
    sync_settings,
)
from tests.support import serve

IMPORTS = """
import asyncio, os
import pysync, js
from pysync import Schema, Collection
from pysync.client import SyncClient, dev_token_provider
from pysync.replica import Replica
base = js.location.origin
"""

OPEN = IMPORTS + """
db = await pysync.open_database(%(name)r, Schema(Collection("todos")))
todos = db["todos"]
None
"""

START = OPEN + """
client = SyncClient(db, base, dev_token_provider(base, %(user)r))
await client.start()
None
"""

# Every local write acknowledged, and the last round a success. (Not status.pending: it is
# refreshed after a write in a task of its own, so just after a write it may still say 0.)
SYNCED = "[await db.pending_count(), client.status.last_error]"



class Device:
    """A browser context (one device: its own IndexedDB) and its open pages."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.url = url
        self.context: BrowserContext = browser.new_context()
        self.pages: list[Page] = []

    def open(self) -> Page:
        [page] = open_test_pages([self.context], self.url)
        self.pages.append(page)
        return page

    def close(self) -> None:
        foreign = [url for p in self.pages for url in p.__dict__["foreign_requests"]]
        self.context.close()
        if foreign:
            raise ForeignRequest(f"the pages requested other origins: {foreign}")


@pytest.fixture
def device(browser: Browser, sync_server: SyncServer) -> Iterator[Device]:
    d = Device(browser, sync_server.url)
    yield d
    d.close()


def wait_until(page: Page, condition: Any, what: str) -> None:
    """Let Playwright dispatch events (route handlers) until `condition()` holds."""
    support.wait_until(condition, timeout=WAIT_S, interval=0.05,
                       message=f"timed out waiting for {what}",
                       pause=lambda s: page.wait_for_timeout(s * 1000))


def new_user() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


def item(dynamodb: Any, tables: TableNames, user: str, key: str) -> dict[str, Any] | None:
    """The record's item in DynamoDB, read with boto3 (strongly consistent)."""
    return dynamodb.get_item(  # type: ignore[no-any-return]
        TableName=tables.items, ConsistentRead=True,
        Key={"pk": {"S": f"u#{user}"}, "sk": {"S": f"todos#{key}"}}).get("Item")


# ---- tab closed mid-transaction ------------------------------------------------------------

BIG_WRITE = 10_000


def test_a_tab_closed_mid_transaction_leaves_the_write_wholly_there_or_wholly_absent(
        device: Device) -> None:
    name = f"close-{uuid.uuid4().hex[:8]}"
    page = device.open()
    run_py(page, OPEN % {"name": name} + f"""
await todos.put('before', {{'n': 0}})
batch = {{f'r{{i:05d}}': {{'blob': os.urandom(32), 'i': i}} for i in range({BIG_WRITE})}}
js.localStorage.removeItem('started')
js.localStorage.removeItem('done')
async def write():
    js.localStorage.setItem('started', '1')
    await todos.put_many(batch)
    js.localStorage.setItem('done', '1')
task = asyncio.ensure_future(write())
for _ in range(3):  # until the transaction is open and its read issued
    await asyncio.sleep(0)
None
""")
    page.close(run_before_unload=False)  # mid-transaction: planning the rows takes a while

    reopened = device.open()
    assert reopened.evaluate("localStorage.getItem('started')") == "1"
    done = reopened.evaluate("localStorage.getItem('done')")
    counts = raw_counts(reopened, name)
    # One transaction holds the records and their outbox entries: all or nothing.
    assert counts in ({"records": 1, "outbox": 1},
                      {"records": BIG_WRITE + 1, "outbox": BIG_WRITE + 1}), counts
    if done:  # the write was acknowledged to the app: it must be there
        assert counts["records"] == BIG_WRITE + 1
    run_py(reopened, OPEN % {"name": name})
    assert run_py(reopened, "await todos.get('before')") == {"n": 0}
    # The database works on: a write after the interrupted one commits.
    run_py(reopened, "await todos.put('after', {'n': 1}); None")
    assert raw_counts(reopened, name)["records"] == counts["records"] + 1
    run_py(reopened, "db.close(); None")


# ---- tab closed mid-push; request dropped; ack lost --------------------------------------

def test_a_tab_closed_after_the_server_committed_a_push_pushes_it_again_as_a_duplicate(
        device: Device, sync_server: SyncServer) -> None:
    user = new_user()
    name = f"sync-{user}"
    page = device.open()
    run_py(page, START % {"name": name, "user": user})
    eventually(page, SYNCED, [0, None])
    committed: list[Any] = []

    def commit_then_hang(route: Route) -> None:
        committed.append(route.fetch().json())  # the server has it; the page never hears

    page.route("**/v1/push", commit_then_hang)
    client_id = run_py(page, "db.client_id")
    run_py(page, "await todos.put('once', {'n': 1}); None")
    wait_until(page, lambda: committed, "the push to reach the server")
    page.close(run_before_unload=False)
    [result] = committed[0]["results"]
    assert result["status"] == "applied"

    answers: list[Any] = []

    def record(route: Route) -> None:
        response = route.fetch()
        answers.append(response.json())
        route.fulfill(response=response)

    reopened = device.open()
    reopened.route("**/v1/push", record)
    run_py(reopened, START % {"name": name, "user": user})
    eventually(reopened, SYNCED, [0, None])
    # Sent again with the same id, answered `duplicate` with the record as it is now
    # (docs/api.md), applied once.
    assert [(r["id"], r["status"], r["server"]["version"], r["server"]["value"])
            for r in answers[0]["results"]] == [(result["id"], "duplicate", 1, {"n": 1})]
    stored = item(sync_server.dynamodb, sync_server.tables, user, "once")
    assert stored is not None
    assert stored["_v"] == {"N": "1"}
    assert stored["_w"] == {"S": f"{client_id}:{result['id']}"}
    assert run_py(reopened, "(await todos.query())[0].pending") is False
    run_py(reopened, "await client.stop(); db.close(); None")


@pytest.mark.parametrize("fault", ["request dropped", "answer lost"])
def test_a_push_whose_request_or_answer_is_lost_is_retried_and_applied_once(
        device: Device, sync_server: SyncServer, fault: str) -> None:
    user = new_user()
    page = device.open()
    run_py(page, START % {"name": f"sync-{user}", "user": user})
    eventually(page, SYNCED, [0, None])
    faults: list[int] = []

    def lose_once(route: Route) -> None:
        if faults:
            route.continue_()
            return
        if fault == "answer lost":
            faults.append(route.fetch().status)  # committed on the server first
        else:
            faults.append(0)  # never sent
        route.abort("connectionreset")

    page.route("**/v1/push", lose_once)
    run_py(page, "await todos.put('once', {'n': 1}); None")
    eventually(page, SYNCED, [0, None])
    assert faults == ([200] if fault == "answer lost" else [0])
    stored = item(sync_server.dynamodb, sync_server.tables, user, "once")
    assert stored is not None
    assert stored["_v"] == {"N": "1"}
    assert stored["n"] == {"N": "1"}
    run_py(page, "await client.stop(); db.close(); None")


# ---- IndexedDB quota exceeded ------------------------------------------------------------

def test_a_full_indexeddb_refuses_a_write_whole_and_takes_it_once_the_quota_is_raised(
        device: Device) -> None:
    name = f"quota-{uuid.uuid4().hex[:8]}"
    page = device.open()
    cdp = device.context.new_cdp_session(page)
    origin = device.url

    def quota(size: int | None) -> None:
        params: dict[str, Any] = {"origin": origin}
        if size is not None:
            params["quotaSize"] = size
        cdp.send("Storage.overrideQuotaForOrigin", params)

    quota(2_000_000)
    try:
        # Random bytes: Chromium compresses IndexedDB values, so a repeated string never fills it.
        result = run_py(page, OPEN % {"name": name} + """
await todos.put('keep', {'n': 1})
def batch(i):
    return {f'b{i}-{j}': {'blob': os.urandom(4000)} for j in range(50)}
error = None
for i in range(200):
    failed = batch(i)
    try:
        await todos.put_many(failed)
    except pysync.PysyncError as e:
        error = type(e).__name__
        break
[error, i, await todos.count(), len(await Replica(db).outbox_entries()), await todos.get('keep')]
""")
        error, full_at, count, entries, keep = result
        assert error == "StorageFull"
        assert full_at >= 1  # some batches fit before the quota was reached
        # Nothing of the refused batch, everything before it.
        assert count == entries == 1 + 50 * full_at
        assert keep == {"n": 1}
        assert run_py(page, "await todos.get(next(iter(failed)))") is None

        quota(200_000_000)
        assert run_py(page, """
await todos.put_many(failed)
[await todos.count(), len(await Replica(db).outbox_entries())]
""") == [count + 50, count + 50]
    finally:
        quota(None)
        run_py(page, "db.close(); None")


# ---- token expiry mid-sync -------------------------------------------------------------------

def test_a_token_expiring_while_the_client_runs_is_replaced_and_sync_goes_on(
        device: Device, sync_server: SyncServer) -> None:
    user = new_user()
    settings = sync_server.settings
    page = device.open()
    # Issued long enough ago to expire a few seconds from now (past the verifier's leeway).
    issued = time.time() - settings.dev_token_ttl_s + 3
    expires = issued + settings.dev_token_ttl_s + LEEWAY_S
    short_lived = TokenVerifier(settings).issue_dev_token(user, now=issued)
    run_py(page, OPEN % {"name": f"sync-{user}"} + f"""
calls = []
real = dev_token_provider(base, {user!r})
async def provider():
    calls.append(1)
    return {short_lived!r} if len(calls) == 1 else await real()
client = SyncClient(db, base, provider)
await client.start()
await todos.put('early', {{'n': 1}})
None
""")
    eventually(page, SYNCED, [0, None])
    assert run_py(page, "len(calls)") == 1
    time.sleep(max(0.0, expires - time.time()) + 1.0)

    run_py(page, "await todos.put('late', {'n': 2}); None")
    eventually(page, SYNCED, [0, None])
    assert run_py(page, "len(calls)") == 2  # asked again after the 401, once
    assert item(sync_server.dynamodb, sync_server.tables, user, "late") is not None
    run_py(page, "await client.stop(); db.close(); None")


# ---- the server's tables dropped and re-created ----------------------------------------------

def drop_tables(dynamodb: Any, tables: TableNames) -> None:
    names = [tables.items, tables.clients, tables.log, tables.feed, tables.scopes]
    for name in names:
        dynamodb.delete_table(TableName=name)
    for name in names:
        dynamodb.get_waiter("table_not_exists").wait(TableName=name,
                                                     WaiterConfig={"Delay": 0.2})


def test_tables_recreated_under_a_running_client_reset_it_and_its_pending_writes_are_pushed(
        browser: Browser, dynamodb_local: DynamoDBLocal) -> None:
    prefix = f"recreate{uuid.uuid4().hex[:8]}_"
    settings = sync_settings(dynamodb_local, prefix)
    tables = TableNames.with_prefix(prefix)
    dynamodb = dynamodb_client(settings)
    port = free_port()
    user = new_user()
    device = Device(browser, f"http://127.0.0.1:{port}")
    try:
        with serve(create_app(settings), port):
            page = device.open()
            run_py(page, START % {"name": f"sync-{user}", "user": user})
            run_py(page, "await todos.put_many({'old': {'n': 1}, 'edited': {'n': 2}}); None")
            eventually(page, SYNCED, [0, None])
            assert item(dynamodb, tables, user, "old") is not None
            device.context.set_offline(True)  # (also ends the page's events stream)
        # The server is down; the device writes on; the operator drops every table.
        run_py(page, "await todos.put_many({'edited': {'n': 20}, 'new': {'n': 3}}); None")
        drop_tables(dynamodb, tables)
        # The same server comes back on the same port (the page keeps its origin and its
        # database) and creates the tables afresh.
        with serve(create_app(settings), port):
            device.context.set_offline(False)
            eventually(page, SYNCED, [0, None])
            # Pushed (the new clients table knew nothing of this client: its ids restart
            # at 1), each once; the confirmed record the new tables lack left the device.
            client_id = run_py(page, "db.client_id")
            for n, key in enumerate(("edited", "new"), start=1):
                stored = item(dynamodb, tables, user, key)
                assert stored is not None
                assert stored["_v"] == {"N": "1"}
                assert stored["_w"] == {"S": f"{client_id}:{n}"}
            assert item(dynamodb, tables, user, "old") is None
            eventually(page, "[[d.key, d.value, d.pending] for d in await todos.query()]",
                       [["edited", {"n": 20}, False], ["new", {"n": 3}, False]])
            run_py(page, "await client.stop(); db.close(); None")
    finally:
        device.close()
