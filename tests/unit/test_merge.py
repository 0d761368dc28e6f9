"""The conflict strategies of pysync.merge, as pure functions."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pysync.merge import (
    ABSENT,
    Applied,
    Conflict,
    Edit,
    RecordState,
    Rejected,
    apply_change,
)


def s(n: int) -> str:
    return f"{n:015d}:000000:dev"


def live(fields: dict[str, Any], version: int = 1, stamp: int = 1) -> RecordState:
    return RecordState(fields, version, s(stamp), dict.fromkeys(fields, s(stamp)), False, True)


def put(value: dict[str, Any], stamp: int, base: int | None = None) -> Edit:
    return Edit("put", value, base, s(stamp))


def patch(value: dict[str, Any], stamp: int, base: int | None = None) -> Edit:
    return Edit("patch", value, base, s(stamp))


def delete(stamp: int, base: int | None = None) -> Edit:
    return Edit("delete", None, base, s(stamp))


def applied(outcome: object) -> RecordState:
    assert isinstance(outcome, Applied), outcome
    return outcome.state


def test_put_on_an_absent_record_creates_version_1() -> None:
    state = applied(apply_change("merge", ABSENT, put({"a": 1}, 5)))
    assert (state.fields, state.version, state.deleted, state.hlc) == ({"a": 1}, 1, False, s(5))


def test_patch_of_an_absent_record_is_rejected_not_found() -> None:
    outcome = apply_change("lww", ABSENT, patch({"a": 1}, 5))
    assert isinstance(outcome, Rejected)
    assert outcome.code == "not_found"


def test_patch_of_a_tombstone_is_rejected_deleted() -> None:
    tomb = applied(apply_change("version", live({"a": 1}), delete(2, base=1)))
    outcome = apply_change("version", tomb, patch({"a": 2}, 3, base=2))
    assert isinstance(outcome, Rejected)
    assert outcome.code == "deleted"


def test_delete_of_a_deleted_record_changes_nothing() -> None:
    tomb = applied(apply_change("merge", live({"a": 1}), delete(2)))
    assert applied(apply_change("merge", tomb, delete(3))) is tomb


def test_merge_newer_field_wins_older_field_loses() -> None:
    state = live({"a": 1, "b": 1}, stamp=5)
    state = applied(apply_change("merge", state, patch({"a": 2, "b": 2}, 7)))
    state = applied(apply_change("merge", state, patch({"a": 3}, 9)))
    assert isinstance(apply_change("merge", state, patch({"a": 0}, 8)), Conflict)
    state = applied(apply_change("merge", state, patch({"a": 0, "b": 3}, 8)))
    assert state.fields == {"a": 3, "b": 3}


def test_merge_put_removes_fields_only_where_it_is_newer() -> None:
    state = applied(apply_change("merge", live({"a": 1, "b": 1}, stamp=5),
                                 patch({"b": 2}, 9)))
    state = applied(apply_change("merge", state, put({"c": 1}, 7)))
    assert state.fields == {"b": 2, "c": 1}  # "a" removed by the put, "b" newer than it


def test_merge_a_removed_field_is_not_revived_by_a_stale_patch() -> None:
    state = applied(apply_change("merge", live({"a": 1, "b": 1}), put({"b": 1}, 9)))
    assert isinstance(apply_change("merge", state, patch({"a": 5}, 8)), Conflict)


def test_merge_delete_loses_to_a_later_edit_and_wins_over_earlier_ones() -> None:
    state = applied(apply_change("merge", live({"a": 1}, stamp=5), patch({"a": 2}, 9)))
    assert isinstance(apply_change("merge", state, delete(8)), Conflict)
    assert applied(apply_change("merge", state, delete(10))).deleted


def test_merge_put_after_a_delete_recreates_only_if_newer() -> None:
    tomb = applied(apply_change("merge", live({"a": 1}), delete(5)))
    assert isinstance(apply_change("merge", tomb, put({"a": 2}, 4)), Conflict)
    state = applied(apply_change("merge", tomb, put({"a": 2}, 6)))
    assert (state.fields, state.deleted, state.version) == ({"a": 2}, False, 3)


def test_lww_whole_record_last_stamp_wins() -> None:
    state = live({"a": 1, "b": 1}, stamp=5)
    assert isinstance(apply_change("lww", state, patch({"a": 2}, 4)), Conflict)
    state = applied(apply_change("lww", state, put({"c": 1}, 6)))
    assert state.fields == {"c": 1}
    assert state.hlc == s(6)


def test_version_applies_only_on_the_current_version() -> None:
    state = live({"a": 1}, version=3)
    assert isinstance(apply_change("version", state, patch({"a": 2}, 9, base=2)), Conflict)
    new = applied(apply_change("version", state, patch({"b": 2}, 1, base=3)))
    assert (new.fields, new.version) == ({"a": 1, "b": 2}, 4)


def test_version_null_base_means_never_seen() -> None:
    assert applied(apply_change("version", ABSENT, put({"a": 1}, 1))).version == 1
    assert isinstance(apply_change("version", live({"a": 1}), put({"a": 2}, 2)), Conflict)


patches = st.lists(
    st.tuples(st.dictionaries(st.sampled_from("abcd"), st.integers(), min_size=1)),
    min_size=1, max_size=8,
)


@given(patches, st.randoms())
def test_merge_converges_whatever_order_patches_arrive_in(
        values: list[tuple[dict[str, int]]], rnd: Any) -> None:
    changes = [patch(v, i + 10) for i, (v,) in enumerate(values)]
    shuffled = list(changes)
    rnd.shuffle(shuffled)

    def run(order: list[Edit]) -> dict[str, Any]:
        state = live({}, stamp=1)
        for change in order:
            outcome = apply_change("merge", state, change)
            if isinstance(outcome, Applied):
                state = outcome.state
        return dict(state.fields)

    assert run(changes) == run(shuffled)


@given(st.lists(st.integers(min_value=2, max_value=10**6), min_size=1, max_size=8,
                unique=True))
def test_lww_ends_with_the_newest_put_whatever_the_order(stamps: list[int]) -> None:
    state = live({"v": -1}, stamp=1)
    for n in stamps:
        outcome = apply_change("lww", state, put({"v": n}, n))
        if isinstance(outcome, Applied):
            state = outcome.state
    assert state.fields == {"v": max(stamps)}
