"""An in-memory twin of pysync.idb, with the browser's rules, for CPython.

The store, the outbox and the sync client run on it unchanged (pysync.storage is the seam).
It keeps the rules of IndexedDB that shape the code, so a mistake that breaks in Chromium
breaks here too (design.md sections 3 and 8):

- A transaction is active only during the event-loop turn (the task step) that created it
  and inside its request callbacks. Requests answer later, from the event loop
  (`loop.call_soon`, as the browser runs request events as tasks); the transaction commits
  when a turn ends with no request pending. Used after an `await`, it raises what idb.py
  raises in Chromium (checked there with the same code): a StorageError naming
  TransactionInactiveError while requests are pending, DatabaseClosed naming
  InvalidStateError once it has finished (idb.py's helper calls `objectStore()`, which
  throws that on a finished transaction).
- Any error aborts all of it: an exception in a read callback, a failing request
  (ConstraintError from `add` or a unique index), a request that cannot be issued (a key
  path the value lacks, a store outside the scope, a readonly transaction). Every write of
  an aborted transaction is rolled back; a commit is atomic.
- Readwrite transactions whose scopes overlap run one after the other, in creation order
  (readonly ones may run together); a transaction waits, requests queued, until it may start.
- Keys are ordered as IndexedDB orders them: numbers < dates < strings (by UTF-16 code
  unit) < binary < arrays (element-wise, a prefix first). Stores have a keyPath and indexes
  (unique, multiEntry); ranges have open or closed bounds; reads take a limit and a
  direction. Values are stored as JSON text, as idb.py sends them, so a read returns a copy.
- Versions: opening at a higher version runs the upgrade steps atomically after the other
  connections got `versionchange` and closed; a lower version fails.
- Channels (BroadcastChannel) deliver from the event loop, in order, to every other open
  channel of the same name on the same storage, never to the sender.

A `MemoryStorage` is a browser profile: it holds the committed state and outlives the
Connection objects opened on it. `crash()` simulates the tab (or browser) dying: uncommitted
transactions vanish, connections, channels and locks go; the objects that were open can no
longer touch it (DatabaseClosed), and a new `open` sees exactly what was committed.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from pysync import idb
from pysync.browser import LocalPlatform, Platform
from pysync.errors import DatabaseClosed

log = logging.getLogger("pysync.memdb")

SortKey = tuple[Any, ...]
_MISSING: Any = object()
_REQUESTS_PER_TURN = 16
_first = itemgetter(0)


class _Failure(Exception):
    """A DOMException-like failure: `name` as the browser names it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message

    def json(self) -> str:
        return json.dumps({"name": self.name, "message": self.message})


# --- keys ---------------------------------------------------------------------------------


def sort_key(key: Any) -> SortKey:
    """A Python value ordered as IndexedDB orders `key` (DataError if it is not a key)."""
    if isinstance(key, bool) or key is None:
        raise _Failure("DataError", f"{key!r} is not a valid key")
    if isinstance(key, (int, float)):
        if key != key:  # NaN
            raise _Failure("DataError", "NaN is not a valid key")
        return (0, key)
    if isinstance(key, datetime):
        return (1, key.timestamp())
    if isinstance(key, str):
        # By UTF-16 code unit, as JavaScript compares strings (not by code point).
        return (2, key.encode("utf-16-be", "surrogatepass"))
    if isinstance(key, (bytes, bytearray, memoryview)):
        return (3, bytes(key))
    if isinstance(key, (list, tuple)):
        return (4, tuple(sort_key(k) for k in key))
    raise _Failure("DataError", f"a {type(key).__name__} is not a valid key")


def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1, as `indexedDB.cmp(a, b)`."""
    ka, kb = sort_key(a), sort_key(b)
    return (ka > kb) - (ka < kb)


def _evaluate(value: Any, path: Any) -> Any:
    """A key path evaluated on a value; _MISSING if it does not resolve."""
    if isinstance(path, list):
        parts = [_evaluate(value, p) for p in path]
        return _MISSING if any(p is _MISSING for p in parts) else parts
    if path == "":
        return value
    for name in path.split("."):
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
    return value


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _parse(text: str) -> Any:
    """JSON.parse: refuses the NaN / Infinity that Python's json.dumps writes."""

    def refuse(name: str) -> Any:
        raise _Failure("SyntaxError", f"Unexpected token '{name}' is not valid JSON")

    return json.loads(text, parse_constant=refuse)


