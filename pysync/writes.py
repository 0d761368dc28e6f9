"""Local writes: planning what a write stores, and the two paths that store it.

A write of a collection's records stores the record rows, their outbox entries and the
writer meta row in one transaction: all or nothing.

- The fast path (at most PROBE_ABOVE keys, writer row known): plan from the rows this tab
  last saw (the session's RowCache), and issue the writes together with reads checking that
  those rows are still what is stored. No read round trip, no Python inside the transaction.
  A check that fails (another tab wrote, or a record this tab never saw exists) aborts it,
  writing nothing, and the read-first path runs.
- The read-first path: read the rows (and the writer row), then plan and write in the read's
  callback (never an await inside).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from pysync import idb
from pysync.errors import InvalidValue, NotFound
from pysync.layout import META, OUTBOX, RECORDS, WRITER, StoredMetaRow, meta_row, meta_value
from pysync.outbox import Entry, StoredOutboxRow
from pysync.protocol import Op
from pysync.rows import RecordRow, StoredRecordRow, local_write
from pysync.schema import Collection
from pysync.session import UNKNOWN, RecordId, Session
from pysync.storage import Transaction
from pysync.values import MAX_RECORD_BYTES, Record, check_record, record_size
from pysync.watch import Change

# Batches larger than this probe which keys exist with one keys-only read.
PROBE_ABOVE = 32
# Batches of distinct keys larger than this are planned and issued in chunks of
# PIPELINE_CHUNK records, so that IndexedDB works on one while Python plans the next.
PIPELINE_ABOVE = 2000
PIPELINE_CHUNK = 1000

LocalOp = tuple[Op, str, Record | None]  # (op, key, value or a patch's fields)


@dataclass
class Plan:
    """What one local write stores, and what the fast path checks before storing it."""

    writes: list[idb.Write]
    changes: list[Change]
    writer_row: StoredMetaRow
    rows: dict[RecordId, StoredRecordRow | None]  # as stored after it; None: no row
    expect: list[tuple[str, Any, Any]] = field(default_factory=list)

    def message(self) -> str:
        """The changes as other tabs receive them, values as their stored JSON text."""
        stamp = self.writer_row["v"]["clock"]
        return json.dumps({"hlc": stamp, "changes": [
            [c.collection, c.key, _stored_text(self.rows.get((c.collection, c.key))), c.origin]
            for c in self.changes]})


def _stored_text(row: StoredRecordRow | None) -> str | None:
    return None if row is None else row.get("v")


def utf16_order(key: str) -> bytes:
    """A sort key for strings in IndexedDB's order (UTF-16 code units)."""
    return key.encode("utf-16-be")


def plan(session: Session, collection: Collection, ops: list[LocalOp], keys: list[str],
         writer_row: Any, found: dict[str, StoredRecordRow]) -> Plan:
    """What a local write stores, given the writer meta row and the batch's stored record
    rows (absent from `found`: no row). No I/O."""
    c = collection.local_name
    writer = meta_value(writer_row) or {}
    session.observe(writer.get("clock"))
    first_order = order = writer.get("next_order", 1)
    rows = {k: RecordRow.from_row(found[k]) if k in found else None for k in keys}
    entries: dict[int, Entry] = {}
    dropped: set[int] = set()
    changes: list[Change] = []
    # One stamp for the batch (its records are distinct events on distinct records);
    # a fresh one whenever a record comes back, so its edits stay ordered.
    stamp = str(session.clock.now())
    seen: set[str] = set()
    keep_base = collection.strategy == "version"  # for its conflict resolver
    for op, key, value in ops:
        if key in seen:
            stamp = str(session.clock.now())
            seen.clear()
        seen.add(key)
        out = local_write(rows[key], c, key, op, value, stamp, order, keep_base)
        if op == "patch" and out.row is not None and out.row.value is not None \
                and record_size(out.row.value) > MAX_RECORD_BYTES:
            raise InvalidValue(f"the patched record is over {MAX_RECORD_BYTES} bytes", key)
        if out.used_order:
            order += 1
        rows[key] = out.row
        if out.put_entry is not None:
            entries[out.put_entry.order] = out.put_entry
        if out.drop_entry is not None:
            entries.pop(out.drop_entry, None)
            dropped.add(out.drop_entry)
        if out.changed:
            changes.append(Change(c, key, out.row.value if out.row else None, "local"))
    stored = {k: r.to_row(collection) if r else None for k, r in rows.items()}
    new: list[StoredOutboxRow] = []
    merged: list[StoredOutboxRow] = []
    for o, e in entries.items():
        stored_row = stored.get(e.key)
        # A put's value is the row's value: reuse its JSON text.
        text = stored_row["v"] if stored_row is not None and e.op == "put" else None
        (new if o >= first_order else merged).append(e.to_row(text))
    writer_after = meta_row(WRITER, {"clock": stamp, "next_order": order})
    writes: list[idb.Write] = [
        (RECORDS, "put", [r for r in stored.values() if r is not None]),
        (RECORDS, "delete", [[c, k] for k, r in stored.items() if r is None]),
        # `add`, not `put`: a new entry must never overwrite another one.
        (OUTBOX, "add", new),
        (OUTBOX, "put", merged),
        (OUTBOX, "delete", [o for o in dropped if o < first_order]),
        (META, "put", [writer_after]),
    ]
    return Plan(writes, changes, writer_after, {(c, k): r for k, r in stored.items()})


