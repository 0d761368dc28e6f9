"""Benchmark (not a test): a first sync into an empty browser, next to the raw pipeline.

    python -m tests.bench.first_sync_bench [--records 100000] [--rounds 3]

As a new user would: --records records are written into one user's personal scope with boto3
(BatchWriteItem, plain items without pysync's meta), then a page with an empty IndexedDB
opens the database and starts a SyncClient against the real server (`create_app`, the
default settings: rate limit on, change feed off since nothing here needs it). The figure is
from `client.start()` until the first round has pulled to the head (its status callback),
and every record is then in IndexedDB (a raw JS count of the `records` store checks it).
Each round syncs into a fresh database; the first round warms the page and the server up
too, so the best and the median are shown.

Baseline of the same round, the raw pipeline: a boto3 Query (ConsistentRead, paginated as
DynamoDB pages: 1 MB) of the same items, in this process, plus a raw JS IndexedDB bulk put,
in the same page, of the same records as pysync stored them (its rows, read back with a raw
getAll; one transaction, into a fresh database with the same stores and indexes). Ratio =
raw pipeline time / pysync time (>= 1: as fast as the raw pipeline).

The page is kept responsive: a PerformanceObserver counts the page's long tasks (> 50 ms)
during the sync and the longest one is shown.

Where the time goes (summed over the pages of the round, as a share of the sync's time;
stages of the client may overlap the server's and each other when the client fetches the
next page while it stores the last):
- server: the pull route's page (the Puller: DynamoDB Query calls inside it shown apart),
  the response's JSON encoding; wrappers installed by this benchmark on the app's objects.
- client (in the page, wrappers installed on pysync's own objects): the HTTP request
  (time to the response's headers on the page's clock, then the body's transfer into
  Python), JSON parsing, the protocol's parsing and checks (PullResponse.from_json), storing
  the page (the replica's apply), and what is left of the loop (the rest).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import Page, sync_playwright

import server.pull_scopes
from pysync.layout import UPGRADES
from pysync.protocol import PullResponse
from server.app import create_app
from server.assets import ensure_pysync_wheel
from server.config import Settings
from server.context import ServerContext
from server.dynamo_local import DynamoDBLocal
from server.tables import ensure_tables
from tests.bench.items import fill, raw_query
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, open_test_page, run_py
from tests.support import serve

COLLECTION = "todos"

# Installed before the page's own scripts: the time to headers of every pull, on the page's
# clock, and the page's long tasks.
PAGE_TRACE = """
(() => {
  const trace = window.__pulls = [];
  const realFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = new URL(typeof input === "string" ? input : input.url, location.href);
    const t0 = performance.now();
    const response = await realFetch(input, init);
    if (url.pathname === "/v1/pull") trace.push([t0, performance.now()]);
    return response;
  };
  window.__longTasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
    }).observe({ type: "longtask", buffered: false });
  } catch (e) { /* no long task timing: reported as such */ }
})();
"""

SETUP = """
import asyncio, json, time, js
import pysync
import pysync.client as _client_module
from pysync import Schema, Collection, Index
from pysync.client import SyncClient, dev_token_provider
from pysync.protocol import PullResponse
from pysync.replica import Replica

SCHEMA = Schema(Collection("todos", indexes=(Index("by_done", "done"),)))
base = js.location.origin
PROFILE = {}

def _add(name, ms):
    PROFILE[name] = PROFILE.get(name, 0.0) + ms

def _timed_async(owner, name, label):
    real = getattr(owner, name)
    async def wrapper(*args, **kwargs):
        t0 = js.performance.now()
        try:
            return await real(*args, **kwargs)
        finally:
            _add(label, js.performance.now() - t0)
    setattr(owner, name, wrapper)

def _timed(owner, name, label, kind=None):
    real = getattr(owner, name)
    def wrapper(*args, **kwargs):
        t0 = js.performance.now()
        try:
            return real(*args, **kwargs)
        finally:
            _add(label, js.performance.now() - t0)
    setattr(owner, name, classmethod(lambda cls, *a, **k: wrapper(*a, **k))
            if kind == "classmethod" else wrapper)

# Wrappers on pysync's own objects, each counted once whatever calls it.
_timed(_client_module, "loads", "client: JSON parse")
_timed(PullResponse, "from_json", "client: PullResponse.from_json", "classmethod")
for _name in ("prepare_page", "apply_server_changes", "apply_server_page"):
    if hasattr(Replica, _name):
        _timed_async(Replica, _name, "client: store the page (" + _name + ")")

_real_request = SyncClient._request
async def _request(self, method, path, **kwargs):
    t0 = js.performance.now()
    try:
        return await _real_request(self, method, path, **kwargs)
    finally:
        if path == "/v1/pull":
            _add("client: pull request incl. JSON parse", js.performance.now() - t0)
