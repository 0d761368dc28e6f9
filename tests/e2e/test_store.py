"""The local store on the browser's real IndexedDB, driven from Python in the page.

One page (one Pyodide boot) serves the whole module; every test uses its own database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright

from tests.e2e.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ForeignRequest,
    open_test_page,
    raw_counts,
    run_py,
)

SETUP = """
import pysync
from pysync import Schema, Collection, Index
from pysync.replica import Replica
SCHEMA = Schema(
    Collection("todos", indexes=(Index("by_done", "done"), Index("by_list", "list", "rank"),
                                 Index("by_title", "title", unique=True))),
    Collection("notes"),
)

async def fresh(name, schema=SCHEMA):
    await pysync.delete_database(name)
    return await pysync.open_database(name, schema)

async def outbox(db):
    return [[e.op, e.key, e.value, e.wire_id] for e in await Replica(db).outbox_entries()]

async def error_of(coro):
    try:
        await coro
    except pysync.PysyncError as e:
        return type(e).__name__
    return None
None
"""



@pytest.fixture(scope="module")
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    context = browser.new_context()
    p = open_test_page(context, live_server)
    run_py(p, SETUP)
    yield p
    foreign = p.__dict__["foreign_requests"]
    context.close()
    if foreign:
        raise ForeignRequest(f"the page requested other origins: {foreign}")


def py(page: Page, code: str) -> Any:
    return run_py(page, code)


def test_put_get_patch_delete_round_trip_every_value_type(page: Page) -> None:
    result = py(page, """
db = await fresh("crud")
todos = db.collection("todos")
value = {"title": "Milk", "done": False, "n": 3, "x": 2.5, "big": 12345678901234567890123,
         "none": None, "tags": ["a", 1], "meta": {"deep": {"k": True}}, "blob": b"\\x00\\xff"}
await todos.put("t1", value)
same = await todos.get("t1") == value
await todos.patch("t1", {"done": True})
patched = await todos.get("t1")
await todos.delete("t1")
[same, patched["done"], patched["title"], str(patched["big"]), await todos.get("t1"),
 await error_of(todos.patch("t1", {"done": False})), await todos.get_many(["t1", "zz"])]
""")
    assert result == [True, True, "Milk", "12345678901234567890123", None, "NotFound",
                      [None, None]]


def test_queries_by_index_key_range_count_reverse_and_pages(page: Page) -> None:
    result = py(page, """
db = await fresh("queries")
todos = db.collection("todos")
await todos.put_many({f"t{i:02d}": {"title": f"T{i}", "done": [False, True, None][i % 3],
                                    "list": "home" if i < 6 else "work", "rank": i}
                      for i in range(10)})
await todos.put("u1", {"title": "no done field"})
keys = lambda docs: [d.key for d in docs]
pages = [keys(p) async for p in todos.pages("by_list", size=3, equals=("home",))]
[keys(await todos.query("by_done", equals=False)),
 keys(await todos.query("by_done", equals=None)),
 await todos.count("by_done", equals=True),
 keys(await todos.query("by_list", lower=("work", 7), upper=("work", 9), upper_open=True)),
 keys(await todos.query("by_list", equals=("home",), reverse=True, limit=2)),
 keys(await todos.query(lower="t03", upper="t05")),
 await todos.count(),
 pages,
 [keys(await todos.query(lower="t05", upper="t03")),
  await todos.count("by_list", lower=("work", 9), upper=("work", 9), lower_open=True)]]
""")
    assert result == [
        ["t00", "t03", "t06", "t09"],
        ["t02", "t05", "t08"],
        3,
        ["t07", "t08"],
        ["t05", "t04"],
        ["t03", "t04", "t05"],
        11,
        [["t00", "t01", "t02"], ["t03", "t04", "t05"]],
        [[], 0],  # empty ranges are empty, not errors
    ]


def test_decimal_index_values_order_among_ints_and_floats_and_bound_queries(
        page: Page) -> None:
    result = py(page, """
from decimal import Decimal
db = await fresh("decimal-index")
todos = db.collection("todos")
await todos.put_many({"int": {"list": "l", "rank": 2}, "float": {"list": "l", "rank": 1.5},
                      "dec": {"list": "l", "rank": Decimal("1.75")},
                      "big": {"list": "l", "rank": Decimal("123456789.123456789012345678901")},
                      "in-list": {"list": [Decimal("0.1000000000000000000000000001")]}})
