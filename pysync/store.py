"""The page author's local-first API: a Database of collections on the browser's IndexedDB.

    db = await pysync.open_database("todo-app:alice", SCHEMA)
    todos = db.collection("todos")
    await todos.put("t1", {"title": "Milk", "done": False})
    await todos.patch("t1", {"done": True})
    open_items = await todos.query("by_done", equals=False)

Every write stores the records and their outbox entries in one IndexedDB transaction: all or
nothing. Reads see pending local edits. See docs/local-store.md.

The rest of the store, by job: pysync.layout (the stores and opening), pysync.writes (write
planning and the write paths), pysync.session (the state an open database shares),
pysync.watch (watchers) and pysync.replica (the sync client's side: outbox, server changes,
meta), none of it reachable from this API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pysync import idb
from pysync.errors import InvalidValue, SchemaError
from pysync.hlc import HybridClock, Stamp, wall_clock_ms
from pysync.indexkeys import UNSET, index_range, key_range
from pysync.layout import OUTBOX, RECORDS, open_layout
from pysync.rows import RecordRow, StoredRecordRow
from pysync.schema import SCOPE_ID, Collection, Schema
from pysync.session import Session
from pysync.storage import Storage, default_storage
from pysync.values import Record, check_key, check_record
from pysync.watch import ANY_SCOPE, Change, Origin, Watcher
from pysync.writes import LocalOp, write

__all__ = ["Change", "Database", "Doc", "LocalCollection", "Origin", "Watcher",
           "delete_database", "open_database"]

log = logging.getLogger("pysync.store")

_REMEMBER_READS = 200  # a query returning more rows than this is not remembered


@dataclass(frozen=True)
class Doc:
    """A record as a query returns it."""

    key: str
    value: Record
    version: int | None  # the server's version last confirmed; None if never synced
    pending: bool  # local edits not yet acknowledged by the server


def _doc(row: StoredRecordRow) -> Doc:
    r = RecordRow.from_row(row)
    assert r.value is not None  # queries go through indexes that hold live records only
    return Doc(r.key, r.value, r.version, r.entries > 0)


class Database:
    """One local database: a Schema's collections. Open it with `open_database`.

    Its sync side (the outbox, server changes, sync metadata) is not part of this API: the
    sync client reaches it through pysync.replica.Replica(db).
    """

    def __init__(self, session: Session) -> None:
        self._session = session

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
        holder: list[Session] = []

        def on_close(reason: str) -> None:
            log.warning("database %r closed (%s)", name, reason)
            if holder:
                holder[0].channel.close()

        opened = await open_layout(name, schema, storage, on_close)
        last = Stamp.parse(opened.clock) if opened.clock else None
        session = Session(name, schema, opened.connection, opened.client_id,
                          HybridClock(opened.client_id, clock, last), opened.writer_row,
                          storage)
        holder.append(session)
        return cls(session)

    @property
    def name(self) -> str:
        return self._session.name

    @property
    def schema(self) -> Schema:
        return self._session.schema

    @property
    def client_id(self) -> str:
        """This database's id towards the server (created with it, kept for its life)."""
        return self._session.client_id

    @property
    def storage(self) -> Storage:
        """Where the database lives (pysync.storage)."""
        return self._session.storage

    def collection(self, name: str, scope: str | None = None) -> LocalCollection:
        """The records of collection `name` in `scope`: a shared scope's id
        (docs/sharing.md), or None for the user's personal scope. Each scope's records are
        kept apart: a query of one never returns another's."""
        if scope is not None and (not isinstance(scope, str) or not SCOPE_ID.fullmatch(scope)):
            raise InvalidValue(f"scope {scope!r} is no scope id ([A-Za-z0-9_-]{{8,64}})")
        return LocalCollection(self, self.schema.get(name).in_scope(scope))

    __getitem__ = collection

    def watch(self, callback: Watcher, collection: str | None = None) -> Callable[[], None]:
        """Call `callback(changes)` after every committed change: local writes, writes from
        another tab of this origin, and server changes, of every scope (`Change.scope` says
        which). Returns a function that unsubscribes."""
        if collection is not None:
            self.schema.get(collection)
        return self._session.watchers.add(callback, collection, ANY_SCOPE)

    async def pending_count(self) -> int:
        """How many local changes the server has not acknowledged yet (outbox entries)."""
        tx = self._session.tx([OUTBOX], "readonly")
        box: list[list[Any]] = []
        tx.read([idb.count(OUTBOX)], box.append)
        await tx.done()
        return int(box[0][0])

    def close(self) -> None:
        self._session.close()

    @property
    def closed(self) -> bool:
        return self._session.closed