SyncClient._request = _request
None
"""

SYNC = """
PROFILE.clear()
js.window.__pulls.splice(0)
js.window.__longTasks.splice(0)
await pysync.delete_database(%(db)r)
db = await pysync.open_database(%(db)r, SCHEMA)
done = asyncio.Event()
marks = {}
def on_status(status):
    if status.last_synced_at is not None and not status.syncing and not done.is_set():
        marks["end"] = js.performance.now()
        done.set()
client = SyncClient(db, base, dev_token_provider(base, %(user)r), on_status=on_status,
                    **%(options)s)
marks["start"] = js.performance.now()
await client.start()
await done.wait()
await client.stop()
db.close()
{"ms": marks["end"] - marks["start"], "start": marks["start"], "profile": PROFILE}
"""

# The raw JS side of the baseline: the rows pysync stored (read back, staying in JS), bulk
# put into a fresh database with the same stores and indexes, in one transaction.
RAW_PUT = """
async ([source, target, upgradesJson]) => {
  const open = (name, upgrades) => new Promise((ok, ko) => {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => {
      const db = req.result, tx = req.transaction;
      if (upgrades) for (const [op, a, b, c, d] of upgrades["1"]) {
        if (op === "createStore") db.createObjectStore(a, b);
        else tx.objectStore(a).createIndex(b, c, d);
      }
    };
    req.onsuccess = () => ok(req.result);
    req.onerror = () => ko(req.error);
  });
  const done = (tx) => new Promise((ok, ko) => {
    tx.oncomplete = ok;
    tx.onabort = () => ko(tx.error);
  });
  const src = await open(source, null);
  const rows = await new Promise((ok) => {
    const r = src.transaction("records").objectStore("records").getAll();
    r.onsuccess = () => ok(r.result);
  });
  src.close();
  await new Promise((ok) => { const r = indexedDB.deleteDatabase(target); r.onsuccess = ok; });
  const db = await open(target, JSON.parse(upgradesJson));
  const t0 = performance.now();
  const tx = db.transaction(["records"], "readwrite");
  const store = tx.objectStore("records");
  for (const row of rows) store.put(row);
  await done(tx);
  const ms = performance.now() - t0;
  db.close();
  await new Promise((ok) => { const r = indexedDB.deleteDatabase(target); r.onsuccess = ok; });
  return { ms, rows: rows.length };
}
"""

COUNT = """
async (name) => {
  const db = await new Promise((ok, ko) => {
    const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => ko(r.error);
  });
  const n = await new Promise((ok) => {
    const r = db.transaction("records").objectStore("records").count();
    r.onsuccess = () => ok(r.result);
  });
  db.close();
  return n;
}
"""


def value(n: int) -> dict[str, Any]:
    """One record as a new user would write it with boto3: a few fields, about 150 bytes."""
    return {"title": {"S": f"Buy item number {n}"}, "done": {"BOOL": n % 2 == 0},
            "list": {"S": ["home", "work", "misc"][n % 3]}, "rank": {"N": str(n)},
            "notes": {"S": "x" * 40}}


class ServerProfile:
    """Time spent in the server's stages of the pull route, summed (wrappers around the
    app's own objects and classes; nothing in the server's code knows of them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ms: dict[str, float] = {}
        self._undo: list[Callable[[], None]] = []

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.ms[name] = self.ms.get(name, 0.0) + seconds * 1000

    def wrap(self, owner: Any, name: str, label: str) -> None:
        real = getattr(owner, name, None)
        if real is None:  # (an older server, measured for comparison)
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - t0)

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, real))

    def install(self, ctx: ServerContext) -> None:
        self.wrap(server.pull_scopes.ScopedPuller, "page", "server: the page (Puller)")
        self.wrap(ctx.puller.client, "query", "server:   of which DynamoDB Query")
        self.wrap(ctx.puller, "_count_live", "server:   of which counting what remains")
        self.wrap(PullResponse, "to_json", "server: the answer as JSON data")
        self.wrap(server.pull_scopes, "json_answer", "server: JSON encoding (+ gzip)")
        if hasattr(server.pull_scopes, "JSONBody"):  # before the answer was gzipped
            self.wrap(server.pull_scopes.JSONBody, "render", "server: JSON encoding")

    def take(self) -> dict[str, float]:
        with self.lock:
            out, self.ms = self.ms, {}
        return out

    def close(self) -> None:
        for undo in reversed(self._undo):
            undo()


@contextmanager
def bench_server(local: DynamoDBLocal) -> Iterator[tuple[str, ServerContext, ServerProfile]]:
    settings = Settings(dev=True, dynamodb_endpoint=local.endpoint,
                        table_prefix=f"fs{uuid.uuid4().hex[:8]}_")
    app = create_app(settings)
    ctx: ServerContext = app.state.ctx
    ensure_tables(ctx.dynamodb, settings.table_prefix)
    profile = ServerProfile()
    profile.install(ctx)
    try:
        with serve(app) as url:
            yield url, ctx, profile
    finally:
        profile.close()