keys = lambda docs: [d.key for d in docs]
[keys(await todos.query("by_list", equals=("l",))),
 keys(await todos.query("by_list", lower=("l", Decimal("1.6")), upper=("l", 3))),
 str((await todos.get("big"))["rank"])]
""")
    assert result == [["float", "dec", "int", "big"], ["dec", "int"],
                      "123456789.123456789012345678901"]


def test_bad_values_are_refused_and_nothing_is_written(page: Page) -> None:
    result = py(page, """
import js
db = await fresh("bad")
todos = db.collection("todos")
await todos.put("ok", {"title": "fine"})
bad = [("nan", {"x": float("nan")}), ("inf", {"x": float("inf")}), ("set", {"x": {1, 2}}),
       ("function", {"x": print}), ("proxy", {"x": js.Object.new()}),
       ("reserved", {"_v": 1}), ("not a dict", ["x"]), ("too big", {"x": "y" * 400_000})]
errors = [await error_of(todos.put("k", v)) for _, v in bad]
errors.append(await error_of(todos.put("", {"a": 1})))
errors.append(await error_of(todos.put_many([("k1", {"a": 1}), ("k2", {"a": float("nan")})])))
errors.append(await error_of(todos.patch("ok", {"_hidden": 1})))
await todos.put("big", {"x": "y" * 300_000})
errors.append(await error_of(todos.patch("big", {"z": "y" * 100_000})))  # too big once merged
[errors, await todos.count(), await todos.get("ok"), len(await outbox(db)),
 sorted(await todos.get("big"))]
""")
    errors, count, ok, entries, big_fields = result
    assert errors == ["InvalidValue"] * 12
    assert (count, ok, entries, big_fields) == (2, {"title": "fine"}, 2, ["x"])
    assert raw_counts(page, "bad") == {"records": 2, "outbox": 2}


def test_a_bulk_write_that_breaks_a_unique_index_writes_nothing(page: Page) -> None:
    result = py(page, """
db = await fresh("unique")
todos = db.collection("todos")
await todos.put("a", {"title": "Milk"})
err = await error_of(todos.put_many({"b": {"title": "Eggs"}, "c": {"title": "Milk"}}))
[err, await todos.get_many(["a", "b", "c"]), len(await outbox(db))]
""")
    assert result == ["ConstraintViolation", [{"title": "Milk"}, None, None], 1]
    assert raw_counts(page, "unique") == {"records": 1, "outbox": 1}


def test_an_outbox_write_that_fails_after_the_record_write_leaves_no_record(
        page: Page) -> None:
    # A foreign outbox row planted at the next order key makes pysync's `add` of the entry
    # fail with a real ConstraintError, after the record's put in the same transaction.
    result = py(page, """
import json, js
db = await fresh("abort")
todos = db.collection("todos")
await todos.put("a", {"title": "Milk"})
next_order = (await Replica(db).get_meta("writer"))["next_order"]
await js.eval('''(async (name, o) => {
  const db = await new Promise((ok) => {
    const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); });
  await new Promise((ok) => { const tx = db.transaction("outbox", "readwrite");
    tx.objectStore("outbox").put({o, r: ["x", "planted"], op: "delete", h: "h"});
    tx.oncomplete = ok; });
  db.close();
})''')("abort", next_order)
err = await error_of(todos.put("b", {"title": "Eggs"}))
[err, await todos.get("b"), [e[1] for e in await outbox(db)]]
""")
    assert result == ["ConstraintViolation", None, ["a", "planted"]]
    assert raw_counts(page, "abort") == {"records": 1, "outbox": 2}


def test_outbox_coalesces_pending_edits_but_never_an_entry_in_flight(page: Page) -> None:
    result = py(page, """
from pysync.protocol import PushResponse, MutationResult
db = await fresh("coalesce")
todos = db.collection("todos")
await todos.put("a", {"title": "Milk", "done": False})
await todos.patch("a", {"done": True})
await todos.put("gone", {"title": "temp"})
await todos.delete("gone")
before = await outbox(db)
batch = await Replica(db).take()
await todos.patch("a", {"title": "Oat milk"})
during = await outbox(db)
results = await Replica(db).acknowledge(
    PushResponse(1, (MutationResult(1, "applied", 1),)))
after = await outbox(db)
second = await Replica(db).take()
[before, [m.id for m in batch.mutations], during, after,
 [[m.id, m.op, m.base_version, m.value] for m in second.mutations],
 await todos.get("a"), await todos.get("gone")]
