"""A big write of distinct keys is planned and issued in chunks inside one transaction
(pysync.writes, PIPELINE_ABOVE): still one write, all or nothing, its outbox in order. The
real store on CPython over the IndexedDB twin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import pysync
from pysync.errors import ConstraintViolation, InvalidValue
from pysync.memdb import MemoryStorage
from pysync.replica import Replica
from pysync.schema import Collection, Index, Schema
from pysync.store import Change, Database
from pysync.writes import PIPELINE_ABOVE, PIPELINE_CHUNK

SCHEMA = Schema(Collection("todos", indexes=(Index("by_code", "code", unique=True),)))
N = PIPELINE_ABOVE + PIPELINE_CHUNK // 2  # a few chunks, the last one partial


def run(test: Callable[[Database], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        db = await pysync.open_database("app:bulk", SCHEMA, storage=MemoryStorage())
        return await test(db)

    return asyncio.run(main())


def records(n: int) -> dict[str, dict[str, Any]]:
    return {f"t{i:05d}": {"code": i} for i in range(n)}


def test_a_chunked_write_stores_every_record_and_one_outbox_entry_each_in_order() -> None:
    async def test(db: Database) -> None:
        await db.collection("todos").put_many(records(N))
        assert await db.collection("todos").count() == N
        entries = await Replica(db).outbox_entries()
        assert [e.key for e in entries] == sorted(records(N))
        assert [e.order for e in entries] == list(range(entries[0].order,
                                                        entries[0].order + N))

    run(test)


def test_a_clash_in_the_last_chunk_writes_nothing_of_the_earlier_chunks() -> None:
    async def test(db: Database) -> None:
        batch = records(N)
        batch["t99999"] = {"code": 3}  # the last record clashes with the first chunk's
        with pytest.raises(ConstraintViolation):
            await db.collection("todos").put_many(batch)
        assert await db.collection("todos").count() == 0
        assert await db.pending_count() == 0

    run(test)


def test_a_bad_value_in_the_last_chunk_writes_nothing_of_the_earlier_chunks() -> None:
    async def test(db: Database) -> None:
        batch = list(records(N).items())
        batch.append(("t99999", {"code": N, "_reserved": 1}))  # checked in the last chunk
        with pytest.raises(InvalidValue):
            await db.collection("todos").put_many(batch)
        assert await db.collection("todos").count() == 0
        assert await db.pending_count() == 0

    run(test)


def test_watchers_hear_every_record_of_a_chunked_write_once() -> None:
    async def test(db: Database) -> None:
        heard: list[Change] = []
        db.watch(heard.extend)
        await db.collection("todos").put_many(records(N))
        await asyncio.sleep(0)
        assert sorted(c.key for c in heard) == sorted(records(N))

    run(test)
