"""The demo's pure helpers on CPython (no browser): its order keys (a todo's `position`) and
its conflict texts. demo.py's part above its marker line needs no browser; the app below it
does, so only that part is run here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pysync import ConflictEvent
from server.paths import APP_DIR

MARKER = "# --- the app: browser only"


def load_pure_part() -> dict[str, Any]:
    source = (Path(APP_DIR) / "demo.py").read_text()
    assert MARKER in source
    namespace: dict[str, Any] = {"__name__": "demo_pure"}
    exec(compile(source[:source.index(MARKER)], "demo.py", "exec"), namespace)
    return namespace


demo = load_pure_part()
key_between = demo["key_between"]
keys_between = demo["keys_between"]
is_order_key = demo["is_order_key"]
plan_move = demo["plan_move"]
position_after = demo["position_after"]
describe_conflict = demo["describe_conflict"]


def test_keys_at_the_ends_and_in_between_are_ordered_and_well_formed() -> None:
    first = key_between(None, None)
    after = key_between(first, None)
    before = key_between(None, first)
    middle = key_between(first, after)
    assert before < first < middle < after
    assert all(is_order_key(k) for k in (first, after, before, middle))


def test_five_thousand_keys_one_after_another_stay_short_and_increasing() -> None:
    keys = keys_between(None, None, 5000)
    assert keys == sorted(keys)
    assert len(set(keys)) == 5000
    assert max(len(k) for k in keys) <= 4


# Moves as a person makes them: repeatedly into the same gap, at either end, anywhere.
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=60))
def test_any_sequence_of_moves_gives_the_intended_order_writing_only_the_moved_todo(
        moves: list[tuple[int, int]]) -> None:
    positions = dict(zip([f"t{i}" for i in range(8)], keys_between(None, None, 8),
                         strict=True))
    expected = list(positions)
    for source, target in moves:
        order = sorted(positions.items(), key=lambda kv: (kv[1], kv[0]))
        assert [k for k, _ in order] == expected
        key = expected[source % len(expected)]
        index = target % len(expected)
        writes = plan_move(order, key, index)
        assert list(writes) == [key]  # positions are distinct: nothing else is rewritten
        positions.update(writes)
        expected.remove(key)
        expected.insert(index, key)
        assert is_order_key(positions[key])
    assert [k for k, _ in sorted(positions.items(), key=lambda kv: (kv[1], kv[0]))] == expected


def test_two_devices_moving_different_todos_at_once_both_keep_their_moves() -> None:
    # Each device plans from the same list; merge keeps both writes (different records).
    keys = keys_between(None, None, 5)
    order = list(zip("abcde", keys, strict=True))
    on_one = plan_move(order, "e", 0)  # e to the top
    on_two = plan_move(order, "a", 4)  # a to the bottom
    merged = dict(order) | on_one | on_two
    assert [k for k, _ in sorted(merged.items(), key=lambda kv: (kv[1], kv[0]))] == \
        ["e", "b", "c", "d", "a"]


def test_a_tie_from_two_devices_is_ordered_by_key_and_the_next_move_there_breaks_it() -> None:
    # Both devices added a todo at the end from the same list: the same position for x, y.
    a, b = keys_between(None, None, 2)
    tied = key_between(b, None)
    order = sorted([("a", a), ("b", b), ("y", tied), ("x", tied)],
                   key=lambda kv: (kv[1], kv[0]))
    assert [k for k, _ in order] == ["a", "b", "x", "y"]
    writes = plan_move(order, "a", 2)  # a between x and y: y gets a new position too
    assert set(writes) == {"a", "y"}
    after = dict(order) | writes
    assert [k for k, _ in sorted(after.items(), key=lambda kv: (kv[1], kv[0]))] == \
        ["b", "x", "a", "y"]


def test_positions_written_by_other_programs_are_replaced_when_a_move_needs_them() -> None:
    order = [("missing", None), ("odd", "hello world"), ("ok", "a5")]
    assert not is_order_key(None)
    assert not is_order_key("hello world")
    writes = plan_move(order, "ok", 0)
    after = dict(order) | writes
    assert [k for k, _ in sorted(after.items(), key=lambda kv: (str(kv[1]), kv[0]))] == \
        ["ok", "missing", "odd"]
    assert position_after(["a5", None, "hello world"]) > "a5"


def test_a_lost_title_edit_is_described_with_what_was_kept() -> None:
    event = ConflictEvent("todos", "t1", "merge", "overwritten",
                          local={"title": "Buy oat milk", "done": False},
                          server={"title": "Buy soy milk", "done": False},
                          result={"title": "Buy soy milk", "done": False})
    what, how = describe_conflict(event)
    assert what == "Todo “Buy soy milk”"
    assert how == ("overwritten by a newer edit from another device "
                   "(title: yours “Buy oat milk”, kept “Buy soy milk”)")
