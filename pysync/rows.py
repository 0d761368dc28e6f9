"""Record rows of the `records` store and how local writes, server changes and push results
change them. Pure logic, no I/O: the store reads rows in a transaction, calls these, and
writes what they return in the same transaction.

A row holds the record as the app sees it (`value`, with pending local edits applied), the
server's copy as last confirmed (`version`, `server_value`), how many outbox entries touch it
(`entries`) and, if one of them can still be merged into, a description of it (`pending`):
a local write needs only the row to coalesce, never a read of the outbox.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any, Final, Required, TypedDict

from pysync.errors import NotFound
from pysync.indexkeys import IndexKey, index_keys, unique_keys
from pysync.outbox import Entry, apply_op, coalesce, dump_value, load_value, rebase
from pysync.protocol import MutationResult, Op, ServerRecord
from pysync.schema import Collection, local_name
from pysync.values import Record

RESYNC_MARK: Final = "rs"  # a record row's `resync` flag, as stored

class StoredRecordRow(TypedDict, total=False):
    """A row of the `records` store as stored. Short keys, as every row is stored whole;
    docs/local-store.md tables them."""

    k: Required[list[str]]  # [collection, key]: the store's key path
    v: Required[str | None]  # the visible value as JSON text (outbox.dump_value); None: deleted
    h: str  # the newest field stamp (HLC) of `v`
    fh: dict[str, str]  # the field stamps older than `h`, by field
    sv: int  # the server's version last confirmed
    sh: str  # the server's stamp last confirmed
    l: list[str]  # noqa: E741 (= k while the record is live: the `live` index)
    ix: list[IndexKey]  # the app indexes' keys: the multiEntry `ix` index
    ux: list[IndexKey]  # the unique indexes' keys: the multiEntry unique `ux` index
    n: int  # how many outbox entries touch the record
    sb: str  # while n > 0 and the server has the record: its confirmed copy as JSON text
    # The entry that can still be merged into (Pending): [order, op, a patch's own fields as
    # JSON text, base_version, chained, stamp] and, for a `version` collection's entry, its
    # base record as JSON text (null: absent) as a 7th element.
    p: list[Any]
    st: bool  # the server has our write but its version is unknown (stale)
    rs: int  # 1 while a resync has yet to confirm the record (RESYNC_MARK)


def _dump(value: Record | None) -> str | None:
    return None if value is None else dump_value(value)


def _load(text: str | None) -> Record | None:
    return None if text is None else load_value(text)


@dataclass(frozen=True)
class Pending:
    """The record's outbox entry that has not been taken for sending (so may be merged into)."""

    order: int
    op: Op
    # A patch's own fields and values: the visible value cannot give them back once a
    # later put, or a server delete, has changed it. A put's value is the visible value.
    patch: Record | None
    base_version: int | None
    chained: bool
    hlc: str
    base: Record | None = None  # the entry's base record (outbox.Entry.base), if base_known
    base_known: bool = False

    def to_list(self) -> list[Any]:
        """As stored in a record row's `p`."""
        out = [self.order, self.op, _dump(self.patch), self.base_version, self.chained,
               self.hlc]
        if self.base_known:
            out.append(_dump(self.base))
        return out


