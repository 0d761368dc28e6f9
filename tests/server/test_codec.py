"""server.codec (the one codec of DynamoDB's typed values) gives what boto3's serializer and
deserializer give, and server.records' size estimate counts what the UTF-8 byte count does.

`to_wire` is boto3's TypeSerializer with a direct path for the types records hold (docs/
server.md, "Push performance"); these check the path is the same function as boto3's own on
every value a record can hold. `from_wire` is boto3's TypeDeserializer, also taking B as the
base64 text of a Lambda event.
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from pysync.merge import RecordState
from pysync.values import to_json
from server.codec import from_event, from_wire, protocol_json, record_value, to_native, to_wire
from server.records import encode_item, item_size

BOTO = TypeSerializer()
BOTO_DECODE = TypeDeserializer()

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


@given(values)
def test_from_wire_equals_boto3s_deserializer(value: Any) -> None:
    try:
        wire = BOTO.serialize(value)
    except Exception:  # not storable (numbers past 38 digits): nothing to read back
        return
    assert from_wire(wire) == BOTO_DECODE.deserialize(wire)


@pytest.mark.parametrize("wire", [
    {"SS": ["b", "a"]}, {"NS": ["10", "-1.5"]}, {"BS": [b"x"]}, {"NULL": True}, {"B": b""},
    {"L": []}, {"M": {}}, {"N": "1E+125"}, {"N": "-0.000001"}, {"BOOL": False}, {}])
def test_from_wire_equals_boto3s_deserializer_at_the_edges(wire: dict[str, Any]) -> None:
    assert _or_error(from_wire, wire) == _or_error(BOTO_DECODE.deserialize, wire)


def _or_error(decode: Any, wire: dict[str, Any]) -> Any:
    try:
        return decode(wire)
    except Exception as e:  # the error's type is what is compared
        return type(e)


def test_from_wire_takes_binary_as_a_lambda_event_has_it() -> None:
    event = {"M": {"b": {"B": "AP8="}, "bs": {"BS": ["YQ==", "Yg=="]}, "s": {"S": "AP8="}}}
    assert from_wire(event) == BOTO_DECODE.deserialize(
        {"M": {"b": {"B": b"\x00\xff"}, "bs": {"BS": [b"a", b"b"]}, "s": {"S": "AP8="}}})


@given(values)
def test_a_lambda_events_value_becomes_the_wire_form_boto3_reads(value: Any) -> None:
    try:
        wire = BOTO.serialize(value)
    except Exception:
        return
    as_event = _lambda_shaped(dict(wire))
    assert from_wire(from_event(as_event)) == BOTO_DECODE.deserialize(wire)


def _lambda_shaped(av: dict[str, Any]) -> dict[str, Any]:
    """A typed value as a Lambda event's JSON carries it: B and BS as base64 text."""
    ((kind, raw),) = av.items()
    if kind == "B":
        return {"B": base64.b64encode(raw).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(b).decode() for b in raw]}
    if kind == "M":
        return {"M": {k: _lambda_shaped(v) for k, v in raw.items()}}
    if kind == "L":
        return {"L": [_lambda_shaped(v) for v in raw]}
    return av


def test_typed_values_become_protocol_json() -> None:
    assert protocol_json({"M": {
        "s": {"S": "x"}, "i": {"N": "-12"}, "d": {"N": "0.1"}, "b": {"B": b"\x00\x01"},
        "n": {"NULL": True}, "t": {"BOOL": True}, "l": {"L": [{"N": "1"}, {"S": "a"}]},
        "ss": {"SS": ["b", "a"]}, "ns": {"NS": ["10", "9.5"]}, "bs": {"BS": [b"b", b"a"]},
        "lambda_b": {"B": "AAE="}}}) == {
        "s": "x", "i": -12, "d": Decimal("0.1"), "b": {"$bytes": "AAE="}, "n": None,
        "t": True, "l": [1, "a"], "ss": ["a", "b"], "ns": [Decimal("9.5"), 10],
        "bs": [{"$bytes": "YQ=="}, {"$bytes": "Yg=="}], "lambda_b": {"$bytes": "AAE="}}


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


@given(values)
def test_protocol_json_of_a_field_is_the_general_rendering(value: Any) -> None:
    """protocol_json renders strings, booleans and short integers directly (pull renders
    every attribute it serves): the same value, of the same type, as the general path."""
    try:
        av = to_wire(to_native(value))
    except (ValueError, ArithmeticError, TypeError):
        return  # not a value DynamoDB can hold
    assert repr(protocol_json(av)) == repr(to_json(record_value(av)))


@pytest.mark.parametrize("text", ["0", "-12", "007", "-0", "999999999999999", "1E+2", "0.5",
                                  "123456789012345678901234567890"])
def test_protocol_json_of_a_number_keeps_its_type(text: str) -> None:
    assert repr(protocol_json({"N": text})) == repr(to_json(record_value({"N": text})))
