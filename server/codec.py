"""DynamoDB's typed attribute values ({"S": "x"}, {"N": "1"}, {"M": {...}}) <-> Python: the one
codec of the item format, used by push, pull, the change feed and the Lambda handler.

It is boto3's TypeSerializer and TypeDeserializer, with three changes:
- `serialize` handles the types records are made of (exact str, bool, int of at most 38
  digits, dict, list, None) itself, with the output boto3's gives (checked on generated
  values by tests/server/test_codec.py), before boto3's chain of isinstance checks: push
  encodes every field of every record it writes, and boto3's own path costs it measurably
  (docs/server.md, "Push performance"). Every other type goes to boto3's method.
- `deserialize` likewise reads S, N, M, L and BOOL itself (same results, checked the same
  way): pull decodes every attribute of every item it serves.
- B and BS also take base64 text, the form a Lambda event's JSON carries them in.

Three forms of a value appear around it:
- wire: the typed form botocore sends and returns;
- native: what TypeDeserializer gives (Decimal, Binary, sets);
- record value: what pysync's records hold (pysync.values: bytes, no sets); `to_native` and
  `from_native` convert it to and from native, `protocol_json` renders a wire value as
  protocol JSON (bytes as {"$bytes": base64}).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, cast

from boto3.dynamodb.types import DYNAMODB_CONTEXT, Binary, TypeDeserializer, TypeSerializer

from pysync.values import storable_number, to_json

AttributeValue = dict[str, Any]  # one typed value: {"S": "x"}

_MAX_PLAIN_INT = 10**38  # DynamoDB's 38 digits: below this str(int) is what boto3 gives


class Serializer(TypeSerializer):
    """boto3's TypeSerializer, with a direct path for the types records hold."""

    # Typed Any: the stubs' return type is a private TypedDict; to_wire below names ours.
    def serialize(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return {"S": value}
        if kind is bool:
            return {"BOOL": value}
        if kind is int and -_MAX_PLAIN_INT < value < _MAX_PLAIN_INT:
            return {"N": str(value)}
        if kind is dict:
            return {"M": {k: self.serialize(v) for k, v in value.items()}}
        if kind is list:
            return {"L": [self.serialize(v) for v in value]}
        if value is None:
            return {"NULL": True}
        # Decimal, bytes, Binary, sets, tuples, subclasses, ints past 38 digits: boto3's
        # (which calls this method back for the members of a map or list).
        return dict(super().serialize(value))


class Deserializer(TypeDeserializer):
    """boto3's TypeDeserializer, with a direct path for the commonest kinds (pull decodes
    every attribute of every item it serves); B and BS may also come as base64 text (a
    Lambda event)."""

    def deserialize(self, value: Any) -> Any:
        if len(value) == 1:  # else boto3's (which refuses an empty value)
            if "S" in value:
                return value["S"]
            if "N" in value:
                return DYNAMODB_CONTEXT.create_decimal(value["N"])  # as boto3 does
            if "M" in value:
                return {k: self.deserialize(v) for k, v in value["M"].items()}
            if "L" in value:
                return [self.deserialize(v) for v in value["L"]]
            if "BOOL" in value:
                return value["BOOL"]
        return super().deserialize(value)

    def _deserialize_b(self, value: bytes | str) -> Binary:
        return Binary(base64.b64decode(value) if isinstance(value, str) else value)

    def _deserialize_bs(self, value: list[bytes | str]) -> set[Binary]:
        return {self._deserialize_b(v) for v in value}


_serializer = Serializer()
_deserializer = Deserializer()

# Bound methods, not wrappers: to_wire runs for every field push writes.
to_wire: Callable[[Any], AttributeValue] = _serializer.serialize
# (the stubs want their private TypedDict; any typed value read from DynamoDB is one)
from_wire: Callable[[Mapping[str, Any]], Any] = cast(Any, _deserializer.deserialize)


def to_native(value: Any) -> Any:
    """A record value in the form DynamoDB stores: numbers as pysync.values.storable_number
    gives them (floats become Decimal, never binary; 0E+200 becomes 0), so the serializer
    takes every number the push's check took."""
    if type(value) is str:  # the common case first: push encodes every field it writes
        return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, Decimal)):
        return storable_number(value)
    if isinstance(value, dict):
        return {k: to_native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_native(v) for v in value]
    return value


def from_native(value: Any) -> Any:
    """A value read from DynamoDB as a record value: Binary -> bytes, sets -> sorted lists
    (other programs may write sets; records have none)."""
    if isinstance(value, Binary):
        return bytes(cast(Any, value))  # Binary implements __bytes__; its stub does not say
    if isinstance(value, (set, frozenset)):
        return sorted(from_native(v) for v in value)
    if isinstance(value, dict):
        return {k: from_native(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_native(v) for v in value]
    return value


def record_value(av: Mapping[str, Any]) -> Any:
    """A typed value as a record value."""
    return from_native(from_wire(av))


def protocol_json(av: Mapping[str, Any]) -> Any:
    """A typed value as protocol JSON, as pysync.protocol renders a record's value: bytes as
    {"$bytes": base64}, sets as sorted lists, integral numbers as ints, others as Decimal."""
    if len(av) == 1:  # pull renders every attribute it serves: the commonest kinds directly
        if "S" in av:
            return av["S"]
        if "BOOL" in av:
            return av["BOOL"]
        number = av.get("N")
        if type(number) is str and len(number) < 16:
            digits = number[1:] if number[:1] == "-" else number
            if digits.isascii() and digits.isdigit():
                return int(number)  # an integer: what to_json makes of an integral Decimal
    return to_json(record_value(av))


def from_event(av: Mapping[str, Any]) -> AttributeValue:
    """A typed value of a Lambda event (JSON: B and BS as base64 text) in the wire form boto3
    gives (bytes)."""
    return to_wire(from_wire(av))
