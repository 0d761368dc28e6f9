"""Benchmark (not a test): browser-to-browser latency, next to the raw stream latency.

    python -m tests.bench.latency_bench [--writes 50] [--spacing 0.3] [--runs 1]

Two devices of one user (two Chromium contexts, each its own IndexedDB and its own
SyncClient) against a real server with the **default settings** (`Settings()` with the change
feed on, as `python -m server` runs it: feed poll, events poll and everything else as they
ship) on one DynamoDB Local. Device A writes a record (`todos.put`), waits for B to see it,
then pauses 0.5-1.5 x `--spacing` s (drawn, so writes do not lock onto a poll's phase). The
figure is, per write, from the start of the write call on page A to the watch callback on
page B that sees it (the change is in B's IndexedDB by then). Both pages stamp with
`performance.timeOrigin + performance.now()`, one clock for both (and the server's
`time.time()` for the server's stages). With `--across`, the same again with page A and page
B on two `python -m server` processes (defaults) on the same tables, once with A and once with
B on the process that works the stream (totals only).

Also printed: the CPU an idle `python -m server` (defaults, one events stream open) and
DynamoDB Local use over `--idle-s` seconds, from /proc/<pid>/stat.

Baseline of the same run: the raw DynamoDB Local stream latency (boto3 PutItem -> a raw
GetRecords loop sees the record; tests/bench/feed_bench.py's `raw_stream_latency`).

Per write, the stages (median and p95 of each, in ms), from timestamps taken on the pages
(a wrapper around `fetch` and around stream reads, installed before the page boots) and in
the server (wrappers around the push route's core, the feed's ingest and the poke hub,
installed by this benchmark on the app's own objects):

    A write -> A push sent        local write, outbox, the sync round starts
    A push sent -> push done      POST /v1/push (server side: route entry -> commit)
    push done -> feed has it      stream hop + the feed's wait for its next GetRecords
    feed has it -> appended       ingest: the change log's transaction
    appended -> B poked           poke hub -> SSE -> page B
    B poked -> B pull sent        B's client wakes its round
    B pull sent -> B pull back    GET /v1/pull
    B pull back -> B watch        apply to IndexedDB, then the watch callback
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

import server.api
from server.app import create_app
from server.config import Settings
from server.context import ServerContext
from server.dynamo_local import DynamoDBLocal
from tests.bench.feed_bench import pct, raw_stream_latency
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, run_py
from tests.support import serve, server_process

# Installed before the page's own scripts: stamps every fetch (start, headers) and every
# chunk of a streamed body that carries a poke, on the page's shared clock.
PAGE_TRACE = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const trace = window.__trace = [];
  const realFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = new URL(typeof input === "string" ? input : input.url, location.href);
    const entry = { path: url.pathname, start: now(), headers: null };
    trace.push(entry);
    const response = await realFetch(input, init);
    entry.headers = now();
    return response;
  };
  const read = ReadableStreamDefaultReader.prototype.read;
  const decoder = new TextDecoder();
  ReadableStreamDefaultReader.prototype.read = async function () {
    const result = await read.call(this);
    if (!result.done && result.value instanceof Uint8Array && result.value.length < 4096
        && decoder.decode(result.value).includes("event: poke")) {
      trace.push({ path: "poke", start: now(), headers: null });
    }
    return result;
  };
})();
"""

START = """
import pysync, js
from pysync import Schema, Collection
from pysync.client import SyncClient, dev_token_provider
base = js.location.origin
db = await pysync.open_database("lat-%(user)s", Schema(Collection("todos")))
todos = db["todos"]
js.window.latSeen = js.Object.new()
def clock():
    return js.performance.timeOrigin + js.performance.now()
def on_change(changes):
    t = clock()
    for c in changes:
        if c.origin == "server" and not js.Reflect.has(js.window.latSeen, c.key):
            js.Reflect.set(js.window.latSeen, c.key, t)
db.watch(on_change)
client = SyncClient(db, base, dev_token_provider(base, %(user)r))
await client.start()
None
"""

WRITE = """
t0 = clock()
await todos.put(%(key)r, {"title": "write %(key)s", "done": False})
t0
"""

STAGES = ("A write -> A push sent", "A push sent -> push done", "push done -> feed has it",
          "feed has it -> appended", "appended -> B poked", "B poked -> B pull sent",
          "B pull sent -> B pull back", "B pull back -> B watch")


