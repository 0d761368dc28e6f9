"""The stored row layouts: the TypedDicts (pysync.rows, pysync.outbox, pysync.layout) hold
every key the store writes, and docs/local-store.md tables every one of them."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pysync
from pysync.layout import META, OUTBOX, RECORDS, StoredMetaRow
from pysync.memdb import MemoryStorage
from pysync.outbox import StoredOutboxRow
from pysync.protocol import MutationResult, PushResponse
from pysync.replica import Replica
from pysync.rows import StoredRecordRow
from pysync.schema import Collection, Index, Schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "local-store.md"
SCHEMA = Schema(Collection("todos", indexes=(Index("by_title", "title", unique=True),)))


def keys_of(typed: Any) -> set[str]:
    return set(typed.__required_keys__ | typed.__optional_keys__)


def tabled(heading: str) -> set[str]:
    """The first column's keys of the table after `heading` in docs/local-store.md."""
    text = DOC.read_text(encoding="utf-8")
    rest = text[text.index(heading):]
    table = rest[rest.index("\n|"):].split("\n\n")[0]
    return {m.group(1) for m in re.finditer(r"^\| `(\w+)` \|", table, re.MULTILINE)}


def stored_rows() -> tuple[list[Any], list[Any], list[Any]]:
    """Rows of every kind the store writes, with as many keys set as a short history sets:
    pending, in-flight, acknowledged, stale, resync-marked records and their entries."""
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        storage = MemoryStorage()
        db = await pysync.open_database("rows", SCHEMA, storage=storage)
        todos, replica = db.collection("todos"), Replica(db)
        records: list[Any] = []
        outbox: list[Any] = []

        def snapshot() -> None:
            records.extend(storage.rows("rows", RECORDS))
            outbox.extend(storage.rows("rows", OUTBOX))

        await todos.put_many({"a": {"title": "A"}, "b": {"title": "B"}})
        taken = await replica.take(limit=1)
        await todos.patch("a", {"done": True})  # chained behind the entry in flight
        await todos.patch("b", {"done": True})  # a field stamp older than the newest
        snapshot()
        await replica.acknowledge(PushResponse(taken.mutations[-1].id, tuple(
            MutationResult(m.id, "duplicate") for m in taken.mutations)))  # stale version
        await replica.begin_resync({"cursor": None})
        snapshot()
        return records, outbox, storage.rows("rows", META)

    return asyncio.run(main())


def test_every_key_the_store_writes_is_declared_by_its_typed_dict() -> None:
    records, outbox, meta = stored_rows()
    assert set().union(*records) <= keys_of(StoredRecordRow)
    assert set().union(*outbox) <= keys_of(StoredOutboxRow)
    assert set().union(*meta) == keys_of(StoredMetaRow)
    # The history above sets most of them (so the check is not vacuous).
    assert {"fh", "n", "p", "st", "rs", "ux", "sb"} <= set().union(*records)
    assert {"q", "m", "f"} <= set().union(*outbox)


def test_the_docs_table_every_stored_key() -> None:
    assert tabled("A **record row**") == keys_of(StoredRecordRow)
    assert tabled("An **outbox row**") == keys_of(StoredOutboxRow)


def test_the_docs_table_every_meta_row_the_store_writes() -> None:
    _, _, meta = stored_rows()
    assert {row["k"] for row in meta} <= tabled("A **meta row**")

