"""Stream record -> what the feed must do with it. Pure functions, no I/O (tested on CPython).

A stream record of the items table is one of:
- a pysync-stamped change: NewImage carries `_v` greater than OldImage's (or OldImage has
  none). It goes into its scope's change log as it is.
- a write by another program (no `_v`, or `_v` not increased): the feed *stamps* it in place
  (`_v` = max(old, new) + 1, a server HLC above the record's `_hlc`, `_fh` for the changed
  fields) with a conditional
  update; the stamp's own stream record is then a pysync-stamped change and is logged.
  So every logged state exists in the table with that version, and a push based on the
  pre-change version is a conflict (docs/feed.md, "Writes from other programs").
- the removal of a live item by another program: the feed writes a tombstone in its place
  (version + 1), whose stream record is logged as a delete.
- the removal of a tombstone (TTL expiry), or an item whose keys are not pysync's: ignored.

Images are DynamoDB-typed attribute maps (`{"S": "x"}`), with B as bytes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from pysync.hlc import ClockError, Stamp
from server.items import record_fields, split_sort_key

AttrMap: TypeAlias = dict[str, Any]  # attribute name -> typed AttributeValue


@dataclass(frozen=True)
class LogEntry:
    """One change as it goes into the log: the item's state at `version`."""

    scope: str
    item_key: str  # the items table's sk: "<collection>#<key>"
    version: int
    deleted: bool
    fields: AttrMap  # the record's fields, typed; empty for a delete
    hlc: str | None
    writer: str | None
    seq: str  # stream sequence number (for diagnostics)
    # Set when the previous state had no `_v` (an outside write not stamped yet): a pysync
    # write over it may have restarted from version 1, below what clients hold. The feed
    # then checks the version against the log and, if it is not above, restamps with this.
    restamp: StampForeign | None = None
    # The log holds this change without its fields (too deep or too large for a log entry,
    # or refused by DynamoDB): a pull reads the item itself when it serves it (docs/feed.md).
    fetch: bool = False


@dataclass(frozen=True)
class StampForeign:
    """Give a write by another program pysync's meta, if the item is still as we saw it."""

    scope: str
    item_key: str
    expected_version: int | None  # the `_v` the item has now (None: no `_v`)
    version: int
    changed_fields: tuple[str, ...]
    fh: AttrMap  # the item's current per-field HLC map (typed), to extend
    fields: AttrMap = field(default_factory=dict)  # the record's fields this version covers
    # The newest `_hlc` the record showed (old or new image): the stamp must be above it,
    # so that under merge and lww the outside write wins as the write that came last.
    after: str | None = None


@dataclass(frozen=True)
class TombstoneForeign:
    """Replace an item deleted by another program with a tombstone one version higher."""

    scope: str
    item_key: str
    version: int
    after: str | None = None  # the removed item's `_hlc`: the tombstone's stamp is above it


Action: TypeAlias = LogEntry | StampForeign | TombstoneForeign


def version_of(image: AttrMap | None) -> int | None:
    if not image or "_v" not in image:
        return None
    raw = image["_v"]
    if "N" not in raw:
        return None
    try:
        return int(raw["N"])
    except ValueError:  # "1.5": not a pysync version
        return None


def is_tombstone(image: AttrMap | None) -> bool:
    return image is not None and image.get("_del", {}).get("BOOL") is True


def _string(image: AttrMap | None, name: str) -> str | None:
    if not image or name not in image:
        return None
    value = image[name].get("S")
    return value if isinstance(value, str) else None


def pysync_keys(keys: AttrMap) -> tuple[str, str] | None:
    """(scope, item_key) if the record's keys follow pysync's layout, else None."""
    scope, item_key = _string(keys, "pk"), _string(keys, "sk")
    if not scope or not item_key:
        return None
    collection, key = split_sort_key(item_key)
    if not collection or not key:
        return None
    return scope, item_key


def newest_hlc(*images: AttrMap | None) -> str | None:
    """The newest well-formed `_hlc` among the images (another program may write anything)."""
    stamps: list[Stamp] = []
    for image in images:
        text = _string(image, "_hlc")
        if text:
            with contextlib.suppress(ClockError):  # not a stamp: nothing to be above
                stamps.append(Stamp.parse(text))
    return str(max(stamps)) if stamps else None


def changed_fields(old: AttrMap | None, new: AttrMap) -> tuple[str, ...]:
    before, after = record_fields(old or {}), record_fields(new)
    names = set(before) | set(after)
    return tuple(sorted(n for n in names if before.get(n) != after.get(n)))


def classify(record: dict[str, Any]) -> Action | None:
    """The action for one stream record (the `Records[]` shape of GetRecords or Lambda)."""
    body = record.get("dynamodb") or {}
    keys = pysync_keys(body.get("Keys") or {})
    if keys is None:
        return None
    scope, item_key = keys
    event = record.get("eventName")
    seq = str(body.get("SequenceNumber", ""))
    old: AttrMap | None = body.get("OldImage")
    new: AttrMap | None = body.get("NewImage")
    old_v = version_of(old)

    if event == "REMOVE":
        if old is None or is_tombstone(old):
            return None  # a tombstone expired (TTL) or was removed: clients already have it
        return TombstoneForeign(scope, item_key, (old_v or 0) + 1, newest_hlc(old))

    if new is None:
        return None
    new_v = version_of(new)
    if new_v is not None and (old_v is None or new_v > old_v):
        deleted = is_tombstone(new)
        restamp = None
        if old is not None and old_v is None:
            restamp = StampForeign(scope, item_key, new_v, new_v + 1,
                                   changed_fields(old, new), new.get("_fh", {}).get("M") or {},
                                   record_fields(new), newest_hlc(old, new))
        return LogEntry(scope, item_key, new_v, deleted,
                        {} if deleted else record_fields(new),
                        _string(new, "_hlc"), _string(new, "_w"), seq, restamp)
    fh = new.get("_fh", {}).get("M") or {}
    return StampForeign(scope, item_key, new_v, max(old_v or 0, new_v or 0) + 1,
                        changed_fields(old, new), fh, record_fields(new), newest_hlc(old, new))