class ServerTrace:
    """Wall-clock stamps of the server's stages, per record key, from wrappers around the
    app's own objects (nothing in the server's code knows about them)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.lock = threading.Lock()
        self.push_done: list[float] = []
        self.feed_has: dict[str, float] = {}
        self.appended: dict[str, float] = {}
        self.published: list[float] = []
        feed = ctx.feed
        assert feed is not None
        ingest = feed.ingestor.ingest

        def traced_ingest(records: list[dict[str, Any]]) -> Any:
            t = time.time()
            keys = [r["dynamodb"]["Keys"]["sk"]["S"].split("#", 1)[-1] for r in records]
            result = ingest(records)
            done = time.time()
            with self.lock:
                for k in keys:
                    self.feed_has.setdefault(k, t)
                    self.appended.setdefault(k, done)
            return result

        feed.ingestor.ingest = traced_ingest  # type: ignore[method-assign,assignment]
        publish = ctx.hub.publish

        def traced_publish(heads: dict[str, int]) -> None:
            self.published.append(time.time())
            publish(heads)

        ctx.hub.publish = traced_publish  # type: ignore[method-assign]
        apply_push: Callable[..., Any] = getattr(server.api, "apply_push")  # noqa: B009

        async def traced_apply_push(*args: Any, **kwargs: Any) -> Any:
            result = await apply_push(*args, **kwargs)
            self.push_done.append(time.time())
            return result

        setattr(server.api, "apply_push", traced_apply_push)  # noqa: B010
        self._apply_push = apply_push

    def close(self) -> None:
        setattr(server.api, "apply_push", self._apply_push)  # noqa: B010


def first_after(times: list[float], t: float, end: float) -> float | None:
    later = [x for x in times if t <= x <= end]
    return min(later) if later else None


def page_trace(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("window.__trace.splice(0)")  # type: ignore[no-any-return]


def run_once(local: DynamoDBLocal, writes: int, spacing: float,
             pages: list[Page]) -> tuple[list[float], dict[str, list[float]]]:
    """One server (in this process, so that its stages can be stamped), both pages on it."""
    settings = Settings(dev=True, dynamodb_endpoint=local.endpoint, feed_enabled=True,
                        table_prefix=f"lat{uuid.uuid4().hex[:8]}_")
    app = create_app(settings)
    trace = ServerTrace(app.state.ctx)
    try:
        with serve(app) as url:
            return measure(pages, [url, url], writes, spacing, trace)
    finally:
        trace.close()


def run_across(local: DynamoDBLocal, writes: int, spacing: float, pages: list[Page],
               a_on_feed: bool) -> list[float]:
    """Two `python -m server` processes with their default settings on the same tables:
    page A on one, page B on the other. Both run a feed; the first started holds the
    stream's lease. `a_on_feed`: A writes through the process that works the stream."""
    prefix = f"lax{uuid.uuid4().hex[:8]}_"
    with server_process(local.endpoint, prefix, feed=True) as (first, _p), \
            server_process(local.endpoint, prefix, feed=True) as (second, _q):
        urls = [first, second] if a_on_feed else [second, first]
        totals, _ = measure(pages, urls, writes, spacing, None)
        return totals


def measure(pages: list[Page], urls: list[str], writes: int, spacing: float,
            trace: ServerTrace | None) -> tuple[list[float], dict[str, list[float]]]:
    """Page A on urls[0] writes, page B on urls[1] watches; per write the total (ms) and,
    with a server trace, each stage's share (s)."""
    totals: list[float] = []
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    for page, url in zip(pages, urls, strict=True):
        page.goto(f"{url}/test.html")
    for page in pages:
        page.wait_for_function("window.pysyncTest !== undefined", timeout=120_000)
        page.evaluate("window.pysyncTest.ready")
    user = f"lat{uuid.uuid4().hex[:8]}"
    a, b = pages
    for page in pages:
        run_py(page, START % {"user": user})
    for i in range(-3, writes):  # three to warm up
        key = f"k{i + 3:04d}"
        page_trace(a), page_trace(b)
        t0 = run_py(a, WRITE % {"key": key})
        # Waited for in JS alone: running Python in page B would compete with its sync
        # client for the page's one thread.
        b.wait_for_function("k => window.latSeen[k] !== undefined", arg=key, polling=5,
                            timeout=30_000)
        seen: float = b.evaluate("k => window.latSeen[k]", key)
        # Pauses drawn around `spacing`, so that writes do not keep one phase of the
        # server's poll intervals.
        pause = random.uniform(0.5, 1.5) * spacing
        if i >= 0:
            totals.append(seen - t0)
            if trace is not None:
                for name, value in stage_times(trace, key, t0, seen, page_trace(a),
                                               page_trace(b)).items():
                    stages[name].append(value)
        time.sleep(pause)
    for page in pages:
        run_py(page, "await client.stop(); db.close(); None")
    return totals, stages


