"""The only module that touches IndexedDB (and the BroadcastChannel between tabs).

Two platform facts shape it (design.md section 3):

- Never await inside a transaction. Pyodide resumes a coroutine as a new browser task, and
  IndexedDB commits a transaction when a task ends with no request pending. So every request
  of a transaction is issued synchronously; a read-modify-write continues in a callback that
  runs inside the request's success event (while the transaction is still active); the only
  await is on the transaction's one `done` promise.
- Cross the JS bridge once per batch. A small JS helper (idb_helper.js, shipped in the
  package and evaluated once per page) takes a whole batch of requests as one JSON string
  and answers a whole batch of reads as one JSON string, instead of one proxy call per
  record or per field.

Completion is not awaited as a JS promise: awaiting one costs a future, two once-callables,
a microtask and then a `call_soon`, i.e. one more browser task (a MessageChannel hop) before
the coroutine resumes. Instead the helper calls one long-lived Python callback from the
transaction's complete/abort event, which settles a `Completion` and resumes the awaiting
task right there, as `await` on a promise does in JS (see `Completion`).

Failures come back as pysync errors: QuotaExceededError -> StorageFull, ConstraintError ->
ConstraintViolation, any other abort -> TransactionAborted, a closed database ->
DatabaseClosed. An exception raised by Python code in a read callback aborts the transaction
and is re-raised by `done()`.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.resources
import itertools
import json
import logging
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pysync.errors import (
    ConstraintViolation,
    DatabaseClosed,
    StorageError,
    StorageFull,
    TransactionAborted,
)

log = logging.getLogger("pysync.idb")


class Stale(TransactionAborted):
    """A checked write found a row other than expected, so wrote nothing (the caller's cache
    was out of date; it reads and retries). Never reaches the app."""


Mode = Literal["readonly", "readwrite"]
# An upgrade step, applied inside the versionchange transaction:
#   ("createStore", name, options) ("deleteStore", name)
#   ("createIndex", store, name, keyPath, options) ("deleteIndex", store, name)
Step = tuple[Any, ...]
Bound = tuple[Any, bool]  # (key, open); key None means unbounded

HELPER_FILE = "idb_helper.js"  # package data beside this module


def helper_source() -> str:
    """The JS helper's source, read from the installed package (the wheel ships it)."""
    return importlib.resources.files("pysync").joinpath(HELPER_FILE).read_text("utf-8")


_helper: Any = None
_done_proxy: Any = None  # lives as long as the page: one for every transaction
_completions: dict[int, Completion] = {}
_ids = itertools.count(1)


def _js() -> Any:
    global _helper, _done_proxy
    if _helper is None:
        from pyodide.code import run_js
        from pyodide.ffi import create_proxy

        helper = run_js(helper_source())
        _done_proxy = create_proxy(_on_done)
        helper.setDone(_done_proxy)
        _helper = helper
    return _helper


def _on_done(tx_id: int, failure: str) -> None:
    completion = _completions.pop(tx_id, None)
    if completion is not None:
        completion.settle(failure)


def _completion() -> tuple[int, Completion]:
    tx_id = next(_ids)
    completion = _completions[tx_id] = Completion(asyncio.get_event_loop())
    return tx_id, completion


class Completion:
    """The end of one transaction: "" (committed) or its failure as JSON.

    A Future-compatible awaitable (asyncio's `_asyncio_future_blocking` protocol) that, when
    settled from a browser event with no task running, wakes its awaiting task synchronously
    instead of through `call_soon` (one more browser task under Pyodide's WebLoop): the
    coroutine goes on inside the transaction's complete event, like JS code after an awaited
    promise. Any other case (a task is running, cancellation, a callback added once settled)
    goes through `call_soon` as a Future does.
    """

    _asyncio_future_blocking = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._done = False
        self._cancelled = False
        self._result = ""
        self._callbacks: list[tuple[Callable[[Any], object], contextvars.Context | None]] = []

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def result(self) -> str:
        if self._cancelled:
            raise asyncio.CancelledError
        if not self._done:
            raise asyncio.InvalidStateError("the transaction has not ended")
        return self._result

    def exception(self) -> BaseException | None:
        if self._cancelled:
            raise asyncio.CancelledError
        return None

    def add_done_callback(self, fn: Callable[[Any], object], *,
                          context: contextvars.Context | None = None) -> None:
        if self._done:
            self._loop.call_soon(fn, self, context=context)
        else:
            self._callbacks.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        kept = [(f, c) for f, c in self._callbacks if f != fn]
        removed = len(self._callbacks) - len(kept)
        self._callbacks = kept
        return removed

    def cancel(self, msg: Any = None) -> bool:
        if self._done:
            return False
        self._done = self._cancelled = True
        self._wake(direct=False)
        return True

    def settle(self, result: str) -> None:
        if self._done:  # cancelled meanwhile: the transaction ended on its own
            return
        self._done = True
        self._result = result
        self._wake(direct=True)

    def _wake(self, direct: bool) -> None:
        callbacks, self._callbacks = self._callbacks, []
        direct = (direct and asyncio._get_running_loop() is self._loop
                  and asyncio.current_task(self._loop) is None)
        for fn, context in callbacks:
            if not direct:
                self._loop.call_soon(fn, self, context=context)
                continue
            try:
                (context or contextvars.copy_context()).run(fn, self)
            except Exception:  # a task's wake-up does not raise; anything else is logged
                log.exception("a transaction's completion callback failed")

    def __await__(self) -> Generator[Any, None, str]:
        if not self._done:
            self._asyncio_future_blocking = True
            yield self
        return self.result()

    __iter__ = __await__


