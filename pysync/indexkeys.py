"""Index keys computed in Python, so every declared index works on every value type.

IndexedDB refuses booleans, null and objects as keys, so an index on a raw field silently
skips the records that hold them. Instead every record row carries, beside its value, one
computed key per declared index:

    [collection, index_name, tag1, v1, tag2, v2, ..., record_key]

(`collection` is the local name: a shared scope's records are indexed apart, schema.local_name.)

Each field becomes a (tag, native) pair whose native part is a valid IndexedDB key. Tags order
types first, then values within a type:

    0 missing < 1 null < 2 false/true < 3 numbers < 4 strings < 5 bytes < 6 lists < 7 maps

Numbers compare numerically (as doubles: integers beyond 2**53 and 38-digit decimals are
rounded in the key, never in the value); strings by UTF-16 code unit (IndexedDB's order, the
same as Python's except astral characters sort before U+E000..U+FFFF); bytes by their bytes
(hex); lists and maps by their canonical JSON text. The record key at the end makes every
index key unique, so pages can resume after the last key seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeAlias

from pysync.errors import InvalidValue, SchemaError
from pysync.protocol import dumps
from pysync.schema import Collection, Index
from pysync.values import Record, to_json

IndexKey: TypeAlias = list[Any]

MISSING, NULL, BOOL, NUMBER, STRING, BYTES, LIST, MAP = range(8)
# An empty array sorts after every number and string in IndexedDB: "just past this prefix".
HIGH: list[Any] = []
# "Not given": a query bound left out, or a field a record lacks (merge.ABSENT is another
# thing: the state of a record that does not exist).
UNSET: Any = object()


def encode_field(value: object) -> list[Any]:
    """One field as a (tag, native key) pair."""
    if value is UNSET:
        return [MISSING, 0]
    if value is None:
        return [NULL, 0]
    if isinstance(value, bool):
        return [BOOL, int(value)]
    if isinstance(value, (int, float, Decimal)):
        return [NUMBER, float(value)]
    if isinstance(value, str):
        return [STRING, value]
    if isinstance(value, bytes):
        return [BYTES, value.hex()]
    if isinstance(value, (list, tuple)):
        return [LIST, _canonical(list(value))]
    if isinstance(value, dict):
        return [MAP, _canonical(value)]
    raise InvalidValue(f"{type(value).__name__} cannot be indexed")


def _canonical(value: list[Any] | dict[str, Any]) -> str:
    """Canonical JSON text of a list or map (sorted keys, Decimals written exactly)."""
    return dumps(to_json(value), sort_keys=True)


def _encode_values(values: Sequence[object]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        out += encode_field(v)
    return out


def projection(index: Index, value: Record) -> list[Any]:
    return _encode_values([value.get(f, UNSET) for f in index.fields])


def index_keys(collection: Collection, key: str, value: Record) -> list[IndexKey]:
    """The multiEntry `ix` keys of a live record: one per declared index."""
    return [[collection.local_name, i.name, *projection(i, value), key]
            for i in collection.indexes]


def unique_keys(collection: Collection, value: Record) -> list[IndexKey]:
    """The multiEntry `ux` keys (no record key: two records with one projection clash).

    Like SQL's NULL, a missing or null field takes no part in a unique constraint.
    """
    return [[collection.local_name, i.name, *projection(i, value)]
            for i in collection.indexes
            if i.unique and all(value.get(f) is not None for f in i.fields)]


def _prefix(index: Index, values: object) -> list[Any]:
    """A query value as a key prefix: a tuple of up to len(fields) values, or one value."""
    if not isinstance(values, tuple):
        values = (values,)
    if len(values) > len(index.fields):
        raise SchemaError(f"index {index.name!r} has {len(index.fields)} field(s), "
                          f"the query gives {len(values)}")
    return _encode_values(values)


Bound: TypeAlias = tuple[IndexKey, bool]  # (key, open)


def index_range(collection: Collection, index: Index, *, equals: object = UNSET,
                lower: object = UNSET, upper: object = UNSET, lower_open: bool = False,
                upper_open: bool = False) -> tuple[Bound, Bound]:
    """The IndexedDB key range over `ix` for a query on one index.

    `equals`, `lower` and `upper` take a value (one-field index) or a tuple that is a prefix
    of the index's fields; a prefix matches every record that starts with it.
    """
    base: list[Any] = [collection.local_name, index.name]
    if equals is not UNSET:
        lower = upper = equals
        lower_open = upper_open = False
    if lower is UNSET:
        lo: Bound = (base, False)
    else:
        p = base + _prefix(index, lower)
        lo = ([*p, HIGH], True) if lower_open else (p, False)
    if upper is UNSET:
        hi: Bound = ([*base, HIGH], False)
    else:
        p = base + _prefix(index, upper)
        hi = (p, True) if upper_open else ([*p, HIGH], False)
    return lo, hi


def key_range(collection: str, *, lower: str | None = None, upper: str | None = None,
              lower_open: bool = False, upper_open: bool = False) -> tuple[Bound, Bound]:
    """The range over the `live` index ([collection, key]) for a query by record key."""
    lo: Bound = ([collection, lower], lower_open) if lower is not None else ([collection], False)
    hi: Bound = ([collection, upper], upper_open) if upper is not None else \
        ([collection, HIGH], False)
    return lo, hi
