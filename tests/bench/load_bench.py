"""Benchmark (not a test): many clients over real HTTP against several server processes.

    python -m tests.bench.load_bench [--clients 200] [--users 50] [--seconds 60] [--servers 2]
                                     [--think 1.0] [--concurrency 1,4,16] [--chunks 40]
                                     [--rounds 2] [--feed servers|process]
                                     [--parts load,throughput] [--json PATH]

One DynamoDB Local, `--servers` real `python -m server` processes sharing it (their change
feeds share the stream through leases; with `--feed process` the servers run no feed and one
more process, sent no requests, runs it, as the Lambda function does when deployed). Two
parts (`--parts`):

1. Load. `--clients` simulated clients of `--users` users (a client is what one browser tab's
   SyncClient does over HTTP: push a few mutations, then pull from its cursor until caught up),
   spread over the server processes, each pausing a random 0..2x`--think` seconds between
   rounds, for `--seconds`. Printed: rounds/s, push and pull latency p50/p99, every non-200
   answer and transport error (target 0, never a 5xx), the servers' memory (RSS) before and
   after. Then quiesce and account for every acknowledged mutation (Jepsen-style), reading
   DynamoDB with boto3: lost (a key whose final value is not what its acknowledged mutations
   made), duplicated (`_v` above the number of applied mutations, or `_w` not the last one),
   resurrected deletes, and clients whose pulled copy differs from DynamoDB. All must be 0.
2. Push throughput with 1, 4 and 16 concurrent clients (`--concurrency`), `--chunks` requests
   of 99 `put` mutations each, next to the baseline measured in the same run: raw boto3
   TransactWriteItems of the same chunks (99 conditional puts of items the same size as
   pysync stores, plus a conditional client-row update, i.e. push's exactly-once commit
   without pysync) at the same concurrency into the same items table. Target >= 0.8x.
   Every level is warmed up first (DynamoDB Local's JVM is slow cold); each side starts
   once the feed has logged the other side's writes; which side goes first alternates
   between rounds. Printed with each pair: the CPU milliseconds per chunk that each group
   of processes (this one, the servers, DynamoDB Local, the feed's own) used during each
   side, and the load average, since the machine may be shared.

The rate limit is off in the servers (it is per process and per user; a load test of one
machine would only measure it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pysync.hlc import HybridClock
from server.changelog import ChangeLog
from server.codec import protocol_json
from server.dynamo_local import DynamoDBLocal, local_client
from server.items import record_fields, split_sort_key
from server.records import field_hash
from server.tables import TableNames
from tests.support import server_process, wait_until

CHUNK = 99  # mutations per request in part 2: push commits 99 records + the client row at once
KEYS_PER_CLIENT = 8
SERVER_ENV = {"PYSYNC_RATE_LIMIT_PER_S": "0"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles_ms(samples: list[float]) -> dict[str, float] | None:
    """p50 and p99 in milliseconds (None with fewer than 2 samples)."""
    if len(samples) < 2:
        return None
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": round(cuts[49] * 1000, 1), "p99": round(cuts[98] * 1000, 1)}


def percentiles(samples: list[float]) -> str:
    cuts = percentiles_ms(samples)
    return "n/a" if cuts is None else f"p50 {cuts['p50']:6.1f} ms, p99 {cuts['p99']:6.1f} ms"


def dev_tokens(url: str, users: list[str]) -> dict[str, str]:
    with httpx.Client(base_url=url, timeout=60) as http:
        return {u: http.post("/v1/dev/token", json={"user": u}).json()["token"] for u in users}


# ---- part 1: load --------------------------------------------------------------------------

@dataclass
class Expected:
    value: dict[str, Any] | None  # None: deleted
    applied: int  # mutations applied to this key (`_v` rises by one per push that wrote it,
    # so several mutations of one key in one push raise it once: `_v` <= applied)
    last_id: int  # the last applied mutation's id (`_w` names it)


@dataclass
class Stats:
    push: list[float] = field(default_factory=list)
    pull: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    rounds: int = 0


class SimClient:
    """One tab's sync traffic: its own keys, a consecutive mutation id, a cursor."""

    def __init__(self, index: int, user: str, url: str, token: str, stats: Stats,
                 rng: random.Random) -> None:
        self.index, self.user, self.stats, self.rng = index, user, stats, rng
        self.client_id = f"load-{index}-{uuid.uuid4().hex[:12]}"
        self.http = httpx.AsyncClient(base_url=url, timeout=30,
                                      headers={"Authorization": f"Bearer {token}"})
        self.clock = HybridClock(self.client_id[-12:])
        self.next_id = 1
        self.expected: dict[str, Expected] = {}
        self.live: set[str] = set()  # keys that exist once the mutations made so far apply
        self.cursor: str | None = None
        self.copy: dict[tuple[str, str], tuple[int, dict[str, Any] | None]] = {}
        # The version this client holds of each of its keys (from push answers and pulls):
        # the base_version of its next mutation of the key, as SyncClient sends it.
        self.held: dict[str, int] = {}

    def _mutation(self, key: str) -> dict[str, Any]:
        op = self.rng.choice(["put", "patch", "delete"] if key in self.live else ["put"])
        if op == "delete":
            self.live.discard(key)
        else:
            self.live.add(key)
        m: dict[str, Any] = {"id": self.next_id, "collection": "todos", "key": key, "op": op,
                             "base_version": self.held.get(key), "hlc": str(self.clock.now())}
        if op == "put":
            m["value"] = {"title": f"{key} by {self.client_id}", "n": self.next_id}
        elif op == "patch":
            m["value"] = {"n": self.next_id, "done": self.rng.random() < 0.5}
        self.next_id += 1
        return m

    def _acknowledge(self, m: dict[str, Any]) -> None:
        was = self.expected.get(m["key"])
        if m["op"] == "delete":
            value = None
        elif m["op"] == "patch":
            value = {**(was.value if was and was.value else {}), **m["value"]}
        else:
            value = dict(m["value"])
        self.expected[m["key"]] = Expected(value, (was.applied if was else 0) + 1, m["id"])

    async def _send(self, method: str, path: str, bucket: list[float],
                    **kwargs: Any) -> dict[str, Any]:
        """The request until it gets a 200, retried like SyncClient does (same body)."""
        while True:
            start = time.perf_counter()
            try:
                r = await self.http.request(method, path, **kwargs)
            except httpx.TransportError as e:
                self.stats.errors[type(e).__name__] += 1
                await asyncio.sleep(0.5)
                continue
            bucket.append(time.perf_counter() - start)
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
            self.stats.errors[f"{method} {path} {r.status_code}"] += 1
            await asyncio.sleep(float(r.headers.get("Retry-After", "0.5")))

    def _hold(self, key: str, version: int) -> None:
        self.held[key] = max(version, self.held.get(key, 0))

    async def push(self, count: int) -> None:
        # Distinct keys, as SyncClient sends them: one outbox entry per record per push (a
        # later edit of a record waits for the version the earlier one produced).
        keys = self.rng.sample(range(KEYS_PER_CLIENT), count)
        mutations = [self._mutation(f"c{self.index}k{k}") for k in keys]
        body = {"protocol": 1, "client_id": self.client_id, "mutations": mutations}
        out = await self._send("POST", "/v1/push", self.stats.push, json=body)
        for m, result in zip(mutations, out["results"], strict=True):
            if result["status"] in ("applied", "duplicate"):  # duplicate: applied by a retry
                self._acknowledge(m)
                if result.get("version") is not None:  # a duplicate's comes with the pull
                    self._hold(m["key"], result["version"])
            else:
                self.stats.errors[f"push {result['status']}"] += 1

    async def pull(self) -> None:
        while True:
            params = {"client_id": self.client_id, "limit": "500"}
            if self.cursor:
                params["cursor"] = self.cursor
            out = await self._send("GET", "/v1/pull", self.stats.pull, params=params)
            if out.get("reset"):
                self.stats.errors["pull reset"] += 1
                self.cursor, self.copy = None, {}
                continue
            for c in out["changes"]:
                key = (c["collection"], c["key"])
                if key not in self.copy or self.copy[key][0] < c["version"]:
                    self.copy[key] = (c["version"], None if c["deleted"] else c["value"])
                if c["key"].startswith(f"c{self.index}k"):
                    self._hold(c["key"], c["version"])
            self.cursor = out["cursor"]
            if not out["has_more"]:
                return

    async def run(self, until: float, think: float) -> None:
        await self.pull()
        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(0, 2 * think))
            await self.push(self.rng.randint(1, 5))
            await self.pull()
            self.stats.rounds += 1


