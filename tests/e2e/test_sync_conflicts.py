"""Conflicts, progress and "synced" in real pages (issue 10): two browser contexts are two
devices of one user, and device A has a second tab (a second page of its context: the same
IndexedDB, BroadcastChannel and Web Locks); the real server with the change feed on and a
schema with every strategy, the real DynamoDB Local, read back with boto3.

A device's edits are kept from the server with `client.pause()` while the other device's
edit of the same record lands: the paused device's edit then has the older stamp (and the
older base version), and reaches the server second.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request

from pysync.schema import Collection, Schema
from server.app import create_app
from server.db import dynamodb_client
from server.dynamo_local import DynamoDBLocal
from server.tables import TableNames
from tests.e2e.conftest import (
    ForeignRequest,
    SyncServer,
    eventually,
    open_test_pages,
    run_py,
    sync_settings,
)
from tests.support import serve

SCHEMA = Schema(Collection("todos"), Collection("accounts", strategy="version"),
                Collection("docs", strategy="lww"))

# The page's schema is the server's, plus a resolver on `accounts` that calls the page's
# global `resolver` (each test sets its own).
START = """
import asyncio, pysync, js
from pysync import Schema, Collection
from pysync.client import SyncClient, dev_token_provider
base = js.location.origin
if "resolver" not in globals():
    def resolver(local, server, base):
        return server
db = await pysync.open_database(%(db)r, Schema(
    Collection("todos"),
    Collection("accounts", strategy="version", resolve=lambda l, s, b: resolver(l, s, b)),
    Collection("docs", strategy="lww")))
events, statuses = [], []
def on_conflict(e):
    events.append([e.collection, e.key, e.strategy, e.kind, e.local, e.server, e.result,
                   e.error])
client = SyncClient(db, base, dev_token_provider(base, %(user)r), on_conflict=on_conflict,
                    on_status=statuses.append, pull_limit=%(pull_limit)d)
await client.start()
client.status.leader
"""

STOP = """
if "client" in globals():
    await client.stop()
    db.close()
    del client
if "resolver" in globals():
    del resolver
None
"""

SYNCED = "await client.synced(timeout=60); None"


@pytest.fixture(scope="module")
def server(dynamodb_local: DynamoDBLocal) -> Iterator[SyncServer]:
    """A dev server with the feed on and SCHEMA (the session's `sync_server` has none: every
    collection is `merge` there)."""
    prefix = f"conf{uuid.uuid4().hex[:8]}_"
    settings = sync_settings(dynamodb_local, prefix, schema=SCHEMA)
    with serve(create_app(settings)) as url:
        yield SyncServer(url, TableNames.with_prefix(prefix), dynamodb_client(settings),
                         settings)


@pytest.fixture(scope="module")
def booted(browser: Browser, server: SyncServer) -> Iterator[list[Page]]:
    """Device A's two tabs and device B, booted once for the module."""
    a, b = browser.new_context(), browser.new_context()
    pages = open_test_pages([a, a, b], server.url)
    yield pages
    foreign = [url for p in pages for url in p.__dict__["foreign_requests"]]
    a.close()
    b.close()
    if foreign:
        raise ForeignRequest(f"the pages requested other origins: {foreign}")


@pytest.fixture
def tabs(booted: list[Page]) -> Iterator[list[Page]]:
    yield booted
    for page in booted:
        run_py(page, STOP)


def new_user() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


def start(page: Page, user: str, db: str | None = None, pull_limit: int = 500) -> bool:
    leader = run_py(page, START % {"db": db or f"conf-{user}", "user": user,
                                   "pull_limit": pull_limit})
    return bool(leader)


def item(server: SyncServer, user: str, collection: str, key: str) -> dict[str, Any] | None:
    found = server.dynamodb.get_item(
        TableName=server.tables.items, ConsistentRead=True,
        Key={"pk": {"S": f"u#{user}"}, "sk": {"S": f"{collection}#{key}"}}).get("Item")
    return dict(found) if found is not None else None


def shared(a: Page, b: Page, collection: str, key: str, value: dict[str, Any]) -> None:
    """`value` written on `a` and synced, until `b` holds it."""
    run_py(a, f"await db[{collection!r}].put({key!r}, {value!r}); None")
    run_py(a, SYNCED)
    eventually(b, f"await db[{collection!r}].get({key!r})", value)


