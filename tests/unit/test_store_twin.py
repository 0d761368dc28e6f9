"""The real store and outbox (pysync.store) on CPython, over the in-memory IndexedDB twin.

The same code as in the browser: only the storage differs (pysync.storage), and the twin
keeps the browser's transaction rules, so these tests exercise the real write paths, the
outbox's take / acknowledge / release and the notifications between tabs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import pysync
from pysync.errors import NotFound, StorageFull
from pysync.layout import OUTBOX, RECORDS
from pysync.memdb import MemoryStorage
from pysync.protocol import MutationResult, PushResponse
from pysync.replica import Replica
from pysync.schema import Collection, Index, Schema
from pysync.store import Change, Database

SCHEMA = Schema(
    Collection("todos", indexes=(Index("by_done", "done"), Index("by_list", "list", "rank"))),
    Collection("tags", indexes=(Index("by_name", "name", unique=True),)),
)


def run(test: Callable[[MemoryStorage, Database], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        storage = MemoryStorage()
        db = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        return await test(storage, db)

    return asyncio.run(main())


def test_put_patch_delete_and_get_read_back_the_latest_value() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        todos = db.collection("todos")
        await todos.put("t1", {"title": "Milk", "done": False})
        await todos.patch("t1", {"done": True})
        await todos.put("t2", {"title": "Eggs", "done": False})
        await todos.delete("t2")
        assert await todos.get_many(["t1", "t2"]) == [{"title": "Milk", "done": True}, None]

    run(test)


def test_the_page_authors_database_exposes_no_sync_internals() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        public = {name for name in dir(db) if not name.startswith("_")}
        internals = {"outbox", "apply_server_changes", "begin_resync", "get_meta"}
        assert not public & internals
        assert not {name for name in dir(db.collection("todos"))
                    if not name.startswith("_")} & internals

    run(test)


def test_pending_count_counts_the_local_changes_not_yet_acknowledged() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        todos = db.collection("todos")
        await todos.put_many({"t1": {"n": 1}, "t2": {"n": 2}})
        await todos.patch("t1", {"n": 3})  # coalesces into t1's pending entry
        assert await db.pending_count() == 2
        replica = Replica(db)
        request = await replica.take()
        await replica.acknowledge(PushResponse(2, tuple(
            MutationResult(m.id, "applied", 1) for m in request.mutations)))
        assert await db.pending_count() == 0

    run(test)


def test_a_patch_of_a_missing_record_is_refused_and_writes_nothing() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        with pytest.raises(NotFound):
            await db.collection("todos").patch("nope", {"done": True})
        assert storage.rows("app:alice", OUTBOX) == []

    run(test)


def test_query_by_index_returns_matching_records_in_index_order() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        todos = db.collection("todos")
        records: dict[str, dict[str, Any]] = {
            "a": {"list": "x", "rank": 2}, "b": {"list": "x", "rank": 1},
            "c": {"list": "y", "rank": 0}, "d": {"done": True}}
        await todos.put_many(records)
        assert [d.key for d in await todos.query("by_list", equals=("x",))] == ["b", "a"]
        assert [d.key for d in await todos.query("by_done", equals=True)] == ["d"]
        assert [d.key for d in await todos.query(lower="b", upper="c")] == ["b", "c"]
        assert await todos.count() == 4
        assert await todos.count("by_list", equals=("x",)) == 2

    run(test)


def test_pages_walk_every_record_once_in_order() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        todos = db.collection("todos")
        await todos.put_many({f"k{i:02d}": {"rank": i} for i in range(25)})
        seen = [[d.key for d in page] async for page in todos.pages(size=10)]
        assert [len(p) for p in seen] == [10, 10, 5]
        assert [k for page in seen for k in page] == [f"k{i:02d}" for i in range(25)]

    run(test)


def test_a_unique_index_refuses_a_duplicate_and_writes_nothing() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        tags = db.collection("tags")
        await tags.put("a", {"name": "home"})
        with pytest.raises(pysync.ConstraintViolation):
            await tags.put("b", {"name": "home"})
        assert await tags.get("b") is None
        assert len(storage.rows("app:alice", OUTBOX)) == 1

    run(test)


def test_a_write_stores_its_record_and_its_outbox_entry_together() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        await db.collection("todos").put("t1", {"title": "Milk"})
        [row] = storage.rows("app:alice", RECORDS)
        [entry] = storage.rows("app:alice", OUTBOX)
        assert row["k"] == ["todos", "t1"]
        assert entry["r"] == ["todos", "t1"]

    run(test)


def test_edits_of_a_pending_record_coalesce_into_one_outbox_entry() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        todos = db.collection("todos")
        await todos.put("t1", {"title": "Milk"})
        await todos.patch("t1", {"done": True})
        await todos.put("t1", {"title": "Oat milk"})
        [entry] = await Replica(db).outbox_entries()
        assert (entry.op, entry.value) == ("put", {"title": "Oat milk"})

    run(test)


def test_take_gives_consecutive_wire_ids_and_acknowledge_empties_the_outbox() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        todos = db.collection("todos")
        await todos.put_many({"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}})
        first = await Replica(db).take(limit=2)
        await Replica(db).release()  # the send failed: same ids, same content next time
        again = await Replica(db).take(limit=5)
        assert [m.id for m in first.mutations] == [1, 2]
        assert [m.id for m in again.mutations] == [1, 2, 3]
        assert again.mutations[:2] == first.mutations
        await Replica(db).acknowledge(PushResponse(3, tuple(
            MutationResult(m.id, "applied", version=1) for m in again.mutations)))
        assert await db.pending_count() == 0
        assert [d.version for d in await todos.query()] == [1, 1, 1]

    run(test)


def test_a_watcher_hears_local_writes_and_another_tabs_writes() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        other = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        heard: list[Change] = []
        db.watch(heard.extend, "todos")
        await db.collection("todos").put("t1", {"n": 1})
        await other.collection("todos").put("t2", {"n": 2})
        for _ in range(10):  # the other tab's message comes from the event loop
            if len(heard) == 2:
                break
            await asyncio.sleep(0)
        assert [(c.key, c.value, c.origin) for c in heard] == [
            ("t1", {"n": 1}, "local"), ("t2", {"n": 2}, "tab")]

    run(test)


def test_two_tabs_writing_the_same_record_both_land_in_order() -> None:
    async def test(storage: MemoryStorage, db: Database) -> None:
        other = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        await db.collection("todos").put("t1", {"n": 1})
        await other.collection("todos").patch("t1", {"m": 2})  # its cache never saw t1
        await db.collection("todos").patch("t1", {"n": 3})  # its cache is now stale
        assert await other.collection("todos").get("t1") == {"n": 3, "m": 2}
        [entry] = await Replica(db).outbox_entries()
        assert entry.value == {"n": 3, "m": 2}

    run(test)


def test_a_write_over_the_quota_fails_and_stores_neither_record_nor_entry() -> None:
    async def main() -> None:
        storage = MemoryStorage(quota_bytes=3000)
        db = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        with pytest.raises(StorageFull):
            await db.collection("todos").put("big", {"text": "x" * 5000})
        assert storage.rows("app:alice", RECORDS) == []
        assert storage.rows("app:alice", OUTBOX) == []

    asyncio.run(main())


@pytest.mark.parametrize("steps", range(18))  # 5-14: amid its writes
def test_a_crash_mid_write_leaves_all_of_it_or_nothing(steps: int) -> None:
    """Crash after `steps` turns of the event loop into a batch write (a slow-path write:
    read first, then write in the callback): on reopen, either every record and entry of
    it is there, or none."""
    async def main() -> tuple[int, int]:
        storage = MemoryStorage()
        db = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        batch = {f"k{i:02d}": {"n": i} for i in range(40)}  # over _PROBE_ABOVE: slow path
        task = asyncio.ensure_future(db.collection("todos").put_many(batch))
        for _ in range(steps):
            await asyncio.sleep(0)
        storage.crash()
        await asyncio.gather(task, return_exceptions=True)
        reopened = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        return await reopened.collection("todos").count(), await reopened.pending_count()

    records, entries = asyncio.run(main())
    assert (records, entries) in ((0, 0), (40, 40))


def test_a_crash_after_the_commit_keeps_the_write_for_the_next_session() -> None:
    async def main() -> None:
        storage = MemoryStorage()
        db = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        await db.collection("todos").put("t1", {"n": 1})
        client_id = db.client_id
        storage.crash()
        reopened = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        assert reopened.client_id == client_id
        assert await reopened.collection("todos").get("t1") == {"n": 1}
        assert [e.key for e in await Replica(reopened).outbox_entries()] == ["t1"]

    asyncio.run(main())


def test_a_write_in_flight_when_the_database_closes_still_completes() -> None:
    # The commit is announced to other tabs from the complete event; the channel closed with
    # the database made that announcement throw, and the writer then waited forever.
    async def test(storage: MemoryStorage, db: Database) -> None:
        todos = db.collection("todos")
        await todos.put("t1", {"title": "warm"})  # the next put takes the fast path
        write = asyncio.ensure_future(todos.put("t2", {"title": "in flight"}))
        await asyncio.sleep(0)  # its transaction is issued
        db.close()
        await asyncio.wait_for(write, timeout=5)
        again = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        assert await again.collection("todos").get("t2") == {"title": "in flight"}

    run(test)