# --- object stores and indexes -------------------------------------------------------------


class _Index:
    def __init__(self, key_path: Any, unique: bool, multi_entry: bool) -> None:
        self.key_path = key_path
        self.unique = unique
        self.multi_entry = multi_entry
        self.entries: list[tuple[SortKey, SortKey]] = []  # (index key, primary key), sorted
        self.of: dict[SortKey, list[SortKey]] = {}  # primary key -> its index keys

    def clone(self) -> _Index:
        other = _Index(self.key_path, self.unique, self.multi_entry)
        other.entries = list(self.entries)
        other.of = {k: list(v) for k, v in self.of.items()}
        return other

    def keys_for(self, value: Any) -> list[SortKey]:
        """The index keys a record contributes (none if the path or key is not valid)."""
        v = _evaluate(value, self.key_path)
        if v is _MISSING:
            return []
        if self.multi_entry and isinstance(v, list):
            out: dict[SortKey, None] = {}
            for item in v:
                try:
                    out[sort_key(item)] = None
                except _Failure:
                    continue  # an element that is not a key is skipped
            return list(out)
        try:
            return [sort_key(v)]
        except _Failure:
            return []

    def clash(self, keys: list[SortKey], primary: SortKey) -> bool:
        """Whether a unique index already maps one of `keys` to another record."""
        if not self.unique:
            return False
        for k in keys:
            i = bisect.bisect_left(self.entries, (k,))
            if i < len(self.entries) and self.entries[i][0] == k and self.entries[i][1] != primary:
                return True
        return False

    def add(self, primary: SortKey, keys: list[SortKey]) -> None:
        for k in keys:
            bisect.insort(self.entries, (k, primary))
        if keys:
            self.of[primary] = keys

    def remove(self, primary: SortKey) -> None:
        for k in self.of.pop(primary, []):
            i = bisect.bisect_left(self.entries, (k, primary))
            del self.entries[i]


class _ObjectStore:
    def __init__(self, key_path: Any) -> None:
        self.key_path = key_path
        self.records: dict[SortKey, tuple[Any, str]] = {}  # sort key -> (key, JSON text)
        self.order: list[SortKey] = []
        self.indexes: dict[str, _Index] = {}

    def clone(self) -> _ObjectStore:
        other = _ObjectStore(self.key_path)
        other.records = dict(self.records)
        other.order = list(self.order)
        other.indexes = {n: ix.clone() for n, ix in self.indexes.items()}
        return other

    def set(self, sk: SortKey, record: tuple[Any, str] | None) -> int:
        """Replace the record at `sk` (None: delete it); returns the change in bytes."""
        delta = 0
        old = self.records.pop(sk, None)
        if old is not None:
            delta -= len(old[1])
            del self.order[bisect.bisect_left(self.order, sk)]
            for ix in self.indexes.values():
                ix.remove(sk)
        if record is not None:
            delta += len(record[1])
            self.records[sk] = record
            bisect.insort(self.order, sk)
            value = json.loads(record[1])
            for ix in self.indexes.values():
                ix.add(sk, ix.keys_for(value))
        return delta


