"""The sync client in real pages: two browser contexts are two devices of one user, against
the real server with the change feed on and the real DynamoDB Local.

Every test uses its own user, so its own scope, on the shared `sync_server`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.conftest import ForeignRequest, SyncServer, open_test_pages, run_py

WAIT_S = 30.0

IMPORTS = """
import pysync, js
from pysync import Schema, Collection
from pysync.client import SyncClient, dev_token_provider
base = js.location.origin
"""

START = IMPORTS + """
db = await pysync.open_database("sync-%(user)s", Schema(Collection("todos")))
todos = db["todos"]
client = SyncClient(db, base, dev_token_provider(base, %(user)r))
await client.start()
None
"""

SYNC_NOW_ERROR = """
async def error_code(coro):
    try:
        await coro
    except pysync.SyncError as e:
        return e.code
await error_code(client.sync_now())
"""

LOCKS = """
locks = await js.navigator.locks.query()
[[lock.name for lock in locks.held], [lock.name for lock in locks.pending]]
"""

STOP = """
if "client" in globals():
    await client.stop()
    db.close()
None
"""


@pytest.fixture(scope="module")
def booted(browser: Browser, sync_server: SyncServer) -> Iterator[list[Page]]:
    """Two devices (browser contexts) with pysync booted, shared by the module's tests."""
    contexts = [browser.new_context(), browser.new_context()]
    pages = open_test_pages(contexts, sync_server.url)
    yield pages
    foreign = [url for p in pages for url in p.__dict__["foreign_requests"]]
    for c in contexts:
        c.close()
    if foreign:
        raise ForeignRequest(f"the pages requested other origins: {foreign}")


@pytest.fixture
def devices(booted: list[Page]) -> Iterator[list[Page]]:
    yield booted
    for page in booted:
        page.context.set_offline(False)
        run_py(page, STOP)


def start_devices(pages: list[Page], server: SyncServer, user: str) -> list[Page]:
    """Each page syncing its own database as `user` (one database per device and user)."""
    for page in pages:
        run_py(page, START % {"user": user})
    return pages


def eventually(page: Page, code: str, expected: Any) -> None:
    """Poll `code` in the page until it returns `expected` (the feed and pokes are async)."""
    deadline = time.monotonic() + WAIT_S
    last = None
    while time.monotonic() < deadline:
        last = run_py(page, code)
        if last == expected:
            return
        time.sleep(0.1)
    status = run_py(page, "str(client.status)")
    raise AssertionError(f"{code!r} gave {last!r}, expected {expected!r}; {status}")


def new_user() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


def test_a_write_on_one_device_reaches_the_other_and_concurrent_field_edits_both_survive(
        devices: list[Page], sync_server: SyncServer) -> None:
    user = new_user()
    a, b = start_devices(devices, sync_server, user)
    run_py(a, "await todos.put('t1', {'title': 'Milk', 'done': False}); None")
    eventually(b, "await todos.get('t1')", {"title": "Milk", "done": False})

    for page in devices:
        page.context.set_offline(True)
    run_py(a, "await todos.patch('t1', {'title': 'Oat milk'}); None")
    run_py(b, "await todos.patch('t1', {'done': True}); None")
    for page in devices:
        page.context.set_offline(False)

    merged = {"title": "Oat milk", "done": True}
    eventually(a, "await todos.get('t1')", merged)
    eventually(b, "await todos.get('t1')", merged)
    eventually(a, "client.status.pending", 0)
    eventually(b, "client.status.pending", 0)


def test_offline_writes_reach_the_other_device_once_back_online(
        devices: list[Page], sync_server: SyncServer) -> None:
    user = new_user()
    a, b = start_devices(devices, sync_server, user)
    a.context.set_offline(True)
    run_py(a, "await todos.put('t2', {'n': 1}); await todos.patch('t2', {'n': 2}); None")
    run_py(a, "await todos.patch('t2', {'n': 3}); None")
    eventually(a, "[client.status.online, client.status.pending]", [False, 1])
    assert run_py(a, SYNC_NOW_ERROR) == "offline"
    a.context.set_offline(False)

    eventually(b, "await todos.get('t2')", {"n": 3})
    eventually(a, "[client.status.online, client.status.pending]", [True, 0])
    item = sync_server.dynamodb.get_item(
        TableName=sync_server.tables.items, ConsistentRead=True,
        Key={"pk": {"S": f"u#{user}"}, "sk": {"S": "todos#t2"}})["Item"]
    assert item["_v"] == {"N": "1"}  # one coalesced put, applied once
    assert item["n"] == {"N": "3"}


