"""A shared scope's records between devices of different users (docs/sharing.md): the real
SyncClient and store on CPython over the IndexedDB twin, against the real server (uvicorn on a
real socket, its change feed, DynamoDB Local)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pysync import ConflictEvent
from pysync.client import SyncClient
from tests.server.feed_support import Store
from tests.server.test_client_sharing import signed_in
from tests.server.test_client_twin import CONVERGE_S, new_user

pytestmark = [pytest.mark.dynamodb, pytest.mark.anyio]


async def eventually(check: Callable[[], Awaitable[Any]], client: SyncClient) -> Any:
    """`check()`'s first truthy result, syncing `client` between tries (the feed brings a
    change into the log asynchronously)."""
    deadline = time.monotonic() + CONVERGE_S
    while True:
        await client.sync_now()
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def test_an_editors_offline_write_into_a_shared_scope_reaches_the_owner(
        twin_url: str) -> None:
    ann, ben = new_user(), new_user()
    async with signed_in(twin_url, ann) as alice, signed_in(twin_url, ben) as bob:
        scope = await alice.create_scope("Trip")
        await alice.share(scope, ben, "editor")
        bob.pause()
        await bob.db.collection("todos", scope=scope).put("t1", {"title": "Tent"})
        bob.resume()
        await bob.synced(timeout=CONVERGE_S)
        shared = alice.db.collection("todos", scope=scope)
        assert await eventually(lambda: shared.get("t1"), alice) == {"title": "Tent"}
        assert await alice.db.collection("todos").get("t1") is None


async def test_a_scope_joined_later_arrives_with_what_it_already_holds(twin_url: str) -> None:
    ann, ben = new_user(), new_user()
    async with signed_in(twin_url, ann) as alice, signed_in(twin_url, ben) as bob:
        scope = await alice.create_scope()
        await alice.db.collection("todos", scope=scope).put_many(
            {f"t{i}": {"n": i} for i in range(5)})
        await alice.synced(timeout=CONVERGE_S)
        await alice.share(scope, ben, "viewer")
        shared = bob.db.collection("todos", scope=scope)
        assert await eventually(lambda: _count_is(shared, 5), bob)


async def _count_is(collection: Any, n: int) -> bool:
    return bool(await collection.count() == n)


async def test_a_viewers_write_is_rejected_as_forbidden_and_undone(twin_url: str) -> None:
    ann, ben = new_user(), new_user()
    events: list[ConflictEvent] = []
    async with signed_in(twin_url, ann) as alice, signed_in(twin_url, ben, events.append) as bob:
        scope = await alice.create_scope()
        await alice.share(scope, ben, "viewer")
        await bob.sync_now()
        await bob.db.collection("todos", scope=scope).put("t1", {"title": "sneaky"})
        await bob.synced(timeout=CONVERGE_S)
        assert [(e.collection, e.key, e.scope, e.kind, e.error) for e in events] == [
            ("todos", "t1", scope, "rejected", "forbidden")]
        assert await bob.db.collection("todos", scope=scope).get("t1") is None
        assert await alice.db.collection("todos", scope=scope).get("t1") is None


async def test_a_removed_members_device_drops_the_scope_and_reports_its_pending_writes(
        twin_url: str) -> None:
    ann, ben = new_user(), new_user()
    events: list[ConflictEvent] = []
    async with signed_in(twin_url, ann) as alice, signed_in(twin_url, ben, events.append) as bob:
        scope = await alice.create_scope()
        await alice.db.collection("todos", scope=scope).put("t1", {"title": "Tent"})
        await alice.db.collection("todos").put("mine", {"title": "kept"})
        await alice.synced(timeout=CONVERGE_S)
        await alice.share(scope, ben, "editor")
        shared = bob.db.collection("todos", scope=scope)
        assert await eventually(lambda: shared.get("t1"), bob)
        bob.pause()
        await shared.put("t2", {"title": "written while removed"})
        await bob.db.collection("todos").put("own", {"title": "bob's own"})
        await alice.unshare(scope, ben)
        bob.resume()
        await bob.synced(timeout=CONVERGE_S)
        assert await shared.count() == 0
        assert [(e.key, e.scope, e.kind, e.error) for e in events] == [
            ("t2", scope, "rejected", "forbidden")]
        assert await bob.db.collection("todos").get("own") == {"title": "bob's own"}
        assert await bob.db.pending_count() == 0
        assert await alice.db.collection("todos", scope=scope).get("t2") is None


async def test_another_programs_write_into_a_shared_scope_reaches_its_members(
        twin_url: str, twin_store: Store) -> None:
    ann, ben = new_user(), new_user()
    async with signed_in(twin_url, ann) as alice, signed_in(twin_url, ben) as bob:
        scope = await alice.create_scope()
        await alice.share(scope, ben, "viewer")
        twin_store.put(f"s#{scope}", "todos", "ext", title="from boto3")
        shared = bob.db.collection("todos", scope=scope)
        assert await eventually(lambda: shared.get("ext"), bob) == {"title": "from boto3"}