class _State:
    """One database's committed state and its live connections and transactions."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = 0
        self.stores: dict[str, _ObjectStore] = {}
        self.bytes = 0
        self.connections: list[Connection] = []
        self.live: list[Transaction] = []  # unfinished, in creation order

    def may_start(self, tx: Transaction) -> bool:
        for other in self.live:
            if other is tx:
                return True
            if other._scope & tx._scope and "readwrite" in (other._mode, tx._mode):
                return False
        return True

    def kick(self) -> None:
        for tx in list(self.live):
            if not tx._started:
                tx._schedule()


Undo = tuple[str, SortKey, "tuple[Any, str] | None"]


def _restore(stores: dict[str, _ObjectStore], undo: list[Undo]) -> int:
    delta = 0
    for store, sk, old in reversed(undo):
        delta += stores[store].set(sk, old)
    return delta


# --- transactions -------------------------------------------------------------------------


class _Read:
    def __init__(self, requests: list[idb.Read], then: Callable[[list[Any]], None]) -> None:
        self.requests = requests
        self.then = then


class _Write:
    def __init__(self, store: str, verb: str, sk: SortKey, record: tuple[Any, str] | None
                 ) -> None:
        self.store = store
        self.verb = verb
        self.sk = sk
        self.record = record


class _Check:
    def __init__(self, store: str, key: Any, want: Any) -> None:
        self.store = store
        self.key = key
        self.sk = sort_key(key)
        self.want = _json_text(want)


_Request = _Read | _Write | _Check


class Transaction:
    """One transaction on the twin: the surface of idb.Transaction, with its rules."""

    def __init__(self, state: _State, stores: Sequence[str], mode: idb.Mode,
                 storage: MemoryStorage) -> None:
        self._loop = asyncio.get_running_loop()
        self._state = state
        self._storage = storage
        self._scope = frozenset(stores)
        self._mode = mode
        # Active during the creating turn (the task that created it, until it yields) and
        # inside request callbacks; at no other time.
        self._creator = asyncio.current_task(self._loop)
        self._turn_open = True
        self._in_callback = False
        self._started = False
        self._scheduled = False
        self._finished = False
        self._requests: deque[_Request] = deque()
        self._undo: list[Undo] = []
        self._exception: BaseException | None = None
        self._failure = ""
        self._announce: tuple[Any, str] | None = None
        self._ended: asyncio.Future[str] = self._loop.create_future()
        state.live.append(self)
        self._schedule()  # runs once the creating turn is over

    # --- the surface of idb.Transaction

    def write(self, writes: Sequence[idb.Write], *, sliced: bool = False) -> None:
        """Issue puts / adds / deletes; a request that cannot be issued aborts it all.
        (`sliced` changes only when the browser's helper issues them: here, at once.)"""
        text = idb.writes_json(writes)  # a TypeError escapes, as in idb.py
        if text is None:
            return
        try:
            self._issue_writes(_parse(text))
        except _Failure as e:
            self.abort()
            raise idb._error(e.json(), "write") from None

    def read(self, requests: Sequence[idb.Read], then: Callable[[list[Any]], None]) -> None:
        """Issue reads; `then(results)` runs inside the transaction once all have answered."""
        reads = list(requests)
        json.dumps([r.to_json() for r in reads])  # what idb.py sends must be JSON
        try:
            needs_request = [self._check_read(r) for r in reads]
        except _Failure as e:
            self.abort()
            raise idb._error(e.json(), "read") from None
        if not any(needs_request):  # idb.py's helper answers those at once, synchronously
            self._deliver(_Read(reads, then))
            return
        self._queue(_Read(reads, then))

    def abort(self) -> None:
        self._abort("")

    async def done(self) -> None:
        """Wait for the commit; raise the error that aborted the transaction, if any."""
        failure = await self._ended
        if self._exception is not None:
            raise self._exception
        if failure:
            raise idb._error(failure)

    # --- issuing

    def _usable(self, store: str) -> _ObjectStore:
        """`transaction.objectStore(store)`, then the active check of a request on it."""
        if self._turn_open and not self._is_active():
            # Another task, so the creating turn is over (its end is queued behind us).
            self._end_turn()
        if self._finished:
            raise _Failure("InvalidStateError", "The transaction has finished.")
        if store not in self._scope:
            raise _Failure("NotFoundError", f"The object store {store!r} is not in the scope")
        if not self._is_active():
            raise _Failure("TransactionInactiveError", "The transaction is not active.")
        return self._state.stores[store]

    def _issue_writes(self, batch: list[Any]) -> None:
        queued: list[_Write] = []
        for store, verb, items in batch:
            os = self._usable(store)
            if verb not in ("put", "add", "delete"):
                raise _Failure("Error", f"unknown write {verb}")
            if self._mode == "readonly":
                raise _Failure("ReadOnlyError", "The transaction is read-only.")
            for item in items:
                if verb == "delete":
                    queued.append(_Write(store, verb, sort_key(item), None))
                    continue
                key = _evaluate(item, os.key_path)
                if key is _MISSING:
                    raise _Failure("DataError", "Evaluating the object store's key path did "
                                                "not yield a value.")
                queued.append(_Write(store, verb, sort_key(key), (key, _json_text(item))))
        for w in queued:
            self._queue(w)

    def _check_read(self, r: idb.Read) -> bool:
        """Validate a read as the browser does when it is issued; False if it is answered
        without a request (an empty range)."""
        os = self._usable(r.store)
        if r.index is not None and r.index not in os.indexes:
            raise _Failure("NotFoundError", f"The index {r.index!r} was not found.")
        if r.kind == "get":
            sort_key(r.key)
            return True
        return _bounds(r) is not None

    def _is_active(self) -> bool:
        return self._in_callback or (
            self._turn_open and asyncio.current_task(self._loop) is self._creator)

    def _queue(self, request: _Request) -> None:
        self._requests.append(request)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self._finished:
            self._scheduled = True
            self._loop.call_soon(self._hop)

    # --- running (from the event loop)

    def _end_turn(self) -> None:
        """The creating turn is over; a transaction that asked nothing commits there."""
        if self._finished or not self._turn_open:
            return
        self._turn_open = False
        if not self._requests and not self._started and self._state.may_start(self):
            self._started = True
            self._commit()

    def _hop(self) -> None:
        """Requests answer one turn later than they could: in Chromium a task resumed right
        after the turn that issued them (e.g. after `await asyncio.sleep(0)`) still finds
        them pending, and so the transaction alive but inactive."""
        self._end_turn()
        if self._finished:
            self._scheduled = False
            return
        self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        if self._finished:
            return
        if not self._started:
            if not self._state.may_start(self):
                return  # kicked when an earlier transaction ends
            self._started = True
        # Those issued before this turn, a few at a time: as in the browser, other tasks
        # (and a crash) may come between two requests of one transaction.
        for _ in range(min(len(self._requests), _REQUESTS_PER_TURN)):
            request = self._requests.popleft()
            try:
                self._execute(request)
            except _Failure as e:
                self._abort(e.json())
            if self._finished:
                return
        if self._requests:
            self._schedule()
        else:
            self._commit()

    def _execute(self, request: _Request) -> None:
        if isinstance(request, _Read):
            self._deliver(request)
        elif isinstance(request, _Check):
            record = self._state.stores[request.store].records.get(request.sk)
            found = "null" if record is None else _json_text(json.loads(record[1]))
            if found != request.want:
                raise _Failure("StaleError",
                               f"{request.store} {json.dumps(request.key)} changed")
        else:
            self._apply(request)

    def _apply(self, w: _Write) -> None:
        os = self._state.stores[w.store]
        old = os.records.get(w.sk)
        if w.verb == "add" and old is not None:
            raise _Failure("ConstraintError", "Key already exists in the object store.")
        if w.record is not None:
            value = json.loads(w.record[1])
            for name, ix in os.indexes.items():
                if ix.clash(ix.keys_for(value), w.sk):
                    raise _Failure("ConstraintError",
                                   f"Unable to add key to index '{name}': at least one key "
                                   "does not satisfy the uniqueness requirements.")
        elif old is None:
            return  # deleting nothing
        self._undo.append((w.store, w.sk, old))
        self._state.bytes += os.set(w.sk, w.record)

    def _deliver(self, request: _Read) -> None:
        text = "[" + ",".join(self._answer(r) for r in request.requests) + "]"
        was_in, self._in_callback = self._in_callback, True  # inside the success event
        try:
            request.then(json.loads(text))
        except BaseException as e:
            if self._exception is None:
                self._exception = e
            self._abort("")
        finally:
            self._in_callback = was_in

    def _answer(self, r: idb.Read) -> str:
        """One read's result as JSON text, as idb.py's helper returns it."""
        os = self._state.stores[r.store]
        ix = os.indexes[r.index] if r.index is not None else None
        if r.kind == "get":
            sk = sort_key(r.key)
            if ix is None:
                record = os.records.get(sk)
            else:
                i = bisect.bisect_left(ix.entries, (sk,))
                hit = i < len(ix.entries) and ix.entries[i][0] == sk
                record = os.records[ix.entries[i][1]] if hit else None
            return "null" if record is None else record[1]
        bounds = _bounds(r)
        if bounds is None:
            return "0" if r.kind == "count" else "[]"
        seq, a, b = _span(os, ix, bounds)
        if r.kind == "count":
            return str(b - a)
        if r.reverse and r.kind == "all":  # a "prev" cursor: a limit of 0 reads nothing
            part = seq[a:b][::-1] if r.limit is None else seq[max(a, b - r.limit):b][::-1]
        elif r.limit:  # getAll / getAllKeys: a count of 0 means no limit
            part = seq[a:min(b, a + r.limit)]
        else:
            part = seq[a:b]
        primaries = part if ix is None else [p for _, p in part]
        if r.kind == "keys":
            return _json_text([os.records[p][0] for p in primaries])
        return "[" + ",".join(os.records[p][1] for p in primaries) + "]"

    # --- the end

    def _commit(self) -> None:
        quota = self._storage.quota_bytes
        if quota is not None and self._undo and self._storage.used_bytes() > quota:
            self._abort(_Failure("QuotaExceededError", "The quota has been exceeded.").json())
            return
        self._end("", settle=False)
        if self._announce is not None:
            channel, message = self._announce
            # From the complete event, before the writer resumes (as idb.py's helper does).
            # As idb.py's helper does: postMessage on a channel closed with its database
            # throws; the commit stands and is still reported to its writer.
            with contextlib.suppress(_Failure):
                channel.post(message)
        self._settle("")

    def _abort(self, failure: str) -> None:
        if self._finished:
            return
        self._state.bytes += _restore(self._state.stores, self._undo)
        if not self._failure:
            # (idb.py's helper names an abort without an error so.)
            self._failure = failure or _Failure("AbortError",
                                                "the transaction was aborted").json()
        self._end(self._failure)

    def _end(self, failure: str, settle: bool = True) -> None:
        self._finished = True
        self._turn_open = False
        self._undo = []
        self._requests.clear()
        if self in self._state.live:
            self._state.live.remove(self)
        if settle:
            self._settle(failure)
        self._state.kick()

    def _settle(self, failure: str) -> None:
        if not self._ended.done():
            # (Suppressed: its event loop is gone, a crash after asyncio.run.)
            with contextlib.suppress(RuntimeError):
                self._ended.set_result(failure)

    def _vanish(self) -> None:
        """The tab died: nothing of it was committed, and no callback of it runs again."""
        self._state.bytes += _restore(self._state.stores, self._undo)
        self._failure = _Failure("InvalidStateError", "The storage crashed.").json()
        self._announce = None
        self._end(self._failure)


def _bounds(r: idb.Read) -> tuple[Any, bool, Any, bool] | None:
    """The read's range as sort keys (None for an unbounded side); None if empty (idb.py's
    helper turns the DataError of an invalid or inverted range into an empty result)."""
    lo_key, lo_open = r.lower or (None, False)
    hi_key, hi_open = r.upper or (None, False)
    try:
        lo = None if lo_key is None else sort_key(lo_key)
        hi = None if hi_key is None else sort_key(hi_key)
    except _Failure:
        return None
    if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_open or hi_open))):
        return None
    return lo, lo_open, hi, hi_open