def test_a_direct_dynamodb_write_reaches_the_page(
        devices: list[Page], sync_server: SyncServer) -> None:
    user = new_user()
    [page] = start_devices(devices[:1], sync_server, user)
    eventually(page, "client.status.leader", True)
    sync_server.dynamodb.put_item(TableName=sync_server.tables.items, Item={
        "pk": {"S": f"u#{user}"}, "sk": {"S": "todos#from-script"},
        "title": {"S": "Written by a backend job"}, "size": {"N": "3"}})
    eventually(page, "await todos.get('from-script')",
               {"title": "Written by a backend job", "size": 3})
    assert run_py(page, "client.status.last_error") is None


def test_only_one_tab_syncs_and_another_takes_over_when_it_stops(
        devices: list[Page], sync_server: SyncServer) -> None:
    user = new_user()
    a, b = start_devices(devices, sync_server, user)
    eventually(a, "client.status.leader", True)
    [second_tab] = open_test_pages([a.context], sync_server.url)
    try:
        run_py(second_tab, START % {"user": user})
        # The second tab's client waits for the lock the first tab's holds.
        eventually(second_tab, LOCKS, [[f"pysync:sync:sync-{user}"], [f"pysync:sync:sync-{user}"]])
        assert run_py(second_tab, "client.status.leader") is False
        # A write in the tab that does not sync is pushed by the one that does.
        run_py(second_tab, "await todos.put('tab', {'from': 'second tab'}); None")
        eventually(b, "await todos.get('tab')", {"from": "second tab"})

        run_py(a, "await client.stop(); None")
        eventually(second_tab, "client.status.leader", True)
        run_py(second_tab, "await todos.patch('tab', {'later': True}); None")
        eventually(b, "await todos.get('tab')", {"from": "second tab", "later": True})
    finally:
        run_py(second_tab, STOP)
        second_tab.close()


def test_a_rejected_token_is_replaced_by_asking_the_provider_again(
        devices: list[Page], sync_server: SyncServer) -> None:
    user = new_user()
    [a] = devices[:1]
    run_py(a, IMPORTS + f"""
db = await pysync.open_database("sync-{user}", Schema(Collection("todos")))
todos = db["todos"]
calls = []
real = dev_token_provider(base, {user!r})
async def provider():
    calls.append(1)
    return "not-a-token" if len(calls) == 1 else await real()
client = SyncClient(db, base, provider)
await client.start()
None
""")
    run_py(a, "await todos.put('t', {'ok': True}); None")
    eventually(a, "[client.status.pending, client.status.last_error]", [0, None])
    assert run_py(a, "len(calls)") == 2


def test_a_cursor_the_server_cannot_serve_resets_to_a_snapshot_and_keeps_the_outbox(
        devices: list[Page], sync_server: SyncServer) -> None:
    other, user = new_user(), new_user()
    a, b = devices
    run_py(a, START % {"user": other})
    run_py(a, "await todos.put('x', {'of': 'another user'}); await client.sync_now(); None")
    foreign_cursor = run_py(a, "await db.get_meta('cursor')")
    assert foreign_cursor
    run_py(a, STOP)
    run_py(b, START % {"user": user})
    run_py(b, "await todos.put('r1', {'from': 'b'}); await client.sync_now(); None")

    # Device A opens the user's database with a pending edit and a cursor of another scope.
    run_py(a, f"""
db = await pysync.open_database("sync-{user}", Schema(Collection("todos")))
todos = db["todos"]
await todos.put('mine', {{'from': 'a'}})
await db.apply_server_changes([], {{"cursor": {foreign_cursor!r}}})
client = SyncClient(db, base, dev_token_provider(base, {user!r}))
await client.start()
None
""")
    eventually(a, "await todos.get('r1')", {"from": "b"})
    eventually(b, "await todos.get('mine')", {"from": "a"})
    assert run_py(a, "await todos.get('x')") is None
    eventually(a, "[client.status.pending, client.status.last_error]", [0, None])
