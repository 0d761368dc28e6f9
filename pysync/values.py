"""What a record may hold, and how it travels as JSON.

A record is a dict of fields. Values are JSON types plus bytes: None, bool, int, float
(finite), str, bytes, list and dict. Numbers must fit DynamoDB's N type as boto3 writes it
(`storable_number`: at most 38 significant digits, magnitude between 1e-130 and 1e126; zero
is stored as 0). Field names starting with "_" are
reserved for pysync's meta attributes, and "pk" / "sk" are the DynamoDB key attributes (a
field with one of those names would overwrite the item's key). A record's DynamoDB size must
stay under MAX_RECORD_BYTES. Bytes travel as {"$bytes": "<base64>"}, so a map whose
only key is "$bytes" means bytes, and "$bytes" is not allowed as a key in any other map.
"""

from __future__ import annotations

import base64
import binascii
import math
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias

from pysync.errors import InvalidValue

Value: TypeAlias = Any  # None | bool | int | float | Decimal | str | bytes | list[Value] | dict
Record: TypeAlias = dict[str, Any]

BYTES_TAG = "$bytes"
# DynamoDB takes 32 levels of nesting in one attribute: an item attribute holding 31 nested
# lists is the deepest it stores (measured on DynamoDB Local 3.3.1). The change log keeps a
# record's fields inside one map attribute (`f`, docs/feed.md), one level more than the
# item, so a field's value gets 31 levels (the value itself is level 1: at most 30 nested
# lists or maps). This is the limit push enforces: a record it accepts always fits the log.
DYNAMODB_MAX_NESTING = 32
MAX_DEPTH = DYNAMODB_MAX_NESTING - 1
MAX_DIGITS = 38
MAX_KEY_BYTES = 1024 - 65  # DynamoDB sort key limit minus "<collection>#"
MAX_RECORD_BYTES = 350_000  # leaves room for meta attributes under DynamoDB's 400 KB item limit
_MAX_EXPONENT = 125
_MIN_EXPONENT = -130
_MIN_DIGIT_EXPONENT = -165  # boto3's DYNAMODB_CONTEXT: Emin (-128) - prec (38) + 1
_SMALL_INT = 10**18
MAX_NAME_BYTES = 65_535
# The items table's key attributes: records are stored with their fields as top-level
# attributes, so these names cannot be fields.
KEY_ATTRIBUTES = frozenset({"pk", "sk"})
# Names starting with this are pysync's meta attributes on the server (`_v`, `_hlc`, ...):
# never a field name.
RESERVED_PREFIX = "_"


def is_record_field(name: str) -> bool:
    """Whether an attribute of a stored item is one of the record's fields (not a key, not
    meta): the one rule push, pull and the feed use to tell fields from bookkeeping."""
    return name not in KEY_ATTRIBUTES and not name.startswith(RESERVED_PREFIX)