class LocalCollection:
    """The records of one collection in one scope. Get one with `db.collection(name)`."""

    def __init__(self, db: Database, decl: Collection) -> None:
        self.db = db
        self._session = db._session
        self.decl = decl
        self.name = decl.name
        self.scope = decl.scope  # a shared scope's id; None: the personal scope
        self._local = decl.local_name  # what the store keys these records by

    # --- writes --------------------------------------------------------------------------

    async def put(self, key: str, value: Record) -> None:
        """Create or replace a record."""
        await self.put_many([(key, value)])

    async def put_many(self, items: Mapping[str, Record] | Iterable[tuple[str, Record]]
                       ) -> None:
        """Create or replace many records in one transaction."""
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        ops: list[LocalOp] = [("put", check_key(key), value) for key, value in pairs]
        if ops:
            # The values are checked by write(): a big write checks them chunk by chunk,
            # while IndexedDB stores the chunk before.
            await write(self._session, self.decl, ops, check_puts=True)

    async def patch(self, key: str, fields: Record) -> None:
        """Set some top-level fields of an existing record (NotFound if there is none)."""
        check_key(key)
        check_record(fields)
        if not fields:
            raise InvalidValue("a patch sets at least one field", key)
        await write(self._session, self.decl, [("patch", key, fields)])

    async def delete(self, key: str) -> None:
        """Delete a record; deleting a record that does not exist does nothing."""
        await self.delete_many([key])

    async def delete_many(self, keys: Iterable[str]) -> None:
        ops: list[LocalOp] = [("delete", check_key(k), None) for k in keys]
        if ops:
            await write(self._session, self.decl, ops)

    # --- reads ---------------------------------------------------------------------------

    async def get(self, key: str) -> Record | None:
        """The record's value (with pending local edits), or None."""
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        for k in keys:
            check_key(k)
        if not keys:
            return []
        rows = await self._session.read([idb.get(RECORDS, [self._local, k]) for k in keys])
        self._session.cache.remember({(self._local, k): r
                                      for k, r in zip(keys, rows, strict=True)})
        return [RecordRow.from_row(r).value if r else None for r in rows]

    def _range(self, index: str | None, equals: Any, lower: Any, upper: Any,
               lower_open: bool, upper_open: bool) -> tuple[str, idb.Bound, idb.Bound]:
        if index is None:
            for bound in (equals, lower, upper):
                if bound is not UNSET and bound is not None:
                    check_key(bound)
            if equals is not UNSET:
                lower = upper = equals
                lower_open = upper_open = False
            lo, hi = key_range(self._local, lower=None if lower is UNSET else lower,
                               upper=None if upper is UNSET else upper,
                               lower_open=lower_open, upper_open=upper_open)
            return "live", lo, hi
        decl = self.decl.index(index)
        for v in (equals, lower, upper):
            if v is not UNSET:
                for part in v if isinstance(v, tuple) else (v,):
                    if isinstance(part, (dict, list)):
                        check_record({"v": part})
                    elif part is not None and not isinstance(part, (bool, int, float, Decimal,
                                                                     str, bytes)):
                        raise InvalidValue(f"{type(part).__name__} is not a query value")
        lo, hi = index_range(self.decl, decl, equals=equals, lower=lower, upper=upper,
                             lower_open=lower_open, upper_open=upper_open)
        return "ix", lo, hi

    async def query(self, index: str | None = None, *, equals: Any = UNSET,
                    lower: Any = UNSET, upper: Any = UNSET, lower_open: bool = False,
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
        rows = await self._session.read([idb.get_all(RECORDS, ix, lo, hi, limit, reverse)])
        if len(rows[0]) <= _REMEMBER_READS:
            self._session.cache.remember({(r["k"][0], r["k"][1]): r for r in rows[0]})
        return [_doc(r) for r in rows[0]]

    async def count(self, index: str | None = None, *, equals: Any = UNSET,
                    lower: Any = UNSET, upper: Any = UNSET, lower_open: bool = False,
                    upper_open: bool = False) -> int:
        ix, lo, hi = self._range(index, equals, lower, upper, lower_open, upper_open)
        return int((await self._session.read([idb.count(RECORDS, ix, lo, hi)]))[0])

    async def pages(self, index: str | None = None, *, size: int = 100, equals: Any = UNSET,
                    lower: Any = UNSET, upper: Any = UNSET, lower_open: bool = False,
                    upper_open: bool = False, reverse: bool = False
                    ) -> AsyncIterator[list[Doc]]:
        """Iterate in pages of `size`, each page its own short transaction; resumes after
        the last key seen, so writes between pages neither repeat nor skip a record."""
        if size < 1:
            raise InvalidValue("page size must be >= 1")
        ix, lo, hi = self._range(index, equals, lower, upper, lower_open, upper_open)
        while True:
            rows = (await self._session.read(
                [idb.get_all(RECORDS, ix, lo, hi, size, reverse)]))[0]
            if not rows:
                return
            yield [_doc(r) for r in rows]
            if len(rows) < size:
                return
            last = rows[-1]
            if ix == "live":
                position = last["l"]
            else:
                position = next(k for k in last["ix"] if k[:2] == [self._local, index])
            if reverse:
                hi = (position, True)
            else:
                lo = (position, True)

    def watch(self, callback: Watcher) -> Callable[[], None]:
        """Call `callback(changes)` after every committed change of this collection's records
        in this scope (see Database.watch)."""
        return self._session.watchers.add(callback, self.name, self.scope)


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
