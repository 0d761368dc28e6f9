"""The in-memory IndexedDB twin keeps the browser's rules (design.md sections 3 and 8).

Each rule here is one the browser enforces and the store relies on, or one it would break on:
a transaction commits once a turn ends with nothing pending, any error aborts all of it,
a transaction used after an await raises as idb.py raises in Chromium, keys order as the
IndexedDB spec orders them. The errors are the ones idb.py raises for the same DOMException.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from pysync import idb
from pysync.errors import (
    ConstraintViolation,
    DatabaseClosed,
    StorageError,
    StorageFull,
    TransactionAborted,
)
from pysync.memdb import Connection, MemoryStorage, compare

UPGRADES: dict[int, list[idb.Step]] = {
    1: [
        ("createStore", "s", {"keyPath": "k"}),
        ("createIndex", "s", "by_n", "n", {}),
        ("createIndex", "s", "tags", "t", {"multiEntry": True}),
        ("createIndex", "s", "email", "e", {"unique": True}),
        ("createStore", "other", {"keyPath": "k"}),
    ],
}


def run(test: Callable[[MemoryStorage, Connection], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        storage = MemoryStorage()
        db = await storage.open("db", 1, UPGRADES)
        return await test(storage, db)

    return asyncio.run(main())


async def put(db: Connection, *rows: dict[str, Any], store: str = "s") -> None:
    tx = db.transaction([store], "readwrite")
    tx.write([(store, "put", list(rows))])
    await tx.done()


async def read(db: Connection, *requests: idb.Read) -> list[Any]:
    tx = db.transaction(["s", "other"])
    box: list[list[Any]] = []
    tx.read(requests, box.append)
    await tx.done()
    return box[0]


async def keys(db: Connection, request: idb.Read) -> list[Any]:
    return [r["k"] for r in (await read(db, request))[0]]


# --- transactions ---------------------------------------------------------------------------


def test_a_transaction_commits_once_its_turn_ends_with_no_request_pending() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s"], "readwrite")
        tx.write([("s", "put", [{"k": 1}])])
        assert storage.rows("db", "s") == []  # not before the turn ends
        await tx.done()
        assert storage.rows("db", "s") == [{"k": 1}]

    run(test)


def test_a_read_callback_can_read_modify_write_inside_the_transaction() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, {"k": 1, "n": 1})
        tx = db.transaction(["s"], "readwrite")
        tx.read([idb.get("s", 1)],
                lambda rows: tx.write([("s", "put", [{**rows[0], "n": rows[0]["n"] + 1}])]))
        await tx.done()
        assert storage.rows("db", "s") == [{"k": 1, "n": 2}]

    run(test)


def test_a_transaction_used_after_an_await_raises_transaction_inactive() -> None:
    """design.md section 3, measured in Chromium through idb.py with this very code: the
    read is still pending when the task resumes, so the put throws TransactionInactiveError
    (StorageError "write failed: TransactionInactiveError: ...") and aborts it all."""
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s"], "readwrite")
        tx.read([idb.get("s", 1)], lambda rows: None)
        await asyncio.sleep(0)  # any await ends the turn: the transaction is inactive
        with pytest.raises(StorageError, match="write failed: TransactionInactiveError"):
            tx.write([("s", "put", [{"k": 1}])])
        with pytest.raises(TransactionAborted):
            await tx.done()
        assert storage.rows("db", "s") == []

    run(test)


def test_a_transaction_used_after_it_committed_raises_as_idb_does_in_the_browser() -> None:
    """idb.py's helper calls objectStore() on a finished transaction: InvalidStateError,
    which idb.py reports as DatabaseClosed."""
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s"], "readwrite")
        tx.read([idb.get("s", 1)], lambda rows: None)
        await tx.done()
        with pytest.raises(DatabaseClosed, match="InvalidStateError"):
            tx.write([("s", "put", [{"k": 1}])])
        assert storage.rows("db", "s") == []

    run(test)


def test_another_task_cannot_use_a_transaction_it_did_not_create() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        holder: list[Any] = []

        async def other() -> str:
            return _try_write(holder[0])

        task = asyncio.ensure_future(other())  # its first step runs right after this turn
        holder.append(db.transaction(["s"], "readwrite"))
        holder[0].read([idb.get("s", 1)], lambda rows: None)  # so it is still alive then
        assert await task == "TransactionInactiveError"

    run(test)


def _try_write(tx: Any) -> str:
    try:
        tx.write([("s", "put", [{"k": 1}])])
    except StorageError as e:
        return str(e).split(": ")[1]
    return "no error"


def test_a_transaction_still_pending_after_an_await_raises_transaction_inactive() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        first = db.transaction(["s"], "readwrite")
        first.write([("s", "put", [{"k": 1}])])
        # A chain of two reads: the first is still running when the await below returns.
        first.read([idb.get("s", 1)], lambda _: first.read([idb.get("s", 1)], lambda _: None))
        second = db.transaction(["s"], "readwrite")  # waits for the first to commit
        second.write([("s", "put", [{"k": 2}])])
        await asyncio.sleep(0)
        with pytest.raises(StorageError, match="TransactionInactiveError"):
            second.write([("s", "put", [{"k": 3}])])
        with pytest.raises(TransactionAborted):  # the failed request aborted all of it
            await second.done()
        await first.done()
        assert storage.rows("db", "s") == [{"k": 1}]

    run(test)


def test_an_exception_in_a_read_callback_aborts_and_rolls_back_every_write() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s", "other"], "readwrite")
        tx.write([("s", "put", [{"k": 1}]), ("other", "put", [{"k": 1}])])

        def fail(_rows: list[Any]) -> None:
            tx.write([("s", "put", [{"k": 2}])])
            raise ValueError("a bug in the callback")

        tx.read([idb.get("s", 1)], fail)
        with pytest.raises(ValueError, match="a bug in the callback"):
            await tx.done()
        assert storage.rows("db", "s") == []
        assert storage.rows("db", "other") == []

    run(test)


def test_a_failing_add_aborts_the_whole_transaction() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, {"k": 1, "v": "old"})
        tx = db.transaction(["s", "other"], "readwrite")
        tx.write([("other", "put", [{"k": 9}]), ("s", "put", [{"k": 2}]),
                  ("s", "add", [{"k": 1, "v": "new"}])])
        with pytest.raises(ConstraintViolation, match="ConstraintError"):
            await tx.done()
        assert storage.rows("db", "s") == [{"k": 1, "v": "old"}]
        assert storage.rows("db", "other") == []

    run(test)


def test_a_unique_index_refuses_a_second_record_with_the_same_key() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, {"k": 1, "e": "a@x"})
        tx = db.transaction(["s"], "readwrite")
        tx.write([("s", "put", [{"k": 2, "e": "a@x"}])])
        with pytest.raises(ConstraintViolation):
            await tx.done()
        await put(db, {"k": 1, "e": "a@x", "n": 5})  # the same record may keep its key
        assert storage.rows("db", "s") == [{"k": 1, "e": "a@x", "n": 5}]

    run(test)


def test_a_value_without_its_key_path_fails_at_once_and_aborts() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s"], "readwrite")
        tx.write([("s", "put", [{"k": 1}])])
        with pytest.raises(StorageError, match="write failed: DataError"):
            tx.write([("s", "put", [{"no_key": 1}])])
        with pytest.raises(TransactionAborted):
            await tx.done()
        assert storage.rows("db", "s") == []

    run(test)


def test_a_transaction_with_no_request_commits_as_its_turn_ends() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        holder: list[Any] = []

        async def other() -> str:
            return _try_write(holder[0])

        task = asyncio.ensure_future(other())
        holder.append(db.transaction(["s"], "readwrite"))
        assert await task == "InvalidStateError"  # as measured in Chromium through idb.py

    run(test)


def test_a_readonly_transaction_refuses_writes() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s"])
        with pytest.raises(StorageError, match="ReadOnlyError"):
            tx.write([("s", "put", [{"k": 1}])])

    run(test)


def test_a_store_outside_the_scope_cannot_be_used() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s"], "readwrite")
        with pytest.raises(StorageError, match="NotFoundError"):
            tx.write([("other", "put", [{"k": 1}])])

    run(test)


def test_an_aborted_transaction_writes_nothing() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s"], "readwrite")
        tx.write([("s", "put", [{"k": 1}])])
        tx.abort()
        with pytest.raises(TransactionAborted, match="AbortError"):
            await tx.done()
        assert storage.rows("db", "s") == []

    run(test)


def test_overlapping_readwrite_transactions_run_one_after_the_other() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, {"k": 1, "n": 0})

        async def increment() -> None:
            tx = db.transaction(["s"], "readwrite")
            tx.read([idb.get("s", 1)],
                    lambda r: tx.write([("s", "put", [{"k": 1, "n": r[0]["n"] + 1}])]))
            await tx.done()

        await asyncio.gather(*(increment() for _ in range(10)))
        assert storage.rows("db", "s") == [{"k": 1, "n": 10}]

    run(test)


def test_a_readonly_transaction_sees_the_readwrite_one_created_before_it() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s"], "readwrite")
        tx.write([("s", "put", [{"k": 1}])])
        assert await keys(db, idb.get_all("s")) == [1]
        await tx.done()

    run(test)


def test_a_checked_write_writes_nothing_when_a_row_is_not_as_expected() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, {"k": 1, "n": 1})
        with pytest.raises(idb.Stale):
            await db.checked_write(["s"], [("s", 1, {"k": 1, "n": 0})],
                                   [("s", "put", [{"k": 1, "n": 2}, {"k": 2}])])
        assert storage.rows("db", "s") == [{"k": 1, "n": 1}]
        await db.checked_write(["s"], [("s", 1, {"k": 1, "n": 1}), ("s", 2, None)],
                               [("s", "put", [{"k": 1, "n": 2}, {"k": 2}])])
        assert storage.rows("db", "s") == [{"k": 1, "n": 2}, {"k": 2}]

    run(test)


def test_writes_over_the_quota_fail_as_storage_full_and_write_nothing() -> None:
    async def test(_storage: MemoryStorage, _db: Connection) -> None:
        storage = MemoryStorage(quota_bytes=100)
        db = await storage.open("db", 1, UPGRADES)
        await put(db, {"k": 1, "v": "x" * 10})
        with pytest.raises(StorageFull):
            await put(db, {"k": 2, "v": "x" * 100})
        assert storage.rows("db", "s") == [{"k": 1, "v": "x" * 10}]

    run(test)


# --- keys and ranges --------------------------------------------------------------------------


def test_keys_order_numbers_dates_strings_binary_arrays() -> None:
    # The IndexedDB spec's "compare two keys": by type first, in this order.
    ordered = [-1e300, 0, 1.5, 2, datetime(2020, 1, 1, tzinfo=UTC), "", "a", "b",
               b"", b"\x00", [], [0], ["a"], ["a", 0], ["b"]]
    for i, a in enumerate(ordered):
        for j, b in enumerate(ordered):
            assert compare(a, b) == (i > j) - (i < j), (a, b)


def test_strings_order_by_utf16_code_unit_not_code_point() -> None:
    # U+1F600 is the surrogate pair D83D DE00, so it sorts before U+FFFF (as in JavaScript).
    assert compare("\U0001f600", "\uffff") == -1


def test_an_integer_and_the_equal_float_are_the_same_key() -> None:
    assert compare(1, 1.0) == 0


@pytest.mark.parametrize("bad", [True, None, float("nan"), {"a": 1}])
def test_a_value_that_is_not_a_key_is_refused(bad: Any) -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s"], "readwrite")
        with pytest.raises(StorageError):
            tx.write([("s", "put", [{"k": bad}])])

    run(test)


def test_ranges_honour_open_and_closed_bounds() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, *({"k": i} for i in range(1, 6)))
        assert await keys(db, idb.get_all("s", lower=(2, False), upper=(4, False))) == [2, 3, 4]
        assert await keys(db, idb.get_all("s", lower=(2, True), upper=(4, True))) == [3]
        assert await keys(db, idb.get_all("s", lower=(4, True))) == [5]
        assert await keys(db, idb.get_all("s", upper=(2, True))) == [1]

    run(test)


def test_an_inverted_or_empty_range_reads_nothing() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, {"k": 1}, {"k": 2})
        assert await read(db, idb.get_all("s", lower=(2, False), upper=(1, False)),
                          idb.count("s", lower=(1, True), upper=(1, False))) == [[], 0]

    run(test)


def test_limit_and_reverse_read_from_the_requested_end() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, *({"k": i} for i in range(1, 6)))
        assert await keys(db, idb.get_all("s", limit=2)) == [1, 2]
        assert await keys(db, idb.get_all("s", limit=2, reverse=True)) == [5, 4]
        assert (await read(db, idb.get_keys("s", lower=(3, False))))[0] == [3, 4, 5]
        assert (await read(db, idb.count("s", upper=(3, True))))[0] == 2

    run(test)


def test_an_index_reads_in_index_key_then_primary_key_order() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, {"k": 3, "n": 1}, {"k": 1, "n": 2}, {"k": 2, "n": 1}, {"k": 4})
        assert await keys(db, idb.get_all("s", "by_n")) == [2, 3, 1]  # k 4 has no n
        assert await keys(db, idb.get_all("s", "by_n", reverse=True)) == [1, 3, 2]
        assert (await read(db, idb.get("s", 1, index="by_n")))[0]["k"] == 2

    run(test)


def test_a_multientry_index_has_one_entry_per_distinct_element() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, {"k": 1, "t": ["a", "b", "a", None]}, {"k": 2, "t": ["b"]})
        assert await keys(db, idb.get_all("s", "tags")) == [1, 1, 2]
        assert await keys(db, idb.get_all("s", "tags", lower=("b", False))) == [1, 2]
        assert (await read(db, idb.count("s", "tags")))[0] == 3

    run(test)


def test_a_read_returns_a_copy_of_the_stored_value() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        row: dict[str, Any] = {"k": 1, "t": ["a"]}
        await put(db, row)
        row["t"].append("b")
        got = (await read(db, idb.get("s", 1)))[0]
        got["t"].append("c")
        assert storage.rows("db", "s") == [{"k": 1, "t": ["a"]}]

    run(test)


# --- versions, crashes, channels -------------------------------------------------------------


def test_opening_a_newer_version_closes_the_old_connection_and_upgrades() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        reasons: list[str] = []
        old = await storage.open("v", 1, UPGRADES, reasons.append)
        await put(old, {"k": 1, "n": 1})
        new = await storage.open("v", 2, {**UPGRADES, 2: [("deleteIndex", "s", "by_n"),
                                                           ("createStore", "x", {"keyPath": "k"})]})
        await asyncio.sleep(0)
        assert old.closed
        assert reasons == ["versionchange"]
        assert storage.databases()["v"] == 2
        await put(new, {"k": 1}, store="x")
        with pytest.raises(StorageError, match="NotFoundError"):
            new.transaction(["s"]).read([idb.get_all("s", "by_n")], lambda r: None)

    run(test)


def test_opening_an_older_version_fails() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await storage.open("v", 2, {**UPGRADES, 2: []})
        with pytest.raises(StorageError, match="VersionError"):
            await storage.open("v", 1, UPGRADES)

    run(test)


def test_a_crash_in_the_middle_of_a_transactions_writes_rolls_them_back() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        tx = db.transaction(["s"], "readwrite")
        tx.write([("s", "put", [{"k": i} for i in range(100)])])
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert tx._undo, "some of its writes are applied (not committed) when it crashes"
        storage.crash()
        reopened = await storage.open("db", 1, UPGRADES)
        assert await keys(reopened, idb.get_all("s")) == []

    run(test)


def test_a_crash_drops_uncommitted_writes_and_keeps_committed_ones() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        await put(db, {"k": 1})
        first = db.transaction(["s"], "readwrite")
        first.read([idb.get("s", 1)], lambda r: first.write([("s", "put", [{"k": 2}])]))
        await asyncio.sleep(0)  # the read answered; its write is queued, not yet committed
        storage.crash()
        with pytest.raises(DatabaseClosed):
            await first.done()
        with pytest.raises(DatabaseClosed):
            db.transaction(["s"])
        reopened = await storage.open("db", 1, UPGRADES)
        assert await keys(reopened, idb.get_all("s")) == [1]

    run(test)


def test_a_channel_delivers_to_the_others_of_its_name_not_to_the_sender() -> None:
    async def test(storage: MemoryStorage, db: Connection) -> None:
        got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
        a = storage.channel("n", got["a"].append)
        storage.channel("n", got["b"].append)
        storage.channel("other", got["c"].append)
        a.post("hello")
        assert got["b"] == []  # delivered from the event loop, not during post()
        await asyncio.sleep(0)
        assert got == {"a": [], "b": ["hello"], "c": []}

    run(test)


def test_a_storage_outlives_its_event_loop() -> None:
    storage = MemoryStorage()

    async def first() -> None:
        db = await storage.open("db", 1, UPGRADES)
        await put(db, {"k": 1})

    async def second() -> list[Any]:
        db = await storage.open("db", 1, UPGRADES)
        return await keys(db, idb.get_all("s"))

    asyncio.run(first())
    assert asyncio.run(second()) == [1]
