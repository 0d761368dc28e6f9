"""A `version` collection's outbox entries keep their base record (what a conflict resolver
gets as `base`), and a resolver's result becomes an entry of its own: the real store and
outbox on CPython over the in-memory IndexedDB twin (pysync.memdb)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pysync
from pysync import idb
from pysync.layout import OUTBOX, RECORDS
from pysync.memdb import MemoryStorage
from pysync.protocol import MutationResult, PushResponse, ServerRecord
from pysync.replica import Replica
from pysync.rows import RecordRow, resolution
from pysync.schema import Collection, Schema
from pysync.store import Database


def keep_server(local: Any, server: Any, base: Any) -> Any:
    return server


SCHEMA = Schema(Collection("accounts", strategy="version", resolve=keep_server),
                Collection("todos"))


def run(test: Callable[[Database], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        db = await pysync.open_database("app:alice", SCHEMA, storage=MemoryStorage())
        return await test(db)

    return asyncio.run(main())


async def confirmed(db: Database, key: str, value: dict[str, Any], version: int) -> None:
    """The server's copy of accounts/`key` at `version`, as a pull brings it."""
    await Replica(db).apply_server_changes([ServerRecord("accounts", key, version, False,
                                                         value)])


async def conflict(db: Database, server: ServerRecord) -> list[Any]:
    replica = Replica(db)
    request = await replica.take()
    return await replica.acknowledge(PushResponse(request.mutations[-1].id, tuple(
        MutationResult(m.id, "conflict", server=server) for m in request.mutations)))


def test_an_entry_keeps_the_record_as_it_was_when_the_edit_began() -> None:
    async def test(db: Database) -> None:
        await confirmed(db, "acc", {"balance": 10}, 1)
        accounts = db.collection("accounts")
        await accounts.patch("acc", {"balance": 11})
        await accounts.patch("acc", {"note": "x"})  # merged: the base stays the first one's
        [entry] = await Replica(db).outbox_entries()
        assert (entry.base_known, entry.base) == (True, {"balance": 10})
        assert entry.local_result(None) == {"balance": 11, "note": "x"}

    run(test)


def test_a_merge_collections_entry_stores_no_base() -> None:
    async def test(db: Database) -> None:
        await db.collection("todos").put("t1", {"title": "Milk"})
        [entry] = await Replica(db).outbox_entries()
        assert not entry.base_known
        assert "bs" not in entry.to_row()

    run(test)


def test_a_conflict_answer_carries_local_server_and_base() -> None:
    async def test(db: Database) -> None:
        await confirmed(db, "acc", {"balance": 10}, 1)
        await db.collection("accounts").patch("acc", {"balance": 15})
        [acked] = await conflict(db, ServerRecord("accounts", "acc", 2, False, {"balance": 12}))
        assert (acked.local, acked.server, acked.base) == \
            ({"balance": 15}, {"balance": 12}, {"balance": 10})

    run(test)


def test_an_entry_stored_without_a_base_gets_the_confirmed_copy_of_its_base_version() -> None:
    """Backward compatible: rows written before `bs` existed (and a record row's `p` of 6
    elements) still load; the base is then the confirmed copy at the entry's base_version."""
    async def test(db: Database) -> None:
        await confirmed(db, "acc", {"balance": 10}, 1)
        await db.collection("accounts").patch("acc", {"balance": 15})
        s = db._session
        tx = s.tx([RECORDS, OUTBOX], "readwrite")

        def strip(found: list[Any]) -> None:
            [outbox_row], record_row = found[0], found[1]
            old_outbox = {k: v for k, v in outbox_row.items() if k != "bs"}
            old_record = {**record_row, "p": record_row["p"][:6]}
            tx.write([(OUTBOX, "put", [old_outbox]), (RECORDS, "put", [old_record])])

        tx.read([idb.get_all(OUTBOX), idb.get(RECORDS, ["accounts", "acc"])], strip)
        await tx.done()
        s.cache.forget([("accounts", "acc")])
        [entry] = await Replica(db).outbox_entries()
        assert not entry.base_known
        [acked] = await conflict(db, ServerRecord("accounts", "acc", 2, False, {"balance": 12}))
        assert acked.base == {"balance": 10}

    run(test)