def sync_round(page: Page, user: str, name: str, records: int, profile: ServerProfile,
               limit: int | None) -> dict[str, Any]:
    profile.take()
    options = {"pull_limit": limit} if limit else {}
    out: dict[str, Any] = run_py(page, SYNC % {"db": name, "user": user, "options": options})
    out["server"] = profile.take()
    pulls = page.evaluate("window.__pulls.splice(0)")
    out["pulls"] = len(pulls)
    out["ttfb"] = sum(h - s for s, h in pulls)
    tasks = page.evaluate("window.__longTasks.splice(0)")
    out["long_tasks"] = [d for s, d in tasks if s >= out["start"]]
    found = page.evaluate(COUNT, name)
    if found != records:
        raise AssertionError(f"{found} records in IndexedDB after the sync, not {records}")
    return out


def raw_round(page: Page, ctx: ServerContext, scope: str, name: str, records: int
              ) -> tuple[float, float]:
    """(Query seconds, raw put seconds) of the raw pipeline."""
    query_s, n = raw_query(ctx, scope)
    if n != records:
        raise AssertionError(f"the raw Query found {n} items, not {records}")
    upgrades = json.dumps({str(k): [list(s) for s in v] for k, v in UPGRADES.items()})
    put = page.evaluate(RAW_PUT, [name, f"{name}-raw", upgrades])
    if put["rows"] != records:
        raise AssertionError(f"{put['rows']} rows to put, not {records}")
    return query_s, put["ms"] / 1000


def report(n: int, rounds: list[dict[str, Any]], version: str, limit: int | None) -> None:
    pages = f"pull_limit {limit}" if limit else "the client's default pull_limit"
    print(f"First sync of {n:,} records into an empty IndexedDB (Chromium {version}; "
          f"{len(rounds)} rounds; server defaults, {pages})")
    for i, r in enumerate(rounds, 1):
        raw_s = r["query_s"] + r["put_s"]
        print(f"  round {i}: pysync {r['ms'] / 1000:6.2f} s = {n / r['ms'] * 1000:7.0f} "
              f"records/s ({r['pulls']} pulls)   raw pipeline {raw_s:6.2f} s = "
              f"{n / raw_s:7.0f} records/s (boto3 Query {r['query_s']:.2f} s + raw JS put "
              f"{r['put_s']:.2f} s)   ratio {raw_s * 1000 / r['ms']:.2f}x")
    for label, pick in (("best", min), ("median", statistics.median)):
        ms = pick(r["ms"] for r in rounds)
        ratio = pick(r["ms"] / ((r["query_s"] + r["put_s"]) * 1000) for r in rounds)
        print(f"  {label:6}: {n / ms * 1000:7.0f} records/s (target >= 7,100)   "
              f"ratio to the raw pipeline {1 / ratio:.2f}x (target >= 0.5x)")
    last = rounds[-1]
    tasks = last["long_tasks"]
    print(f"  the page during the sync (last round): {len(tasks)} long tasks (> 50 ms), "
          f"longest {max(tasks, default=0):.0f} ms, in all {sum(tasks):.0f} ms")
    print(f"  where the time goes (last round, {last['ms']:.0f} ms; summed over "
          f"{last['pulls']} pulls; stages overlap when the next page is fetched while the "
          "last is stored):")
    stages = dict(last["server"])
    stages["client: pull time to headers (server + network)"] = last["ttfb"]
    stages.update(last["profile"])
    for name, ms in stages.items():
        print(f"    {name:58} {ms:8.0f} ms  {ms / last['ms']:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None,
                        help="the client's pull_limit (default: the client's default)")
    args = parser.parse_args()
    ensure_pysync_wheel()
    user = f"fs{uuid.uuid4().hex[:8]}"
    scope = f"u#{user}"
    with DynamoDBLocal() as local, bench_server(local) as (url, ctx, profile), \
            sync_playwright() as pw:
        t0 = time.perf_counter()
        fill(ctx, scope, args.records, COLLECTION, value)
        print(f"(filled {args.records:,} items with boto3 in {time.perf_counter() - t0:.1f} s)",
              flush=True)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_init_script(PAGE_TRACE)
        page = open_test_page(context, url)
        page.set_default_timeout(600_000)
        run_py(page, SETUP)
        rounds = []
        for r in range(args.rounds):
            name = f"first-sync-{r}"
            out = sync_round(page, user, name, args.records, profile, args.limit)
            out["query_s"], out["put_s"] = raw_round(page, ctx, scope, name, args.records)
            run_py(page, f"await pysync.delete_database({name!r})")
            rounds.append(out)
        version = browser.version
        browser.close()
    report(args.records, rounds, version, args.limit)


if __name__ == "__main__":
    main()
