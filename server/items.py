"""The items table's layout: key attributes, sort key, meta attributes, record fields.

An item is `pk` (the scope), `sk` ("<collection>#<key>"), the record's fields as top-level
attributes, and pysync's meta attributes, whose names start with "_" (server/records.py
lists them). These are the rules every module that reads or writes items uses (push, pull,
the change feed, the Lambda handler); the two a client also needs (the key attribute names
and the reserved "_" prefix, which no field name may use) live in pysync/values.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from pysync.values import KEY_ATTRIBUTES, RESERVED_PREFIX, is_record_field

__all__ = [
    "EXTERNAL_WRITER", "KEY_ATTRIBUTES", "META_ATTRIBUTES", "RESERVED_PREFIX", "Item",
    "is_record_field", "item_key", "record_fields", "sort_key", "split_sort_key",
]

Item: TypeAlias = dict[str, Any]  # a DynamoDB item in wire form: {"attr": {"S": "..."}, ...}

META_ATTRIBUTES = frozenset({"_v", "_hlc", "_fh", "_h", "_del", "_ttl", "_w"})
# `_w` of the versions the change feed gives to other programs' writes when it stamps them
# (server/ingest.py). The stamp writes `_h` too, so a second outside write landing after
# the stamp is still seen as foreign.
EXTERNAL_WRITER = "external"

SORT_KEY_SEPARATOR = "#"


def sort_key(collection: str, key: str) -> str:
    return f"{collection}{SORT_KEY_SEPARATOR}{key}"


def split_sort_key(sk: str) -> tuple[str, str]:
    """(collection, key) of a sort key; collection names cannot hold "#", keys can."""
    collection, _, key = sk.partition(SORT_KEY_SEPARATOR)
    return collection, key


def item_key(scope: str, collection: str, key: str) -> Item:
    return {"pk": {"S": scope}, "sk": {"S": sort_key(collection, key)}}


def record_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item's (or stream image's) record fields, as they are: no keys, no meta."""
    return {k: v for k, v in item.items() if is_record_field(k)}
