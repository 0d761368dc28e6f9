"""The app-facing local-first API: a Database of collections on the browser's IndexedDB.

    db = await pysync.open_database("todo-app:alice", SCHEMA)
    todos = db.collection("todos")
    await todos.put("t1", {"title": "Milk", "done": False})
    await todos.patch("t1", {"done": True})
    open_items = await todos.query("by_done", equals=False)

Every write stores the records and their outbox entries in one IndexedDB transaction: all or
nothing. Reads see pending local edits. See docs/local-store.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

from pysync import idb
from pysync.errors import DatabaseClosed, InvalidValue, NotFound, SchemaError
from pysync.hlc import ClockError, HybridClock, Stamp, wall_clock_ms
from pysync.indexkeys import ABSENT, index_range, key_range
from pysync.outbox import Entry, dump_value, load_value, take
from pysync.protocol import (
    MAX_MUTATIONS_PER_PUSH,
    MutationResult,
    Op,
    PushRequest,
    PushResponse,
    ServerRecord,
)
from pysync.rows import (
    RESYNC_MARK,
    RecordRow,
    acknowledged,
    local_write,
    server_change,
    unconfirmed,
)
from pysync.schema import Collection, Schema
from pysync.storage import Connection, Storage, Transaction, default_storage
from pysync.values import (
    MAX_RECORD_BYTES,
    Record,
    check_key,
    check_record,
    from_json,
    record_size,
)

log = logging.getLogger("pysync.store")

LAYOUT_VERSION = 1
RECORDS, OUTBOX, META = "records", "outbox", "meta"
# The meta row every local write reads and bumps: {"clock": last HLC, "next_order": int}.
WRITER = "writer"
# Set while a resync (a snapshot after a reset) is in progress; record rows it has yet to
# confirm carry RESYNC_MARK (RecordRow.resync). See Database.begin_resync.
RESYNC = "resync"
# pysync's own IndexedDB layout. App indexes live in the computed multiEntry `ix` / `ux`
# keys, so declaring a new app index needs no IndexedDB upgrade, only a re-index at open.
UPGRADES: dict[int, list[idb.Step]] = {
    1: [
        ("createStore", RECORDS, {"keyPath": "k"}),
        ("createIndex", RECORDS, "live", "l", {}),
        ("createIndex", RECORDS, "ix", "ix", {"multiEntry": True}),
        ("createIndex", RECORDS, "ux", "ux", {"multiEntry": True, "unique": True}),
        ("createStore", OUTBOX, {"keyPath": "o"}),
        ("createIndex", OUTBOX, "pending", "q", {}),
        ("createIndex", OUTBOX, "wire", "m", {"unique": True}),
        ("createIndex", OUTBOX, "record", "r", {}),
        ("createStore", META, {"keyPath": "k"}),
    ],
}
_UNSET: Any = ABSENT
# Batches larger than this probe which keys exist with one keys-only read.
_PROBE_ABOVE = 32
# Stored rows remembered for the fast write path (least recently used dropped first).
_CACHED_ROWS = 4096
_REMEMBER_READS = 200  # a query returning more rows than this is not remembered
_UNKNOWN: Any = object()


@dataclass
class _Plan:
    """What one local write stores, and what the fast path checks before storing it."""

    writes: list[idb.Write]
    changes: list[Change]
    writer_row: dict[str, Any]
    rows: dict[tuple[str, str], dict[str, Any] | None]  # as stored after it; None: no row
    expect: list[tuple[str, Any, Any]] = field(default_factory=list)

    def message(self) -> str:
        """The changes as other tabs receive them, values as their stored JSON text."""
        stamp = self.writer_row["v"]["clock"]
        return json.dumps({"hlc": stamp, "changes": [
            [c.collection, c.key, _stored_text(self.rows.get((c.collection, c.key))), c.origin]
            for c in self.changes]})


def _stored_text(row: dict[str, Any] | None) -> str | None:
    return None if row is None else row.get("v")


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be")  # IndexedDB's string order

Origin = Literal["local", "tab", "server"]


@dataclass(frozen=True)
class Doc:
    """A record as a query returns it."""

    key: str
    value: Record
    version: int | None  # the server's version last confirmed; None if never synced
    pending: bool  # local edits not yet acknowledged by the server


@dataclass(frozen=True)
class Change:
    """What a watcher receives: a record that changed, and where the change came from."""

    collection: str
    key: str
    value: Record | None  # None: deleted
    origin: Origin


Watcher = Callable[[list[Change]], Any]


def _meta(k: str, v: Any) -> dict[str, Any]:
    return {"k": k, "v": v}


def _meta_value(row: Any, default: Any = None) -> Any:
    return default if row is None else row.get("v", default)


def _fingerprint(schema: Schema) -> str:
    return json.dumps([[c.name, [[i.name, list(i.fields), i.unique] for i in c.indexes]]
                       for c in schema])


def _doc(row: dict[str, Any]) -> Doc:
    r = RecordRow.from_row(row)
    assert r.value is not None  # queries go through indexes that hold live records only
    return Doc(r.key, r.value, r.version, r.entries > 0)


class Database:
    """One local database: a Schema's collections, the outbox and the sync metadata."""

    def __init__(self, name: str, schema: Schema, db: Connection, client_id: str,
                 clock: HybridClock, writer_row: Any = _UNKNOWN,
                 storage: Storage | None = None) -> None:
        self.name = name
        self.schema = schema
        self.client_id = client_id
        self.storage = storage or default_storage()  # where `db` lives (pysync.storage)
        self._db = db
        self._clock = clock
        self._watchers: list[tuple[str | None, Watcher]] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        self._channel = self.storage.channel(f"pysync:{name}", self._on_tab_message)
        self.outbox = Outbox(self)
        # What this tab last saw stored: the writer meta row (_UNKNOWN: not known) and
        # record rows by (collection, key), None meaning no row. See _write.
        self._writer_row: Any = writer_row
        self._rows: OrderedDict[tuple[str, str], dict[str, Any] | None] = OrderedDict()

    @classmethod
    async def open(cls, name: str, schema: Schema,
                   clock: Callable[[], int] = wall_clock_ms,
                   storage: Storage | None = None) -> Database:
        """Open (creating or upgrading) the database; re-index if the schema's indexes changed.

        `clock` is the wall clock in ms that stamps writes (a parameter for simulations).
        `storage`: the browser's IndexedDB under Pyodide, by default; on CPython an in-memory
        twin (pysync.memdb.MemoryStorage; see pysync.storage).
        """
        storage = storage or default_storage()
        holder: list[Database] = []

        def on_close(reason: str) -> None:
            log.warning("database %r closed (%s)", name, reason)
            if holder:
                holder[0]._channel.close()

        db = await storage.open(name, LAYOUT_VERSION, UPGRADES, on_close)
        fingerprint = _fingerprint(schema)
        found: dict[str, Any] = {}

        def reindex(rows: list[Any]) -> None:
            out = []
            for row in rows[0]:
                r = RecordRow.from_row(row)
                out.append(r.to_row(_declared(schema, r.collection)))
            tx.write([(RECORDS, "put", out), (META, "put", [_meta("indexes", fingerprint)])])

        def init(rows: list[Any]) -> None:
            client_id, writer, indexes = (_meta_value(r) for r in rows)
            writes: list[dict[str, Any]] = []
            if client_id is None:
                client_id = uuid.uuid4().hex
                writes += [_meta("client_id", client_id), _meta("next_mutation_id", 1)]
            tx.write([(META, "put", writes)])
            found.update(client_id=client_id, clock=(writer or {}).get("clock"),
                         writer_row=rows[1])
            if indexes != fingerprint:
                tx.read([idb.get_all(RECORDS)], reindex)

        tx = db.transaction([RECORDS, META], "readwrite")
        tx.read([idb.get(META, k) for k in ("client_id", WRITER, "indexes")], init)
        try:
            await tx.done()
        except BaseException:
            db.close()
            raise
        last = Stamp.parse(found["clock"]) if found["clock"] else None
        self = cls(name, schema, db, found["client_id"],
                   HybridClock(found["client_id"], clock, last), found["writer_row"], storage)
        holder.append(self)
        return self

    # --- app API -----------------------------------------------------------------------

    def collection(self, name: str) -> LocalCollection:
        return LocalCollection(self, self.schema.get(name))

    __getitem__ = collection

    def watch(self, callback: Watcher, collection: str | None = None) -> Callable[[], None]:
        """Call `callback(changes)` after every committed change: local writes, writes from
        another tab of this origin, and server changes. Returns a function that unsubscribes."""
        if collection is not None:
            self.schema.get(collection)
        item = (collection, callback)
        self._watchers.append(item)

        def unsubscribe() -> None:
            if item in self._watchers:
                self._watchers.remove(item)

        return unsubscribe

    def close(self) -> None:
        if not self._db.closed:
            self._channel.close()
        self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    # --- transactions --------------------------------------------------------------------

    def _tx(self, stores: Sequence[str], mode: idb.Mode) -> Transaction:
        if self._db.closed:
            raise DatabaseClosed(f"database {self.name!r} is closed")
        return self._db.transaction(stores, mode)

    async def _read(self, requests: Sequence[idb.Read]) -> list[Any]:
        tx = self._tx([RECORDS], "readonly")
        box: list[list[Any]] = []
        tx.read(requests, box.append)
        await tx.done()
        return box[0]

    def _observe(self, stored: Any) -> None:
        """Merge another tab's (or a past session's) clock, so stamps keep increasing."""
        if not stored:
            return
        with contextlib.suppress(ClockError):
            self._clock.observe(Stamp.parse(stored))

    async def _write(self, collection: Collection, ops: list[tuple[Op, str, Record | None]]
                     ) -> None:
        """Apply local writes: records, outbox entries and the writer row, one transaction.

        Fast path: plan from the rows this tab last saw (cached), and issue the writes together
        with reads checking those rows are still what is stored: no read round trip and no
        Python inside the transaction. A check that fails (another tab wrote, or a record this
        tab never saw exists) aborts it, writing nothing, and the slow path runs: read the
        rows, then plan and write in the read's callback (never an await inside).
        """
        keys = list(dict.fromkeys(key for _, key, _ in ops))
        if len(keys) <= _PROBE_ABOVE and self._writer_row is not _UNKNOWN:
            plan = self._speculate(collection, ops, keys)
            if plan is not None:
                try:
                    # Other tabs hear of it from the complete event itself: no Python task
                    # after the commit (it would delay this tab's next write).
                    await self._db.checked_write([RECORDS, OUTBOX, META], plan.expect,
                                                 plan.writes, (self._channel, plan.message()))
                except idb.Stale:
                    self._writer_row = _UNKNOWN
                    for k in keys:
                        self._rows.pop((collection.name, k), None)
                else:
                    self._committed(plan)
                    self._notify(plan.changes)
                    return
        await self._write_read_first(collection, ops, keys)

    def _speculate(self, collection: Collection, ops: list[tuple[Op, str, Record | None]],
                   keys: list[str]) -> _Plan | None:
        """A plan from the cached rows (a record never seen: assumed absent), or None if the
        cached state cannot produce one (e.g. a patch of a record believed absent)."""
        c = collection.name
        found = {}
        for k in keys:
            row = self._rows.get((c, k))
            if row is not None:
                found[k] = row
        try:
            plan = self._plan(collection, ops, keys, self._writer_row, found)
        except (InvalidValue, NotFound):
            return None  # maybe only the cache's view: the slow path decides
        plan.expect = [(META, WRITER, self._writer_row),
                       *((RECORDS, [c, k], found.get(k)) for k in keys)]
        return plan

    def _plan(self, collection: Collection, ops: list[tuple[Op, str, Record | None]],
              keys: list[str], writer_row: Any, found: dict[str, Any]) -> _Plan:
        """What a local write stores, given the writer meta row and the batch's stored record
        rows (absent from `found`: no row). No I/O."""
        c = collection.name
        writer = _meta_value(writer_row) or {}
        self._observe(writer.get("clock"))
        first_order = order = writer.get("next_order", 1)
        rows = {k: RecordRow.from_row(found[k]) if k in found else None for k in keys}
        entries: dict[int, Entry] = {}
        dropped: set[int] = set()
        changes: list[Change] = []
        # One stamp for the batch (its records are distinct events on distinct records);
        # a fresh one whenever a record comes back, so its edits stay ordered.
        stamp = str(self._clock.now())
        seen: set[str] = set()
        for op, key, value in ops:
            if key in seen:
                stamp = str(self._clock.now())
                seen.clear()
            seen.add(key)
            out = local_write(rows[key], c, key, op, value, stamp, order)
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
        new: list[dict[str, Any]] = []
        merged: list[dict[str, Any]] = []
        for o, e in entries.items():
            stored_row = stored.get(e.key)
            # A put's value is the row's value: reuse its JSON text.
            text = stored_row["v"] if stored_row is not None and e.op == "put" else None
            (new if o >= first_order else merged).append(e.to_row(text))
        writer_after = _meta(WRITER, {"clock": stamp, "next_order": order})
        writes: list[idb.Write] = [
            (RECORDS, "put", [r for r in stored.values() if r is not None]),
            (RECORDS, "delete", [[c, k] for k, r in stored.items() if r is None]),
            # `add`, not `put`: a new entry must never overwrite another one.
            (OUTBOX, "add", new),
            (OUTBOX, "put", merged),
            (OUTBOX, "delete", [o for o in dropped if o < first_order]),
            (META, "put", [writer_after]),
        ]
        return _Plan(writes, changes, writer_after, {(c, k): r for k, r in stored.items()})

    async def _write_read_first(self, collection: Collection,
                                ops: list[tuple[Op, str, Record | None]], keys: list[str]
                                ) -> None:
        """The slow path: read the rows (and the writer row), then in the read's callback
        plan and write. One transaction, no await inside it."""
        tx = self._tx([RECORDS, OUTBOX, META], "readwrite")
        c = collection.name
        box: list[_Plan] = []

        def compute(meta: list[Any], found: dict[str, Any]) -> None:
            plan = self._plan(collection, ops, keys, meta[0], found)
            tx.write(plan.writes)
            box.append(plan)

        def read_rows(meta: list[Any], wanted: list[str]) -> None:
            if not wanted:
                compute(meta, {})
                return
            tx.read([idb.get(RECORDS, [c, k]) for k in wanted],
                    lambda rows: compute(meta, {k: r for k, r in zip(wanted, rows, strict=True)
                                                if r is not None}))

        meta_reads = [idb.get(META, WRITER)]
        if len(keys) <= _PROBE_ABOVE:
            tx.read([*meta_reads, *(idb.get(RECORDS, [c, k]) for k in keys)],
                    lambda r: compute(r[:1], {k: row for k, row in zip(keys, r[1:], strict=True)
                                              if row is not None}))
        else:
            # A big batch: one keys-only read over the batch's key span, then rows only for
            # the keys that exist (none, for a bulk insert).
            lo = min(keys, key=_utf16)
            hi = max(keys, key=_utf16)
            wanted = set(keys)
            tx.read([*meta_reads, idb.get_keys(RECORDS, None, ([c, lo], False), ([c, hi], False))],
                    lambda r: read_rows(r[:1], [k[1] for k in r[1] if k[1] in wanted]))
        await tx.done()
        plan = box[0]
        if len(keys) > _PROBE_ABOVE:  # not worth caching: forget instead
            for record in plan.rows:
                self._rows.pop(record, None)
            plan.rows = {}
        self._committed(plan)
        self._publish(plan.changes)

    # --- the cache of stored rows behind the fast write path -------------------------------

    def _committed(self, plan: _Plan) -> None:
        self._writer_row = plan.writer_row
        self._remember(plan.rows)

    def _remember(self, rows: Mapping[tuple[str, str], dict[str, Any] | None]) -> None:
        """Rows as stored by a committed transaction (None: no row). Only ever a guess: a
        fast write checks every row it relies on."""
        cache = self._rows
        for record, row in rows.items():
            cache[record] = row
            cache.move_to_end(record)
        while len(cache) > _CACHED_ROWS:
            cache.popitem(last=False)

    # --- watchers ------------------------------------------------------------------------

    def _notify(self, changes: list[Change]) -> None:
        for collection, callback in list(self._watchers):
            mine = [c for c in changes if collection is None or c.collection == collection]
            if not mine:
                continue
            try:
                result = callback(mine)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("a watcher failed")

    def _publish(self, changes: list[Change]) -> None:
        if not changes:
            return
        self._notify(changes)
        # Other tabs learn of it after this write returns: neither building the message nor
        # posting it is on the write's latency.
        asyncio.get_event_loop().call_soon(self._post, changes)

    def _post(self, changes: list[Change]) -> None:
        if self._db.closed:
            return
        message = {"hlc": str(self._clock.now()), "changes": [
            [c.collection, c.key, None if c.value is None else dump_value(c.value), c.origin]
            for c in changes]}
        self._channel.post(json.dumps(message))

    def _on_tab_message(self, text: str) -> None:
        try:
            message = json.loads(text)
            self._observe(message.get("hlc"))
            # A value comes as its stored JSON text (older pages: as a JSON structure).
            changes = [Change(c, k, None if v is None else
                              load_value(v) if isinstance(v, str) else from_json(v),
                              "server" if origin == "server" else "tab")
                       for c, k, v, origin in message["changes"]]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed message from another tab")
            self._writer_row = _UNKNOWN
            return
        # Another tab wrote: what this tab cached is out of date (the next write would find
        # out by its checks, then retry; this spares it that failed attempt).
        self._writer_row = _UNKNOWN
        for change in changes:
            self._rows.pop((change.collection, change.key), None)
        self._notify(changes)

    # --- server changes (the sync client's entry point) -----------------------------------

    async def apply_server_changes(self, changes: Sequence[ServerRecord],
                                   extra_meta: Mapping[str, Any] | None = None, *,
                                   complete: bool = False) -> None:
        """Store a pull's records in one transaction (with `extra_meta`, e.g. the cursor).

        Idempotent (an older version than the one stored changes nothing) and pending local
        edits stay visible over the incoming values until the server acknowledges them.
        `complete`: this is the last page of a pull sequence; if a resync is in progress (see
        begin_resync) the records it did not confirm are dropped in this same transaction.
        Internal: for the sync client.
        """
        keyed = [([c.collection, c.key], c) for c in changes]
        notes: list[Change] = []
        tx = self._tx([RECORDS, OUTBOX, META], "readwrite")

        def compute(writer: dict[str, Any], rows: list[RecordRow | None],
                    entries: dict[int, list[Entry]], sweep: bool) -> None:
            out: dict[tuple[str, str], dict[str, Any]] = {}
            current: dict[tuple[str, str], RecordRow | None] = {}
            for i, (k, change) in enumerate(keyed):
                record = (k[0], k[1])
                row = current.get(record, rows[i])
                if change.hlc:
                    self._observe(change.hlc)
                # (A row a resync awaits is rewritten even if its value is unchanged: the
                # rewrite is what records that the server confirmed it.)
                new = server_change(row, change, entries.get(i, []))
                if new is None or new == row:
                    continue
                current[record] = new
                out[record] = new.to_row(_declared(self.schema, change.collection))
                if row is None or new.value != row.value:
                    notes.append(Change(change.collection, change.key, new.value, "server"))
            meta = [_meta(k, v) for k, v in (extra_meta or {}).items()]
            meta.append(_meta(WRITER, {**writer, "clock": str(self._clock.now())}))
            tx.write([(RECORDS, "put", list(out.values())), (META, "put", meta)])
            written.update(out)
            written_writer.append(meta[-1])
            if sweep:
                tx.read([idb.get_all(RECORDS)], lambda r: self._sweep(tx, r[0], written, notes))

        def with_rows(results: list[Any]) -> None:
            writer = _meta_value(results[0]) or {}
            sweep = complete and bool(_meta_value(results[1]))
            self._observe(writer.get("clock"))
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

        written: dict[tuple[str, str], dict[str, Any] | None] = {}
        written_writer: list[dict[str, Any]] = []
        tx.read([idb.get(META, WRITER), idb.get(META, RESYNC),
                 *(idb.get(RECORDS, k) for k, _ in keyed)], with_rows)
        await tx.done()
        self._writer_row = written_writer[0]
        self._remember(written)
        self._publish(notes)

    def _sweep(self, tx: Transaction, rows: list[dict[str, Any]],
               written: dict[tuple[str, str], dict[str, Any] | None],
               notes: list[Change]) -> None:
        """The end of a resync, inside the last page's transaction: every record still marked
        was in neither the snapshot nor the changes after it, so the server no longer has it
        (deleted while this device's cursor was too old to learn of it). Its confirmed copy
        goes: a record without outbox entries is dropped; pending local writes stay and are
        pushed (rows.unconfirmed). Then the resync ends."""
        marked = [RecordRow.from_row(r) for r in rows if r.get(RESYNC_MARK)]
        busy = [r for r in marked if r.entries]

        def settle(found: list[Any]) -> None:
            entries = {(r.collection, r.key): [Entry.from_row(e) for e in es]
                       for r, es in zip(busy, found, strict=True)}
            put: list[dict[str, Any]] = []
            dropped: list[list[str]] = []
            for row in marked:
                record = (row.collection, row.key)
                new = unconfirmed(row, entries.get(record, []))
                if new is None:
                    dropped.append([row.collection, row.key])
                    written[record] = None
                else:
                    put.append(new.to_row(_declared(self.schema, row.collection)))
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
        mid-sequence resumes where it was. Internal: for the sync client.
        """
        tx = self._tx([RECORDS, META], "readwrite")
        marked: dict[tuple[str, str], dict[str, Any] | None] = {}

        def mark(results: list[Any]) -> None:
            out = []
            for row in results[0]:
                if row.get(RESYNC_MARK):
                    continue
                out.append({**row, RESYNC_MARK: 1})
                marked[(row["k"][0], row["k"][1])] = out[-1]
            meta = [_meta(k, v) for k, v in (extra_meta or {}).items()]
            tx.write([(RECORDS, "put", out), (META, "put", [*meta, _meta(RESYNC, True)])])

        tx.read([idb.get_all(RECORDS)], mark)
        await tx.done()
        self._remember(marked)

    async def get_meta(self, key: str) -> Any:
        tx = self._tx([META], "readonly")
        box: list[Any] = []
        tx.read([idb.get(META, key)], box.append)
        await tx.done()
        return _meta_value(box[0][0])


def _declared(schema: Schema, name: str) -> Collection:
    """The declaration of a collection, or a bare one for data a newer schema dropped."""
    return schema.get(name) if name in schema else Collection(name)


class LocalCollection:
    """The records of one collection. Get one with `db.collection(name)`."""

    def __init__(self, db: Database, decl: Collection) -> None:
        self.db = db
        self.decl = decl
        self.name = decl.name

    # --- writes --------------------------------------------------------------------------

    async def put(self, key: str, value: Record) -> None:
        """Create or replace a record."""
        await self.put_many([(key, value)])

    async def put_many(self, items: Mapping[str, Record] | Iterable[tuple[str, Record]]
                       ) -> None:
        """Create or replace many records in one transaction."""
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        ops: list[tuple[Op, str, Record | None]] = []
        for key, value in pairs:
            check_key(key)
            check_record(value)
            ops.append(("put", key, value))
        if ops:
            await self.db._write(self.decl, ops)

    async def patch(self, key: str, fields: Record) -> None:
        """Set some top-level fields of an existing record (NotFound if there is none)."""
        check_key(key)
        check_record(fields)
        if not fields:
            raise InvalidValue("a patch sets at least one field", key)
        await self.db._write(self.decl, [("patch", key, fields)])

    async def delete(self, key: str) -> None:
        """Delete a record; deleting a record that does not exist does nothing."""
        await self.delete_many([key])

    async def delete_many(self, keys: Iterable[str]) -> None:
        ops: list[tuple[Op, str, Record | None]] = [("delete", check_key(k), None)
                                                    for k in keys]
        if ops:
            await self.db._write(self.decl, ops)

    # --- reads ---------------------------------------------------------------------------

    async def get(self, key: str) -> Record | None:
        """The record's value (with pending local edits), or None."""
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        for k in keys:
            check_key(k)
        if not keys:
            return []
        rows = await self.db._read([idb.get(RECORDS, [self.name, k]) for k in keys])
        self.db._remember({(self.name, k): r for k, r in zip(keys, rows, strict=True)})
        return [RecordRow.from_row(r).value if r else None for r in rows]

    def _range(self, index: str | None, equals: Any, lower: Any, upper: Any,
               lower_open: bool, upper_open: bool) -> tuple[str, idb.Bound, idb.Bound]:
        if index is None:
            for bound in (equals, lower, upper):
                if bound is not _UNSET and bound is not None:
                    check_key(bound)
            if equals is not _UNSET:
                lower = upper = equals
                lower_open = upper_open = False
            lo, hi = key_range(self.name, lower=None if lower is _UNSET else lower,
                               upper=None if upper is _UNSET else upper,
                               lower_open=lower_open, upper_open=upper_open)
            return "live", lo, hi
        decl = self.decl.index(index)
        for v in (equals, lower, upper):
            if v is not _UNSET:
                for part in v if isinstance(v, tuple) else (v,):
                    if isinstance(part, (dict, list)):
                        check_record({"v": part})
                    elif part is not None and not isinstance(part, (bool, int, float, Decimal,
                                                                     str, bytes)):
                        raise InvalidValue(f"{type(part).__name__} is not a query value")
        lo, hi = index_range(self.decl, decl, equals=equals, lower=lower, upper=upper,
                             lower_open=lower_open, upper_open=upper_open)
        return "ix", lo, hi

    async def query(self, index: str | None = None, *, equals: Any = _UNSET,
                    lower: Any = _UNSET, upper: Any = _UNSET, lower_open: bool = False,
                    upper_open: bool = False, limit: int | None = None,
                    reverse: bool = False) -> list[Doc]:
        """Records in index order (or key order without an index), within the bounds.

        For a compound index, `equals` / `lower` / `upper` take a tuple: a prefix of the
        index's fields.
        """
        if limit is not None and limit < 0:
            raise InvalidValue("limit must be >= 0")
        ix, lo, hi = self._range(index, equals, lower, upper, lower_open, upper_open)
        if limit == 0:
            return []
        rows = await self.db._read([idb.get_all(RECORDS, ix, lo, hi, limit, reverse)])
        if len(rows[0]) <= _REMEMBER_READS:
            self.db._remember({(r["k"][0], r["k"][1]): r for r in rows[0]})
        return [_doc(r) for r in rows[0]]

    async def count(self, index: str | None = None, *, equals: Any = _UNSET,
                    lower: Any = _UNSET, upper: Any = _UNSET, lower_open: bool = False,
                    upper_open: bool = False) -> int:
        ix, lo, hi = self._range(index, equals, lower, upper, lower_open, upper_open)
        return int((await self.db._read([idb.count(RECORDS, ix, lo, hi)]))[0])

    async def pages(self, index: str | None = None, *, size: int = 100, equals: Any = _UNSET,
                    lower: Any = _UNSET, upper: Any = _UNSET, lower_open: bool = False,
                    upper_open: bool = False, reverse: bool = False
                    ) -> AsyncIterator[list[Doc]]:
        """Iterate in pages of `size`, each page its own short transaction; resumes after
        the last key seen, so writes between pages neither repeat nor skip a record."""
        if size < 1:
            raise InvalidValue("page size must be >= 1")
        ix, lo, hi = self._range(index, equals, lower, upper, lower_open, upper_open)
        while True:
            rows = (await self.db._read([idb.get_all(RECORDS, ix, lo, hi, size, reverse)]))[0]
            if not rows:
                return
            yield [_doc(r) for r in rows]
            if len(rows) < size:
                return
            last = rows[-1]
            if ix == "live":
                position = last["l"]
            else:
                position = next(k for k in last["ix"] if k[:2] == [self.name, index])
            if reverse:
                hi = (position, True)
            else:
                lo = (position, True)

    def watch(self, callback: Watcher) -> Callable[[], None]:
        return self.db.watch(callback, self.name)