def test_a_resolution_is_ordered_before_a_later_edit_which_stays_visible_over_it() -> None:
    async def test(db: Database) -> None:
        await confirmed(db, "acc", {"balance": 10, "note": ""}, 1)
        accounts = db.collection("accounts")
        await accounts.patch("acc", {"balance": 15})
        replica = Replica(db)
        request = await replica.take()
        await accounts.patch("acc", {"note": "later"})  # written while the first is in flight
        [acked] = await replica.acknowledge(PushResponse(request.mutations[0].id, (
            MutationResult(request.mutations[0].id, "conflict", server=ServerRecord(
                "accounts", "acc", 2, False, {"balance": 12, "note": ""})),)))
        [conflict] = await replica.unresolved()
        assert (conflict.order, conflict.version, conflict.local, conflict.server,
                conflict.base) == (acked.entry.order, 2, {"balance": 15, "note": ""},
                                   {"balance": 12, "note": ""}, {"balance": 10, "note": ""})
        assert await replica.resolve(conflict, {"balance": 17, "note": ""})
        assert await replica.unresolved() == []
        assert await accounts.get("acc") == {"balance": 17, "note": "later"}
        entries = await replica.outbox_entries()
        assert [(e.op, e.value, e.base_version, e.base) for e in entries] == [
            ("put", {"balance": 17, "note": ""}, 2, {"balance": 12, "note": ""}),
            ("patch", {"note": "later"}, None, {"balance": 15, "note": ""})]
        # The later edit waits for the resolution's version: one record, one in flight.
        assert [m.op for m in (await replica.take()).mutations] == ["put"]

    run(test)


def test_a_resolution_equal_to_the_server_copy_pushes_nothing() -> None:
    row = RecordRow("accounts", "acc", {"balance": 12}, {}, version=2,
                    server_value={"balance": 12})
    assert resolution(row, "accounts", "acc", {"balance": 12}, "stamp", 5, [],
                      {"balance": 12}, 2) == (row, None)
    gone = RecordRow("accounts", "acc", None, {}, version=3, server_value=None)
    assert resolution(gone, "accounts", "acc", None, "stamp", 5, [], None, 3) == (gone, None)


def test_a_resolution_is_based_on_the_version_the_resolver_saw() -> None:
    """If a pull brought a newer server copy meanwhile, the resolution conflicts again (and
    the resolver is asked again) rather than overwriting what it never saw."""
    row = RecordRow("accounts", "acc", {"balance": 20}, {}, version=3,
                    server_value={"balance": 20})
    _, entry = resolution(row, "accounts", "acc", {"balance": 17}, "stamp", 5, [],
                          {"balance": 12}, 2)
    assert entry is not None
    assert (entry.base_version, entry.base) == (2, {"balance": 12})


def test_a_conflict_waits_for_its_resolver_in_the_database() -> None:
    """Stored with the push answer: a tab closed before the resolver's result is stored
    asks the resolver again after the reopen."""
    async def main() -> None:
        storage = MemoryStorage()
        db = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        await confirmed(db, "acc", {"balance": 10}, 1)
        await db.collection("accounts").patch("acc", {"balance": 15})
        await conflict(db, ServerRecord("accounts", "acc", 2, False, {"balance": 12}))
        storage.crash()
        reopened = await pysync.open_database("app:alice", SCHEMA, storage=storage)
        [waiting] = await Replica(reopened).unresolved()
        assert (waiting.local, waiting.server, waiting.base) == \
            ({"balance": 15}, {"balance": 12}, {"balance": 10})
        assert not await Replica(reopened).resolve(waiting, None, write=False)
        assert await Replica(reopened).unresolved() == []
        assert await reopened.collection("accounts").get("acc") == {"balance": 12}

    asyncio.run(main())