""")
    before, ids, during, after, second, visible, gone = result
    assert before == [["put", "a", {"title": "Milk", "done": True}, None]]
    assert ids == [1]
    assert during == [["put", "a", {"title": "Milk", "done": True}, 1],
                      ["patch", "a", {"title": "Oat milk"}, None]]
    assert after == [["patch", "a", {"title": "Oat milk"}, None]]
    assert second == [[2, "patch", 1, {"title": "Oat milk"}]]
    assert visible == {"title": "Oat milk", "done": True}
    assert gone is None


def test_a_failed_send_keeps_ids_and_content_and_is_sent_again_first(page: Page) -> None:
    result = py(page, """
db = await fresh("release")
todos = db.collection("todos")
await todos.put("a", {"n": 1})
first = await Replica(db).take()
await Replica(db).release()
await todos.put("b", {"n": 2})
again = await Replica(db).take()
[[m.to_json() for m in first.mutations], [m.to_json() for m in again.mutations][:1],
 [m.id for m in again.mutations]]
""")
    first, again_first, again_ids = result
    assert again_first == first
    assert again_ids == [1, 2]


def test_server_changes_apply_idempotently_under_pending_local_edits(page: Page) -> None:
    result = py(page, """
from pysync.protocol import ServerRecord
db = await fresh("pull")
todos = db.collection("todos")
seen = []
db.watch(lambda changes: seen.extend([c.key, c.origin] for c in changes))
S = ServerRecord
replica = Replica(db)
await replica.apply_server_changes([S("todos", "a", 2, False, {"title": "Milk", "done": False}),
                                    S("todos", "b", 1, False, {"title": "Eggs"})],
                                   {"cursor": "c1"})
await todos.patch("a", {"done": True})
await replica.apply_server_changes([S("todos", "a", 3, False, {"title": "Oat milk",
                                                               "done": False}),
                                    S("todos", "b", 0, False, {"title": "stale"})])
a = await todos.get("a")
docs = await todos.query("by_title", equals="Oat milk")
[a, await todos.get("b"), [[d.key, d.version, d.pending] for d in docs],
 await replica.get_meta("cursor"), seen]
""")
    a, b, docs, cursor, seen = result
    assert a == {"title": "Oat milk", "done": True}
    assert b == {"title": "Eggs"}
    assert docs == [["a", 3, True]]
    assert cursor == "c1"
    assert seen == [["a", "server"], ["b", "server"], ["a", "local"], ["a", "server"]]


def test_a_resync_closed_midway_resumes_and_drops_the_confirmed_records_it_lacks(
        page: Page) -> None:
    result = py(page, """
from pysync.protocol import ServerRecord as S
db = await fresh("resync")
todos = db.collection("todos")
replica = Replica(db)
await replica.apply_server_changes([S("todos", k, 1, False, {"title": k})
                                    for k in ("gone", "kept1", "kept2", "put", "patched")],
                                   {"cursor": "old"})
await todos.put("put", {"title": "new"})  # pending local writes: never dropped
await todos.patch("patched", {"done": True})
await replica.begin_resync({"cursor": None})
# The snapshot's first page: the same version as stored still confirms the record.
await replica.apply_server_changes([S("todos", "kept1", 1, False, {"title": "kept1"})],
                                   {"cursor": "page1"})
db.close()  # the page goes away in the middle of the sequence
db = await pysync.open_database("resync", SCHEMA)
todos = db.collection("todos")
replica = Replica(db)
seen = []
db.watch(lambda changes: seen.extend([c.key, c.value] for c in changes))
before_end = await todos.get("gone")
await replica.apply_server_changes([S("todos", "kept2", 2, False, {"title": "kept2 v2"})],
                                   {"cursor": "page2"}, complete=True)
[before_end, [[d.key, d.value, d.version, d.pending] for d in await todos.query()],
 await replica.get_meta("cursor"), await replica.get_meta("resync"), seen, await outbox(db)]
""")
    before_end, docs, cursor, resync, seen, entries = result
    assert before_end == {"title": "gone"}  # dropped only when the sequence completes
    # The put stays, as a record the server has yet to see; the patch of a record the server
    # no longer has hides, as under a server delete. Both stay in the outbox, to be pushed.
    assert docs == [["kept1", {"title": "kept1"}, 1, False],
                    ["kept2", {"title": "kept2 v2"}, 2, False],
                    ["put", {"title": "new"}, None, True]]
    assert (cursor, resync) == ("page2", None)
    assert seen == [["kept2", {"title": "kept2 v2"}], ["gone", None], ["patched", None]]
    assert entries == [["put", "put", {"title": "new"}, None],
                       ["patch", "patched", {"done": True}, None]]


def test_data_and_outbox_survive_a_reload(page: Page, live_server: str) -> None:
    py(page, """
