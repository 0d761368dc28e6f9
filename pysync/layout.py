"""pysync's IndexedDB layout (stores, indexes, meta rows) and opening a database on it.

Three object stores (docs/local-store.md, "IndexedDB layout", tables every stored key):

- `records`: one row per record, pysync.rows.StoredRecordRow, keyed by `k` = [collection, key].
- `outbox`: one row per pending mutation, pysync.outbox.StoredOutboxRow, keyed by order `o`.
- `meta`: named values, StoredMetaRow {"k": name, "v": value}; the names are below.

App indexes live in the record rows' computed multiEntry `ix` / `ux` keys, so declaring a new
app index needs no IndexedDB upgrade, only a re-index when the database is opened.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from pysync import idb
from pysync.rows import RecordRow
from pysync.schema import Collection, Schema, split_local_name
from pysync.storage import Connection, Storage

LAYOUT_VERSION = 1
RECORDS, OUTBOX, META = "records", "outbox", "meta"

# Meta rows. CLIENT_ID and NEXT_MUTATION_ID are created with the database.
CLIENT_ID = "client_id"  # this database's id towards the server (and its HLC node)
NEXT_MUTATION_ID = "next_mutation_id"  # the wire id the next entry taken for sending gets
INDEXES = "indexes"  # the fingerprint of the schema's indexes the rows are indexed by
# Every local write reads (or checks) and bumps it: a WriterState.
WRITER = "writer"
# Set while a resync (a snapshot after a reset) is in progress; record rows it has yet to
# confirm carry rows.RESYNC_MARK (RecordRow.resync). See Replica.begin_resync.
RESYNC = "resync"
# `version` conflicts whose resolver has yet to decide, stored with the push answer that
# brought them, so a tab closed before the resolver's result is stored asks it again after
# the reopen: a list of replica.Unresolved rows (docs/local-store.md).
UNRESOLVED = "unresolved"

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


class StoredMetaRow(TypedDict):
    """A row of the `meta` store."""

    k: str  # the name: one of the constants above, or the sync client's (e.g. "cursor")
    v: Any  # the value, any JSON


class WriterState(TypedDict):
    """The value of the WRITER meta row."""

    clock: str  # the last HLC stamp this database issued or observed
    next_order: int  # the order key (`o`) of the next new outbox entry


def meta_row(k: str, v: Any) -> StoredMetaRow:
    return {"k": k, "v": v}


def meta_value(row: Any, default: Any = None) -> Any:
    """A meta row's value; `default` if there is no row."""
    return default if row is None else row.get("v", default)


def declared(schema: Schema, name: str) -> Collection:
    """The declaration of the records stored under a local name (schema.local_name), or a
    bare one for data a newer schema dropped."""
    collection, scope = split_local_name(name)
    decl = schema.get(collection) if collection in schema else Collection(collection)
    return decl.in_scope(scope)


def _fingerprint(schema: Schema) -> str:
    return json.dumps([[c.name, [[i.name, list(i.fields), i.unique] for i in c.indexes]]
                       for c in schema])


@dataclass(frozen=True)
class Opened:
    """An open connection, and what opening it read."""

    connection: Connection
    client_id: str
    clock: str | None  # WriterState.clock as stored, if any
    writer_row: StoredMetaRow | None  # the WRITER row as stored (None: no row yet)


async def open_layout(name: str, schema: Schema, storage: Storage,
                      on_close: Callable[[str], None]) -> Opened:
    """Open (creating or upgrading) the database `name`; create its client id the first time;
    re-index every record row if the schema's indexes changed. One transaction after the
    open, no await inside it."""
    connection = await storage.open(name, LAYOUT_VERSION, UPGRADES, on_close)
    fingerprint = _fingerprint(schema)
    found: dict[str, Any] = {}

    def reindex(rows: list[Any]) -> None:
        out = []
        for row in rows[0]:
            r = RecordRow.from_row(row)
            out.append(r.to_row(declared(schema, r.collection)))
        tx.write([(RECORDS, "put", out), (META, "put", [meta_row(INDEXES, fingerprint)])])

    def init(rows: list[Any]) -> None:
        client_id, writer, indexes = (meta_value(r) for r in rows)
        writes: list[StoredMetaRow] = []
        if client_id is None:
            client_id = uuid.uuid4().hex
            writes += [meta_row(CLIENT_ID, client_id), meta_row(NEXT_MUTATION_ID, 1)]
        tx.write([(META, "put", writes)])
        found.update(client_id=client_id, clock=(writer or {}).get("clock"),
                     writer_row=rows[1])
        if indexes != fingerprint:
            tx.read([idb.get_all(RECORDS)], reindex)

    tx = connection.transaction([RECORDS, META], "readwrite")
    tx.read([idb.get(META, k) for k in (CLIENT_ID, WRITER, INDEXES)], init)
    try:
        await tx.done()
    except BaseException:
        connection.close()
        raise
    return Opened(connection, found["client_id"], found["clock"], found["writer_row"])
