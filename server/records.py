"""Items of the items table <-> records, with pysync's meta attributes (docs/server.md).
Typed values are encoded and decoded by server/codec.py.

An item is `pk` (scope), `sk` ("<collection>#<key>"), the record's fields as top-level
attributes, and the meta attributes:

  _v    N     version, +1 on every pysync write
  _hlc  S     newest HLC stamp that touched the record
  _fh   M     merge collections: field -> stamp of the write that set (or removed) it
  _h    M     field -> short hash of the value pysync wrote; lets pysync see which fields
              another program changed, added or removed behind its back
  _del  BOOL  tombstone (fields gone, item kept so stale writes can lose to it)
  _ttl  N     tombstone expiry (epoch seconds; DynamoDB TTL removes it)
  _w    S     last pysync writer, "<client_id>:<mutation_id>"

Items written by other programs (no meta, or fields that do not match `_h`) are "foreign":
see `StoredRecord` and server.push's adoption rule. The layout's rules (key attributes, sort
key, which attributes are fields) are in server/items.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from boto3.dynamodb.types import Binary

from pysync.merge import ABSENT, RecordState
from pysync.protocol import ServerRecord
from pysync.values import is_record_field
from server.codec import from_native, from_wire, to_native, to_wire
from server.items import KEY_ATTRIBUTES, Item, item_key, record_fields

TOMBSTONE_TTL_SECONDS = 30 * 24 * 3600
MAX_ITEM_BYTES = 400 * 1024



def _canonical(value: Any) -> Any:
    if value is None:
        return "z"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (int, float, Decimal)):
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return ["n", "0" if d.is_zero() else str(d.normalize())]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, (bytes, bytearray, Binary)):
        return ["b", bytes(cast(Any, value)).hex()]
    if isinstance(value, Mapping):
        return ["m", [[k, _canonical(value[k])] for k in sorted(value)]]
    if isinstance(value, (set, frozenset)):
        return ["l", sorted((_canonical(v) for v in value), key=json.dumps)]
    return ["l", [_canonical(v) for v in value]]


# json.dumps(..., separators=(",", ":"), ensure_ascii=False) without building an encoder
# per call (the same output: the other options are json.dumps's defaults).
_canonical_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def field_hash(value: Any) -> str:
    """A short digest of a field's value, equal for values DynamoDB stores identically."""
    text = _canonical_json(_canonical(value))
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=6).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class StoredRecord:
    """One item of the items table, decoded. `state` already counts a foreign write that
    kept the meta: its version is `_v + 1`, and the fields it changed, added or removed are
    in `foreign_fields`. An item with no meta at all (`stored_version` None) has every field
    foreign and version 0 until adopted (server.push gives it a fresh version)."""

    collection: str
    key: str
    state: RecordState
    foreign_fields: frozenset[str] = frozenset()
    stored_version: int | None = None  # _v as stored (None: no item or no meta)
    # The fields exactly as stored (DynamoDB wire form), for write conditions.
    raw_fields: Mapping[str, Any] = field(default_factory=dict)
    # Not read but assumed absent (server.push, for a `put` by a client that never had the
    # record): only a write conditioned on the item's absence may rely on it.
    assumed: bool = False
    # No item, but the log holds versions of it or push marked its birth (server.push.
    # _after_log): another program deleted it outright, and versions of that earlier life
    # may not be logged yet. `earlier_hlc`: the newest of its stamps known ("" if none);
    # `born_by`: the writer of the birth mark when nothing of it is logged (it may be that
    # writer's own attempt, which failed, and not an earlier life).
    earlier_life: bool = False
    earlier_hlc: str = ""
    born_by: str = ""

    @property
    def foreign(self) -> bool:
        return bool(self.foreign_fields) or (self.state.exists and self.stored_version is None)


def decode_item(item: Mapping[str, Any] | None, collection: str, key: str) -> StoredRecord:
    if not item:
        return StoredRecord(collection, key, ABSENT)
    attrs = {name: from_wire(v) for name, v in item.items()
             if name not in KEY_ATTRIBUTES}
    fields = {k: from_native(v) for k, v in attrs.items() if is_record_field(k)}
    stored_v = attrs.get("_v")
    hashes: Mapping[str, str] = attrs.get("_h") or {}
    deleted = bool(attrs.get("_del", False)) and not fields
    foreign = frozenset(
        [name for name, value in fields.items() if hashes.get(name) != field_hash(value)]
        + [name for name in hashes if name not in fields and not deleted]
    )
    # A foreign change that kept the meta (an UpdateItem) counts as one more version; an
    # item without meta has no version until pysync adopts it (server.push).
    version = int(stored_v) + (1 if foreign else 0) if stored_v is not None else 0
    state = RecordState(
        fields=fields, version=version, hlc=str(attrs.get("_hlc") or ""),
        stamps={k: str(v) for k, v in (attrs.get("_fh") or {}).items()},
        deleted=deleted, exists=True,
    )
    return StoredRecord(collection, key, state, foreign,
                        int(stored_v) if stored_v is not None else None, record_fields(item))


def encode_item(scope: str, collection: str, key: str, state: RecordState, writer: str,
                now: float | None = None, tombstone_s: float = TOMBSTONE_TTL_SECONDS) -> Item:
    native: dict[str, Any] = {}
    for name, value in state.fields.items():
        native[name] = to_native(value)
    native["_v"] = state.version
    native["_hlc"] = state.hlc
    native["_h"] = {name: field_hash(value) for name, value in native.items()
                    if is_record_field(name)}
    if state.stamps:
        native["_fh"] = dict(state.stamps)
    native["_del"] = state.deleted
    if state.deleted:
        native["_ttl"] = int((now if now is not None else time.time()) + tombstone_s)
    native["_w"] = writer
    item = item_key(scope, collection, key)
    item.update({name: to_wire(value) for name, value in native.items()})
    return item


def server_record(record: StoredRecord) -> ServerRecord:
    s = record.state
    return ServerRecord(record.collection, record.key, s.version, s.deleted,
                        None if s.deleted else dict(s.fields), s.hlc or None)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _value_size(av: Mapping[str, Any]) -> int:
    # Membership tests on the one-key dict, commonest kinds first: this runs for every
    # attribute of every item push writes.
    if "S" in av:
        return _utf8_len(av["S"])
    if "N" in av:
        return len(av["N"]) + 1
    if "M" in av:
        return 3 + sum(1 + _utf8_len(k) + _value_size(x) for k, x in av["M"].items())
    if "BOOL" in av or "NULL" in av:
        return 1
    if "L" in av:
        return 3 + sum(1 + _value_size(x) for x in av["L"])
    if "B" in av:
        return len(av["B"])
    for kind in ("SS", "NS", "BS"):
        if kind in av:
            return sum(_value_size({kind[0]: x}) for x in av[kind])
    raise ValueError(f"not a DynamoDB attribute value: {av!r}")


def item_size(item: Mapping[str, Any]) -> int:
    """An upper estimate of an item's size as DynamoDB counts it against the 400 KB limit."""
    return sum(_utf8_len(name) + _value_size(av) for name, av in item.items())