async def write(session: Session, collection: Collection, ops: list[LocalOp], *,
                check_puts: bool = False) -> None:
    """Apply local writes: records, outbox entries and the writer row, one transaction
    (the fast path if it can, else the read-first path; see the module's docstring).

    `check_puts`: the puts' values are not validated yet (values.check_record): a pipelined
    write checks each chunk just before planning it (a bad value aborts the transaction,
    nothing written), any other write all of them before it starts."""
    keys = list(dict.fromkeys(key for _, key, _ in ops))
    pipelined = len(keys) > PIPELINE_ABOVE and len(keys) == len(ops)
    if check_puts and not pipelined:
        _check_puts(ops)
    cache = session.cache
    if len(keys) <= PROBE_ABOVE and cache.writer_row is not UNKNOWN:
        planned = _speculate(session, collection, ops, keys)
        if planned is not None:
            try:
                # Other tabs hear of it from the complete event itself: no Python task
                # after the commit (it would delay this tab's next write).
                await session.connection.checked_write(
                    [RECORDS, OUTBOX, META], planned.expect, planned.writes,
                    (session.channel, planned.message()))
            except idb.Stale:
                cache.writer_row = UNKNOWN
                cache.forget((collection.local_name, k) for k in keys)
            else:
                _committed(session, planned)
                session.watchers.notify(planned.changes)
                return
    await _write_read_first(session, collection, ops, keys, check_puts and pipelined)


def _speculate(session: Session, collection: Collection, ops: list[LocalOp],
               keys: list[str]) -> Plan | None:
    """A plan from the cached rows (a record never seen: assumed absent), or None if the
    cached state cannot produce one (e.g. a patch of a record believed absent)."""
    c = collection.local_name
    cache = session.cache
    found = {}
    for k in keys:
        row = cache.rows.get((c, k))
        if row is not None:
            found[k] = row
    try:
        planned = plan(session, collection, ops, keys, cache.writer_row, found)
    except (InvalidValue, NotFound):
        return None  # maybe only the cache's view: the read-first path decides
    planned.expect = [(META, WRITER, cache.writer_row),
                      *((RECORDS, [c, k], found.get(k)) for k in keys)]
    return planned


def _check_puts(ops: list[LocalOp]) -> None:
    for op, _, value in ops:
        if op == "put":
            check_record(value)


async def _write_read_first(session: Session, collection: Collection, ops: list[LocalOp],
                            keys: list[str], check_puts: bool = False) -> None:
    """Read the rows (and the writer row), then in the read's callback plan and write.
    One transaction, no await inside it."""
    tx = session.tx([RECORDS, OUTBOX, META], "readwrite")
    c = collection.local_name
    box: list[Plan] = []

    def compute(meta: list[Any], found: dict[str, Any]) -> None:
        if len(keys) > PIPELINE_ABOVE and len(keys) == len(ops):
            box.append(_plan_and_issue_in_chunks(session, collection, ops, meta[0], found, tx,
                                                 check_puts))
            return
        planned = plan(session, collection, ops, keys, meta[0], found)
        tx.write(planned.writes)
        box.append(planned)

    def read_rows(meta: list[Any], wanted: list[str]) -> None:
        if not wanted:
            compute(meta, {})
            return
        tx.read([idb.get(RECORDS, [c, k]) for k in wanted],
                lambda rows: compute(meta, {k: r for k, r in zip(wanted, rows, strict=True)
                                            if r is not None}))

    meta_reads = [idb.get(META, WRITER)]
    if len(keys) <= PROBE_ABOVE:
        tx.read([*meta_reads, *(idb.get(RECORDS, [c, k]) for k in keys)],
                lambda r: compute(r[:1], {k: row for k, row in zip(keys, r[1:], strict=True)
                                          if row is not None}))
    else:
        # A big batch: one keys-only read over the batch's key span, then rows only for
        # the keys that exist (none, for a bulk insert).
        lo = min(keys, key=utf16_order)
        hi = max(keys, key=utf16_order)
        wanted = set(keys)
        tx.read([*meta_reads, idb.get_keys(RECORDS, None, ([c, lo], False), ([c, hi], False))],
                lambda r: read_rows(r[:1], [k[1] for k in r[1] if k[1] in wanted]))
    await tx.done()
    planned = box[0]
    stored = {rec: row for rec, row in planned.rows.items() if row is not None}
    if len(keys) > PROBE_ABOVE:  # not worth caching: forget instead
        session.cache.forget(planned.rows)
        planned.rows = {}
    _committed(session, planned)
    session.publish(planned.changes, stored)  # the other tabs get the stored value texts


def _plan_and_issue_in_chunks(session: Session, collection: Collection, ops: list[LocalOp],
                              writer_row: Any, found: dict[str, StoredRecordRow],
                              tx: Transaction, check_puts: bool) -> Plan:
    """A big batch of distinct keys, planned and issued PIPELINE_CHUNK records at a time, in
    one transaction: IndexedDB stores a chunk while Python plans the next (the transaction
    stays active, as nothing awaits). Each chunk continues the previous one's writer row
    (order, clock); a failure in any chunk aborts the whole transaction."""
    merged = Plan([], [], writer_row, {})
    # The first chunk is small: IndexedDB idles until it is issued.
    bounds = [0, PIPELINE_CHUNK // 4, *range(PIPELINE_CHUNK // 4 + PIPELINE_CHUNK, len(ops),
                                             PIPELINE_CHUNK), len(ops)]
    for start, end in itertools.pairwise(bounds):
        chunk = ops[start:end]
        keys = [key for _, key, _ in chunk]
        if check_puts:  # here, so that checking too overlaps IndexedDB's work
            _check_puts(chunk)
        planned = plan(session, collection, chunk, keys, merged.writer_row,
                       {k: found[k] for k in keys if k in found})
        tx.write(planned.writes)
        merged.changes += planned.changes
        merged.rows.update(planned.rows)
        merged.writer_row = planned.writer_row
    return merged


def _committed(session: Session, planned: Plan) -> None:
    session.cache.writer_row = planned.writer_row
    session.cache.remember(planned.rows)
