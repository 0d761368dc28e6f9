"""server.records' own wire encoding and size estimate give what boto3's give.

`to_wire` replaces boto3's TypeSerializer in encode_item for speed (docs/server.md, "Push
performance"); these check it is the same function on every value a record can hold, and
that item_size's ASCII shortcut counts what the UTF-8 byte count does.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from pysync.merge import RecordState
from server.records import encode_item, item_size, to_native, to_wire

BOTO = TypeSerializer()

scalars = st.one_of(
    st.none(), st.booleans(), st.text(),
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.integers(min_value=10**37, max_value=10**40),  # around DynamoDB's 38 digits
    st.decimals(allow_nan=False, allow_infinity=False, places=6,
                min_value=Decimal("-1e20"), max_value=Decimal("1e20")),
    st.binary(max_size=8),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def boto_or_error(value: Any) -> Any:
    try:
        return BOTO.serialize(value)
    except Exception as e:  # the error's type is what is compared
        return type(e)


def ours_or_error(value: Any) -> Any:
    try:
        return to_wire(value)
    except Exception as e:
        return type(e)


@given(values)
def test_to_wire_equals_boto3s_serializer_on_every_record_value(value: Any) -> None:
    assert ours_or_error(value) == boto_or_error(value)


@pytest.mark.parametrize("value", [10**38 - 1, -(10**38) + 1, 10**38, -(10**38), 10**39 + 1,
                                   True, False, 0, -0, "", "é", [], {}, (1, "a"), {1, 2},
                                   frozenset({"a"}), bytearray(b"x")])
def test_to_wire_equals_boto3s_serializer_at_the_edges(value: Any) -> None:
    assert ours_or_error(value) == boto_or_error(value)


@given(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: not k.startswith("_")),
                       values, max_size=5))
def test_item_size_counts_utf8_bytes_like_before(fields: dict[str, Any]) -> None:
    try:
        state = RecordState(fields={k: to_native(v) for k, v in fields.items()},
                            version=1, hlc="h", deleted=False, exists=True)
        item = encode_item("u#é", "c", "ké", state, "w:1")
    except (ValueError, ArithmeticError):  # numbers past 38 digits: refused before push
        return
    assert item_size(item) == sum(len(k.encode()) + _utf8_size(v) for k, v in item.items())


def _utf8_size(av: dict[str, Any]) -> int:
    """The documented estimate, written the slow obvious way."""
    ((kind, v),) = av.items()
    if kind == "S":
        return len(v.encode("utf-8"))
    if kind == "N":
        return len(v) + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _utf8_size(x) for x in v)
    assert kind == "M"
    return 3 + sum(1 + len(k.encode("utf-8")) + _utf8_size(x) for k, x in v.items())