@dataclass(frozen=True)
class RecordRow:
    collection: str
    key: str
    value: Record | None  # what the app sees; None: deleted
    stamps: dict[str, str]  # per-field HLC of `value`
    version: int | None = None  # the server's version last confirmed; None: never seen
    server_value: Record | None = None  # the confirmed copy; None: absent or deleted there
    server_hlc: str | None = None
    entries: int = 0  # outbox entries of this record, taken for sending or not
    pending: Pending | None = None
    # The server has our write but did not say its version (a `duplicate` answer after a
    # lost response): the next edit's base_version waits for a pull.
    stale: bool = False
    # A resync (after the server reset this client's cursor) has yet to confirm the
    # server's copy: the copy predates the reset, and if the resync's snapshot lacks the
    # record, it is gone from the server (see unconfirmed()).
    resync: bool = False

    @property
    def in_flight(self) -> int:
        return self.entries - (1 if self.pending else 0)

    @property
    def server_knows(self) -> bool:
        """True if the server has (or may have, once in flight entries land) a live record."""
        return self.server_value is not None or self.in_flight > 0

    def pending_entry(self) -> Entry | None:
        p = self.pending
        if p is None:
            return None
        value: Record | None = None
        if p.op == "put":
            value = self.value
        elif p.op == "patch":
            value = p.patch
        return Entry(p.order, self.collection, self.key, p.op, value, p.base_version, p.hlc,
                     p.chained, base=p.base, base_known=p.base_known)

    def to_row(self, collection: Collection) -> StoredRecordRow:
        """The stored form. Field stamps equal to the newest one are left out of `fh`
        (after a put that is all of them), and so are empty attributes."""
        row: StoredRecordRow = {"k": [self.collection, self.key], "v": _dump(self.value)}
        if self.stamps:
            newest = max(self.stamps.values())
            row["h"] = newest
            older = {f: s for f, s in self.stamps.items() if s != newest}
            if older:
                row["fh"] = older
        if self.version is not None:
            row["sv"] = self.version
        if self.server_hlc is not None:
            row["sh"] = self.server_hlc
        if self.value is not None:
            row["l"] = [self.collection, self.key]
            row["ix"] = index_keys(collection, self.key, self.value)
            unique = unique_keys(collection, self.value)
            if unique:
                row["ux"] = unique
        if self.entries:
            row["n"] = self.entries
            if self.server_value is not None:
                row["sb"] = dump_value(self.server_value)
        if self.pending:
            row["p"] = self.pending.to_list()
        if self.stale:
            row["st"] = True
        if self.resync:
            row[RESYNC_MARK] = 1
        return row

    @classmethod
    def from_row(cls, row: StoredRecordRow) -> RecordRow:
        value = _load(row.get("v"))
        stamps: dict[str, str] = {}
        if value is not None and "h" in row:
            older = row.get("fh") or {}
            stamps = {f: older.get(f, row["h"]) for f in value}
        entries = row.get("n", 0)
        p = row.get("p")
        return cls(
            row["k"][0], row["k"][1], value, stamps, row.get("sv"),
            _load(row.get("sb")) if entries else value, row.get("sh"), entries,
            Pending(p[0], p[1], _load(p[2]), p[3], bool(p[4]), p[5],
                    _load(p[6]) if len(p) > 6 else None, len(p) > 6) if p else None,
            bool(row.get("st")), bool(row.get(RESYNC_MARK)),
        )


def _stamped(stamps: dict[str, str], op: Op, value: Record | None, hlc: str) -> dict[str, str]:
    if op == "delete" or value is None:
        return {}
    if op == "put":
        return dict.fromkeys(value, hlc)
    return {**stamps, **dict.fromkeys(value, hlc)}


def _settle(row: RecordRow) -> RecordRow | None:
    """A row with no outbox entry left: its value is the confirmed one; a deleted record the
    server never saw leaves nothing behind."""
    if row.entries:
        return row
    if row.value is None and row.version is None:
        return None
    return replace(row, pending=None)


@dataclass(frozen=True)
class WriteOutcome:
    row: RecordRow | None  # None: remove the row
    put_entry: Entry | None = None  # add or overwrite this outbox entry
    drop_entry: int | None = None  # remove the outbox entry with this order key
    used_order: bool = False  # the new order key was consumed
    changed: bool = True


def local_write(row: RecordRow | None, collection: str, key: str, op: Op,
                value: Record | None, hlc: str, new_order: int,
                keep_base: bool = False) -> WriteOutcome:
    """One local put / patch / delete: the new row and what happens to the outbox.
    `keep_base`: a new entry keeps the record as it was before the edit (a `version`
    collection's, for its conflict resolver); a merged one keeps the base it has."""
    if row is None and op == "put" and value is not None:  # the bulk insert path: no copies
        entry = Entry(new_order, collection, key, op, value, None, hlc, base_known=keep_base)
        return WriteOutcome(
            RecordRow(collection, key, value, dict.fromkeys(value, hlc), entries=1,
                      pending=Pending(new_order, op, None, None, False, hlc,
                                      base_known=keep_base)),
            put_entry=entry, used_order=True)
    if row is None:
        row = RecordRow(collection, key, None, {})
    if row.value is None and op == "patch":
        raise NotFound(f"{collection}/{key} does not exist: patch refused")
    if row.value is None and op == "delete":
        return WriteOutcome(row if row.version is not None or row.entries else None,
                            changed=False)
    pending = row.pending_entry()  # before the value changes: a pending put's value is it
    before = row.value
    visible = apply_op(row.value, op, value)
    stamps = _stamped(row.stamps, op, value, hlc)
    row = replace(row, value=visible, stamps=stamps)
    if pending is not None:
        merged = coalesce(pending, op, value, hlc, row.server_knows)
        if merged is None:
            row = replace(row, entries=row.entries - 1, pending=None)
            return WriteOutcome(_settle(row), drop_entry=pending.order)
        assert row.pending is not None  # pending_entry() found it
        patch = merged.value if merged.op == "patch" else None
        row = replace(row, pending=replace(row.pending, op=merged.op, patch=patch, hlc=hlc))
        return WriteOutcome(row, put_entry=merged)
    chained = row.in_flight > 0 or row.stale
    base = None if chained else row.version
    base_record = before if keep_base else None
    entry = Entry(new_order, collection, key, op, value, base, hlc, chained,
                  base=base_record, base_known=keep_base)
    row = replace(row, entries=row.entries + 1,
                  pending=Pending(new_order, op, value if op == "patch" else None, base,
                                  chained, hlc, base_record, keep_base))
    return WriteOutcome(row, put_entry=entry, used_order=True)


