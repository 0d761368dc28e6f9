"""Shared scopes in real pages (issue 11): two browser contexts are two users' devices, each
with its own IndexedDB, against the real server with the change feed and DynamoDB Local.
The CPython tests (tests/server/test_client_scopes_sync.py, tests/unit/test_store_scopes.py)
cover the cases; these prove them on the real IndexedDB through the bridge."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.conftest import ForeignRequest, SyncServer, eventually, open_test_pages, run_py

START = """
import pysync, js
from pysync import Schema, Collection
from pysync.client import SyncClient, dev_token_provider
base = js.location.origin
db = await pysync.open_database(%(db)r, Schema(Collection("todos")))
events = []
client = SyncClient(db, base, dev_token_provider(base, %(user)r),
                    on_conflict=lambda e: events.append([e.key, e.scope, e.kind, e.error]))
await client.start()
await client.synced(timeout=60)
None
"""

STOP = """
if "client" in globals():
    await client.stop()
    db.close()
    del client
None
"""

SYNCED = "await client.synced(timeout=60); None"


@pytest.fixture
def devices(browser: Browser, sync_server: SyncServer) -> Iterator[tuple[Page, Page, str, str]]:
    """Alice's and Bob's devices, each signed in and synced: (alice, bob, ann, ben)."""
    contexts = [browser.new_context(), browser.new_context()]
    alice, bob = open_test_pages(contexts, sync_server.url)
    ann, ben = (f"s{uuid.uuid4().hex[:10]}" for _ in range(2))
    for page, user in ((alice, ann), (bob, ben)):
        run_py(page, START % {"db": f"scopes-{user}", "user": user})
    yield alice, bob, ann, ben
    foreign = [url for p in (alice, bob) for url in p.__dict__["foreign_requests"]]
    for page in (alice, bob):
        run_py(page, STOP)
    for context in contexts:
        context.close()
    if foreign:
        raise ForeignRequest(f"the pages requested other origins: {foreign}")


def shared_list(alice: Page, bob: Page, ben: str) -> str:
    """A scope Alice owns holding one todo, shared with Bob as editor and on his device."""
    scope = str(run_py(alice, f"""
scope = await client.create_scope("Groceries")
await db.collection("todos", scope=scope).put("t1", {{"title": "Milk", "done": False}})
await client.share(scope, {ben!r}, "editor")
await client.synced(timeout=60)
scope"""))
    eventually(bob, f"await db.collection('todos', scope={scope!r}).get('t1')",
               {"title": "Milk", "done": False})
    return scope


def test_two_users_editing_a_shared_list_offline_converge(
        devices: tuple[Page, Page, str, str], sync_server: SyncServer) -> None:
    alice, bob, _, ben = devices
    scope = shared_list(alice, bob, ben)
    for page in (alice, bob):
        run_py(page, "client.pause()")
    run_py(alice, f"""
todos = db.collection("todos", scope={scope!r})
await todos.patch("t1", {{"title": "Oat milk"}})
await todos.put("t2", {{"title": "Bread", "done": False}})
None""")
    run_py(bob, f"""
todos = db.collection("todos", scope={scope!r})
await todos.patch("t1", {{"done": True}})
await todos.put("t3", {{"title": "Apples", "done": False}})
None""")
    for page in (alice, bob):
        run_py(page, "client.resume()")
        run_py(page, SYNCED)
    expected = {"t1": {"title": "Oat milk", "done": True},
                "t2": {"title": "Bread", "done": False},
                "t3": {"title": "Apples", "done": False}}
    read = f"{{d.key: d.value for d in await db.collection('todos', scope={scope!r}).query()}}"
    for page in (alice, bob):
        eventually(page, read, expected)
        assert run_py(page, "[d.key for d in await db.collection('todos').query()]") == []
    stored = sync_server.dynamodb.query(
        TableName=sync_server.tables.items, ConsistentRead=True,
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": f"s#{scope}"}})
    assert sorted(i["sk"]["S"] for i in stored["Items"]) == ["todos#t1", "todos#t2", "todos#t3"]


def test_a_removed_members_device_drops_the_list(
        devices: tuple[Page, Page, str, str]) -> None:
    alice, bob, _, ben = devices
    scope = shared_list(alice, bob, ben)
    run_py(bob, "await db.collection('todos').put('own', {'title': 'mine'}); None")
    run_py(bob, SYNCED)
    run_py(alice, f"await client.unshare({scope!r}, {ben!r}); None")
    eventually(bob, f"await db.collection('todos', scope={scope!r}).count()", 0)
    assert run_py(bob, "await db.collection('todos').get('own')") == {"title": "mine"}
    assert run_py(bob, "await db.pending_count()") == 0
    assert run_py(alice, f"await db.collection('todos', scope={scope!r}).count()") == 1