def _span(os: _ObjectStore, ix: _Index | None, bounds: tuple[Any, bool, Any, bool]
          ) -> tuple[list[Any], int, int]:
    """The range as a slice [a:b] of the store's keys or the index's (index key, primary
    key) entries, in order."""
    lo, lo_open, hi, hi_open = bounds
    seq: list[Any] = os.order if ix is None else ix.entries
    key = None if ix is None else _first
    a = 0 if lo is None else (bisect.bisect_right(seq, lo, key=key) if lo_open
                              else bisect.bisect_left(seq, lo, key=key))
    b = len(seq) if hi is None else (bisect.bisect_left(seq, hi, key=key) if hi_open
                                     else bisect.bisect_right(seq, hi, key=key))
    return seq, a, b


# --- databases, channels, the storage ------------------------------------------------------


class Connection:
    """An open connection to a database of a MemoryStorage: idb.Connection's surface."""

    def __init__(self, storage: MemoryStorage, state: _State,
                 on_close: Callable[[str], None] | None) -> None:
        self.name = state.name
        self.closed = False
        self._storage = storage
        self._state = state
        self._on_close = on_close

    def transaction(self, stores: Sequence[str], mode: idb.Mode = "readonly") -> Transaction:
        if self.closed:
            raise DatabaseClosed(f"database {self.name!r} is closed")
        try:
            self._check_scope(stores, mode)
        except _Failure as e:
            raise idb._error(e.json(), "transaction") from None
        return Transaction(self._state, stores, mode, self._storage)

    def _check_scope(self, stores: Sequence[str], mode: str) -> None:
        if mode not in ("readonly", "readwrite"):
            raise _Failure("TypeError", f"{mode!r} is not a valid transaction mode")
        if not stores:
            raise _Failure("InvalidAccessError", "The scope is empty.")
        for s in stores:
            if s not in self._state.stores:
                raise _Failure("NotFoundError", f"The object store {s!r} was not found.")

    async def checked_write(self, stores: Sequence[str], expect: Sequence[tuple[str, Any, Any]],
                            writes: Sequence[idb.Write],
                            announce: tuple[Any, str] | None = None) -> None:
        """As idb.Connection.checked_write: reads checking `expect`, then `writes`, issued at
        once in one readwrite transaction; Stale (nothing written) if a check fails."""
        if self.closed:
            raise DatabaseClosed(f"database {self.name!r} is closed")
        batch = idb.writes_json(writes) or "[]"
        text = f"[{json.dumps([list(c) for c in expect], separators=(',', ':'))},{batch}]"
        tx: Transaction | None = None
        try:
            checks, ops = _parse(text)
            self._check_scope(stores, "readwrite")
            tx = Transaction(self._state, stores, "readwrite", self._storage)
            tx._announce = announce
            for store, key, want in checks:
                tx._usable(store)
                tx._queue(_Check(store, key, want))
            tx._issue_writes(ops)
        except _Failure as e:
            if tx is not None:
                tx._abort(e.json())
            raise idb._error(e.json(), "write") from None
        await tx.done()

    def close(self) -> None:
        """Close the connection (idempotent); its running transactions still finish."""
        self._on_close = None
        self._detach()

    def _detach(self) -> None:
        self.closed = True
        if self in self._state.connections:
            self._state.connections.remove(self)

    def _version_change(self) -> None:
        """Another connection opens a newer version: close, as idb.py's helper does."""
        on_close = self._on_close
        self._on_close = None
        self._detach()
        if on_close is not None:
            asyncio.get_running_loop().call_soon(on_close, "versionchange")


