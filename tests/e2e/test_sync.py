"""The sync client in real pages: two browser contexts are two devices of one user, against
the real server with the change feed on and the real DynamoDB Local.

Every test uses its own user, so its own scope, on the shared `sync_server`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.e2e.conftest import ForeignRequest, SyncServer, eventually, open_test_pages, run_py

IMPORTS = """
import pysync, js
from pysync import Schema, Collection
from pysync.client import SyncClient, dev_token_provider
from pysync.replica import Replica
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
    return None
await error_code(client.sync_now())
"""

# Every local write acknowledged, and the last round a success. (status.pending is refreshed
# after a write in a task of its own: just after a write it may still say 0.)
SYNCED = "[await db.pending_count(), client.status.last_error]"

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
    foreign_cursor = run_py(a, "await Replica(db).get_meta('cursor')")
    assert foreign_cursor
    run_py(a, STOP)
    run_py(b, START % {"user": user})
    run_py(b, "await todos.put('r1', {'from': 'b'}); await client.sync_now(); None")

    # Device A opens the user's database with a pending edit, and a confirmed record and a
    # cursor of another scope (as if it had pulled them from there).
    run_py(a, f"""
from pysync.protocol import ServerRecord
db = await pysync.open_database("sync-{user}", Schema(Collection("todos")))
todos = db["todos"]
await todos.put('mine', {{'from': 'a'}})
await Replica(db).apply_server_changes(
    [ServerRecord('todos', 'x', 1, False, {{'of': 'another user'}})],
    {{"cursor": {foreign_cursor!r}}})
assert await todos.get('x') == {{'of': 'another user'}}
client = SyncClient(db, base, dev_token_provider(base, {user!r}))
await client.start()
None
""")
    eventually(a, "await todos.get('r1')", {"from": "b"})
    eventually(b, "await todos.get('mine')", {"from": "a"})
    # The snapshot that replaced the foreign cursor does not have it: the reset drops it (in
    # the transaction of the pull sequence's last page).
    eventually(a, "await todos.get('x')", None)
    eventually(a, "[client.status.pending, client.status.last_error]", [0, None])


def foreign_cursor(page: Page) -> str:
    """A cursor of another user's scope, which the server answers with a reset."""
    run_py(page, START % {"user": new_user()})
    run_py(page, "await todos.put('x', {'of': 'another user'}); await client.sync_now(); None")
    cursor = run_py(page, "await Replica(db).get_meta('cursor')")
    assert cursor
    run_py(page, STOP)
    return cursor  # type: ignore[no-any-return]


def dynamodb_item(server: SyncServer, user: str, key: str) -> dict[str, Any] | None:
    return server.dynamodb.get_item(
        TableName=server.tables.items, ConsistentRead=True,
        Key={"pk": {"S": f"u#{user}"}, "sk": {"S": f"todos#{key}"}}).get("Item")


def test_a_reset_drops_records_deleted_on_the_server_meanwhile_and_keeps_pending_edits(
        devices: list[Page], sync_server: SyncServer) -> None:
    user = new_user()
    a = devices[0]
    cursor = foreign_cursor(a)
    run_py(a, START % {"user": user})
    run_py(a, """
await todos.put_many({'gone': {'n': 1}, 'kept': {'n': 2}, 'edited': {'n': 3}})
await client.sync_now()
await client.stop()
None
""")
    assert dynamodb_item(sync_server, user, "gone") is not None
    # Deleted by another program while the device is away; then the device's cursor turns
    # out unservable (here: another scope's), so it resets instead of reading the delete.
    sync_server.dynamodb.delete_item(TableName=sync_server.tables.items, Key={
        "pk": {"S": f"u#{user}"}, "sk": {"S": "todos#gone"}})
    run_py(a, f"""
await todos.patch('edited', {{'n': 30}})
await Replica(db).apply_server_changes([], {{"cursor": {cursor!r}}})
client = SyncClient(db, base, dev_token_provider(base, {user!r}))
await client.start()
None
""")
    eventually(a, "[[d.key, d.value] for d in await todos.query()]",
               [["edited", {"n": 30}], ["kept", {"n": 2}]])
    eventually(a, SYNCED, [0, None])
    edited = dynamodb_item(sync_server, user, "edited")
    assert edited is not None
    assert edited["n"] == {"N": "30"}


