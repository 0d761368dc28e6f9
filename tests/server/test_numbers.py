"""One number rule: pysync.values' check and the server's item serializer agree (CPython).

A number the push's check takes must serialize (else push answers 500 on every retry and the
client's queue sticks); one it refuses is `rejected`, never sent to DynamoDB.
"""

from __future__ import annotations

from decimal import Decimal

from boto3.dynamodb.types import TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from pysync.errors import InvalidValue
from pysync.merge import RecordState
from pysync.values import check_record
from server.records import encode_item

_decimals = st.builds(
    lambda sign, digits, exponent: Decimal((sign, tuple(digits), exponent)),
    st.integers(0, 1), st.lists(st.integers(0, 9), min_size=1, max_size=45),
    st.integers(-220, 220))
_numbers = st.one_of(_decimals, st.integers(-(10**60), 10**60),
                     st.floats(allow_nan=False, allow_infinity=False))


@given(_numbers)
def test_the_check_and_the_item_serializer_take_the_same_numbers(n: int | float | Decimal) -> None:
    record = {"x": n, "m": {"y": [n]}}
    try:
        check_record(record)
    except InvalidValue:
        return
    state = RecordState(fields=record, version=1, hlc="", stamps={}, deleted=False, exists=True)
    item = encode_item("u#a", "todos", "k", state, "c:1")
    stored = item["x"]["N"]
    # DynamoDB's own form of the same number: equal in value, boto3 reads it back.
    assert TypeSerializer().serialize(Decimal(stored)) == {"N": stored}
    assert Decimal(stored) == Decimal(repr(n) if isinstance(n, float) else n)