class Channel:
    """A BroadcastChannel between connections of one MemoryStorage."""

    def __init__(self, storage: MemoryStorage, name: str,
                 on_message: Callable[[str], None]) -> None:
        self.name = name
        self.closed = False
        self._storage = storage
        self._on_message = on_message
        storage._channels.setdefault(name, []).append(self)

    def post(self, message: str) -> None:
        if self.closed:
            raise _Failure("InvalidStateError", "the channel is closed")
        loop = asyncio.get_running_loop()
        for other in self._storage._channels.get(self.name, []):
            if other is not self:
                loop.call_soon(other._deliver, message)

    def _deliver(self, message: str) -> None:
        if self.closed:
            return
        try:
            self._on_message(message)
        except Exception:  # the browser reports it and goes on
            log.exception("a channel's message handler failed")

    def close(self) -> None:
        self.closed = True
        members = self._storage._channels.get(self.name, [])
        if self in members:
            members.remove(self)


class MemoryStorage:
    """A browser profile in memory: databases, channels and the glue (`platform`).

    `quota_bytes`: writes that would store more JSON text than this, over all databases,
    fail with QuotaExceededError (StorageFull), as a browser out of quota does.
    """

    def __init__(self, quota_bytes: int | None = None) -> None:
        self.quota_bytes = quota_bytes
        self._states: dict[str, _State] = {}
        self._channels: dict[str, list[Channel]] = {}
        self._platform = LocalPlatform()

    @property
    def platform(self) -> Platform:
        return self._platform

    @property
    def local_platform(self) -> LocalPlatform:
        """The platform with its test controls (`set_online`)."""
        return self._platform

    def used_bytes(self) -> int:
        return sum(s.bytes for s in self._states.values())

    async def open(self, name: str, version: int, upgrades: Mapping[int, Sequence[idb.Step]],
                   on_close: Callable[[str], None] | None = None) -> Connection:
        """Open (creating or upgrading) `name` at `version`; upgrades[v] brings v-1 to v."""
        during = f"opening database {name!r}"
        await asyncio.sleep(0)  # an open request answers from the event loop
        state = self._states.setdefault(name, _State(name))
        if version < 1 or version < state.version:
            if state.version == 0:
                del self._states[name]
            raise idb._error(_Failure("VersionError", f"version {version} is lower than "
                                      f"the existing version {state.version}").json(), during)
        if version > state.version:
            for other in list(state.connections):
                other._version_change()
            while state.live:  # the closed connections' transactions finish first
                await asyncio.gather(*(tx._ended for tx in list(state.live)),
                                     return_exceptions=True)
            try:
                stores = _upgrade(state, version, upgrades)
            except _Failure as e:
                if state.version == 0:
                    del self._states[name]
                raise idb._error(e.json(), during) from None
            state.stores = stores
            state.version = version
            state.bytes = sum(len(t) for os in stores.values() for _, t in os.records.values())
        conn = Connection(self, state, on_close)
        state.connections.append(conn)
        return conn

    def channel(self, name: str, on_message: Callable[[str], None]) -> Channel:
        return Channel(self, name, on_message)

    async def delete_database(self, name: str) -> None:
        await asyncio.sleep(0)
        state = self._states.get(name)
        if state is None:
            return
        for other in list(state.connections):
            other._version_change()
        while state.live:
            await asyncio.gather(*(tx._ended for tx in list(state.live)),
                                 return_exceptions=True)
        if self._states.get(name) is state:
            del self._states[name]

    def databases(self) -> dict[str, int]:
        """Name -> version of every database (as `indexedDB.databases()`)."""
        return {n: s.version for n, s in self._states.items()}

    def rows(self, name: str, store: str) -> list[Any]:
        """The committed rows of a store in key order (what a reopen after a crash sees)."""
        state = self._states[name]
        stores = {store: state.stores[store].clone()}
        for tx in state.live:
            _restore(stores, [u for u in tx._undo if u[0] == store])
        os = stores[store]
        return [json.loads(os.records[sk][1]) for sk in os.order]

    def crash(self) -> None:
        """The browser dies: uncommitted transactions vanish, connections and channels close
        without a word (no event handler runs), locks are freed. The objects that were open
        can no longer touch this storage (DatabaseClosed); `open` starts from what was
        committed. Stop or drop those objects (e.g. `SyncClient.stop()`) afterwards."""
        for state in self._states.values():
            for tx in list(reversed(state.live)):
                tx._vanish()
            for conn in list(state.connections):
                conn._on_close = None
                conn._detach()
        for members in self._channels.values():
            for ch in members:
                ch.closed = True
        self._channels.clear()
        self._platform = LocalPlatform()