def _error(failure: str, during: str = "transaction") -> StorageError:
    info = json.loads(failure)
    name, message = info.get("name", "Error"), info.get("message", "")
    text = f"{during} failed: {name}: {message}"
    if name == "QuotaExceededError":
        return StorageFull(text)
    if name == "ConstraintError":
        return ConstraintViolation(text)
    if name == "InvalidStateError":
        return DatabaseClosed(text)
    if name == "StaleError":
        return Stale(text)
    if during == "transaction":
        return TransactionAborted(text)
    return StorageError(text)


def _from_js_exception(e: Exception, during: str) -> StorageError:
    name = getattr(e, "name", type(e).__name__)
    message = getattr(e, "message", str(e))
    return _error(json.dumps({"name": name, "message": message}), during)


def _is_js_exception(e: BaseException) -> bool:
    return type(e).__name__ == "JsException"


@dataclass(frozen=True)
class Read:
    """One read request: `get` by key, `all` values in a range, or `count` in a range."""

    kind: Literal["get", "all", "keys", "count"]
    store: str
    index: str | None = None
    key: Any = None  # for get
    lower: Bound | None = None
    upper: Bound | None = None
    limit: int | None = None
    reverse: bool = False

    def to_json(self) -> list[Any]:
        if self.kind == "get":
            q: Any = self.key
        elif self.lower is None and self.upper is None:
            q = None
        else:
            lo, lo_open = self.lower or (None, False)
            hi, hi_open = self.upper or (None, False)
            q = [lo, lo_open, hi, hi_open]
        return [self.kind, self.store, self.index, q, self.limit, self.reverse]


def get(store: str, key: Any, index: str | None = None) -> Read:
    return Read("get", store, index, key)


def get_all(store: str, index: str | None = None, lower: Bound | None = None,
            upper: Bound | None = None, limit: int | None = None,
            reverse: bool = False) -> Read:
    return Read("all", store, index, None, lower, upper, limit, reverse)


def get_keys(store: str, index: str | None = None, lower: Bound | None = None,
             upper: Bound | None = None, limit: int | None = None) -> Read:
    """Primary keys only (cheaper than values): which of a span's records exist."""
    return Read("keys", store, index, None, lower, upper, limit)


def count(store: str, index: str | None = None, lower: Bound | None = None,
          upper: Bound | None = None) -> Read:
    return Read("count", store, index, None, lower, upper)


@dataclass(frozen=True)
class Encoded:
    """Rows already encoded as one JSON array text (`count` of them), for a write that was
    prepared before its transaction: the transaction writes them without encoding them again
    (see encode_rows and pysync.replica's bulk apply)."""

    text: str
    count: int


def encode_rows(rows: Sequence[Any]) -> Encoded:
    return Encoded(json.dumps(list(rows), separators=(",", ":")), len(rows))


def join_encoded(parts: Sequence[Encoded]) -> Encoded:
    """Encoded rows, one after the other, as one Encoded (rows encoded a slice at a time)."""
    return Encoded(f"[{','.join(p.text[1:-1] for p in parts if p.count)}]",
                   sum(p.count for p in parts))


Write = tuple[str, Literal["put", "add", "delete"], Sequence[Any] | Encoded]


def writes_json(writes: Sequence[Write]) -> str | None:
    """A batch of writes as the helper takes it, [[store, verb, [row or key, ...]], ...], in
    one JSON text (Encoded rows pasted in as they are); None if nothing is to be written."""
    parts = []
    for store, verb, items in writes:
        if isinstance(items, Encoded):
            if items.count:
                parts.append(f"[{json.dumps(store)},{json.dumps(verb)},{items.text}]")
        elif items:
            parts.append(json.dumps([store, verb, list(items)], separators=(",", ":")))
    return f"[{','.join(parts)}]" if parts else None


