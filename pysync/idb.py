"""The only module that touches IndexedDB (and the BroadcastChannel between tabs).

Two platform facts shape it (design.md section 3):

- Never await inside a transaction. Pyodide resumes a coroutine as a new browser task, and
  IndexedDB commits a transaction when a task ends with no request pending. So every request
  of a transaction is issued synchronously; a read-modify-write continues in a callback that
  runs inside the request's success event (while the transaction is still active); the only
  await is on the transaction's one `done` promise.
- Cross the JS bridge once per batch. A small JS helper (below, evaluated once) takes a whole
  batch of requests as one JSON string and answers a whole batch of reads as one JSON string,
  instead of one proxy call per record or per field.

Failures come back as pysync errors: QuotaExceededError -> StorageFull, ConstraintError ->
ConstraintViolation, any other abort -> TransactionAborted, a closed database ->
DatabaseClosed. An exception raised by Python code in a read callback aborts the transaction
and is re-raised by `done()`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pysync.errors import (
    ConstraintViolation,
    DatabaseClosed,
    StorageError,
    StorageFull,
    TransactionAborted,
)

Mode = Literal["readonly", "readwrite"]
# An upgrade step, applied inside the versionchange transaction:
#   ("createStore", name, options) ("deleteStore", name)
#   ("createIndex", store, name, keyPath, options) ("deleteIndex", store, name)
Step = tuple[Any, ...]
Bound = tuple[Any, bool]  # (key, open); key None means unbounded

_HELPER_JS = r"""
(() => {
  "use strict";
  const failure = (e) => JSON.stringify({
    name: (e && e.name) || "Error", message: (e && e.message) || String(e) });

  // [lo, loOpen, hi, hiOpen] -> IDBKeyRange; an empty range (lo > hi) -> "empty".
  const toRange = (q) => {
    if (q === null) return null;
    const [lo, loOpen, hi, hiOpen] = q;
    try {
      if (lo !== null && hi !== null) return IDBKeyRange.bound(lo, hi, loOpen, hiOpen);
      if (lo !== null) return IDBKeyRange.lowerBound(lo, loOpen);
      if (hi !== null) return IDBKeyRange.upperBound(hi, hiOpen);
      return null;
    } catch (e) {
      if (e.name === "DataError") return "empty";
      throw e;
    }
  };

  class Tx {
    constructor(db, stores, mode) {
      this.tx = db.transaction(stores.split(","), mode);
      this.failure = "";
      // Resolves "" when committed, or the failure as JSON: never rejects, so Python maps it.
      this.done = new Promise((resolve) => {
        this.tx.oncomplete = () => resolve("");
        this.tx.onabort = () => resolve(this.failure || failure(
          this.tx.error || { name: "AbortError", message: "the transaction was aborted" }));
      });
    }
    // [[store, "put" | "add" | "delete", [row or key, ...]], ...]
    write(opsJson) {
      for (const [store, verb, items] of JSON.parse(opsJson)) {
        const os = this.tx.objectStore(store);
        if (verb === "put") for (const r of items) os.put(r);
        else if (verb === "add") for (const r of items) os.add(r);
        else if (verb === "delete") for (const k of items) os.delete(k);
        else throw new Error(`unknown write ${verb}`);
      }
    }
    // [[kind, store, index, query, limit, reverse], ...]; kind: get | all | keys | count.
    // Calls back once, with every result, inside the last request's success event.
    read(requestsJson, callback) {
      const reqs = JSON.parse(requestsJson);
      const out = new Array(reqs.length);
      let left = reqs.length + 1;
      const settle = (i, v) => {
        if (i >= 0) out[i] = v;
        if (--left === 0) {
          try { callback(JSON.stringify(out)); } catch (e) { this.abort(e); }
        }
      };
      reqs.forEach(([kind, store, index, q, limit, reverse], i) => {
        let src = this.tx.objectStore(store);
        if (index !== null) src = src.index(index);
        if (kind === "get") {
          const r = src.get(q);
          r.onsuccess = () => settle(i, r.result === undefined ? null : r.result);
          return;
        }
        const range = toRange(q);
        if (range === "empty") { settle(i, kind === "count" ? 0 : []); return; }
        if (kind === "count") {
          const r = src.count(range);
          r.onsuccess = () => settle(i, r.result);
        } else if (kind === "keys") {
          const r = src.getAllKeys(range, limit === null ? undefined : limit);
          r.onsuccess = () => settle(i, r.result);
        } else if (!reverse) {
          const r = src.getAll(range, limit === null ? undefined : limit);
          r.onsuccess = () => settle(i, r.result);
        } else {
          const rows = [];
          const r = src.openCursor(range, "prev");
          r.onsuccess = () => {
            const c = r.result;
            if (c && (limit === null || rows.length < limit)) { rows.push(c.value); c.continue(); }
            else settle(i, rows);
          };
        }
      });
      settle(-1);
    }
    abort(e) {
      if (e && !this.failure) this.failure = failure(e);
      try { this.tx.abort(); } catch (_) { /* already finished */ }
    }
  }

  function open(name, version, upgradesJson, onClose) {
    const upgrades = JSON.parse(upgradesJson);
    return new Promise((resolve) => {
      let req;
      try { req = indexedDB.open(name, version); }
      catch (e) { resolve({ db: null, error: failure(e) }); return; }
      req.onupgradeneeded = (event) => {
        const db = req.result, tx = req.transaction;
        for (let v = event.oldVersion + 1; v <= event.newVersion; v++) {
          for (const [op, a, b, c, d] of upgrades[String(v)] || []) {
            if (op === "createStore") db.createObjectStore(a, b);
            else if (op === "deleteStore") db.deleteObjectStore(a);
            else if (op === "createIndex") tx.objectStore(a).createIndex(b, c, d);
            else if (op === "deleteIndex") tx.objectStore(a).deleteIndex(b);
            else throw new Error(`unknown upgrade step ${op}`);
          }
        }
      };
      req.onsuccess = () => {
        const db = req.result;
        // Another tab wants a newer version: step aside, or it stays blocked.
        db.onversionchange = () => { db.close(); onClose("versionchange"); };
        db.onclose = () => onClose("closed");
        resolve({ db, error: "" });
      };
      req.onerror = () => resolve({ db: null, error: failure(req.error) });
    });
  }

  function deleteDatabase(name) {
    return new Promise((resolve) => {
      const req = indexedDB.deleteDatabase(name);
      req.onsuccess = () => resolve("");
      req.onerror = () => resolve(failure(req.error));
      req.onblocked = () => {};
    });
  }

  function channel(name, onMessage) {
    const ch = new BroadcastChannel(name);
    ch.onmessage = (event) => onMessage(event.data);
    return ch;
  }

  return { Tx, open, deleteDatabase, channel };
})()
"""

_helper: Any = None


def _js() -> Any:
    global _helper
    if _helper is None:
        from pyodide.code import run_js

        _helper = run_js(_HELPER_JS)
    return _helper


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


Write = tuple[str, Literal["put", "add", "delete"], Sequence[Any]]


class Transaction:
    """One IndexedDB transaction. Issue requests synchronously; await `done()` once."""

    def __init__(self, js_tx: Any) -> None:
        self._js = js_tx
        self._exception: BaseException | None = None
        self._callbacks: list[Any] = []

    def write(self, writes: Sequence[Write]) -> None:
        """Issue puts / adds / deletes on several stores: one bridge crossing for all."""
        batch = [[store, verb, list(items)] for store, verb, items in writes if items]
        if not batch:
            return
        try:
            self._js.write(json.dumps(batch, separators=(",", ":")))
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
            failure = await self._js.done
        finally:
            for proxy, state in self._callbacks:
                if not state["called"]:
                    proxy.destroy()  # never called: the transaction ended first
            self._callbacks.clear()
        if self._exception is not None:
            raise self._exception
        if failure:
            raise _error(failure)


class Database:
    """An open IndexedDB database."""

    def __init__(self, name: str, js_db: Any, on_close_proxy: Any) -> None:
        self.name = name
        self._js = js_db
        self._on_close_proxy = on_close_proxy
        self.closed = False

    @classmethod
    async def open(cls, name: str, version: int, upgrades: Mapping[int, Sequence[Step]],
                   on_close: Callable[[str], None] | None = None) -> Database:
        """Open (creating or upgrading) `name` at `version`; upgrades[v] brings v-1 to v."""
        from pyodide.ffi import create_proxy

        holder: list[Database] = []

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
        try:
            return Transaction(_js().Tx.new(self._js, ",".join(stores), mode))
        except Exception as e:
            if not _is_js_exception(e):
                raise
            raise _from_js_exception(e, "transaction") from None

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