def test_the_pokes_stream_survives_a_malformed_ticket_answer_and_pokes_arrive_after_it(
        devices: list[Page], sync_server: SyncServer) -> None:
    user = new_user()
    a = devices[0]
    answered: list[str] = []

    def ticket(route: Route) -> None:
        if not answered:  # the first ticket request only: a 200 that is not a ticket
            answered.append("malformed")
            route.fulfill(status=200, content_type="application/json", body='{"tiket": 1}')
        else:
            answered.append("real")
            route.continue_()

    a.route("**/v1/events/ticket", ticket)
    try:
        run_py(a, IMPORTS + f"""
db = await pysync.open_database("sync-{user}", Schema(Collection("todos")))
todos = db["todos"]
events_errors = []  # every events_error the status went through
client = SyncClient(db, base, dev_token_provider(base, {user!r}),
                    on_status=lambda s: events_errors.append(s.events_error))
await client.start()
None
""")
        eventually(a, "any((e or '').startswith('invalid_response: ') for e in events_errors)",
                   True)
        # The stream comes back (after the events backoff) and its pokes bring a write made
        # by another program: nothing else would make this idle page pull.
        eventually(a, "client.status.events_error", None)
        sync_server.dynamodb.put_item(TableName=sync_server.tables.items, Item={
            "pk": {"S": f"u#{user}"}, "sk": {"S": "todos#poked"}, "by": {"S": "a script"}})
        eventually(a, "await todos.get('poked')", {"by": "a script"})
    finally:
        a.unroute("**/v1/events/ticket")
    assert answered[0] == "malformed"
    assert "real" in answered


def test_a_malformed_pull_answer_is_reported_as_such_and_retried(
        devices: list[Page], sync_server: SyncServer) -> None:
    user = new_user()
    a = devices[0]
    # Every pull is answered malformed until sync_now() has seen it: a round a late poke
    # starts in the background may take one such answer too, and must not leave sync_now's
    # round a good one.
    armed = [True]

    def pull(route: Route) -> None:
        if not armed[0]:
            route.continue_()
            return
        route.fulfill(status=200, content_type="application/json",
                      body='{"changes": "none", "cursor": 5}')

    start_devices([a], sync_server, user)
    eventually(a, "[client.status.pending, client.status.last_error]", [0, None])
    run_py(a, "await todos.put('p', {'n': 1}); None")
    eventually(a, SYNCED, [0, None])
    a.route("**/v1/pull?*", pull)
    try:
        assert run_py(a, SYNC_NOW_ERROR) == "invalid_response"
        assert run_py(a, "client.status.last_error").startswith(
            "invalid_response: the server's answer is malformed")
        armed[0] = False
        # A transient failure: the next round (sync_now skips the backoff) succeeds.
        assert run_py(a, SYNC_NOW_ERROR) is None
    finally:
        a.unroute("**/v1/pull?*")
    assert run_py(a, "client.status.last_error") is None


DECIMAL = "0.123456789012345678901234567891"  # 30 significant digits: no float holds them


def test_a_30_digit_decimal_is_exact_in_indexeddb_in_dynamodb_and_on_the_other_device(
        devices: list[Page], sync_server: SyncServer) -> None:
    user = new_user()
    a, b = start_devices(devices, sync_server, user)
    run_py(a, f"""
from decimal import Decimal
await todos.put('d', {{'price': Decimal({DECIMAL!r}), 'f': 0.1}})
None
""")
    # Read back from IndexedDB by a fresh connection (nothing cached in Python objects).
    assert run_py(a, """
db2 = await pysync.open_database(db.name, Schema(Collection("todos")))
got = await db2["todos"].get('d')
db2.close()
[type(got['price']).__name__, str(got['price']), type(got['f']).__name__, got['f']]
""") == ["Decimal", DECIMAL, "float", 0.1]
    eventually(a, SYNCED, [0, None])
    item = dynamodb_item(sync_server, user, "d")
    assert item is not None
    assert item["price"] == {"N": DECIMAL}
    assert item["f"] == {"N": "0.1"}
    eventually(b, "str((await todos.get('d') or {}).get('price'))", DECIMAL)
    assert run_py(b, "[type(v).__name__ for v in (await todos.get('d')).values()]") == \
        ["Decimal", "float"]