def _upgrade(state: _State, version: int, upgrades: Mapping[int, Sequence[idb.Step]]
             ) -> dict[str, _ObjectStore]:
    """The stores after the upgrade steps from state.version to `version` (on a copy: an
    upgrade that fails changes nothing)."""
    stores = {n: os.clone() for n, os in state.stores.items()}
    for v in range(state.version + 1, version + 1):
        for step in upgrades.get(v, []):
            op, *args = step
            if op not in _UPGRADE_STEPS:
                raise _Failure("Error", f"unknown upgrade step {op}")
            _UPGRADE_STEPS[op](stores, *args)
    return stores


def _create_store(stores: dict[str, _ObjectStore], name: str,
                  options: dict[str, Any] | None = None) -> None:
    options = options or {}
    if name in stores:
        raise _Failure("ConstraintError", f"the object store {name!r} exists")
    if options.get("autoIncrement"):
        raise _Failure("NotSupportedError", "the twin has no key generators")
    if options.get("keyPath") is None:
        raise _Failure("NotSupportedError", "the twin needs in-line keys")
    stores[name] = _ObjectStore(options["keyPath"])


def _delete_store(stores: dict[str, _ObjectStore], name: str) -> None:
    if name not in stores:
        raise _Failure("NotFoundError", f"no object store {name!r}")
    del stores[name]


