"""The real SyncClient, store and outbox on CPython over the in-memory IndexedDB twin, against
the real server (uvicorn on a real socket, the change feed running, DynamoDB Local).

Each client has its own MemoryStorage: its own "browser profile". A crash is
`storage.crash()`: uncommitted transactions vanish, the objects that were open die, and the
database reopens from what the twin committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import pysync
from pysync.client import SyncClient, dev_token_provider
from pysync.errors import SyncError
from pysync.memdb import MemoryStorage
from pysync.replica import Replica
from pysync.store import Database
from tests.server.conftest import TWIN_SCHEMA
from tests.server.feed_support import Store

pytestmark = pytest.mark.dynamodb

SCHEMA = TWIN_SCHEMA  # the server's (the twin_store fixture)
# How long the clients may take to converge (the feed reaches a pull asynchronously).
CONVERGE_S = 30.0



def new_user() -> str:
    return f"twin{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def device(url: str, user: str, storage: MemoryStorage | None = None,
                 http: httpx.AsyncClient | None = None
                 ) -> AsyncIterator[tuple[Database, SyncClient]]:
    """One device of `user`: a database on its own storage and a started SyncClient."""
    storage = storage or MemoryStorage()
    db = await pysync.open_database(f"app:{user}", SCHEMA, storage=storage)
    client = SyncClient(db, url, dev_token_provider(url, user), http=http)
    await client.start()
    try:
        yield db, client
    finally:
        await client.stop()
        db.close()


async def eventually(check: Callable[[], Awaitable[bool]], *clients: SyncClient) -> None:
    """Sync the clients until `check()` holds (the feed reaches a pull asynchronously), for
    up to CONVERGE_S."""
    try:
        async with asyncio.timeout(CONVERGE_S):
            while True:
                for client in clients:
                    with contextlib.suppress(SyncError):  # retried on the next pass
                        await client.sync_now()
                if await check():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"the clients did not converge within {CONVERGE_S} s") from None


async def view(db: Database) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for c in SCHEMA:
        for doc in await db.collection(c.name).query():
            out[f"{c.name}/{doc.key}"] = doc.value
    return out


def test_two_devices_of_one_user_converge(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        async with device(twin_url, user) as (a, ca), device(twin_url, user) as (b, cb):
            await a.collection("todos").put("t1", {"title": "Milk", "done": False})
            await a.collection("accounts").put("acc", {"balance": 10})
            await b.collection("docs").put("d1", {"body": "hello"})

            async def same() -> bool:
                va, vb = await view(a), await view(b)
                return va == vb and len(va) == 3

            await eventually(same, ca, cb)
            await b.collection("todos").patch("t1", {"done": True})
            await a.collection("docs").delete("d1")
            await b.collection("accounts").patch("acc", {"balance": 11})

            async def again() -> bool:
                va, vb = await view(a), await view(b)
                return va == vb == {"todos/t1": {"title": "Milk", "done": True},
                                    "accounts/acc": {"balance": 11}}

            await eventually(again, ca, cb)
            assert await a.pending_count() == 0
            assert await b.pending_count() == 0

    asyncio.run(main())


def test_two_clients_on_one_storage_elect_one_leader(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        storage = MemoryStorage()
        async with device(twin_url, user, storage) as (_, first), \
                device(twin_url, user, storage) as (tab2, second):
            assert first.status.leader
            assert not second.status.leader
            await tab2.collection("todos").put("t1", {"title": "from the second tab"})
            await eventually(lambda: _no_pending(tab2), first)

    asyncio.run(main())


async def _no_pending(db: Database) -> bool:
    return await db.pending_count() == 0


class CrashAfterServerCommit(httpx.AsyncBaseTransport):
    """Fault injection (the real parts cannot crash on cue): forwards a push to the real
    server, which commits it, then kills the device's storage before the client sees the
    response, as a tab closed mid-push does."""

    def __init__(self, inner: httpx.AsyncBaseTransport, storage: MemoryStorage) -> None:
        self.inner = inner
        self.storage = storage
        self.crashed = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == "/v1/push" and not self.crashed.is_set():
            await response.aread()
            self.storage.crash()
            self.crashed.set()
            raise httpx.ReadError("the tab died before the response", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_write_whose_push_response_was_lost_in_a_crash_is_applied_once(
        twin_url: str, twin_store: Store) -> None:
    user = new_user()

    async def main() -> None:
        storage = MemoryStorage()
        db = await pysync.open_database(f"app:{user}", SCHEMA, storage=storage)
        await db.collection("todos").put("t1", {"title": "Milk"})
        fault = CrashAfterServerCommit(httpx.AsyncHTTPTransport(), storage)
        async with httpx.AsyncClient(transport=fault) as http:
            doomed = SyncClient(db, twin_url, dev_token_provider(twin_url, user), http=http)
            await doomed.start()
            await asyncio.wait_for(fault.crashed.wait(), 30)
            await doomed.stop()
        item = twin_store.item(f"u#{user}", "todos", "t1")
        assert item is not None
        assert item["_v"] == {"N": "1"}  # the server committed it

        async with device(twin_url, user, storage) as (reopened, client):
            [entry] = await Replica(reopened).outbox_entries()
            assert entry.wire_id == 1  # taken before the crash: resent with the same id
            await eventually(lambda: _no_pending(reopened), client)
            [doc] = await reopened.collection("todos").query()
            assert (doc.value, doc.version, doc.pending) == ({"title": "Milk"}, 1, False)
        item = twin_store.item(f"u#{user}", "todos", "t1")
        assert item is not None
        assert item["_v"] == {"N": "1"}  # applied once, not twice

    asyncio.run(main())


def test_a_write_made_before_a_crash_is_pushed_after_the_reopen(
        twin_url: str, twin_store: Store) -> None:
    user = new_user()

    async def main() -> None:
        storage = MemoryStorage()
        db = await pysync.open_database(f"app:{user}", SCHEMA, storage=storage)
        await db.collection("todos").put("t1", {"title": "Milk"})
        storage.crash()  # before any sync
        async with device(twin_url, user, storage) as (reopened, client):
            await eventually(lambda: _no_pending(reopened), client)
        item = twin_store.item(f"u#{user}", "todos", "t1")
        assert item is not None
        assert item["_v"] == {"N": "1"}

    asyncio.run(main())


def test_an_offline_client_keeps_its_writes_until_it_is_online_again(
        twin_url: str, twin_store: Store) -> None:
    user = new_user()

    async def main() -> None:
        storage = MemoryStorage()
        async with device(twin_url, user, storage) as (db, client):
            storage.local_platform.set_online(False)
            await db.collection("todos").put("t1", {"title": "Milk"})
            with pytest.raises(SyncError, match="offline"):
                await client.sync_now()
            assert await db.pending_count() == 1
            storage.local_platform.set_online(True)  # the online event starts a round
            await eventually(lambda: _no_pending(db))
        assert twin_store.item(f"u#{user}", "todos", "t1") is not None

    asyncio.run(main())