def test_the_resolver_gets_local_server_and_base_and_its_result_reaches_both_devices(
        tabs: list[Page], server: SyncServer) -> None:
    user = new_user()
    a, _, b = tabs
    run_py(a, """
calls = []
def resolver(local, server, base):
    calls.append([local, server, base])
    return {**server, "balance": server["balance"] + local["balance"] - base["balance"]}
None
""")
    assert start(a, user)
    assert start(b, user)
    shared(a, b, "accounts", "acc", {"balance": 10, "owner": "ann"})
    run_py(a, "client.pause(); await db['accounts'].patch('acc', {'balance': 15}); None")
    run_py(b, "await db['accounts'].patch('acc', {'balance': 12}); None")
    run_py(b, SYNCED)
    run_py(a, "client.resume(); None")
    run_py(a, SYNCED)

    assert run_py(a, "calls") == [[{"balance": 15, "owner": "ann"},
                                   {"balance": 12, "owner": "ann"},
                                   {"balance": 10, "owner": "ann"}]]
    stored = item(server, user, "accounts", "acc")
    assert stored is not None
    assert (stored["balance"], stored["_v"]) == ({"N": "17"}, {"N": "3"})
    resolved = {"balance": 17, "owner": "ann"}
    assert run_py(a, "await db['accounts'].get('acc')") == resolved
    eventually(b, "await db['accounts'].get('acc')", resolved)
    assert run_py(a, "events") == [["accounts", "acc", "version", "conflict",
                                    {"balance": 15, "owner": "ann"},
                                    {"balance": 12, "owner": "ann"}, resolved, None]]
    assert run_py(b, "events") == []


def test_a_raising_resolver_keeps_the_server_copy_and_reports_it(
        tabs: list[Page], server: SyncServer) -> None:
    user = new_user()
    a, _, b = tabs
    run_py(a, """
def resolver(local, server, base):
    raise ValueError("no rule for this")
None
""")
    assert start(a, user)
    assert start(b, user)
    shared(a, b, "accounts", "acc", {"balance": 10})
    run_py(a, "client.pause(); await db['accounts'].patch('acc', {'balance': 15}); None")
    run_py(b, "await db['accounts'].patch('acc', {'balance': 12}); None")
    run_py(b, SYNCED)
    run_py(a, "client.resume(); None")
    run_py(a, SYNCED)

    assert run_py(a, "[await db['accounts'].get('acc'), await db.pending_count()]") == \
        [{"balance": 12}, 0]
    stored = item(server, user, "accounts", "acc")
    assert stored is not None
    assert (stored["balance"], stored["_v"]) == ({"N": "12"}, {"N": "2"})
    assert run_py(a, "events") == [["accounts", "acc", "version", "conflict", {"balance": 15},
                                    {"balance": 12}, {"balance": 12},
                                    "ValueError: no rule for this"]]


def test_on_conflict_fires_once_per_lost_edit_for_each_strategy_in_every_tab(
        tabs: list[Page], server: SyncServer) -> None:
    user = new_user()
    a, a2, b = tabs
    assert start(a, user)
    assert not start(a2, user)  # device A's second tab: A's first tab syncs
    assert start(b, user)
    records: list[tuple[str, str, dict[str, Any]]] = [
        ("accounts", "acc", {"balance": 10}), ("docs", "d1", {"body": "first"}),
        ("todos", "t1", {"title": "Milk"}), ("todos", "t2", {"title": "Eggs"})]
    for collection, key, value in records:
        shared(b, a, collection, key, value)
    # Device A's edits, in both tabs, wait while the syncing tab is paused...
    run_py(a, """
client.pause()
await db['accounts'].patch('acc', {'balance': 15})
await db['docs'].put('d1', {'body': 'from a'})
None
""")
    run_py(a2, """
await db['todos'].patch('t1', {'title': 'Oat milk'})
await db['todos'].patch('t2', {'done': True})
None
""")
    # ...and device B's edits of the same records, stamped after them, land first.
    run_py(b, """
await db['accounts'].patch('acc', {'balance': 12})
await db['docs'].put('d1', {'body': 'from b'})
await db['todos'].patch('t1', {'title': 'Soy milk'})
await db['todos'].delete('t2')
None
""")
    run_py(b, SYNCED)
    run_py(a, "client.resume(); None")
    run_py(a, SYNCED)
    run_py(a, "await client.sync_now(); None")  # one round more: nothing fires twice

    expected = [
        ["accounts", "acc", "version", "conflict", {"balance": 15}, {"balance": 12},
         {"balance": 12}, None],
        ["docs", "d1", "lww", "overwritten", {"body": "from a"}, {"body": "from b"},
         {"body": "from b"}, None],
        ["todos", "t1", "merge", "overwritten", {"title": "Oat milk"}, {"title": "Soy milk"},
         {"title": "Soy milk"}, None],
        ["todos", "t2", "merge", "rejected", {"title": "Eggs", "done": True}, None, None,
         "deleted"],
    ]
    assert run_py(a, "sorted(events)") == expected
    eventually(a2, "sorted(events)", expected)
    assert run_py(b, "events") == []


