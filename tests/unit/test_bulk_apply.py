"""The bulk path for a pull's big pages (Replica.prepare_page / apply_server_page) stores
exactly what the per-record path (apply_server_changes) stores, keeps its guarantees, and
tells watchers and other tabs the same: the real store on CPython over the in-memory
IndexedDB twin (pysync.memdb), each case run through both paths side by side."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pysync
from pysync.layout import OUTBOX, RECORDS
from pysync.memdb import MemoryStorage
from pysync.protocol import ServerRecord
from pysync.replica import Replica
from pysync.schema import Collection, Index, Schema
from pysync.store import Change, Database
from pysync.writes import PROBE_ABOVE

SCHEMA = Schema(Collection("todos", indexes=(Index("by_done", "done"),)),
                Collection("accounts", strategy="version"))
NAME = "app:bulk"


def page(n: int = 60, version: int = 1, start: int = 0) -> list[ServerRecord]:
    """A snapshot-like page: `n` todos (some stamped, one with bytes and a Decimal), an
    account, a tombstone, and one record twice (a later version after an earlier one)."""
    out = [ServerRecord("todos", f"t{i:03d}", version, False,
                        {"title": f"item {i}", "done": i % 2 == 0, "rank": i},
                        f"00170000000{i:04d}:000000:srv" if i % 3 else None)
           for i in range(start, start + n)]
    out += [ServerRecord("todos", "blob", version, False,
                         {"raw": b"\x00\x01", "price": Decimal("0.10")}, None),
            ServerRecord("accounts", "acc", version, False, {"balance": 10}, None),
            ServerRecord("todos", "gone", version, True, None, None),
            ServerRecord("todos", f"t{start:03d}", version + 1, False,
                         {"title": "again", "done": True, "rank": -1}, None)]
    assert len(out) > PROBE_ABOVE  # the bulk path
    return out


class Side:
    """One database and what its watchers heard."""

    def __init__(self, storage: MemoryStorage, db: Database) -> None:
        self.storage, self.db = storage, db
        self.replica = Replica(db)
        self.heard: list[Change] = []
        self.dropped: list[tuple[str, str, str]] = []  # outbox entries a revocation dropped
        db.watch(self.heard.extend)

    def rows(self, store: str) -> list[Any]:
        """The store's committed rows, this database's own clock stamps (which differ
        between the two databases) replaced by "LOCAL"."""
        text = json.dumps(self.storage.rows(NAME, store))
        rows: list[Any] = json.loads(re.sub(rf"\d+:\d+:{self.db.client_id}", "LOCAL", text))
        return rows


async def side() -> Side:
    storage = MemoryStorage()
    return Side(storage, await pysync.open_database(NAME, SCHEMA, storage=storage))


Step = Callable[[Side, bool], Awaitable[None]]


def both(*steps: Step) -> tuple[Side, Side]:
    """The same steps on two databases: the per-record path (bulk=False) and the bulk path."""
    async def main() -> tuple[Side, Side]:
        plain, bulk = await side(), await side()
        for step in steps:
            await step(plain, False)
            await step(bulk, True)
        await asyncio.sleep(0)  # the watchers' and the channel's turn
        return plain, bulk

    return asyncio.run(main())


def pull(changes: list[ServerRecord], cursor: str = "c1", complete: bool = False,
         revoked: tuple[str, ...] = ()) -> Step:
    async def step(s: Side, bulk: bool) -> None:
        apply = s.replica.apply_server_page if bulk else s.replica.apply_server_changes
        dropped = await apply(changes, {"cursor": cursor}, complete=complete, revoked=revoked)
        s.dropped += sorted((d.entry.collection, d.entry.key, repr(d.local)) for d in dropped)
    return step


def assert_same(plain: Side, bulk: Side) -> None:
    assert bulk.rows(RECORDS) == plain.rows(RECORDS)
    assert bulk.rows(OUTBOX) == plain.rows(OUTBOX)
    assert sorted(map(repr, bulk.heard)) == sorted(map(repr, plain.heard))
    assert bulk.dropped == plain.dropped


def test_a_big_page_into_an_empty_store_stores_what_the_per_record_path_stores() -> None:
    plain, bulk = both(pull(page()))
    assert_same(plain, bulk)
    assert len(bulk.rows(RECORDS)) == 63
    cursor = [r for r in bulk.storage.rows(NAME, "meta") if r["k"] == "cursor"]
    assert cursor == [{"k": "cursor", "v": "c1"}]


def test_a_big_page_keeps_pending_local_edits_visible_over_the_records_it_brings() -> None:
    async def edits(s: Side, bulk: bool) -> None:
        todos = s.db.collection("todos")
        await todos.patch("t001", {"done": "mine"})  # over the copy of the first page
        await todos.put("t070", {"title": "mine, new"})  # a record the server sends later
        await todos.delete("t002")

    plain, bulk = both(pull(page()), edits, pull(page(90, version=2), "c2"))
    assert_same(plain, bulk)
    values = {tuple(r["k"]): r["v"] for r in bulk.rows(RECORDS)}
    assert '"done":"mine"' in values[("todos", "t001")]
    assert values[("todos", "t070")] == '{"title":"mine, new"}'
    assert values[("todos", "t002")] is None
    assert len(bulk.rows(OUTBOX)) == 3


def test_a_big_page_applied_twice_changes_nothing_the_second_time() -> None:
    async def again(s: Side, bulk: bool) -> None:
        before = s.rows(RECORDS)
        s.heard.clear()
        await pull(page(), "c2")(s, bulk)
        assert s.rows(RECORDS) == before
        assert s.heard == []

    plain, bulk = both(pull(page()), again)
    assert_same(plain, bulk)


def test_an_older_version_in_a_big_page_changes_nothing() -> None:
    plain, bulk = both(pull(page(version=5)), pull(page(version=3), "c2"))
    assert_same(plain, bulk)
    assert {r["sv"] for r in bulk.rows(RECORDS)} == {5, 6}


def test_the_last_big_page_of_a_resync_drops_what_the_server_no_longer_has() -> None:
    async def resync(s: Side, bulk: bool) -> None:
        await s.db.collection("todos").patch("t003", {"done": "mine"})
        await s.replica.begin_resync({"cursor": None})

    # The new snapshot lacks t000-t009: gone from the server meanwhile.
    plain, bulk = both(pull(page()), resync, pull(page(start=10), "c9", complete=True))
    assert_same(plain, bulk)
    keys = {r["k"][1] for r in bulk.rows(RECORDS)}
    assert "t000" not in keys
    assert "t009" not in keys
    assert "t003" in keys  # its pending edit stays, to be pushed (and refused)
    assert not any(r.get("rs") for r in bulk.rows(RECORDS))
    assert all(r["k"] != "resync" for r in bulk.storage.rows(NAME, "meta"))


def test_a_page_prepared_before_a_local_write_keeps_that_write_visible() -> None:
    """The sync client prepares a page ahead, while the one before it commits: a record
    written locally meanwhile is found stored, and computed from what is stored."""
    async def main() -> None:
        s = await side()
        changes = page()
        prepared = await s.replica.prepare_page(changes)
        await s.db.collection("todos").put("t005", {"title": "mine"})
        await s.replica.apply_server_page(changes, {"cursor": "c1"}, prepared=prepared)
        doc = await s.db.collection("todos").get("t005")
        assert doc == {"title": "mine"}
        assert len(s.rows(OUTBOX)) == 1

    asyncio.run(main())


def test_other_tabs_hear_of_a_big_page_with_the_values_it_stored() -> None:
    async def main() -> None:
        storage = MemoryStorage()
        tab = await pysync.open_database(NAME, SCHEMA, storage=storage)
        other = await pysync.open_database(NAME, SCHEMA, storage=storage)
        heard: list[Change] = []
        other.watch(heard.extend)
        changes = page()
        await Replica(tab).apply_server_page(changes, {"cursor": "c1"})
        for _ in range(5):  # the message goes out after the write returns
            await asyncio.sleep(0)
        expected = {}
        for c in changes:  # the last value of each record
            expected[(c.collection, c.key)] = None if c.deleted else c.value
        assert {(c.collection, c.key): c.value for c in heard} == expected
        assert all(c.origin == "server" for c in heard)

    asyncio.run(main())


TRIP = "trip-2026"


def shared(changes: list[ServerRecord], scope: str) -> list[ServerRecord]:
    return [replace(c, scope=scope) for c in changes]


def test_a_big_page_keeps_each_scopes_records_apart() -> None:
    """The same keys in the personal scope and a shared scope are two records each."""
    mixed = page(30) + shared(page(30, version=3), TRIP)
    plain, bulk = both(pull(mixed))
    assert_same(plain, bulk)
    names = {r["k"][0] for r in bulk.rows(RECORDS)}
    assert names == {"todos", "accounts", f"todos@{TRIP}", f"accounts@{TRIP}"}

    async def read() -> tuple[Any, Any]:
        trip, mine = bulk.db.collection("todos", scope=TRIP), bulk.db.collection("todos")
        return await trip.get("t001"), await mine.get("t001")

    assert asyncio.run(read()) == ({"title": "item 1", "done": False, "rank": 1},
                                   {"title": "item 1", "done": False, "rank": 1})


def test_a_big_page_with_a_revoked_scope_drops_it_as_the_per_record_path_does() -> None:
    async def edit(s: Side, bulk: bool) -> None:
        await s.db.collection("todos", scope=TRIP).patch("t004", {"done": "mine"})

    plain, bulk = both(pull(shared(page(), TRIP)), edit,
                       pull(page(40), "c2", revoked=(TRIP,)))
    assert_same(plain, bulk)
    assert {r["k"][0] for r in bulk.rows(RECORDS)} == {"todos", "accounts"}
    assert bulk.rows(OUTBOX) == []
    assert [d[:2] for d in bulk.dropped] == [(f"todos@{TRIP}", "t004")]
