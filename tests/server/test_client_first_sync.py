"""A first sync of many pages (the next page fetched while the last is stored, big pages
through the store's bulk path): the real SyncClient and store on CPython over the in-memory
IndexedDB twin, against the real server (uvicorn on a socket, DynamoDB Local). The records
are written into the user's scope with boto3, as another program would."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import pysync
from pysync.client import SyncClient, SyncStatus, dev_token_provider
from pysync.layout import RECORDS
from pysync.memdb import MemoryStorage
from pysync.schema import Collection, Schema
from server.app import create_app
from tests.server.feed_support import Store
from tests.support import serve

pytestmark = pytest.mark.dynamodb

SCHEMA = Schema(Collection("todos"))
RECORDS_N = 300
PAGE = 40  # over the bulk path's threshold (32): every full page takes it


@pytest.fixture(scope="module")
def store(dynamodb_local: Any) -> Store:
    return Store.create(dynamodb_local)


@pytest.fixture(scope="module")
def url(store: Store) -> Iterator[str]:
    with serve(create_app(store.ctx.settings)) as base:
        yield base


def filled(store: Store) -> str:
    user = f"first{uuid.uuid4().hex[:10]}"
    for i in range(RECORDS_N):
        store.put(f"u#{user}", "todos", f"t{i:04d}", title=f"item {i}", n=i)
    return user


async def keys_and_values(db: pysync.Database) -> dict[str, Any]:
    return {doc.key: doc.value for doc in await db.collection("todos").query()}


def test_a_first_sync_of_many_pages_brings_every_record_with_progress(store: Store,
                                                                      url: str) -> None:
    user = filled(store)

    async def main() -> None:
        db = await pysync.open_database(f"app:{user}", SCHEMA, storage=MemoryStorage())
        statuses: list[SyncStatus] = []
        client = SyncClient(db, url, dev_token_provider(url, user), pull_limit=PAGE,
                            on_status=statuses.append)
        await client.start()
        try:
            await client.synced(timeout=60)
        finally:
            await client.stop()
        assert await keys_and_values(db) == {f"t{i:04d}": {"title": f"item {i}", "n": i}
                                             for i in range(RECORDS_N)}
        received = [s.progress[0] for s in statuses if s.progress is not None]
        assert received == sorted(received)
        assert received[-1] >= RECORDS_N - PAGE
        assert statuses[-1].progress is None
        db.close()

    asyncio.run(main())


def test_a_page_that_cannot_be_stored_is_pulled_again_and_nothing_is_skipped(
        store: Store, url: str) -> None:
    """The storage fills up in the middle of the sync (a real quota of the twin, as a
    browser's): the pages stored so far stay, whole, with their cursor; the page fetched
    ahead is dropped; once there is room, the next round goes on from the stored cursor."""
    user = filled(store)

    async def main() -> None:
        storage = MemoryStorage(quota_bytes=30_000)  # room for some pages, not all
        db = await pysync.open_database(f"app:{user}", SCHEMA, storage=storage)
        full = asyncio.Event()

        def on_status(status: SyncStatus) -> None:
            if "StorageFull" in (status.last_error or ""):
                full.set()

        client = SyncClient(db, url, dev_token_provider(url, user), pull_limit=PAGE,
                            on_status=on_status)
        await client.start()
        try:
            await asyncio.wait_for(full.wait(), 30)
            stored = len(storage.rows(db.name, RECORDS))
            assert 0 < stored < RECORDS_N
            assert stored % PAGE == 0  # whole pages only
            storage.quota_bytes = None
            await client.synced(timeout=60)
        finally:
            await client.stop()
        assert await keys_and_values(db) == {f"t{i:04d}": {"title": f"item {i}", "n": i}
                                             for i in range(RECORDS_N)}
        db.close()

    asyncio.run(main())