def _check_str(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue("string holds a lone surrogate (not valid UTF-8)", path) from None


def _shown(name: str) -> str:
    """A field name as an error's path: lone surrogates escaped, so that the message can be
    encoded as UTF-8 (the push response carries it; a raw one failed to render)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_name_bytes(name: str, path: str, what: str) -> None:
    """DynamoDB refuses empty attribute names and names over 64 KB, at every level."""
    _check_str(name, path)
    if name == "":
        raise InvalidValue(f"{what} is empty", path)
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidValue(f"{what} is longer than {MAX_NAME_BYTES} UTF-8 bytes", path)


def storable_number(n: int | float | Decimal, path: str = "") -> int | Decimal:
    """`n` exactly as DynamoDB's N holds it, or InvalidValue. The one number rule.

    The client's checks and the server's item serializer (server/codec.py to_native) both
    go through here, so they cannot disagree. Zero of any sign or exponent is 0 (DynamoDB
    stores zero as 0; boto3 refuses 0E+200 outright) and trailing zeros are dropped
    (1e50 written out as 51 digits is 1E+50, 38 significant digits). What is left must
    be what boto3 writes without rounding (its DYNAMODB_CONTEXT traps every rounding) and
    DynamoDB accepts: at most 38 significant digits, magnitude 1e-130 .. below 1e126, and
    no significant digit below 1e-165 (boto3's smallest exponent, Emin - precision + 1).
    """
    if type(n) is int and -_SMALL_INT < n < _SMALL_INT:
        return n  # the common case, without a Decimal
    if isinstance(n, float) and not math.isfinite(n):
        raise InvalidValue(f"{n!r} is not a finite number", path)
    try:
        d = Decimal(repr(n)) if isinstance(n, float) else Decimal(n)
    except InvalidOperation:
        raise InvalidValue(f"{n!r} is not a number", path) from None
    if not d.is_finite():
        raise InvalidValue(f"{n!r} is not a finite number", path)
    if d.is_zero():
        return Decimal(0)
    # Not d.normalize(): it rounds to the context's 28 digits and would hide a 39th.
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)  # finite
    significant = len(digits)
    while digits[significant - 1] == 0:
        significant -= 1
    exponent += len(digits) - significant
    digits = digits[:significant]
    if significant > MAX_DIGITS:
        raise InvalidValue(f"number has more than {MAX_DIGITS} significant digits", path)
    adjusted = exponent + significant - 1
    if adjusted > _MAX_EXPONENT or adjusted < _MIN_EXPONENT:
        raise InvalidValue("number is out of DynamoDB's range (1e-130 .. 1e126)", path)
    if exponent < _MIN_DIGIT_EXPONENT:
        raise InvalidValue("number has a significant digit below 1e-165 "
                           "(boto3 cannot write it exactly)", path)
    return Decimal((sign, digits, exponent))


def _check_number(n: int | float | Decimal, path: str) -> int:
    """Check `n` fits DynamoDB's N type; return its stored size in bytes."""
    stored = storable_number(n, path)
    if isinstance(stored, int):
        return len(str(abs(stored))) // 2 + 2
    if stored.is_zero():
        return 2
    # DynamoDB: about one byte per two significant digits, plus one.
    return (len(stored.as_tuple().digits) + 1) // 2 + 1


def check_field_name(name: object, path: str = "") -> None:
    if not isinstance(name, str):
        raise InvalidValue(f"field names must be strings, not {type(name).__name__}", path)
    if name == "":
        raise InvalidValue("field name is empty", path)
    _check_name_bytes(name, path, "field name")
    if name.startswith(RESERVED_PREFIX):
        raise InvalidValue(f"field name {name!r} is reserved (starts with {RESERVED_PREFIX!r})",
                           path)
    if name == BYTES_TAG:
        raise InvalidValue(f"{BYTES_TAG!r} is reserved (the bytes wrapper)", path)
    if name in KEY_ATTRIBUTES:
        raise InvalidValue(f"field name {name!r} is reserved (a DynamoDB key attribute)", path)


def _check(value: object, path: str, depth: int) -> int:
    """Validate one value; return its size as DynamoDB counts it (bytes)."""
    if depth > MAX_DEPTH:
        raise InvalidValue(f"nested deeper than {MAX_DEPTH} levels", path)
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, (int, float, Decimal)):
        return _check_number(value, path)
    if isinstance(value, str):
        _check_str(value, path)
        return len(value.encode("utf-8"))
    if isinstance(value, (list, tuple)):
        return 3 + sum(1 + _check(item, f"{path}[{i}]", depth + 1)
                       for i, item in enumerate(value))
    if isinstance(value, dict):
        size = 3
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidValue(f"map keys must be strings, not {type(k).__name__}", path)
            if k == BYTES_TAG:
                raise InvalidValue(f"{BYTES_TAG!r} is reserved as a map key", path)
            _check_name_bytes(k, path, "map key")
            size += 1 + len(k.encode("utf-8")) + _check(v, f"{path}.{k}" if path else k,
                                                        depth + 1)
        return size
    if isinstance(value, (set, frozenset)):
        raise InvalidValue("sets are not supported: use a list", path)
    raise InvalidValue(f"{type(value).__name__} is not a storable value", path)


def record_size(record: Record) -> int:
    """The record's size as a DynamoDB item (field names + values), without pysync's meta."""
    return sum(len(name.encode("utf-8")) + _check(value, _shown(name), 1)
               for name, value in record.items())


def check_record(record: object) -> Record:
    """Validate a whole record (a dict of fields); return it unchanged or raise InvalidValue."""
    if not isinstance(record, dict):
        raise InvalidValue(f"a record must be a dict, not {type(record).__name__}")
    size = 0
    for name, value in record.items():
        path = _shown(name) if isinstance(name, str) else str(name)
        check_field_name(name, path)
        size += len(name.encode("utf-8")) + _check(value, path, 1)
    if size > MAX_RECORD_BYTES:
        raise InvalidValue(f"the record is {size} bytes as a DynamoDB item; "
                           f"at most {MAX_RECORD_BYTES} are allowed")
    return record


def check_key(key: object) -> str:
    """Validate a record key: a non-empty string of at most MAX_KEY_BYTES UTF-8 bytes."""
    if not isinstance(key, str):
        raise InvalidValue(f"keys must be strings, not {type(key).__name__}")
    if key == "":
        raise InvalidValue("key is empty")
    _check_str(key, "key")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidValue(f"key is longer than {MAX_KEY_BYTES} UTF-8 bytes")
    return key


def to_json(value: Value) -> Any:
    """A value as plain JSON data: bytes become {"$bytes": base64}.

    Integral Decimals (what DynamoDB gives back for every number) become ints; other
    Decimals stay Decimal, to be written exactly by pysync.protocol.dumps (json.dumps refuses
    them rather than round them through a binary float).
    """
    if isinstance(value, bytes):
        return {BYTES_TAG: base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


def from_json(data: Any, _depth: int = 0) -> Value:
    """The inverse of to_json: {"$bytes": base64} becomes bytes again."""
    if _depth > DYNAMODB_MAX_NESTING:
        # Bounded so that hostile nesting is refused instead of exhausting the stack; the
        # bound is DynamoDB's, so whatever another program stored still reaches clients.
        raise InvalidValue(f"nested deeper than {DYNAMODB_MAX_NESTING} levels")
    if isinstance(data, dict):
        if BYTES_TAG in data:
            if len(data) != 1 or not isinstance(data[BYTES_TAG], str):
                raise InvalidValue(f"a {BYTES_TAG!r} wrapper holds exactly one base64 string")
            try:
                return base64.b64decode(data[BYTES_TAG], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidValue(f"{BYTES_TAG!r} is not valid base64") from None
        return {k: from_json(v, _depth + 1) for k, v in data.items()}
    if isinstance(data, list):
        return [from_json(v, _depth + 1) for v in data]
    return data
