"""The sync-facing side of an open Database: what SyncClient needs, kept off the page
author's API.

    replica = Replica(db)                     # any number of them: they share db's state
    request = await replica.take(limit)       # the next push
    await replica.acknowledge(response)       # or, after a failed send, replica.release()
    await replica.apply_server_changes(page.changes, {"cursor": page.cursor})
    await replica.get_meta("cursor")

Every method is one IndexedDB transaction with no await inside it: reads, then (in the
reads' callback) the pure decisions of pysync.outbox and pysync.rows, then the writes.
docs/local-store.md ("The outbox", "Server changes") describes each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pysync import idb
from pysync.conflicts import same_record
from pysync.errors import InvalidValue
from pysync.indexkeys import key_range
from pysync.layout import (
    META,
    NEXT_MUTATION_ID,
    OUTBOX,
    RECORDS,
    RESYNC,
    UNRESOLVED,
    WRITER,
    StoredMetaRow,
    declared,
    meta_row,
    meta_value,
)
from pysync.outbox import Entry, dump_value, load_value, take
from pysync.protocol import (
    MAX_MUTATIONS_PER_PUSH,
    MutationResult,
    PushRequest,
    PushResponse,
    ServerRecord,
)
from pysync.rows import (
    RESYNC_MARK,
    RecordRow,
    StoredRecordRow,
    acknowledged,
    resolution,
    server_change,
    unconfirmed,
)
from pysync.schema import local_name
from pysync.session import UNKNOWN, RecordId, Session
from pysync.storage import Transaction
from pysync.values import Record
from pysync.watch import Change

if TYPE_CHECKING:
    from pysync.store import Database


@dataclass(frozen=True)
class Acked:
    """One outbox entry the server answered for, as the sync client's conflict handling
    needs it: `local` is the record as the entry wrote it, `base` the record when the edit
    began (stored with a `version` collection's entry; for an older entry, the confirmed copy
    if it is still the one at the entry's base_version, else None), `server` the server's
    copy sent with a conflict (None: absent or deleted, or no copy sent). `refused`: the
    server did not apply it: a `conflict`, or a `duplicate` (a retry after a lost answer)
    whose record shows another write at the version the entry would have made."""

    entry: Entry
    result: MutationResult
    local: Record | None
    base: Record | None
    server: Record | None
    refused: bool = False


@dataclass(frozen=True)
class Dropped:
    """An outbox entry dropped with its scope's revocation (apply_server_changes), and the
    record as local edits had made it (None: deleted or unknown)."""

    entry: Entry
    local: Record | None


@dataclass(frozen=True)
class Unresolved:
    """A `version` conflict whose collection's resolver has yet to decide: stored (meta
    UNRESOLVED) in the transaction that applies the push answer, removed in the one that
    stores the resolver's result. `order`: the conflicting entry's order key; `version`:
    the server's version of `server`, its copy."""

    collection: str
    key: str
    order: int
    version: int
    local: Record | None
    server: Record | None
    base: Record | None

    def to_json(self) -> list[Any]:
        return [self.collection, self.key, self.order, self.version, _text(self.local),
                _text(self.server), _text(self.base)]

    @classmethod
    def from_json(cls, row: list[Any]) -> Unresolved:
        return cls(row[0], row[1], row[2], row[3], _value(row[4]), _value(row[5]),
                   _value(row[6]))


def _text(value: Record | None) -> str | None:
    return None if value is None else dump_value(value)


def _value(text: str | None) -> Record | None:
    return None if text is None else load_value(text)