def test_progress_moves_monotonically_to_the_total_during_a_5000_record_first_sync(
        tabs: list[Page], server: SyncServer) -> None:
    user = new_user()
    _, _, b = tabs
    with httpx.Client(base_url=server.url, timeout=120) as http:
        token = http.post("/v1/dev/token", json={"user": user}).json()["token"]
        http.headers["Authorization"] = f"Bearer {token}"
        for batch in range(10):
            r = http.post("/v1/push", json={
                "protocol": 1, "client_id": f"seed-{user}", "mutations": [
                    {"id": batch * 500 + i + 1, "collection": "todos",
                     "key": f"t{batch * 500 + i:04}", "op": "put",
                     "value": {"title": f"Sample todo {batch * 500 + i}", "done": False},
                     "base_version": None, "hlc": None} for i in range(500)]})
            assert r.status_code == 200, r.text[:300]
    assert start(b, user, db=f"conf-first-{user}")
    run_py(b, "await client.synced(timeout=240); None")
    progress = run_py(b, "[list(s.progress) for s in statuses if s.progress is not None]")
    assert len(progress) >= 9  # a page of 500 at a time
    received = [p[0] for p in progress]
    assert received == sorted(received)
    assert all(total >= count for count, total in progress)
    # From the first page on, the total counts the whole snapshot; it ends where the count
    # does (above 5,000 when the feed was still logging the pushes as the snapshot ran: the
    # changes logged after it began come again as deltas).
    assert progress[0][1] >= 5000
    assert progress[-1][0] == progress[-1][1] >= 5000
    print("progress:", progress)
    assert run_py(b, "[client.status.progress, len(await db['todos'].query()), "
                     "client.status.last_synced_at is not None]") == [None, 5000, True]


def test_synced_in_a_tab_that_does_not_sync_returns_once_dynamodb_holds_its_write(
        tabs: list[Page], server: SyncServer) -> None:
    user = new_user()
    a, a2, _ = tabs
    assert start(a, user)
    assert not start(a2, user)
    run_py(a2, "await db['accounts'].put('acc', {'balance': 7}); await client.synced(timeout=60)")
    stored = item(server, user, "accounts", "acc")
    assert stored is not None
    assert stored["balance"] == {"N": "7"}


def test_sync_now_in_a_tab_that_does_not_sync_waits_for_the_leaders_round(
        tabs: list[Page], server: SyncServer) -> None:
    user = new_user()
    a, a2, _ = tabs
    assert start(a, user)
    assert not start(a2, user)
    run_py(a, SYNCED)
    server.dynamodb.put_item(TableName=server.tables.items, Item={
        "pk": {"S": f"u#{user}"}, "sk": {"S": "todos#script"}, "title": {"S": "from boto3"}})
    # The feed logs it asynchronously: a round of the syncing tab, asked for by the other
    # tab, brings it once it is logged.
    eventually(a2, "await client.sync_now() and await db['todos'].get('script')",
               {"title": "from boto3"})
    assert run_py(a2, "client.status.last_synced_at is not None")


def test_pause_makes_no_request_and_resume_pushes_what_waited(
        tabs: list[Page], server: SyncServer) -> None:
    user = new_user()
    a, _, _ = tabs
    requests: list[str] = []

    def count(request: Request) -> None:
        if "/v1/" in request.url:
            requests.append(f"{request.method} {request.url.split('?')[0]}")

    a.on("request", count)
    try:
        assert start(a, user)
        run_py(a, SYNCED)
        run_py(a, "client.pause(); None")
        seen = len(requests)
        run_py(a, """
await db['todos'].put('t1', {'title': 'written while paused'})
await db['todos'].patch('t1', {'done': True})
await asyncio.sleep(1.5)  # a bounded look for requests that must not come
None
""")
        assert requests[seen:] == []
        assert run_py(a, "[client.status.paused, await db.pending_count()]") == [True, 1]
        assert item(server, user, "todos", "t1") is None
        run_py(a, "client.resume(); None")
        run_py(a, SYNCED)
        assert any(r.startswith("POST") and r.endswith("/v1/push") for r in requests[seen:])
        stored = item(server, user, "todos", "t1")
        assert stored is not None
        assert stored["done"] == {"BOOL": True}
    finally:
        a.remove_listener("request", count)
