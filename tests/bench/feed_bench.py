"""Benchmark (not a test): change-to-pull latency and snapshot pull throughput.

    python -m tests.bench.feed_bench [--samples 60] [--records 100000] [--poll S]

One DynamoDB Local for the whole run.
1. Latency. Baseline: the raw stream latency (boto3 PutItem -> a GetRecords loop on the
   items table's stream returns the record). pysync: a write until a GET /v1/pull woken by
   the SSE poke returns it, through a real uvicorn server with the default settings (the
   feed's poll interval --poll if given): a POST /v1/push (which nudges the feed: read at
   once), a boto3 PutItem of a pysync-stamped item, and one of an item without meta (which
   needs the feed's stamp). A boto3 write is another program's: nothing nudges the feed,
   so it waits for the feed's next poll (docs/feed.md, "Latency"). Browser to browser:
   tests/bench/latency_bench.py.
2. Snapshot. Baseline: raw boto3 Query (ConsistentRead, 1000 a page) of the scope's
   --records items. pysync: GET /v1/pull from no cursor, limit 1000, until has_more is false
   (HTTP, auth, JSON). Ratio = raw time / pull time (>= 1 means as fast as raw boto3).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from typing import Any

import httpx

from server.app import create_app
from server.config import Settings
from server.context import ServerContext
from server.dynamo_local import DynamoDBLocal
from server.tables import ensure_tables
from tests.bench.items import fill, raw_query
from tests.server.test_events import Events
from tests.support import serve


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:7.1f} ms   p95 {pct(values, 95) * 1000:7.1f} ms"


def settings_for(local: DynamoDBLocal, **kw: Any) -> Settings:
    return Settings(dev=True, dynamodb_endpoint=local.endpoint, jwt_secret="b" * 40,
                    table_prefix=f"fb{uuid.uuid4().hex[:8]}_", rate_limit_per_s=0, **kw)


def raw_stream_latency(local: DynamoDBLocal, samples: int) -> list[float]:
    ctx = ServerContext.from_settings(settings_for(local))
    ensure_tables(ctx.dynamodb, ctx.settings.table_prefix)
    arn = ctx.dynamodb.describe_table(TableName=ctx.tables.items)["Table"]["LatestStreamArn"]
    shard = ctx.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    ctx.dynamodb.put_item(TableName=ctx.tables.items,
                          Item={"pk": {"S": "u#raw"}, "sk": {"S": "t#warm"}})
    time.sleep(0.2)
    it = ctx.streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    it = ctx.streams.get_records(ShardIterator=it)["NextShardIterator"]
    out: list[float] = []
    for i in range(samples):
        t0 = time.perf_counter()
        ctx.dynamodb.put_item(TableName=ctx.tables.items, Item={
            "pk": {"S": "u#raw"}, "sk": {"S": f"t#{i}"}, "n": {"N": str(i)}})
        while True:
            got = ctx.streams.get_records(ShardIterator=it)
            it = got["NextShardIterator"]
            if got["Records"]:
                out.append(time.perf_counter() - t0)
                break
        time.sleep(0.02)
    return out


def change_to_pull_latency(local: DynamoDBLocal, samples: int, poll: float | None,
                           how: str) -> list[float]:
    """`how`: "push" (POST /v1/push, which nudges the feed), "stamped" (a boto3 PutItem of
    an item with pysync's `_v`) or "foreign" (a PutItem without meta: the feed stamps it)."""
    polls = {} if poll is None else {"feed_poll_s": poll}
    settings = settings_for(local, feed_enabled=True, **polls)
    ctx = ServerContext.from_settings(settings)
    out: list[float] = []
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as http:
        token = http.post("/v1/dev/token", json={"user": "lat"}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        cursor = http.get("/v1/pull", params={"client_id": "c"}, headers=headers).json()["cursor"]
        ticket = http.post("/v1/events/ticket", headers=headers).json()["ticket"]
        with http.stream("GET", "/v1/events", params={"ticket": ticket}) as r:
            events = Events(r)
            events.next_poke()
            for i in range(samples + 3):  # the first three warm up
                item = {"pk": {"S": "u#lat"}, "sk": {"S": f"todos#{i}"}, "n": {"N": str(i)}}
                if how == "stamped":
                    item["_v"] = {"N": "1"}
                t0 = time.perf_counter()
                if how == "push":
                    http.post("/v1/push", headers=headers, json={
                        "protocol": 1, "client_id": "w", "mutations": [{
                            "id": i + 1, "collection": "todos", "key": str(i), "op": "put",
                            "value": {"n": i}, "base_version": None, "hlc": None}]}
                              ).raise_for_status()
                else:
                    ctx.dynamodb.put_item(TableName=ctx.tables.items, Item=item)
                found = False
                while not found:
                    events.next_poke()
                    page = http.get("/v1/pull", params={"client_id": "c", "cursor": cursor},
                                    headers=headers).json()
                    cursor = page["cursor"]
                    found = any(c["key"] == str(i) for c in page["changes"])
                if i >= 3:
                    out.append(time.perf_counter() - t0)
                time.sleep(random.uniform(0.02, 0.3))  # no lock onto the feed poll's phase
    return out


def item(n: int) -> dict[str, Any]:
    return {"title": {"S": f"item {n}"}, "n": {"N": str(n)}, "done": {"BOOL": n % 2 == 0},
            "_v": {"N": "1"}, "_hlc": {"S": "001700000000000:000000:bench"}}


def snapshot_pull(http: httpx.Client, headers: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    count, cursor = 0, None
    while True:
        params = {"client_id": "snap", "limit": "1000"}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/v1/pull", params=params, headers=headers).json()
        count += len(page["changes"])
        cursor = page["cursor"]
        if not page["has_more"]:
            return time.perf_counter() - t0, count


def snapshot(local: DynamoDBLocal, records: int, rounds: int) -> None:
    settings = settings_for(local)
    ctx = ServerContext.from_settings(settings)
    ensure_tables(ctx.dynamodb, settings.table_prefix)
    t0 = time.perf_counter()
    fill(ctx, "u#snap", records, "todos", item)
    print(f"  (filled {records} items in {time.perf_counter() - t0:.1f} s)")
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
        token = http.post("/v1/dev/token", json={"user": "snap"}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        snapshot_pull(http, headers)  # warm-up (JIT of DynamoDB Local, connections)
        ratios = []
        for r in range(rounds):  # alternated, so a burst of load elsewhere hits both alike
            raw_s, raw_n = raw_query(ctx, "u#snap", limit=1000)
            pull_s, pull_n = snapshot_pull(http, headers)
            assert raw_n == pull_n == records, (raw_n, pull_n)
            ratios.append(raw_s / pull_s)
            print(f"  round {r + 1}: raw boto3 Query {raw_n / raw_s:8.0f} items/s "
                  f"({raw_s:.2f} s)   pysync pull {pull_n / pull_s:8.0f} items/s "
                  f"({pull_s:.2f} s)   ratio {raw_s / pull_s:.2f}x")
        print(f"  ratio: median {statistics.median(ratios):.2f}x, best {max(ratios):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("latency", "snapshot"), default=None)
    parser.add_argument("--poll", type=float, default=None,
                        help="feed poll interval (s); the server's default if not given")
    args = parser.parse_args()
    with DynamoDBLocal() as local:
        if args.only != "snapshot":
            latency(local, args.samples, args.poll)
        if args.only != "latency":
            print(f"Snapshot pull of {args.records} records vs raw boto3 Query "
                  "(target >= 0.7x):")
            snapshot(local, args.records, args.rounds)


def latency(local: DynamoDBLocal, samples: int, poll: float | None) -> None:
    raw_stream_latency(local, 10)  # warm-up
    raw = raw_stream_latency(local, samples)
    pushed = change_to_pull_latency(local, samples, poll, "push")
    stamped = change_to_pull_latency(local, samples, poll, "stamped")
    foreign = change_to_pull_latency(local, samples, poll, "foreign")
    shown = Settings().feed_poll_s if poll is None else poll
    print(f"Change-to-pull latency ({samples} samples, feed poll {shown * 1000:.0f} ms"
          f"{' (the default)' if poll is None else ''}, other settings the defaults):")
    print(f"  raw stream (PutItem -> GetRecords)        {ms(raw)}")
    print(f"  POST /v1/push -> poke -> pull             {ms(pushed)}   "
          f"p50 ratio {pct(pushed, 50) / pct(raw, 50):.1f}x raw "
          f"(target <= 3x raw + 50 ms = {(3 * pct(raw, 50) + 0.05) * 1000:.0f} ms)")
    print(f"  boto3 write with _v -> poke -> pull       {ms(stamped)}   "
          f"p50 ratio {pct(stamped, 50) / pct(raw, 50):.1f}x raw (waits for the feed's poll)")
    print(f"  write without meta (+ stamp) -> pull      {ms(foreign)}   "
          f"p50 ratio {pct(foreign, 50) / pct(raw, 50):.1f}x raw")
    print(f"  (mean raw {statistics.mean(raw) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
