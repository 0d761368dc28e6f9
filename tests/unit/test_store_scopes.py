"""Shared scopes in the local store (docs/sharing.md, "On the device"): each scope's records
kept apart, writes whose mutations name their scope, server changes stored by scope, and a
revoked scope dropped. The real store and replica on CPython over the IndexedDB twin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import pysync
from pysync.errors import ConstraintViolation, InvalidValue, SchemaError
from pysync.memdb import MemoryStorage
from pysync.protocol import ServerRecord
from pysync.replica import Replica
from pysync.schema import Collection, Index, Schema
from pysync.store import Change, Database

SCHEMA = Schema(
    Collection("todos", indexes=(Index("by_done", "done"),)),
    Collection("tags", indexes=(Index("by_name", "name", unique=True),)),
)
TRIP = "trip-2026"
WORK = "work-board"


def run(test: Callable[[Database], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        db = await pysync.open_database("app:alice", SCHEMA, storage=MemoryStorage())
        return await test(db)

    return asyncio.run(main())


async def _three_scopes(db: Database) -> None:
    await db.collection("todos").put("t1", {"title": "mine", "done": False})
    await db.collection("todos", scope=TRIP).put("t1", {"title": "trip", "done": False})
    await db.collection("todos", scope=WORK).put("t2", {"title": "work", "done": True})


def test_the_same_key_in_two_scopes_is_two_records() -> None:
    async def test(db: Database) -> None:
        await _three_scopes(db)
        assert await db.collection("todos").get("t1") == {"title": "mine", "done": False}
        assert await db.collection("todos", scope=TRIP).get("t1") == {"title": "trip",
                                                                      "done": False}
        assert await db.collection("todos", scope=WORK).get("t1") is None

    run(test)


def test_queries_and_counts_never_mix_scopes() -> None:
    async def test(db: Database) -> None:
        await _three_scopes(db)
        personal, trip = db.collection("todos"), db.collection("todos", scope=TRIP)
        assert [d.value["title"] for d in await personal.query()] == ["mine"]
        assert [d.value["title"] for d in await trip.query("by_done", equals=False)] == ["trip"]
        assert await personal.count("by_done", equals=True) == 0
        assert await db.collection("todos", scope=WORK).count() == 1
        assert [[d.key for d in page] async for page in trip.pages(size=1)] == [["t1"]]

    run(test)


def test_a_unique_index_holds_within_a_scope_not_across_scopes() -> None:
    async def test(db: Database) -> None:
        await db.collection("tags").put("a", {"name": "urgent"})
        await db.collection("tags", scope=TRIP).put("a", {"name": "urgent"})
        with pytest.raises(ConstraintViolation):
            await db.collection("tags", scope=TRIP).put("b", {"name": "urgent"})
        assert await db.collection("tags", scope=TRIP).count() == 1

    run(test)


@pytest.mark.parametrize("scope", ["short", "has space in it", "a@b-cdefgh", 42])
def test_a_bad_scope_id_is_refused(scope: Any) -> None:
    async def test(db: Database) -> None:
        with pytest.raises(InvalidValue):
            db.collection("todos", scope=scope)

    run(test)


def test_a_schema_cannot_declare_a_collection_with_a_scope() -> None:
    with pytest.raises(SchemaError):
        Schema(Collection("todos", scope=TRIP))


def test_each_mutation_names_the_scope_it_was_written_in() -> None:
    async def test(db: Database) -> None:
        await _three_scopes(db)
        request = await Replica(db).take()
        assert [(m.collection, m.key, m.scope) for m in request.mutations] == [
            ("todos", "t1", None), ("todos", "t1", TRIP), ("todos", "t2", WORK)]

    run(test)


def test_a_collection_watcher_hears_its_scope_and_the_database_watcher_every_scope() -> None:
    async def test(db: Database) -> None:
        trip_heard: list[Change] = []
        all_heard: list[Change] = []
        db.collection("todos", scope=TRIP).watch(trip_heard.extend)
        db.watch(all_heard.extend, "todos")
        await _three_scopes(db)
        assert [(c.collection, c.key, c.scope) for c in trip_heard] == [("todos", "t1", TRIP)]
        assert [(c.collection, c.scope) for c in all_heard] == [
            ("todos", None), ("todos", TRIP), ("todos", WORK)]

    run(test)


def test_server_changes_are_stored_in_the_scope_they_name() -> None:
    async def test(db: Database) -> None:
        await Replica(db).apply_server_changes([
            ServerRecord("todos", "t9", 1, False, {"title": "shared"}, None, TRIP),
            ServerRecord("todos", "t9", 4, False, {"title": "own"}, None)])
        assert await db.collection("todos", scope=TRIP).get("t9") == {"title": "shared"}
        assert await db.collection("todos").get("t9") == {"title": "own"}

    run(test)


def test_a_revoked_scope_loses_its_records_and_pending_entries_and_nothing_else() -> None:
    async def test(db: Database) -> None:
        replica = Replica(db)
        await replica.apply_server_changes([
            ServerRecord("todos", "s1", 1, False, {"title": "synced"}, None, TRIP),
            ServerRecord("tags", "g1", 1, False, {"name": "x"}, None, TRIP)])
        await _three_scopes(db)
        await db.collection("todos", scope=TRIP).patch("s1", {"done": True})
        dropped = await replica.apply_server_changes([], revoked=[TRIP])
        assert sorted((d.entry.collection, d.entry.key, d.local["title"]) for d in dropped
                      if d.local) == [("todos@" + TRIP, "s1", "synced"),
                                      ("todos@" + TRIP, "t1", "trip")]
        assert await db.collection("todos", scope=TRIP).count() == 0
        assert await db.collection("tags", scope=TRIP).count() == 0
        assert await db.collection("todos").get("t1") == {"title": "mine", "done": False}
        assert await db.collection("todos", scope=WORK).count() == 1
        request = await replica.take()
        assert [(m.key, m.scope) for m in request.mutations] == [("t1", None), ("t2", WORK)]

    run(test)


def test_a_revoked_scopes_records_are_announced_as_deleted_to_watchers() -> None:
    async def test(db: Database) -> None:
        await _three_scopes(db)
        heard: list[Change] = []
        db.watch(heard.extend)
        await Replica(db).apply_server_changes([], revoked=[TRIP])
        assert [(c.key, c.value, c.scope, c.origin) for c in heard] == [
            ("t1", None, TRIP, "server")]

    run(test)
