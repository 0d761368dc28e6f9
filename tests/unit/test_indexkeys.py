"""Computed index keys: every value type is indexable, in a documented order."""

from __future__ import annotations

import functools
import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pysync.errors import InvalidValue, SchemaError
from pysync.indexkeys import encode_field, index_keys, index_range
from pysync.memdb import compare  # IndexedDB's key order (indexedDB.cmp), one definition
from pysync.schema import Collection, Index

TODOS = Collection("todos", indexes=(Index("by_done", "done"),
                                     Index("by_list", "list", "rank")))


def key_of(value: object) -> list[Any]:
    return index_keys(TODOS, "k", {"done": value})[0]


def in_range(key: list[Any], bounds: tuple[Any, ...]) -> bool:
    (lo, lo_open), (hi, hi_open) = bounds
    c_lo, c_hi = compare(key, lo), compare(key, hi)
    return (c_lo > 0 or (c_lo == 0 and not lo_open)) and (c_hi < 0 or (c_hi == 0 and not hi_open))


def test_types_sort_missing_null_bool_number_string_bytes_list_map() -> None:
    values = [{"x": 1}, [1], b"\x00", "a", 1.5, True, False, None]
    keys = [key_of(v) for v in values] + [index_keys(TODOS, "k", {})[0]]
    ordered = sorted(keys, key=functools.cmp_to_key(compare))
    assert [k[2] for k in ordered] == [0, 1, 2, 2, 3, 4, 5, 6, 7]


@given(st.lists(st.one_of(st.integers(-2**53, 2**53), st.floats(allow_nan=False,
                                                                 allow_infinity=False)),
                min_size=2, max_size=8))
def test_numbers_sort_numerically(numbers: list[float]) -> None:
    ordered = sorted(numbers, key=lambda n: functools.cmp_to_key(compare)(key_of(n)))
    assert ordered == sorted(numbers)


@given(st.lists(st.binary(max_size=6), min_size=2, max_size=6))
def test_bytes_sort_by_their_bytes(blobs: list[bytes]) -> None:
    ordered = sorted(blobs, key=lambda b: functools.cmp_to_key(compare)(key_of(b)))
    assert ordered == sorted(blobs)


def test_booleans_null_and_maps_are_indexable() -> None:
    assert encode_field(False) == [2, 0]
    assert encode_field(None) == [1, 0]
    assert encode_field({"b": 1, "a": 2}) == [7, '{"a":2,"b":1}']


def test_equals_selects_exactly_that_value() -> None:
    bounds = index_range(TODOS, TODOS.index("by_done"), equals=False)
    assert in_range(key_of(False), bounds)
    assert not in_range(key_of(True), bounds)
    assert not in_range(key_of(0), bounds)


def test_open_and_closed_bounds() -> None:
    ix = TODOS.index("by_done")
    closed = index_range(TODOS, ix, lower=1, upper=3)
    opened = index_range(TODOS, ix, lower=1, upper=3, lower_open=True, upper_open=True)
    assert [in_range(key_of(n), closed) for n in (0, 1, 2, 3, 4)] == \
        [False, True, True, True, False]
    assert [in_range(key_of(n), opened) for n in (0, 1, 2, 3, 4)] == \
        [False, False, True, False, False]


def test_a_compound_prefix_matches_every_record_that_starts_with_it() -> None:
    ix = TODOS.index("by_list")
    bounds = index_range(TODOS, ix, equals=("home",))
    keys = [index_keys(TODOS, "k", {"list": lst, "rank": r})[1]
            for lst, r in (("home", 1), ("home", "z"), ("work", 0), ("hom", 9))]
    assert [in_range(k, bounds) for k in keys] == [True, True, False, False]


def test_a_compound_range_on_the_second_field() -> None:
    ix = TODOS.index("by_list")
    bounds = index_range(TODOS, ix, lower=("home", 2), upper=("home", 5))
    keys = [index_keys(TODOS, "k", {"list": "home", "rank": r})[1] for r in (1, 2, 5, 6)]
    assert [in_range(k, bounds) for k in keys] == [False, True, True, False]


def test_a_query_longer_than_the_index_is_refused() -> None:
    with pytest.raises(SchemaError):
        index_range(TODOS, TODOS.index("by_done"), equals=(1, 2))


def test_strings_compare_by_utf16_code_unit_like_indexeddb() -> None:
    assert compare("\U0001f600", "\uffff") < 0  # astral before U+FFFF, unlike Python


# --- Decimal values (what pysync.protocol parses a 38-digit fraction into) ---

@given(st.lists(st.one_of(st.integers(-2**53, 2**53),
                          st.floats(-1e20, 1e20, allow_nan=False, allow_infinity=False),
                          st.decimals(-10**20, 10**20, allow_nan=False, allow_infinity=False,
                                      places=6)),
                min_size=2, max_size=8))
def test_decimals_sort_numerically_among_ints_and_floats(
        numbers: list[int | float | Decimal]) -> None:
    ordered = sorted(numbers, key=lambda n: functools.cmp_to_key(compare)(key_of(n)))
    exact = [Decimal(repr(n)) if isinstance(n, float) else Decimal(n) for n in ordered]
    # Keys compare as doubles: values closer than a double can tell apart may tie, never invert.
    assert all(float(a) <= float(b) for a, b in itertools.pairwise(exact))


def test_a_decimal_inside_a_list_or_map_is_indexed_with_its_exact_digits() -> None:
    d = Decimal("0.123456789012345678901234567890")
    assert key_of([d])[2:4] == [6, "[0.123456789012345678901234567890]"]
    assert key_of({"p": d, "a": 1})[2:4] == [7, '{"a":1,"p":0.123456789012345678901234567890}']


def test_an_unindexable_value_is_a_pysync_error_not_a_type_error() -> None:
    with pytest.raises(InvalidValue):
        encode_field(object())