class Transaction:
    """One IndexedDB transaction. Issue requests synchronously; await `done()` once."""

    def __init__(self, js_tx: Any, completion: Completion) -> None:
        self._js = js_tx
        self._completion = completion
        self._exception: BaseException | None = None
        self._callbacks: list[Any] = []

    def write(self, writes: Sequence[Write], *, sliced: bool = False) -> None:
        """Issue puts / adds / deletes on several stores: one bridge crossing for all.
        `sliced`: the helper issues more than 250 rows of one store a slice at a time, so
        that the page's thread is never busy issuing thousands of puts at once (requests
        asked for after it still come after it); a request that cannot be issued in a later
        slice then aborts the transaction (`done()` raises) instead of raising here."""
        text = writes_json(writes)
        if text is None:
            return
        try:
            self._js.write(text, sliced)
        except Exception as e:
            if not _is_js_exception(e):
                raise
            self.abort()
            raise _from_js_exception(e, "write") from None

    def read(self, requests: Sequence[Read], then: Callable[[list[Any]], None]) -> None:
        """Issue reads; `then(results)` runs inside the transaction once all have answered,
        and may issue more requests (never await)."""
        from pyodide.ffi import create_once_callable

        state = {"called": False}

        def deliver(text: str) -> None:
            state["called"] = True
            try:
                then(json.loads(text))
            except BaseException as e:
                if self._exception is None:
                    self._exception = e
                self.abort()

        proxy = create_once_callable(deliver)
        self._callbacks.append((proxy, state))
        try:
            self._js.read(json.dumps([r.to_json() for r in requests]), proxy)
        except Exception as e:
            if not _is_js_exception(e):
                raise
            self.abort()
            raise _from_js_exception(e, "read") from None

    def abort(self) -> None:
        self._js.abort(None)

    async def done(self) -> None:
        """Wait for the commit; raise the error that aborted the transaction, if any."""
        try:
            failure = await self._completion
        finally:
            for proxy, state in self._callbacks:
                if not state["called"]:
                    proxy.destroy()  # never called: the transaction ended first
            self._callbacks.clear()
        if self._exception is not None:
            raise self._exception
        if failure:
            raise _error(failure)


class Connection:
    """An open IndexedDB database."""

    def __init__(self, name: str, js_db: Any, on_close_proxy: Any) -> None:
        self.name = name
        self._js = js_db
        self._on_close_proxy = on_close_proxy
        self.closed = False

    @classmethod
    async def open(cls, name: str, version: int, upgrades: Mapping[int, Sequence[Step]],
                   on_close: Callable[[str], None] | None = None) -> Connection:
        """Open (creating or upgrading) `name` at `version`; upgrades[v] brings v-1 to v."""
        from pyodide.ffi import create_proxy

        holder: list[Connection] = []

        def closed(reason: str) -> None:
            if holder:
                holder[0].closed = True
            if on_close is not None:
                on_close(reason)

        proxy = create_proxy(closed)
        steps = {str(v): [list(s) for s in ss] for v, ss in upgrades.items()}
        result = await _js().open(name, version, json.dumps(steps), proxy)
        error = result.error
        if error:
            proxy.destroy()
            raise _error(error, f"opening database {name!r}")
        db = cls(name, result.db, proxy)
        holder.append(db)
        return db

    def transaction(self, stores: Sequence[str], mode: Mode = "readonly") -> Transaction:
        if self.closed:
            raise DatabaseClosed(f"database {self.name!r} is closed")
        helper = _js()
        tx_id, completion = _completion()
        try:
            return Transaction(helper.Tx.new(self._js, ",".join(stores), mode, tx_id),
                               completion)
        except Exception as e:
            _completions.pop(tx_id, None)
            if not _is_js_exception(e):
                raise
            raise _from_js_exception(e, "transaction") from None

    async def checked_write(self, stores: Sequence[str], expect: Sequence[tuple[str, Any, Any]],
                            writes: Sequence[Write],
                            announce: tuple[Channel, str] | None = None) -> None:
        """One readwrite transaction issued in one bridge crossing: reads checking that each
        (store, key, row) of `expect` holds exactly that row (None: no row), then `writes`.
        If a check fails the transaction aborts, so nothing is written, and Stale is raised.
        No Python runs inside the transaction: this is the write path with no read round
        trip before the writes, for callers that know (and so can check) what they replace.
        `announce` (channel, message): posted from the complete event, before Python resumes.
        """
        if self.closed:
            raise DatabaseClosed(f"database {self.name!r} is closed")
        helper = _js()
        tx_id, completion = _completion()
        batch = writes_json(writes) or "[]"
        text = f"[{json.dumps([list(c) for c in expect], separators=(',', ':'))},{batch}]"
        channel, message = announce if announce is not None else (None, "")
        failure = helper.checkedWrite(self._js, ",".join(stores), tx_id, text,
                                      None if channel is None else channel._js, message)
        if failure:
            _completions.pop(tx_id, None)
            raise _error(failure, "write")
        failure = await completion
        if failure:
            raise _error(failure)

    def close(self) -> None:
        """Close the connection (idempotent). Also called after the browser closed it."""
        if not self.closed:
            self.closed = True
            self._js.close()
        if self._on_close_proxy is not None:
            self._on_close_proxy.destroy()
            self._on_close_proxy = None


async def delete_database(name: str) -> None:
    failure = await _js().deleteDatabase(name)
    if failure:
        raise _error(failure, f"deleting database {name!r}")


class Channel:
    """A BroadcastChannel carrying strings between the tabs of one origin."""

    def __init__(self, name: str, on_message: Callable[[str], None]) -> None:
        from pyodide.ffi import create_proxy

        self._proxy = create_proxy(on_message)
        self._js = _js().channel(name, self._proxy)

    def post(self, message: str) -> None:
        self._js.postMessage(message)

    def close(self) -> None:
        self._js.close()
        self._proxy.destroy()
