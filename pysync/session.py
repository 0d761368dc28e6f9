"""An open local database's shared state (internal to the store).

The page author's `pysync.store.Database`, the write paths (`pysync.writes`) and the sync
client's `pysync.replica.Replica` all work on one `Session`: the connection, the clock, the
cache of stored rows behind the fast write path, the watchers and the BroadcastChannel that
tells the other tabs of this origin what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pysync import idb
from pysync.errors import DatabaseClosed
from pysync.hlc import ClockError, HybridClock, Stamp
from pysync.layout import RECORDS
from pysync.outbox import dump_value, load_value
from pysync.rows import StoredRecordRow
from pysync.schema import Schema
from pysync.storage import Connection, Storage, Transaction
from pysync.values import from_json
from pysync.watch import Change, Watchers

log = logging.getLogger("pysync.store")

# Stored rows remembered for the fast write path (least recently used dropped first).
CACHED_ROWS = 4096
UNKNOWN: Any = object()  # RowCache.writer_row when this tab does not know it

RecordId = tuple[str, str]  # (collection, key)


class RowCache:
    """What this tab last saw stored: the writer meta row (UNKNOWN: not known) and record rows
    by (collection, key), None meaning no row. Only ever a guess: a fast write checks every
    row it relies on (pysync.writes)."""

    def __init__(self, writer_row: Any = UNKNOWN) -> None:
        self.writer_row: Any = writer_row
        self.rows: OrderedDict[RecordId, StoredRecordRow | None] = OrderedDict()

    def remember(self, rows: Mapping[RecordId, StoredRecordRow | None]) -> None:
        """Rows as stored by a committed transaction (None: no row)."""
        cache = self.rows
        for record, row in rows.items():
            cache[record] = row
            cache.move_to_end(record)
        while len(cache) > CACHED_ROWS:
            cache.popitem(last=False)

    def forget(self, records: Iterable[RecordId]) -> None:
        for record in records:
            self.rows.pop(record, None)


class Session:
    """One open database: what its Database, its write paths and its Replica share."""

    def __init__(self, name: str, schema: Schema, connection: Connection, client_id: str,
                 clock: HybridClock, writer_row: Any, storage: Storage) -> None:
        self.name = name
        self.schema = schema
        self.client_id = client_id
        self.storage = storage  # where `connection` lives (pysync.storage)
        self.connection = connection
        self.clock = clock
        self.cache = RowCache(writer_row)
        self.watchers = Watchers()
        # The sync clients of this tab, for their messages between tabs (post_sync).
        self.sync_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.channel = storage.channel(f"pysync:{name}", self._on_tab_message)

    @property
    def closed(self) -> bool:
        return self.connection.closed

    def close(self) -> None:
        if not self.connection.closed:
            self.channel.close()
        self.connection.close()

    def tx(self, stores: Sequence[str], mode: idb.Mode) -> Transaction:
        if self.connection.closed:
            raise DatabaseClosed(f"database {self.name!r} is closed")
        return self.connection.transaction(stores, mode)

    async def read(self, requests: Sequence[idb.Read]) -> list[Any]:
        """Reads of the records store, in one readonly transaction."""
        tx = self.tx([RECORDS], "readonly")
        box: list[list[Any]] = []
        tx.read(requests, box.append)
        await tx.done()
        return box[0]

    def observe(self, stored: Any) -> None:
        """Merge another tab's (or a past session's) clock, so stamps keep increasing."""
        if not stored:
            return
        with contextlib.suppress(ClockError):
            self.clock.observe(Stamp.parse(stored))

    # --- telling watchers and other tabs -------------------------------------------------

    def publish(self, changes: list[Change],
                stored: Mapping[RecordId, StoredRecordRow] | None = None) -> None:
        """After a commit: this tab's watchers now, the other tabs soon. `stored`: the rows
        the commit wrote, whose value text the message reuses for each record's last change
        (the value that row holds) instead of encoding the value again."""
        if not changes:
            return
        self.watchers.notify(changes)
        # Other tabs learn of it after this write returns: neither building the message nor
        # posting it is on the write's latency.
        asyncio.get_event_loop().call_soon(self._post, changes, stored or {})

    def _post(self, changes: list[Change], stored: Mapping[RecordId, StoredRecordRow]) -> None:
        if self.connection.closed:
            return
        texts: list[str | None] = []
        last: set[RecordId] = set()
        for c in reversed(changes):
            record = (c.collection, c.key)
            row = stored.get(record) if record not in last else None
            last.add(record)
            texts.append(row["v"] if row is not None
                         else None if c.value is None else dump_value(c.value))
        texts.reverse()
        message = {"hlc": str(self.clock.now()), "changes": [
            [c.collection, c.key, text, c.origin] for c, text in zip(changes, texts, strict=True)]}
        self.channel.post(json.dumps(message))

    def post_sync(self, data: dict[str, Any]) -> None:
        """A sync client's message to the other tabs' sync clients (pysync.client: conflict
        events, and requests to the tab that syncs), on the store's channel."""
        if not self.connection.closed:
            self.channel.post(json.dumps({"sync": data}))

    def _on_tab_message(self, text: str) -> None:
        try:
            message = json.loads(text)
            if isinstance(message, dict) and isinstance(message.get("sync"), dict):
                for listener in list(self.sync_listeners):
                    try:
                        listener(message["sync"])
                    except Exception:
                        log.exception("a sync client's tab message handler failed")
                return
            self.observe(message.get("hlc"))
            # A value comes as its stored JSON text (older pages: as a JSON structure).
            changes = [Change(c, k, None if v is None else
                              load_value(v) if isinstance(v, str) else from_json(v),
                              "server" if origin == "server" else "tab")
                       for c, k, v, origin in message["changes"]]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed message from another tab")
            self.cache.writer_row = UNKNOWN
            return
        # Another tab wrote: what this tab cached is out of date (the next write would find
        # out by its checks, then retry; this spares it that failed attempt).
        self.cache.writer_row = UNKNOWN
        self.cache.forget((change.collection, change.key) for change in changes)
        self.watchers.notify(changes)
