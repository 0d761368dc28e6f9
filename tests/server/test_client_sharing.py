"""SyncClient's shared-scope calls (create_scope, scopes, members, share, unshare), the real
client on CPython over the in-memory IndexedDB twin, against the real server (uvicorn on a
real socket, DynamoDB Local)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

import pysync
from pysync import InvalidValue, Member, ScopeInfo, SyncError
from pysync.client import ConflictCallback, SyncClient, dev_token_provider
from pysync.memdb import MemoryStorage
from tests.server.test_client_twin import SCHEMA, new_user

pytestmark = [pytest.mark.dynamodb, pytest.mark.anyio]



@asynccontextmanager
async def signed_in(url: str, user: str,
                    on_conflict: ConflictCallback | None = None) -> AsyncIterator[SyncClient]:
    """A started client of `user` (its first pull signs the user in)."""
    db = await pysync.open_database(f"app:{user}", SCHEMA, storage=MemoryStorage())
    client = SyncClient(db, url, dev_token_provider(url, user), on_conflict=on_conflict)
    await client.start()
    try:
        await client.synced(timeout=30)
        yield client
    finally:
        await client.stop()
        db.close()


async def test_create_scope_returns_an_id_that_scopes_lists_as_owned(twin_url: str) -> None:
    async with signed_in(twin_url, new_user()) as alice:
        scope = await alice.create_scope("Groceries")
        assert await alice.scopes() == [ScopeInfo(scope, "owner", "Groceries")]


async def test_share_gives_the_other_user_the_scope_with_its_role(twin_url: str) -> None:
    ann, ben = new_user(), new_user()
    async with signed_in(twin_url, ann) as alice, signed_in(twin_url, ben) as bob:
        scope = await alice.create_scope("Trip")
        await alice.share(scope, ben, "editor")
        assert await bob.scopes() == [ScopeInfo(scope, "editor", "Trip")]
        assert sorted(await alice.members(scope), key=lambda m: m.user) == sorted(
            [Member(ann, "owner"), Member(ben, "editor")], key=lambda m: m.user)


async def test_unshare_removes_the_member(twin_url: str) -> None:
    ann, ben = new_user(), new_user()
    async with signed_in(twin_url, ann) as alice, signed_in(twin_url, ben) as bob:
        scope = await alice.create_scope()
        await alice.share(scope, ben, "viewer")
        await alice.unshare(scope, ben)
        assert await bob.scopes() == []


async def test_a_refusal_arrives_as_a_sync_error_with_the_servers_code(twin_url: str) -> None:
    ann, ben = new_user(), new_user()
    async with signed_in(twin_url, ann) as alice, signed_in(twin_url, ben) as bob:
        scope = await alice.create_scope()
        await alice.share(scope, ben, "viewer")
        with pytest.raises(SyncError) as refused:
            await bob.share(scope, ann, "viewer")
        assert refused.value.code == "forbidden"
        with pytest.raises(SyncError) as last:
            await alice.unshare(scope, ann)
        assert last.value.code == "last_owner"


async def test_a_bad_argument_fails_before_any_request(twin_url: str) -> None:
    async with signed_in(twin_url, new_user()) as alice:
        with pytest.raises(InvalidValue):
            await alice.share("short", "someone", "editor")
        with pytest.raises(InvalidValue):
            await alice.share("a-valid-scope-id", "someone", "admin")  # type: ignore[arg-type]
        with pytest.raises(InvalidValue):
            await alice.create_scope("x" * 201)


async def test_scope_calls_before_start_say_so(twin_url: str) -> None:
    db = await pysync.open_database("app:unstarted", SCHEMA, storage=MemoryStorage())
    client = SyncClient(db, twin_url, dev_token_provider(twin_url, new_user()))
    with pytest.raises(SyncError) as e:
        await client.scopes()
    assert e.value.code == "not_started"
    db.close()
