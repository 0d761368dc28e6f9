"""pysync.values: what a record may hold, and the JSON codec (CPython)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pysync.errors import InvalidValue
from pysync.values import (
    MAX_DEPTH,
    MAX_KEY_BYTES,
    MAX_RECORD_BYTES,
    check_key,
    check_record,
    from_json,
    record_size,
    storable_number,
    to_json,
)

# Values pysync stores: JSON types plus bytes, numbers within DynamoDB's N type.
_numbers = st.one_of(
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e100, max_value=1e100).filter(
        lambda f: f == 0 or abs(f) > 1e-120),
    st.decimals(allow_nan=False, allow_infinity=False, places=6,
                min_value=Decimal("-1e20"), max_value=Decimal("1e20")),
)
_strings = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_field_names = _strings.filter(
    lambda s: s and not s.startswith("_") and s not in ("pk", "sk", "$bytes"))
_map_keys = _strings.filter(lambda s: s not in ("", "$bytes"))
_values = st.recursive(
    st.none() | st.booleans() | _numbers | _strings | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_map_keys, inner, max_size=4),
    max_leaves=20,
)
_records = st.dictionaries(_field_names, _values, max_size=6)


def _same(a: object, b: object) -> bool:
    """Equal as stored values: Decimal and float compare by exact decimal value."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return Decimal(repr(a)) == Decimal(repr(b)) if isinstance(a, float) else a == b
    return type(a) is type(b) or ({type(a), type(b)} <= {int, Decimal} and a == b)


@given(_records)
def test_valid_records_pass_the_check(record: dict[str, object]) -> None:
    assert check_record(record) is record


@given(_records)
def test_json_codec_round_trips_every_storable_record(record: dict[str, object]) -> None:
    assert _same(from_json(to_json(record)), record)


def test_bytes_travel_as_a_base64_wrapper() -> None:
    assert to_json({"b": b"\x00\xff"}) == {"b": {"$bytes": "AP8="}}
    assert from_json({"b": {"$bytes": "AP8="}}) == {"b": b"\x00\xff"}


def test_non_integral_decimals_stay_decimal_for_exact_serialisation() -> None:
    d = Decimal("0.1000000000000000000000000000000000001")
    assert to_json({"x": d, "n": Decimal("42")}) == {"x": d, "n": 42}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, Decimal("NaN")])
def test_non_finite_numbers_are_refused(bad: object) -> None:
    with pytest.raises(InvalidValue, match="finite"):
        check_record({"x": bad})


def test_numbers_with_more_than_38_significant_digits_are_refused() -> None:
    with pytest.raises(InvalidValue, match="38 significant digits"):
        check_record({"x": Decimal("1." + "1" * 38)})


def test_a_huge_integer_with_few_significant_digits_is_fine() -> None:
    check_record({"x": 10**100})


def test_numbers_beyond_dynamodb_range_are_refused() -> None:
    with pytest.raises(InvalidValue, match="range"):
        check_record({"x": 10**126})


@pytest.mark.parametrize("zero", [Decimal("0e200"), Decimal("-0E+127"), Decimal("0E-300"),
                                  -0.0, Decimal("-0.000")])
def test_zero_of_any_sign_or_exponent_is_stored_as_zero(zero: object) -> None:
    check_record({"x": {"m": zero}})
    stored = storable_number(zero)  # type: ignore[arg-type]
    assert stored == 0
    assert str(stored) == "0"


def test_trailing_zeros_are_dropped_before_the_digits_are_counted() -> None:
    assert str(storable_number(Decimal("1." + "0" * 40))) == "1"
    assert storable_number(10**50) == 10**50
    assert str(storable_number(10**50)) == "1E+50"


def test_a_significant_digit_below_what_boto3_writes_is_refused() -> None:
    # DynamoDB itself would take it; boto3's serializer would round it (a 500 on push).
    with pytest.raises(InvalidValue, match="1e-165"):
        check_record({"x": Decimal("1." + "2" * 37 + "e-130")})
    check_record({"x": Decimal("1." + "2" * 35 + "e-130")})


def test_a_lone_surrogate_in_a_top_level_field_name_gives_an_encodable_message() -> None:
    with pytest.raises(InvalidValue, match="surrogate") as refused:
        check_record({"\udc00": 1})
    str(refused.value).encode("utf-8")  # the push response carries it


def test_lone_surrogates_are_refused_in_values_and_map_keys() -> None:
    with pytest.raises(InvalidValue, match="surrogate"):
        check_record({"x": "a\ud800"})
    with pytest.raises(InvalidValue, match="surrogate"):
        check_record({"x": {"\udc00": 1}})


@pytest.mark.parametrize("name", ["_v", "_anything", "pk", "sk", "$bytes", ""])
def test_reserved_and_empty_field_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidValue, match=r"reserved|empty"):
        check_record({name: 1})


@pytest.mark.parametrize("record", [{"m": {"": 1}}, {"f" * 65_536: 1}, {"m": {"k" * 65_536: 1}}])
def test_names_dynamodb_refuses_are_refused_at_every_level(record: dict[str, object]) -> None:
    with pytest.raises(InvalidValue, match=r"empty|longer"):
        check_record(record)


def test_key_attribute_names_are_fine_below_the_top_level() -> None:
    check_record({"nested": {"pk": 1, "sk": 2, "_v": 3}})


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    deep: object = 1  # the field's value is level 1, so MAX_DEPTH - 1 containers fit
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    check_record({"x": deep})
    with pytest.raises(InvalidValue, match="deeper"):
        check_record({"x": [deep]})


def test_from_json_refuses_hostile_nesting_without_exhausting_the_stack() -> None:
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidValue, match="deeper"):
        from_json({"x": deep})


def test_records_over_the_item_size_limit_are_refused() -> None:
    check_record({"x": "a" * (MAX_RECORD_BYTES - 10)})
    with pytest.raises(InvalidValue, match="bytes as a DynamoDB item"):
        check_record({"x": "a" * 200_000, "y": "b" * 200_000})


def test_record_size_counts_names_and_utf8_bytes() -> None:
    assert record_size({"ab": "é"}) == 2 + 2


@pytest.mark.parametrize("bad", [{1: "x"}, {"s": {1, 2}}, {"f": object()}])
def test_unstorable_types_are_refused(bad: dict[object, object]) -> None:
    with pytest.raises(InvalidValue):
        check_record(bad)


def test_the_bytes_tag_is_reserved_as_an_ordinary_map_key() -> None:
    with pytest.raises(InvalidValue, match=r"\$bytes"):
        from_json({"x": {"$bytes": "AA==", "other": 1}})
    with pytest.raises(InvalidValue, match=r"\$bytes"):
        check_record({"x": {"$bytes": "AA=="}})


def test_invalid_base64_is_refused() -> None:
    with pytest.raises(InvalidValue, match="base64"):
        from_json({"x": {"$bytes": "not base64!"}})


@pytest.mark.parametrize("bad", ["", 7, None, "k" * (MAX_KEY_BYTES + 1), "\ud800"])
def test_bad_keys_are_refused(bad: object) -> None:
    with pytest.raises(InvalidValue):
        check_key(bad)


def test_keys_may_hold_separators_and_path_characters() -> None:
    assert check_key("../u#bob") == "../u#bob"
    assert check_key("é" * (MAX_KEY_BYTES // 2)) == "é" * (MAX_KEY_BYTES // 2)