def _server_stamps(value: Record | None, hlc: str | None) -> dict[str, str]:
    return dict.fromkeys(value, hlc) if value is not None and hlc else {}


def _replay(row: RecordRow, entries: list[Entry]) -> RecordRow:
    """The visible value and stamps: the confirmed copy with `entries` replayed over it."""
    value = rebase(row.server_value, entries)
    stamps = _server_stamps(row.server_value, row.server_hlc)
    for e in sorted(entries, key=lambda e: e.order):
        stamps = _stamped(stamps, e.op, e.value, e.hlc)
    if value is None:
        stamps = {}
    return replace(row, value=value, stamps=stamps)


def server_change(row: RecordRow | None, change: ServerRecord,
                  entries: list[Entry]) -> RecordRow | None:
    """A record from a pull (or a conflict). Idempotent: an older version changes nothing.

    Pending local edits (`entries`, read from the outbox) stay visible over the change.
    Returns the row to store, or None when there is nothing to store.
    """
    # A copy awaiting a resync's confirmation predates a reset: after a store re-created, a
    # lower version is the truth, so no version check then.
    if row is not None and row.version is not None and change.version < row.version \
            and not row.resync:
        return row
    if row is None:
        row = RecordRow(local_name(change.collection, change.scope), change.key, None, {})
    value = None if change.deleted else change.value
    row = replace(row, version=change.version, server_value=value, server_hlc=change.hlc,
                  stale=False, resync=False)
    return _replay(row, entries)


def unconfirmed(row: RecordRow, entries: list[Entry]) -> RecordRow | None:
    """The row once a resync has completed without the server confirming it: the server has
    no such record (any more). The confirmed copy goes; pending local edits (`entries`) stay,
    replayed over nothing (a patch of a record the server no longer has hides, as under a
    server delete, and the server will reject it). None: remove the row."""
    row = replace(row, version=None, server_value=None, server_hlc=None, stale=False,
                  resync=False)
    return _settle(_replay(row, entries))


def acknowledged(row: RecordRow, entry: Entry, result: MutationResult,
                 remaining: list[Entry]) -> RecordRow | None:
    """The row once the server has answered for `entry`; `remaining` are the record's other
    outbox entries. Returns None when the row should be removed."""
    confirmed, version, hlc, stale = row.server_value, row.version, row.server_hlc, row.stale
    # Any answer but a rejection says the server has (had) the record: nothing left for a
    # resync to confirm.
    resync = row.resync and result.status == "rejected"
    s = result.server
    if result.status in ("conflict", "duplicate") and s is not None and (
            version is None or s.version >= version):
        # The server's record as it is now (a duplicate's answer carries it: the first
        # answer, lost, may have been a conflict or a rejection that wrote nothing, which
        # no pull would ever bring)
        confirmed = None if s.deleted else s.value
        version, hlc, stale = s.version, s.hlc, False
    elif result.status in ("applied", "duplicate"):
        # A patch over a copy we never had: the server has the whole record; the pull brings it.
        with contextlib.suppress(NotFound):
            confirmed = apply_op(confirmed, entry.op, entry.value)
        hlc = entry.hlc
        if result.status == "applied" and result.version is not None:
            version, stale = result.version, False
        else:
            stale = True
    row = replace(row, server_value=confirmed, version=version, server_hlc=hlc,
                  entries=max(row.entries - 1, 0), stale=stale, resync=resync)
    others = [e for e in remaining if e.order != entry.order]
    return _settle(_replay(row, others))


def resolution(row: RecordRow | None, collection: str, key: str, value: Record | None,
               hlc: str, order: int, entries: list[Entry], server: Record | None,
               version: int) -> tuple[RecordRow | None, Entry | None]:
    """A conflict resolver's result (`value`, None: delete) written as a new outbox entry
    based on the server's copy the resolver saw (`server` at `version`), with the order key
    of the entry that conflicted: it goes before any later edit of the record (`entries`:
    the record's other outbox entries), which stays visible over it. If the server has
    moved on since, the entry conflicts again and the resolver is asked again. (None, None)
    or (row, None): nothing to push, the server's copy already is the result."""
    if row is None:
        row = RecordRow(collection, key, None, {})
    if value == server:
        return row if row.version is not None or row.entries else None, None
    op: Op = "put" if value is not None else "delete"
    chained = row.in_flight > 0 or row.stale
    base = None if chained else version
    entry = Entry(order, collection, key, op, value, base, hlc, chained,
                  base=server, base_known=True)
    pending = row.pending
    if pending is None:  # nothing later to merge into: later edits merge into this one
        pending = Pending(order, op, None, base, chained, hlc, server, True)
    row = replace(row, entries=row.entries + 1, pending=pending)
    others = [e for e in entries if e.order != order]
    return _replay(row, [*others, entry]), entry