class Replica:
    """The outbox, server changes and sync metadata of an open Database, for the sync client
    (and tests). The Database keeps its state in `db._session`; this is the one other module
    that reaches it."""

    def __init__(self, db: Database) -> None:
        self._s: Session = db._session

    # --- the outbox ------------------------------------------------------------------------

    async def take(self, limit: int = MAX_MUTATIONS_PER_PUSH) -> PushRequest:
        """The next push: unacknowledged mutations first (same ids, same content), then
        pending ones given consecutive wire ids from meta's next_mutation_id, marked in
        flight, in the same transaction."""
        if limit < 1:
            raise InvalidValue("limit must be >= 1")
        s = self._s
        tx = s.tx([RECORDS, OUTBOX, META], "readwrite")
        box: list[list[Entry]] = []

        def first(results: list[Any]) -> None:
            next_id = meta_value(results[0], 1)
            in_flight = [Entry.from_row(e) for e in results[1]]
            pending = [Entry.from_row(e) for e in results[2]]
            records = list(dict.fromkeys((e.collection, e.key) for e in pending))

            def second(rows: list[Any]) -> None:
                by_record = {rec: RecordRow.from_row(r) for rec, r in zip(records, rows,
                                                                          strict=True) if r}
                versions = {rec: r.version for rec, r in by_record.items() if not r.stale}
                taken = take(in_flight, pending, next_id, limit, versions)
                changed_rows = []
                for e in taken.updated:
                    row = by_record.get((e.collection, e.key))
                    if row is not None and row.pending and row.pending.order == e.order:
                        changed_rows.append(replace(row, pending=None))
                stored = {(r.collection, r.key): r.to_row(declared(s.schema, r.collection))
                          for r in changed_rows}
                tx.write([
                    (OUTBOX, "put", [e.to_row() for e in taken.updated]),
                    (RECORDS, "put", list(stored.values())),
                    (META, "put", [meta_row(NEXT_MUTATION_ID, taken.next_mutation_id)]),
                ])
                box.append(taken.batch)
                written.update(stored)

            tx.read([idb.get(RECORDS, list(rec)) for rec in records], second)

        written: dict[RecordId, StoredRecordRow | None] = {}
        tx.read([idb.get(META, NEXT_MUTATION_ID), idb.get_all(OUTBOX, "wire"),
                 idb.get_all(OUTBOX, "pending", limit=limit * 4)], first)
        await tx.done()
        s.cache.remember(written)
        return PushRequest(s.client_id, tuple(e.to_mutation() for e in box[0]))

    async def acknowledge(self, response: PushResponse) -> list[Acked]:
        """Apply a push response: entries up to last_mutation_id leave the outbox; a conflict
        stores the server's record, a rejection reverts the local edit (pending later edits
        stay visible over both). Returns each acknowledged entry with its answer, in wire
        order."""
        s = self._s
        results = {r.id: r for r in response.results}
        notes: list[Change] = []
        answered: list[Acked] = []
        tx = s.tx([RECORDS, OUTBOX, META], "readwrite")

        def first(found: list[Any]) -> None:
            acked = sorted((Entry.from_row(e) for e in found[1]), key=lambda e: e.wire_id or 0)
            next_id = max(meta_value(found[0], 1), response.last_mutation_id + 1)
            waiting: list[Any] = list(meta_value(found[2]) or [])
            unresolved = len(waiting)
            records = list(dict.fromkeys((e.collection, e.key) for e in acked))

            def second(rows: list[Any]) -> None:
                current = {rec: RecordRow.from_row(r) if r else None
                           for rec, r in zip(records, rows, strict=True)}
                for e in acked:
                    rec = (e.collection, e.key)
                    row = current[rec]
                    result = results.get(e.wire_id or 0) or MutationResult(e.wire_id or 0,
                                                                            "duplicate")
                    if result.server is not None and result.server.hlc:
                        s.observe(result.server.hlc)
                    if row is None:
                        answered.append(Acked(e, result, e.local_result(None), e.base, None))
                        continue
                    a = _acked(e, result, row)
                    answered.append(a)
                    if a.refused and result.server is not None \
                            and declared(s.schema, e.collection).resolve is not None:
                        waiting.append(Unresolved(e.collection, e.key, e.order,
                                                  result.server.version, a.local, a.server,
                                                  a.base).to_json())
                    later = [p] if (p := row.pending_entry()) else []
                    new = acknowledged(row, e, result, later)
                    current[rec] = new
                    after = new.value if new else None
                    if after != row.value:
                        notes.append(Change(e.collection, e.key, after, "server"))
                stored = {rec: r.to_row(declared(s.schema, r.collection)) if r else None
                          for rec, r in current.items()}
                tx.write([
                    (OUTBOX, "delete", [e.order for e in acked]),
                    (RECORDS, "put", [r for r in stored.values() if r is not None]),
                    (RECORDS, "delete", [list(rec) for rec, r in stored.items() if r is None]),
                    (META, "put", [meta_row(NEXT_MUTATION_ID, next_id)]),
                    (META, "put", [meta_row(UNRESOLVED, waiting)]
                     if len(waiting) > unresolved else []),
                ])
                written.update(stored)

            tx.read([idb.get(RECORDS, list(rec)) for rec in records], second)

        written: dict[RecordId, StoredRecordRow | None] = {}
        tx.read([idb.get(META, NEXT_MUTATION_ID),
                 idb.get_all(OUTBOX, "wire", upper=(response.last_mutation_id, False)),
                 idb.get(META, UNRESOLVED)], first)
        await tx.done()
        s.cache.remember(written)
        s.publish(notes)
        return answered

    async def unresolved(self) -> list[Unresolved]:
        """The `version` conflicts whose resolver has yet to decide, oldest first."""
        return [Unresolved.from_json(r) for r in await self.get_meta(UNRESOLVED) or []]

    async def resolve(self, conflict: Unresolved, value: Record | None, *,
                      write: bool = True) -> bool:
        """Store a resolver's decision on `conflict`: its result (None: delete) as a new
        outbox entry based on the server's copy the resolver saw, with the order key of the
        entry that conflicted (so it goes before any later edit of the record, which stays
        visible over it); `write=False`: the server's copy is kept, nothing written. Either
        way the conflict leaves UNRESOLVED in the same transaction. False when nothing was
        written (also when the server's copy already is the result)."""
        s = self._s
        collection, key = conflict.collection, conflict.key
        c = declared(s.schema, collection)
        record = [collection, key]
        tx = s.tx([RECORDS, OUTBOX, META], "readwrite")
        box: list[bool] = []
        notes: list[Change] = []
        written: dict[RecordId, StoredRecordRow | None] = {}

        def then(results: list[Any]) -> None:
            writer = meta_value(results[0]) or {}
            s.observe(writer.get("clock"))
            mine = conflict.to_json()
            left = [r for r in meta_value(results[3]) or [] if r[:3] != mine[:3]]
            writes: list[idb.Write] = [(META, "put", [meta_row(UNRESOLVED, left)])]
            old = RecordRow.from_row(results[1]) if results[1] else None
            entries = [Entry.from_row(e) for e in results[2]]
            stamp = str(s.clock.now())
            row, entry = resolution(old, collection, key, value, stamp, conflict.order,
                                    entries, conflict.server, conflict.version) \
                if write else (old, None)
            box.append(entry is not None)
            if entry is not None:
                assert row is not None
                stored = row.to_row(c)
                writes += [(RECORDS, "put", [stored]), (OUTBOX, "put", [entry.to_row()]),
                           (META, "put", [meta_row(WRITER, {**writer, "clock": stamp})])]
                written[(collection, key)] = stored
                if old is None or row.value != old.value:
                    notes.append(Change(collection, key, row.value, "local"))
            tx.write(writes)

        tx.read([idb.get(META, WRITER), idb.get(RECORDS, record),
                 idb.get_all(OUTBOX, "record", (record, False), (record, False)),
                 idb.get(META, UNRESOLVED)], then)
        await tx.done()
        if box[0]:
            # The writer row changed: the fast write path must read it again.
            s.cache.writer_row = UNKNOWN
        s.cache.remember(written)
        s.publish(notes)
        return box[0]

    async def release(self) -> None:
        """After a failed send: the batch is no longer in flight. Its entries keep their wire
        ids and content (the request may have reached the server) and are sent first again."""
        tx = self._s.tx([OUTBOX], "readwrite")

        def then(results: list[Any]) -> None:
            rows = [Entry.from_row(e) for e in results[0]]
            tx.write([(OUTBOX, "put", [replace(e, in_flight=False).to_row()
                                       for e in rows if e.in_flight])])

        tx.read([idb.get_all(OUTBOX, "wire")], then)
        await tx.done()

    async def renumber(self, first: int) -> int:
        """After a mutation_gap (the server expects `first`, below this outbox's next wire
        id): the server has forgotten this client (its clients table was re-created, or the
        client's state expired), so the entries it has not acknowledged get consecutive wire
        ids from `first` again, in order, and are no longer in flight. Returns how many.

        Whatever the server forgot cannot be deduplicated any more: an entry it had applied
        before forgetting is applied again (for `merge` and `lww` the same value again).
        """
        tx = self._s.tx([OUTBOX, META], "readwrite")
        box: list[int] = []

        def then(results: list[Any]) -> None:
            rows = sorted((Entry.from_row(e) for e in results[0]), key=lambda e: e.wire_id or 0)
            if rows and (rows[0].wire_id or 0) <= first:
                raise InvalidValue(f"wire ids already start at {rows[0].wire_id}: "
                                   f"not renumbering to {first}")
            # Ascending: each new id is below every old one still unrenumbered, so the unique
            # `wire` index never sees two entries with one id.
            tx.write([
                (OUTBOX, "put", [replace(e, wire_id=first + i, in_flight=False).to_row()
                                 for i, e in enumerate(rows)]),
                (META, "put", [meta_row(NEXT_MUTATION_ID, first + len(rows))]),
            ])
            box.append(len(rows))

        tx.read([idb.get_all(OUTBOX, "wire")], then)
        await tx.done()
        return box[0]

    async def outbox_entries(self) -> list[Entry]:
        """Every outbox entry, in order (for tests and diagnostics)."""
        tx = self._s.tx([OUTBOX], "readonly")
        box: list[list[Any]] = []
        tx.read([idb.get_all(OUTBOX)], box.append)
        await tx.done()
        return [Entry.from_row(r) for r in box[0][0]]

    # --- server changes --------------------------------------------------------------------

    async def apply_server_changes(self, changes: Sequence[ServerRecord],
                                   extra_meta: Mapping[str, Any] | None = None, *,
                                   complete: bool = False,
                                   revoked: Sequence[str] = ()) -> list[Dropped]:
        """Store a pull's records in one transaction (with `extra_meta`, e.g. the cursor).

        Idempotent (an older version than the one stored changes nothing) and pending local
        edits stay visible over the incoming values until the server acknowledges them.
        `complete`: this is the last page of a pull sequence; if a resync is in progress (see
        begin_resync) the records it did not confirm are dropped in this same transaction.
        `revoked`: shared scopes the user can no longer read; their records, outbox entries
        and waiting conflicts go in the same transaction (the server names a revoked scope
        once, with the cursor stored here). Returns the outbox entries dropped so.
        """
        s = self._s
        keyed = [([local_name(c.collection, c.scope), c.key], c) for c in changes]
        notes: list[Change] = []
        tx = s.tx([RECORDS, OUTBOX, META], "readwrite")

        def compute(writer: dict[str, Any], rows: list[RecordRow | None],
                    entries: dict[int, list[Entry]], sweep: bool) -> None:
            out: dict[RecordId, StoredRecordRow] = {}
            current: dict[RecordId, RecordRow | None] = {}
            for i, (k, change) in enumerate(keyed):
                record = (k[0], k[1])
                row = current.get(record, rows[i])
                if change.hlc:
                    s.observe(change.hlc)
                # (A row a resync awaits is rewritten even if its value is unchanged: the
                # rewrite is what records that the server confirmed it.)
                new = server_change(row, change, entries.get(i, []))
                if new is None or new == row:
                    continue
                current[record] = new
                out[record] = new.to_row(declared(s.schema, record[0]))
                if row is None or new.value != row.value:
                    notes.append(Change(record[0], change.key, new.value, "server"))
            meta = [meta_row(k, v) for k, v in (extra_meta or {}).items()]
            meta.append(meta_row(WRITER, {**writer, "clock": str(s.clock.now())}))
            tx.write([(RECORDS, "put", list(out.values())), (META, "put", meta)])
            written.update(out)
            written_writer.append(meta[-1])
            if sweep:
                tx.read([idb.get_all(RECORDS)], lambda r: self._sweep(tx, r[0], written, notes))
            if revoked:
                self._drop_scopes(tx, revoked, written, notes, dropped)

        def with_rows(results: list[Any]) -> None:
            writer = meta_value(results[0]) or {}
            sweep = complete and bool(meta_value(results[1]))
            s.observe(writer.get("clock"))
            rows = [RecordRow.from_row(r) if r else None for r in results[2:]]
            busy = [i for i, r in enumerate(rows) if r is not None and r.entries]
            if not busy:
                compute(writer, rows, {}, sweep)
                return

            def with_entries(found: list[Any]) -> None:
                entries = {i: [Entry.from_row(e) for e in es] for i, es in zip(busy, found,
                                                                                 strict=True)}
                compute(writer, rows, entries, sweep)

            tx.read([idb.get_all(OUTBOX, "record", (keyed[i][0], False), (keyed[i][0], False))
                     for i in busy], with_entries)

        written: dict[RecordId, StoredRecordRow | None] = {}
        written_writer: list[StoredMetaRow] = []
        dropped: list[Dropped] = []
        tx.read([idb.get(META, WRITER), idb.get(META, RESYNC),
                 *(idb.get(RECORDS, k) for k, _ in keyed)], with_rows)
        await tx.done()
        s.cache.writer_row = written_writer[0]
        s.cache.remember(written)
        s.publish(notes)
        return dropped

    def _drop_scopes(self, tx: Transaction, scopes: Sequence[str],
                     written: dict[RecordId, StoredRecordRow | None], notes: list[Change],
                     dropped: list[Dropped]) -> None:
        """Inside a pull page's transaction: remove every record of `scopes` (of the schema's
        collections), their outbox entries and their conflicts waiting for a resolver."""
        names = sorted({local_name(c.name, scope) for scope in scopes for c in self._s.schema})

        def drop(found: list[Any]) -> None:
            rows = [RecordRow.from_row(r) for found_rows in found[2:] for r in found_rows]
            values = {(r.collection, r.key): r.value for r in rows}
            entries = [Entry.from_row(e) for e in found[0] if e["r"][0] in names]
            dropped.extend(Dropped(e, values.get((e.collection, e.key))) for e in entries)
            waiting = list(meta_value(found[1]) or [])
            left = [u for u in waiting if u[0] not in names]
            for r in rows:
                written[(r.collection, r.key)] = None
                if r.value is not None:
                    notes.append(Change(r.collection, r.key, None, "server"))
            tx.write([(RECORDS, "delete", [[r.collection, r.key] for r in rows]),
                      (OUTBOX, "delete", [e.order for e in entries]),
                      (META, "put", [meta_row(UNRESOLVED, left)] if left != waiting else [])])

        tx.read([idb.get_all(OUTBOX), idb.get(META, UNRESOLVED),
                 *(idb.get_all(RECORDS, None, *key_range(n)) for n in names)], drop)

    def _sweep(self, tx: Transaction, rows: list[StoredRecordRow],
               written: dict[RecordId, StoredRecordRow | None], notes: list[Change]) -> None:
        """The end of a resync, inside the last page's transaction: every record still marked
        was in neither the snapshot nor the changes after it, so the server no longer has it
        (deleted while this device's cursor was too old to learn of it). Its confirmed copy
        goes: a record without outbox entries is dropped; pending local writes stay and are
        pushed (rows.unconfirmed). Then the resync ends."""
        marked = [RecordRow.from_row(r) for r in rows if r.get(RESYNC_MARK)]
        busy = [r for r in marked if r.entries]
        schema = self._s.schema

        def settle(found: list[Any]) -> None:
            entries = {(r.collection, r.key): [Entry.from_row(e) for e in es]
                       for r, es in zip(busy, found, strict=True)}
            put: list[StoredRecordRow] = []
            dropped: list[list[str]] = []
            for row in marked:
                record = (row.collection, row.key)
                new = unconfirmed(row, entries.get(record, []))
                if new is None:
                    dropped.append([row.collection, row.key])
                    written[record] = None
                else:
                    put.append(new.to_row(declared(schema, row.collection)))
                    written[record] = put[-1]
                after = new.value if new is not None else None
                if after != row.value:
                    notes.append(Change(row.collection, row.key, after, "server"))
            tx.write([(RECORDS, "delete", dropped), (RECORDS, "put", put),
                      (META, "delete", [RESYNC])])

        if not busy:
            settle([])
            return
        tx.read([idb.get_all(OUTBOX, "record", ([r.collection, r.key], False),
                             ([r.collection, r.key], False)) for r in busy], settle)

    async def begin_resync(self, extra_meta: Mapping[str, Any] | None = None) -> None:
        """Start over from a snapshot (after the server answered a pull with a reset): in one
        transaction, store `extra_meta` (the client clears its cursor) and mark every record
        row (RecordRow.resync). Whatever the server confirms next (a change of the pull
        sequence that follows, or a push answer) unmarks it; the last page of the sequence
        (apply_server_changes with complete=True) takes the confirmed copy of what is still
        marked away. The marks and the RESYNC meta row are stored, so a page closed
        mid-sequence resumes where it was.
        """
        tx = self._s.tx([RECORDS, META], "readwrite")
        marked: dict[RecordId, StoredRecordRow | None] = {}

        def mark(results: list[Any]) -> None:
            out: list[StoredRecordRow] = []
            rows: list[StoredRecordRow] = results[0]
            for row in rows:
                if row.get(RESYNC_MARK):
                    continue
                out.append({**row, RESYNC_MARK: 1})
                marked[(row["k"][0], row["k"][1])] = out[-1]
            meta = [meta_row(k, v) for k, v in (extra_meta or {}).items()]
            tx.write([(RECORDS, "put", out), (META, "put", [*meta, meta_row(RESYNC, True)])])

        tx.read([idb.get_all(RECORDS)], mark)
        await tx.done()
        self._s.cache.remember(marked)

    async def outbox_mark(self) -> int:
        """The order key of the latest local write so far (every outbox entry of a write
        made until now has an order key at or below it)."""
        return int((await self.get_meta(WRITER) or {}).get("next_order", 1)) - 1

    async def pending_through(self, mark: int) -> int:
        """How many outbox entries have an order key at or below `mark` (a conflict's
        resolution takes the order key of the entry that conflicted: it counts too)."""
        tx = self._s.tx([OUTBOX], "readonly")
        box: list[Any] = []
        tx.read([idb.count(OUTBOX, None, None, (mark, False))], box.append)
        await tx.done()
        return int(box[0][0])

    # --- messages between tabs ---------------------------------------------------------------

    def post(self, data: dict[str, Any]) -> None:
        """A message to the sync clients of the database's other tabs."""
        self._s.post_sync(data)

    def listen(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Hear the other tabs' sync clients' messages; returns the function that stops."""
        listeners = self._s.sync_listeners
        listeners.append(callback)

        def stop() -> None:
            if callback in listeners:
                listeners.remove(callback)

        return stop

    # --- meta ------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> Any:
        """A meta value (None if there is none): the sync client's cursor, for one."""
        tx = self._s.tx([META], "readonly")
        box: list[Any] = []
        tx.read([idb.get(META, key)], box.append)
        await tx.done()
        return meta_value(box[0][0])


def _acked(entry: Entry, result: MutationResult, row: RecordRow) -> Acked:
    """`entry`'s answer, with the records a conflict's handling needs (`row`: the record's
    row before the answer is applied)."""
    base = entry.base
    if not entry.base_known:  # stored before bases were: the confirmed copy, if it is that one
        base = row.server_value if row.version == entry.base_version else None
    s = result.server
    server = None if s is None or s.deleted else s.value
    local = entry.local_result(row.server_value)
    # A duplicate's first answer was lost: it was a conflict if the version the entry would
    # have made holds another write (had it been applied, that version would be its own;
    # a later version says nothing: it may have been applied and overwritten since).
    refused = result.status == "conflict" or (
        result.status == "duplicate" and s is not None
        and s.version == (entry.base_version or 0) + 1 and not same_record(server, local))
    return Acked(entry, result, local, base, server, refused)