class Outbox:
    """The pending mutations, for the sync client: take a batch, acknowledge, release."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def take(self, limit: int = MAX_MUTATIONS_PER_PUSH) -> PushRequest:
        """The next push: unacknowledged mutations first (same ids, same content), then
        pending ones given consecutive wire ids from meta's next_mutation_id, marked in
        flight, in the same transaction."""
        if limit < 1:
            raise InvalidValue("limit must be >= 1")
        db = self._db
        tx = db._tx([RECORDS, OUTBOX, META], "readwrite")
        box: list[list[Entry]] = []

        def first(results: list[Any]) -> None:
            next_id = _meta_value(results[0], 1)
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
                        changed_rows.append(RecordRow(**{**row.__dict__, "pending": None}))
                stored = {(r.collection, r.key): r.to_row(_declared(db.schema, r.collection))
                          for r in changed_rows}
                tx.write([
                    (OUTBOX, "put", [e.to_row() for e in taken.updated]),
                    (RECORDS, "put", list(stored.values())),
                    (META, "put", [_meta("next_mutation_id", taken.next_mutation_id)]),
                ])
                box.append(taken.batch)
                written.update(stored)

            tx.read([idb.get(RECORDS, list(rec)) for rec in records], second)

        written: dict[tuple[str, str], dict[str, Any] | None] = {}
        tx.read([idb.get(META, "next_mutation_id"), idb.get_all(OUTBOX, "wire"),
                 idb.get_all(OUTBOX, "pending", limit=limit * 4)], first)
        await tx.done()
        db._remember(written)
        return PushRequest(db.client_id, tuple(e.to_mutation() for e in box[0]))

    async def acknowledge(self, response: PushResponse) -> list[MutationResult]:
        """Apply a push response: entries up to last_mutation_id leave the outbox; a conflict
        stores the server's record, a rejection reverts the local edit (pending later edits
        stay visible over both)."""
        db = self._db
        results = {r.id: r for r in response.results}
        notes: list[Change] = []
        tx = db._tx([RECORDS, OUTBOX, META], "readwrite")

        def first(found: list[Any]) -> None:
            acked = sorted((Entry.from_row(e) for e in found[1]), key=lambda e: e.wire_id or 0)
            next_id = max(_meta_value(found[0], 1), response.last_mutation_id + 1)
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
                        db._observe(result.server.hlc)
                    if row is None:
                        continue
                    later = [p] if (p := row.pending_entry()) else []
                    new = acknowledged(row, e, result, later)
                    current[rec] = new
                    after = new.value if new else None
                    if after != row.value:
                        notes.append(Change(e.collection, e.key, after, "server"))
                stored = {rec: r.to_row(_declared(db.schema, r.collection)) if r else None
                          for rec, r in current.items()}
                tx.write([
                    (OUTBOX, "delete", [e.order for e in acked]),
                    (RECORDS, "put", [r for r in stored.values() if r is not None]),
                    (RECORDS, "delete", [list(rec) for rec, r in stored.items() if r is None]),
                    (META, "put", [_meta("next_mutation_id", next_id)]),
                ])
                written.update(stored)

            tx.read([idb.get(RECORDS, list(rec)) for rec in records], second)

        written: dict[tuple[str, str], dict[str, Any] | None] = {}
        tx.read([idb.get(META, "next_mutation_id"),
                 idb.get_all(OUTBOX, "wire", upper=(response.last_mutation_id, False))], first)
        await tx.done()
        db._remember(written)
        db._publish(notes)
        return [results[i] for i in sorted(results)]

    async def release(self) -> None:
        """After a failed send: the batch is no longer in flight. Its entries keep their wire
        ids and content (the request may have reached the server) and are sent first again."""
        tx = self._db._tx([OUTBOX], "readwrite")

        def then(results: list[Any]) -> None:
            rows = [Entry.from_row(e) for e in results[0]]
            tx.write([(OUTBOX, "put", [Entry(**{**e.__dict__, "in_flight": False}).to_row()
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
        tx = self._db._tx([OUTBOX, META], "readwrite")
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
                (META, "put", [_meta("next_mutation_id", first + len(rows))]),
            ])
            box.append(len(rows))

        tx.read([idb.get_all(OUTBOX, "wire")], then)
        await tx.done()
        return box[0]

    async def entries(self) -> list[Entry]:
        """Every outbox entry, in order (for tests and diagnostics)."""
        rows = await self._read_outbox()
        return [Entry.from_row(r) for r in rows]

    async def _read_outbox(self) -> list[Any]:
        tx = self._db._tx([OUTBOX], "readonly")
        box: list[list[Any]] = []
        tx.read([idb.get_all(OUTBOX)], box.append)
        await tx.done()
        return box[0][0]  # type: ignore[no-any-return]

    async def count(self) -> int:
        tx = self._db._tx([OUTBOX], "readonly")
        box: list[list[Any]] = []
        tx.read([idb.count(OUTBOX)], box.append)
        await tx.done()
        return int(box[0][0])


async def open_database(name: str, schema: Schema,
                        clock: Callable[[], int] = wall_clock_ms,
                        storage: Storage | None = None) -> Database:
    """Open the local database `name` (one per app and user, e.g. "todos:alice"), on
    `storage` (default: the browser's IndexedDB; on CPython an in-memory twin)."""
    if not isinstance(name, str) or not name:
        raise InvalidValue("a database name is a non-empty string")
    if not isinstance(schema, Schema):
        raise SchemaError("open_database needs a pysync.Schema")
    return await Database.open(name, schema, clock, storage)


async def delete_database(name: str, storage: Storage | None = None) -> None:
    await (storage or default_storage()).delete_database(name)
