"""Outbox coalescing and batching: pure logic on CPython."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pysync.errors import NotFound
from pysync.outbox import Entry, apply_op, coalesce, dump_value, load_value, rebase, take
from pysync.protocol import Op
from pysync.rows import RecordRow, local_write


def entry(op: Op, value: dict[str, Any] | None, order: int = 1, base: int | None = None,
          wire_id: int | None = None, key: str = "k", chained: bool = False) -> Entry:
    return Entry(order, "todos", key, op, value, base, f"h{order}", chained, wire_id)


def test_put_then_put_keeps_the_new_value() -> None:
    merged = coalesce(entry("put", {"a": 1}), "put", {"b": 2}, "h9", server_knows=False)
    assert merged is not None
    assert (merged.op, merged.value) == ("put", {"b": 2})


def test_put_then_patch_becomes_a_put_of_the_patched_value() -> None:
    merged = coalesce(entry("put", {"a": 1, "b": 1}), "patch", {"b": 2}, "h9", False)
    assert merged is not None
    assert (merged.op, merged.value) == ("put", {"a": 1, "b": 2})


def test_put_then_delete_of_a_record_the_server_never_saw_is_nothing() -> None:
    assert coalesce(entry("put", {"a": 1}), "delete", None, "h9", server_knows=False) is None


def test_put_then_delete_of_a_record_the_server_knows_is_a_delete() -> None:
    merged = coalesce(entry("put", {"a": 1}, base=3), "delete", None, "h9", server_knows=True)
    assert merged is not None
    assert (merged.op, merged.value, merged.base_version) == \
        ("delete", None, 3)


def test_patch_then_patch_unions_the_fields_later_value_winning() -> None:
    merged = coalesce(entry("patch", {"a": 1, "b": 1}), "patch", {"b": 2, "c": 3}, "h9", True)
    assert merged is not None
    assert (merged.op, merged.value) == \
        ("patch", {"a": 1, "b": 2, "c": 3})


def test_patch_then_put_is_a_put() -> None:
    merged = coalesce(entry("patch", {"a": 1}), "put", {"z": 0}, "h9", True)
    assert merged is not None
    assert (merged.op, merged.value) == ("put", {"z": 0})


def test_patch_then_delete_is_a_delete() -> None:
    merged = coalesce(entry("patch", {"a": 1}), "delete", None, "h9", True)
    assert merged is not None
    assert merged.op == "delete"


def test_delete_then_put_is_a_put() -> None:
    merged = coalesce(entry("delete", None, base=2), "put", {"a": 1}, "h9", True)
    assert merged is not None
    assert (merged.op, merged.value, merged.base_version) == \
        ("put", {"a": 1}, 2)


def test_delete_then_patch_is_refused() -> None:
    with pytest.raises(NotFound):
        coalesce(entry("delete", None), "patch", {"a": 1}, "h9", True)


def test_merged_entry_keeps_order_and_base_and_takes_the_new_stamp() -> None:
    merged = coalesce(entry("put", {"a": 1}, order=7, base=4), "patch", {"a": 2}, "h99", True)
    assert merged is not None
    assert (merged.order, merged.base_version, merged.hlc) == \
        (7, 4, "h99")


def test_an_entry_taken_for_sending_is_never_merged_into() -> None:
    with pytest.raises(ValueError, match="taken for sending"):
        coalesce(entry("put", {"a": 1}, wire_id=5), "put", {"a": 2}, "h9", True)


def test_take_assigns_consecutive_wire_ids_in_order() -> None:
    pending = [entry("put", {"a": 1}, order=o, key=f"k{o}") for o in (9, 3, 5)]
    taken = take([], pending, next_mutation_id=41, limit=10, versions={})
    assert [(e.order, e.wire_id) for e in taken.batch] == [(3, 41), (5, 42), (9, 43)]
    assert taken.next_mutation_id == 44
    assert all(e.in_flight for e in taken.updated)


def test_take_respects_the_limit() -> None:
    pending = [entry("put", {"a": 1}, order=o, key=f"k{o}") for o in range(1, 6)]
    taken = take([], pending, 1, limit=2, versions={})
    assert [e.wire_id for e in taken.batch] == [1, 2]
    assert taken.next_mutation_id == 3


def test_take_resends_unacknowledged_entries_first_with_their_ids() -> None:
    sent = [entry("put", {"a": 1}, order=1, key="a", wire_id=7)]
    pending = [entry("put", {"b": 1}, order=2, key="b")]
    taken = take(sent, pending, 8, limit=10, versions={})
    assert [(e.key, e.wire_id) for e in taken.batch] == [("a", 7), ("b", 8)]


def test_take_holds_back_a_record_whose_earlier_entry_is_unacknowledged() -> None:
    sent = [entry("put", {"a": 1}, order=1, key="a", wire_id=7)]
    pending = [entry("patch", {"a": 2}, order=2, key="a", chained=True),
               entry("put", {"b": 1}, order=3, key="b")]
    taken = take(sent, pending, 8, limit=10, versions={})
    assert [(e.key, e.wire_id) for e in taken.batch] == [("a", 7), ("b", 8)]


def test_a_chained_entry_takes_the_confirmed_version_as_its_base() -> None:
    pending = [entry("patch", {"a": 2}, order=2, key="a", chained=True)]
    taken = take([], pending, 1, limit=10, versions={("todos", "a"): 6})
    assert taken.batch[0].base_version == 6
    assert not taken.batch[0].chained


def test_a_mutation_carries_the_entry_shape() -> None:
    m = entry("patch", {"done": True}, base=2, wire_id=3).to_mutation()
    assert m.to_json() == {"id": 3, "collection": "todos", "key": "k", "op": "patch",
                           "value": {"done": True}, "base_version": 2, "hlc": "h1"}


def test_entry_survives_its_row_form() -> None:
    e = entry("put", {"b": b"\x00\xff", "n": [1, 2.5, None]}, order=4, base=1, wire_id=9)
    assert Entry.from_row(e.to_row()) == e


def test_patch_sets_top_level_fields() -> None:
    assert apply_op({"a": 1, "b": {"x": 1}}, "patch", {"b": {"y": 2}}) == \
        {"a": 1, "b": {"y": 2}}


def test_rebase_replays_entries_in_order_over_the_confirmed_copy() -> None:
    entries = [entry("patch", {"b": 2}, order=2), entry("put", {"a": 1}, order=1)]
    assert rebase({"z": 0}, entries) == {"a": 1, "b": 2}


# --- coalescing preserves meaning: a property test over random edit sequences ---------------

edits = st.lists(st.tuples(st.sampled_from(["k1", "k2"]),
                           st.sampled_from(["put", "patch", "delete"]),
                           st.dictionaries(st.sampled_from(["a", "b", "c"]),
                                           st.integers(0, 3), min_size=1)),
                 max_size=25)


@given(edits)
def test_coalesced_outbox_replayed_on_the_server_gives_the_local_view(
        steps: list[tuple[str, Op, dict[str, int]]]) -> None:
    rows: dict[str, RecordRow | None] = {"k1": None, "k2": None}
    outbox: dict[int, Entry] = {}
    order = 1
    for i, (key, op, value) in enumerate(steps):
        row = rows[key]
        if op == "patch" and (row is None or row.value is None):
            continue  # refused locally (NotFound), nothing written
        out = local_write(row, "todos", key, op, None if op == "delete" else value,
                          f"h{i:04d}", order)
        order += out.used_order
        rows[key] = out.row
        if out.put_entry is not None:
            outbox[out.put_entry.order] = out.put_entry
        if out.drop_entry is not None:
            del outbox[out.drop_entry]
    for key in rows:
        mine = [e for e in outbox.values() if e.key == key]
        assert len(mine) <= 1  # one pending entry per record
        server = rebase(None, mine)
        row = rows[key]
        assert server == (row.value if row else None)


# --- the stored JSON text of values ---

def test_a_stored_decimal_keeps_every_digit_and_stays_a_decimal() -> None:
    value = {"price": Decimal("1234567890.12345678901234567890"), "tiny": Decimal("-1E-130"),
             "nested": [{"d": Decimal("0.1")}]}
    back = load_value(dump_value(value))
    assert back == value
    assert str(back["price"]) == "1234567890.12345678901234567890"
    assert type(back["nested"][0]["d"]) is Decimal


def test_a_stored_float_stays_the_same_float() -> None:
    value = {"f": 0.1, "big": 1e300, "small": 2.5e-7, "whole": 3.0}
    back = load_value(dump_value(value))
    assert back == value
    assert all(type(v) is float for v in back.values())


def test_an_integral_decimal_is_stored_as_an_integer() -> None:
    # What DynamoDB returns for every whole number; to_json makes it an int on the wire too.
    assert load_value(dump_value({"n": Decimal("1E+30"), "m": Decimal("42")})) == \
        {"n": 10**30, "m": 42}


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d.is_zero() or -130 <= d.adjusted() <= 125))
def test_any_storable_decimal_survives_the_store_exactly(d: Decimal) -> None:
    back = load_value(dump_value({"n": d}))["n"]
    assert back == d
    assert (type(back) is Decimal or d == d.to_integral_value())