db = await fresh("reload")
await db.collection("todos").put_many({"a": {"title": "Milk"}, "b": {"title": "Eggs"}})
db.close()
""")
    page.reload()
    page.wait_for_function("window.pysyncTest !== undefined")
    page.evaluate("window.pysyncTest.ready")
    py(page, SETUP)
    result = py(page, """
db = await pysync.open_database("reload", SCHEMA)
[[d.key for d in await db.collection("todos").query()], await outbox(db), db.client_id != ""]
""")
    assert result == [["a", "b"], [["put", "a", {"title": "Milk"}, None],
                                   ["put", "b", {"title": "Eggs"}, None]], True]


def test_two_tabs_write_one_database_and_see_each_others_changes(
        page: Page, live_server: str) -> None:
    py(page, """
db = await fresh("tabs")
tab_seen = []
db.watch(lambda changes: tab_seen.extend([c.key, c.origin, c.value] for c in changes))
await db.collection("todos").put("from-a", {"title": "A"})
""")
    other = open_test_page(page.context, live_server)
    try:
        py(other, SETUP)
        got = py(other, """
db = await pysync.open_database("tabs", SCHEMA)
await db.collection("todos").put("from-b", {"title": "B"})
[db.client_id, [d.key for d in await db.collection("todos").query()]]
""")
        mine = py(page, """
import asyncio
for _ in range(250):  # the BroadcastChannel message arrives as a separate task
    if any(s[0] == "from-b" for s in tab_seen):
        break
    await asyncio.sleep(0.02)
[db.client_id, [d.key for d in await db.collection("todos").query()], tab_seen,
 len(await outbox(db))]
""")
    finally:
        other.close()
    client_b, keys_b = got
    client_a, keys_a, seen, entries = mine
    assert client_a == client_b
    assert keys_a == keys_b == ["from-a", "from-b"]
    assert ["from-b", "tab", {"title": "B"}] in seen
    assert entries == 2


def test_a_new_index_in_the_schema_reindexes_existing_records(page: Page) -> None:
    result = py(page, """
db = await fresh("reindex", Schema(Collection("todos")))
await db.collection("todos").put_many({"a": {"done": True}, "b": {"done": False}})
db.close()
db = await pysync.open_database("reindex", SCHEMA)
[d.key for d in await db.collection("todos").query("by_done", equals=True)]
""")
    assert result == ["a"]


def test_data_and_outbox_survive_a_browser_restart_with_the_same_profile(
        playwright: Playwright, live_server: str, tmp_path: Any) -> None:
    def session(code: str) -> Any:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True)
        try:
            p = open_test_page(context, live_server)
            py(p, SETUP)
            return py(p, code)
        finally:
            context.close()

    first = session("""
db = await pysync.open_database("restart", SCHEMA)
await db.collection("todos").put("a", {"title": "Milk", "done": False})
await db.collection("todos").patch("a", {"done": True})
db.client_id
""")
    second = session("""
db = await pysync.open_database("restart", SCHEMA)
[db.client_id, await db.collection("todos").get("a"), await outbox(db)]
""")
    assert second == [first, {"title": "Milk", "done": True},
                      [["put", "a", {"title": "Milk", "done": True}, None]]]


def test_a_big_bulk_write_coalesces_with_existing_records(page: Page) -> None:
    # Over 32 keys, the write first probes which keys exist (one keys-only read).
    result = py(page, """
db = await fresh("bulk")
todos = db.collection("todos")
await todos.put_many({f"k{i:03d}": {"n": i} for i in range(40)})
await todos.put_many({f"k{i:03d}": {"n": -i} for i in range(20, 60)})
[await todos.count(), await db.pending_count(), await todos.get("k025"),
 await todos.get("k005"), await todos.get("k059")]
""")
    assert result == [60, 60, {"n": -25}, {"n": 5}, {"n": -59}]


def test_a_newer_version_opened_elsewhere_closes_the_database(page: Page) -> None:
    result = py(page, """