def scope_items(client: Any, table: str, user: str) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    pages = client.get_paginator("query").paginate(
        TableName=table, ConsistentRead=True, KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": f"u#{user}"}})
    for page in pages:
        for item in page["Items"]:
            items[split_sort_key(item["sk"]["S"])[1]] = item
    return items


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """A stored item's record fields as JSON values (the types the simulated clients write)."""
    return {name: protocol_json(av) for name, av in record_fields(item).items()}


@dataclass
class Account:
    keys: int = 0
    lost: int = 0
    duplicated: int = 0
    resurrected: int = 0
    divergent_clients: int = 0
    examples: list[str] = field(default_factory=list)


def account(clients: list[SimClient], stored: dict[str, dict[str, dict[str, Any]]]) -> Account:
    acc = Account()
    for c in clients:
        items = stored[c.user]
        for key, want in c.expected.items():
            acc.keys += 1
            item = items.get(key)
            deleted = item is None or item.get("_del", {}).get("BOOL", False)
            if want.value is None:
                if not deleted:
                    acc.resurrected += 1
                    acc.examples.append(f"resurrected {c.user}/{key}")
            elif deleted or plain(item or {}) != want.value:
                acc.lost += 1
                acc.examples.append(f"lost {c.user}/{key}: {want.value} vs {item}")
            if item is not None and (int(item["_v"]["N"]) > want.applied
                                     or item["_w"]["S"] != f"{c.client_id}:{want.last_id}"):
                acc.duplicated += 1
                acc.examples.append(f"_v/_w {c.user}/{key}: applied {want.applied}, "
                                    f"last {want.last_id}, stored {item['_v']} {item['_w']}")
    return acc


def copies_equal(c: SimClient, items: dict[str, dict[str, Any]]) -> bool:
    server = {key: plain(item) for key, item in items.items()
              if not item.get("_del", {}).get("BOOL", False)}
    mine = {key: value for (_, key), (_, value) in c.copy.items() if value is not None}
    return mine == server


async def load(urls: list[str], local: DynamoDBLocal, names: TableNames,
               args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    users = [f"load{u}-{uuid.uuid4().hex[:6]}" for u in range(args.users)]
    tokens = dev_tokens(urls[0], users)
    stats = Stats()
    owners = [users[i % len(users)] for i in range(args.clients)]
    clients = [SimClient(i, owner, urls[i % len(urls)], tokens[owner], stats,
                         random.Random(rng.random())) for i, owner in enumerate(owners)]
    start = time.monotonic()
    await asyncio.gather(*(c.run(start + args.seconds, args.think) for c in clients))
    elapsed = time.monotonic() - start
    # Quiesce: the feed logs the last writes; every client pulls until its copy is DynamoDB's.
    db = local_client(local.endpoint)
    stored = {u: scope_items(db, names.items, u) for u in users}
    deadline = time.monotonic() + 120
    pending = list(clients)
    while pending and time.monotonic() < deadline:
        await asyncio.gather(*(c.pull() for c in pending))
        pending = [c for c in pending if not copies_equal(c, stored[c.user])]
        if pending:
            await asyncio.sleep(0.5)
    for c in clients:
        await c.http.aclose()
    acc = account(clients, stored)
    acc.divergent_clients = len(pending)
    return {"clients": args.clients, "users": args.users, "servers": len(urls),
            "seconds": round(elapsed, 1), "rounds": stats.rounds,
            "pushes": len(stats.push), "pulls": len(stats.pull),
            "mutations_acknowledged": sum(e.applied for c in clients
                                          for e in c.expected.values()),
            "push_latency": percentiles(stats.push), "pull_latency": percentiles(stats.pull),
            "push_latency_ms": percentiles_ms(stats.push),
            "pull_latency_ms": percentiles_ms(stats.pull),
            "errors": dict(stats.errors), "server_errors_5xx": sum(
                n for k, n in stats.errors.items() if k.split()[-1].startswith("5")),
            "keys": acc.keys, "lost": acc.lost, "duplicated": acc.duplicated,
            "resurrected": acc.resurrected, "divergent_clients": acc.divergent_clients,
            "examples": acc.examples[:10]}


# ---- part 2: push throughput against raw TransactWriteItems ---------------------------------

def chunk_values(run: str, client: int, chunk: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for i in range(CHUNK):
        n = chunk * CHUNK + i
        yield f"t{run}-{client}-{n}", {"title": f"todo number {n}", "done": n % 2 == 0, "rank": n}


def raw_item(scope: str, key: str, value: dict[str, Any], stamp: str, writer: str
             ) -> dict[str, Any]:
    """The item pysync's push stores for a first put: the fields plus its meta attributes
    (the same attributes, so DynamoDB stores and streams the same bytes for both sides)."""
    return {"pk": {"S": scope}, "sk": {"S": f"todos#{key}"}, "title": {"S": value["title"]},
            "done": {"BOOL": value["done"]}, "rank": {"N": str(value["rank"])},
            "_v": {"N": "1"}, "_hlc": {"S": stamp},
            "_h": {"M": {f: {"S": field_hash(v)} for f, v in value.items()}},
            "_fh": {"M": {f: {"S": stamp} for f in value}}, "_del": {"BOOL": False},
            "_w": {"S": writer}}


def raw_transactions(db: Any, names: TableNames, run: str, client: int, chunks: int) -> None:
    clock, client_id = HybridClock(f"raw{client}"), f"raw-{run}-{client}"
    key = {"pk": {"S": f"client#{client_id}"}, "sk": {"S": "state"}}
    db.put_item(TableName=names.clients, Item={**key, "lmid": {"N": "0"}})
    for chunk in range(chunks):
        puts = [{"Put": {"TableName": names.items,
                         "ConditionExpression": "attribute_not_exists(pk)",
                         "Item": raw_item(f"u#raw{run}-{client}", k, v, str(clock.now()),
                                          f"{client_id}:{chunk * CHUNK + i + 1}")}}
                for i, (k, v) in enumerate(chunk_values(run, client, chunk))]
        db.transact_write_items(TransactItems=[*puts, {"Update": {
            "TableName": names.clients, "Key": key, "UpdateExpression": "SET lmid = :n",
            "ConditionExpression": "lmid = :o", "ExpressionAttributeValues": {
                ":n": {"N": str((chunk + 1) * CHUNK)}, ":o": {"N": str(chunk * CHUNK)}}}}])


def pysync_pushes(url: str, token: str, run: str, client: int, chunks: int) -> None:
    clock, client_id = HybridClock(f"dev{client}"), f"push-{run}-{client}"
    bodies = []
    for chunk in range(chunks):
        mutations = [{"id": chunk * CHUNK + i + 1, "collection": "todos", "key": k, "op": "put",
                      "value": v, "base_version": None, "hlc": str(clock.now())}
                     for i, (k, v) in enumerate(chunk_values(run, client, chunk))]
        bodies.append(json.dumps({"protocol": 1, "client_id": client_id,
                                  "mutations": mutations}).encode())
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=120) as http:
        for body in bodies:
            r = http.post("/v1/push", content=body, headers=headers)
            ok = {"applied"}
            while r.status_code == 503:  # DynamoDB overloaded: resent after Retry-After, as
                # SyncClient does; the wait counts against pysync's time
                print(f"    503 from {url}, resent after {r.headers.get('Retry-After')} s",
                      flush=True)
                time.sleep(float(r.headers.get("Retry-After", "1")))
                r = http.post("/v1/push", content=body, headers=headers)
                ok = {"applied", "duplicate"}  # (a duplicate: applied before the 503)
            r.raise_for_status()
            assert all(x["status"] in ok for x in r.json()["results"]), r.text[:300]


def in_threads(count: int, work: Callable[[int], None]) -> float:
    with ThreadPoolExecutor(count) as pool:
        start = time.perf_counter()
        list(pool.map(work, range(count)))
        return time.perf_counter() - start


def feed_settled(db: Any, names: TableNames, scopes: list[str], count: int,
                 timeout: float = 300) -> None:
    """Wait until the servers' change feed has logged all `count` items of each scope, so
    the feed work one side's writes cause is not paid inside the other side's timing."""
    log = ChangeLog(db, names, retention_s=3600)
    wait_until(lambda: min(log.heads(scopes).values()) >= count, timeout=timeout, interval=0.2,
               message=f"the feed did not log {count} changes per scope")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_group(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_s(pid) for pid in pids) for name, pids in groups.items()}


@dataclass
class Side:
    items_per_s: float
    cpu_ms_per_chunk: dict[str, float]  # process group -> CPU ms per 99-item chunk


def measured(groups: dict[str, list[int]], chunks: int, items: int,
             work: Callable[[], float]) -> Side:
    before = cpu_by_group(groups)
    seconds = work()
    after = cpu_by_group(groups)
    return Side(items / seconds, {name: round((after[name] - before[name]) * 1000 / chunks, 1)
                                  for name in groups})


def throughput(urls: list[str], local: DynamoDBLocal, names: TableNames, concurrency: int,
               chunks: int, groups: dict[str, list[int]], raw_first: bool = True
               ) -> tuple[Side, Side]:
    """(pysync /v1/push, raw TransactWriteItems), same chunks, same concurrency.

    Each side starts once the feed has logged the other side's writes (both pay for the
    feed work their own writes cause while they run, neither for the other's); which side
    goes first alternates between rounds (`raw_first`). The CPU each group of processes
    (`groups`: pids) used during each side is measured too."""
    run = uuid.uuid4().hex[:6]
    db = local_client(local.endpoint, max_pool_connections=64)
    per_client = max(1, chunks // concurrency)
    n = per_client * concurrency * CHUNK
    count = per_client * concurrency
    users = [f"tp{run}-{c}" for c in range(concurrency)]
    tokens = dev_tokens(urls[0], users)

    def raw() -> Side:
        side = measured(groups, count, n, lambda: in_threads(
            concurrency, lambda c: raw_transactions(db, names, run, c, per_client)))
        feed_settled(db, names, [f"u#raw{run}-{c}" for c in range(concurrency)],
                     n // concurrency)
        return side

    def ours() -> Side:
        side = measured(groups, count, n, lambda: in_threads(
            concurrency, lambda c: pysync_pushes(urls[c % len(urls)], tokens[users[c]], run,
                                                 c, per_client)))
        feed_settled(db, names, [f"u#{u}" for u in users], n // concurrency)
        return side

    if raw_first:
        raw_side = raw()
        return ours(), raw_side
    ours_side = ours()
    return ours_side, raw()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--think", type=float, default=1.0)
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--chunks", type=int, default=48)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--feed", choices=("servers", "process"), default="servers",
                   help="where the change feed runs: in every server process (the default "
                        "of python -m server) or in one process of its own that serves no "
                        "requests, the servers running with PYSYNC_FEED=0 (the deployed "
                        "layout, where a Lambda function runs the feed: docs/deploy.md)")
    p.add_argument("--parts", default="load,throughput",
                   help="which parts to run: load, throughput or both (the default)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    prefix = f"ld{uuid.uuid4().hex[:6]}_"
    report: dict[str, Any] = {}
    with DynamoDBLocal() as local, ExitStack() as stack:
        in_servers = args.feed == "servers"
        started = [stack.enter_context(server_process(local.endpoint, prefix, feed=in_servers,
                                                      env=SERVER_ENV))
                   for _ in range(args.servers)]
        feed_pid = None
        if not in_servers:  # the feed's own process, sent no requests (like the Lambda)
            feed_pid = stack.enter_context(server_process(local.endpoint, prefix, feed=True,
                                                          env=SERVER_ENV))[1].pid
        urls, pids = [u for u, _ in started], [proc.pid for _, proc in started]
        names = TableNames.with_prefix(prefix)
        print("warm-up ...", flush=True)
        jvm = getattr(local, "_proc", None)
        groups = {"bench": [os.getpid()], "servers": pids,
                  "dynamodb_local": [jvm.pid] if jvm else []}
        if feed_pid is not None:
            groups["feed"] = [feed_pid]
        # DynamoDB Local's JVM is much slower cold: warm both sides at every level first.
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            throughput(urls, local, names, concurrency, 2 * concurrency, groups)
        parts = set(args.parts.split(","))
        if "load" in parts:
            before = [rss_mb(pid) for pid in pids]
            load_before = os.getloadavg()[0]  # the machine may be shared: its conditions
            print(f"load: {args.clients} clients of {args.users} users, {args.servers} "
                  f"servers, {args.seconds:.0f} s ...", flush=True)
            result = asyncio.run(load(urls, local, names, args))
            result["server_rss_mb_before"] = [round(m, 1) for m in before]
            result["server_rss_mb_after"] = [round(rss_mb(pid), 1) for pid in pids]
            result["load_1m_before_after"] = [round(load_before, 1),
                                              round(os.getloadavg()[0], 1)]
            report["load"] = result
            for name, value in result.items():
                print(f"  {name:24s} {value}", flush=True)
        report["throughput"] = []
        for rnd in range(1, args.rounds + 1 if "throughput" in parts else 1):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                ours, raw = throughput(urls, local, names, concurrency, args.chunks, groups,
                                       raw_first=rnd % 2 == 1)
                load_1m = os.getloadavg()[0]  # the machine's conditions, printed with them
                report["throughput"].append({
                    "round": rnd, "concurrency": concurrency, "pysync": round(ours.items_per_s),
                    "raw": round(raw.items_per_s), "feed": args.feed, "load_1m": load_1m,
                    "pysync_cpu_ms_per_chunk": ours.cpu_ms_per_chunk,
                    "raw_cpu_ms_per_chunk": raw.cpu_ms_per_chunk})
                print(f"round {rnd}, {concurrency:2d} concurrent: pysync /v1/push "
                      f"{ours.items_per_s:6.0f} mutations/s | raw TransactWriteItems "
                      f"{raw.items_per_s:6.0f} items/s | ratio "
                      f"{ours.items_per_s / raw.items_per_s:.2f}x | feed in {args.feed}, "
                      f"load average {load_1m:.1f}", flush=True)
                print(f"    CPU ms per chunk: pysync {ours.cpu_ms_per_chunk} | raw "
                      f"{raw.cpu_ms_per_chunk}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