def _create_index(stores: dict[str, _ObjectStore], store: str, name: str, key_path: Any,
                  options: dict[str, Any] | None = None) -> None:
    options = options or {}
    if store not in stores:
        raise _Failure("NotFoundError", f"no object store {store!r}")
    os = stores[store]
    if name in os.indexes:
        raise _Failure("ConstraintError", f"the index {name!r} exists")
    ix = _Index(key_path, bool(options.get("unique")), bool(options.get("multiEntry")))
    for sk in os.order:  # an index on a store with records indexes them, or refuses
        keys = ix.keys_for(json.loads(os.records[sk][1]))
        if ix.clash(keys, sk):
            raise _Failure("ConstraintError", f"the index {name!r} is not unique")
        ix.add(sk, keys)
    os.indexes[name] = ix


def _delete_index(stores: dict[str, _ObjectStore], store: str, name: str) -> None:
    if name not in stores[store].indexes:
        raise _Failure("NotFoundError", f"no index {name!r}")
    del stores[store].indexes[name]


# The upgrade steps the twin knows (idb.Step: the operation's name, then its arguments).
_UPGRADE_STEPS: dict[str, Callable[..., None]] = {
    "createStore": _create_store, "deleteStore": _delete_store,
    "createIndex": _create_index, "deleteIndex": _delete_index,
}