import js
db = await fresh("upgrade")
await db.collection("todos").put("a", {"n": 1})
await js.eval('''(name) => new Promise((ok) => {
  const r = indexedDB.open(name, 2); r.onsuccess = () => { r.result.close(); ok(); };
})''')("upgrade")
[db.closed, await error_of(db.collection("todos").get("a")), db.close(), db.close()]
""")
    assert result == [True, "DatabaseClosed", None, None]  # closing again is harmless


# Two connections in one page behave as two tabs, and deterministically so: a write resumes in
# its transaction's complete event, before the other connection's BroadcastChannel message
# (a later task) can tell it that what it cached is out of date.
# `read_first` collects the keys of each db1 write that took the read-first path (the
# module's function wrapped for the test, then put back).
STALE_SETUP = """
import pysync.writes
db1 = await fresh("{name}")
db2 = await pysync.open_database("{name}", SCHEMA)
read_first = []
if "UNWRAPPED_READ_FIRST" not in globals():
    UNWRAPPED_READ_FIRST = pysync.writes._write_read_first
async def counted(session, collection, ops, keys, *more):
    if session is db1._session:
        read_first.append(keys)
    return await UNWRAPPED_READ_FIRST(session, collection, ops, keys, *more)
pysync.writes._write_read_first = counted
"""
UNWRAP = """
import pysync.writes
if "UNWRAPPED_READ_FIRST" in globals():
    pysync.writes._write_read_first = UNWRAPPED_READ_FIRST
None
"""


def two_tabs(page: Page, name: str, code: str) -> Any:
    """Run `code` after STALE_SETUP (two connections of the database `name`)."""
    try:
        return py(page, STALE_SETUP.format(name=name) + code)
    finally:
        py(page, UNWRAP)


def test_a_write_over_a_row_another_tab_changed_meanwhile_coalesces_with_its_edit(
        page: Page) -> None:
    result = two_tabs(page, "stale-row", """
await db1.collection("todos").put("x", {"title": "a"})
await db2.collection("todos").patch("x", {"done": True})
await db1.collection("todos").patch("x", {"rank": 3})
await db1.collection("todos").put("y", {"title": "b"})
orders = [e.order for e in await Replica(db1).outbox_entries()]
[await db1.collection("todos").get("x"), await outbox(db1), orders == sorted(set(orders)),
 read_first]
""")
    value, entries, ordered, read_first = result
    assert value == {"title": "a", "done": True, "rank": 3}
    assert entries == [["put", "x", {"title": "a", "done": True, "rank": 3}, None],
                       ["put", "y", {"title": "b"}, None]]
    assert ordered
    assert read_first == [["x"]]  # the cached row failed its check: read, then written


def test_a_put_over_a_record_this_tab_never_saw_replaces_it_with_one_outbox_entry(
        page: Page) -> None:
    result = two_tabs(page, "unseen-row", """
await db2.collection("todos").put("z", {"title": "from db2", "done": False})
await db1.collection("todos").put("z", {"title": "from db1"})
[await db2.collection("todos").get("z"), await outbox(db2), read_first]
""")
    assert result == [{"title": "from db1"}, [["put", "z", {"title": "from db1"}, None]],
                      [["z"]]]


def test_another_tabs_watchers_hear_of_a_fast_write_and_a_delete(page: Page) -> None:
    result = py(page, """
import asyncio
db1 = await fresh("announce")
db2 = await pysync.open_database("announce", SCHEMA)
heard = []
db2.watch(lambda changes: heard.extend([c.key, c.value, c.origin] for c in changes))
await db1.collection("todos").put("k", {"title": "t", "tags": [1, 2]})
await db1.collection("todos").delete("k")
for _ in range(250):
    if len(heard) == 2:
        break
    await asyncio.sleep(0.02)
heard
""")
    assert result == [["k", {"title": "t", "tags": [1, 2]}, "tab"], ["k", None, "tab"]]


def test_a_write_in_flight_when_the_database_closes_still_completes(page: Page) -> None:
    # The commit is announced to other tabs from the complete event: postMessage on the
    # channel closed with the database threw there, and the writer waited forever.
    result = py(page, """
import asyncio
db = await fresh("close-in-flight")
todos = db.collection("todos")
await todos.put("t1", {"title": "warm"})
write = asyncio.ensure_future(todos.put("t2", {"title": "in flight"}))
await asyncio.sleep(0)
db.close()
try:
    await asyncio.wait_for(write, timeout=5)
    outcome = "done"
except asyncio.TimeoutError:
    outcome = "hung"
again = await pysync.open_database("close-in-flight", SCHEMA)
[outcome, await again.collection("todos").get("t2")]
""")
    assert result == ["done", {"title": "in flight"}]