def stage_times(trace: ServerTrace, key: str, t0: float, seen: float,
                ta: list[dict[str, Any]], tb: list[dict[str, Any]]) -> dict[str, float]:
    push = next((e for e in ta if e["path"] == "/v1/push"), None)
    pokes = [e["start"] / 1000 for e in tb if e["path"] == "poke"]
    pulls = [e for e in tb if e["path"] == "/v1/pull"]
    start, end = t0 / 1000, seen / 1000
    appended = trace.appended.get(key)
    poked = first_after(pokes, appended or start, end)
    pull = next((p for p in pulls if poked and p["start"] / 1000 >= poked), None)
    marks: list[float | None] = [
        start, push["start"] / 1000 if push else None, first_after(trace.push_done, start, end),
        trace.feed_has.get(key), appended, poked, pull["start"] / 1000 if pull else None,
        pull["headers"] / 1000 if pull else None, end]
    return {name: y - x for name, (x, y) in zip(STAGES, itertools.pairwise(marks), strict=True)
            if x is not None and y is not None}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(local: DynamoDBLocal, seconds: float) -> tuple[float, float]:
    """Share of a core that an idle `python -m server` with its default settings (feed on)
    and DynamoDB Local use over `seconds`, with one page's events stream connected (so the
    poke hub has a scope to watch): the price of the feed's and the hub's polling."""
    prefix = f"idle{uuid.uuid4().hex[:8]}_"
    with server_process(local.endpoint, prefix, feed=True) as (url, proc), \
            httpx.Client(base_url=url, timeout=30) as http:
        token = http.post("/v1/dev/token", json={"user": "idle"}).json()["token"]
        ticket = http.post("/v1/events/ticket",
                           headers={"Authorization": f"Bearer {token}"}).json()["ticket"]
        with http.stream("GET", "/v1/events", params={"ticket": ticket}):
            time.sleep(3)  # the feed has taken its leases, the hub its subscription
            pids = (proc.pid, local._running().pid)
            before = [cpu_seconds(p) for p in pids]
            time.sleep(seconds)
            after = [cpu_seconds(p) for p in pids]
    server_cpu, local_cpu = ((b - a) / seconds for a, b in zip(before, after, strict=True))
    return server_cpu, local_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--spacing", type=float, default=0.3, help="seconds between writes")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--raw-samples", type=int, default=50)
    parser.add_argument("--across", action="store_true",
                        help="also with pages A and B on two server processes")
    parser.add_argument("--idle-s", type=float, default=10.0,
                        help="seconds over which an idle server's CPU is measured (0: skip)")
    args = parser.parse_args()
    with DynamoDBLocal() as local, sync_playwright() as pw:
        if args.idle_s > 0:
            server_cpu, local_cpu = idle_cpu(local, args.idle_s)
            print(f"Idle server (defaults, one events stream open) over {args.idle_s:g} s: "
                  f"server {server_cpu * 100:.1f}% of a core, DynamoDB Local "
                  f"{local_cpu * 100:.1f}%")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        contexts = [browser.new_context(), browser.new_context()]
        for c in contexts:
            c.add_init_script(PAGE_TRACE)
        pages = [c.new_page() for c in contexts]
        raw_stream_latency(local, 10)  # warm-up
        for run in range(args.runs):
            raw = raw_stream_latency(local, args.raw_samples)
            totals, stages = run_once(local, args.writes, args.spacing, pages)
            print(f"Browser-to-browser latency, run {run + 1} ({len(totals)} writes, "
                  f"{args.spacing:g} s apart; server defaults):")
            print(f"  raw stream (PutItem -> GetRecords)      p50 {pct(raw, 50) * 1000:6.1f} ms"
                  f"   p95 {pct(raw, 95) * 1000:6.1f} ms")
            print(f"  page A write -> page B watch            p50 {pct(totals, 50):6.1f} ms"
                  f"   p95 {pct(totals, 95):6.1f} ms   (target p50 <= 150, p95 <= 300)")
            for name in STAGES:
                values = stages[name]
                if values:
                    print(f"    {name:<28} median {statistics.median(values) * 1000:6.1f} ms"
                          f"   p95 {pct(values, 95) * 1000:6.1f} ms   ({len(values)})")
            if args.across:
                for a_on_feed in (True, False):
                    across = run_across(local, args.writes, args.spacing, pages, a_on_feed)
                    where = "A on the feed's process" if a_on_feed else "B on the feed's process"
                    print(f"  two server processes, {where:<24} p50 {pct(across, 50):6.1f} ms"
                          f"   p95 {pct(across, 95):6.1f} ms")
        browser.close()


if __name__ == "__main__":
    main()
