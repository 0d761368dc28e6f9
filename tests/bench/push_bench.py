"""Benchmark (not a test): pushing mutations through the server vs raw boto3 BatchWriteItem.

    python -m tests.bench.push_bench [--mutations 10000] [--per-push 500] [--clients 1,4]
                                     [--rounds 2] [--designs]

One DynamoDB Local for the whole run. For every round and every client count:
- baseline: raw boto3 BatchWriteItem (25 items a call) of the same records, with pysync's
  key layout, into the server's own items table (other scopes); with N clients, N threads
  share the records;
- pysync: the same records as `put` mutations POSTed to /v1/push over HTTP (real uvicorn,
  dev tokens, JSON, validation, exactly-once transactions), `--per-push` per request,
  N clients pushing concurrently; then exactly-once is checked (every item at version 1,
  every client's last_mutation_id at its last id).
`--designs` also measures the two exactly-once designs on raw boto3, same records:
per-item conditional PutItem (16 threads) vs TransactWriteItems of 99 conditional puts plus
a conditional client update, each after a BatchGetItem of the records, as push does.
A warm-up round runs first (DynamoDB Local's JVM is much slower cold).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from pysync.hlc import HybridClock
from pysync.schema import Collection, Schema
from server.app import create_app
from server.config import Settings
from server.dynamo_local import DynamoDBLocal, local_client
from server.tables import TableNames
from tests.support import serve

SCHEMA = Schema(Collection("todos"))


def record(i: int) -> dict[str, Any]:
    return {"title": f"todo number {i}", "done": i % 2 == 0, "rank": i}


def raw_item(scope: str, i: int) -> dict[str, Any]:
    return {"pk": {"S": scope}, "sk": {"S": f"todos#t{i}"},
            "title": {"S": f"todo number {i}"}, "done": {"BOOL": i % 2 == 0},
            "rank": {"N": str(i)}}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def split(n: int, parts: int) -> list[range]:
    size = -(-n // parts)
    return [range(s, min(n, s + size)) for s in range(0, n, size)]


def batch_write(client: Any, table: str, scope: str, ids: range) -> None:
    for s in range(ids.start, ids.stop, 25):
        request = {table: [{"PutRequest": {"Item": raw_item(scope, i)}}
                           for i in range(s, min(ids.stop, s + 25))]}
        while request:
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems")


def baseline(local: DynamoDBLocal, names: TableNames, n: int, clients: int) -> float:
    """Raw BatchWriteItem into the server's own items table, under scopes of its own."""
    client = local_client(local.endpoint, max_pool_connections=64)
    parts = split(n, clients)
    run = uuid.uuid4().hex[:8]
    with ThreadPoolExecutor(clients) as pool:
        return timed(lambda: list(pool.map(
            lambda ids: batch_write(client, names.items, f"u#base{run}{ids.start}", ids),
            parts)))


def pysync_push(url: str, n: int, clients: int, per_push: int) -> tuple[float, list[str]]:
    parts = split(n, clients)
    users = [f"bench{uuid.uuid4().hex[:8]}" for _ in range(clients)]
    with httpx.Client(base_url=url, timeout=120) as http:
        tokens = [http.post("/v1/dev/token", json={"user": u}).json()["token"] for u in users]
    # Bodies are built before the clock starts, like a client's outbox.
    bodies: list[list[bytes]] = []
    for c, ids in enumerate(parts):
        clock, cid = HybridClock(f"dev{c}"), f"client-{uuid.uuid4().hex}"
        muts = [{"id": j + 1, "collection": "todos", "key": f"t{i}", "op": "put",
                 "value": record(i), "base_version": None, "hlc": str(clock.now())}
                for j, i in enumerate(ids)]
        bodies.append([httpx.Request("POST", "/", json={
            "protocol": 1, "client_id": cid, "mutations": muts[s:s + per_push]}).read()
            for s in range(0, len(muts), per_push)])

    def one_client(c: int) -> None:
        headers = {"Authorization": f"Bearer {tokens[c]}", "Content-Type": "application/json"}
        with httpx.Client(base_url=url, timeout=120) as http:
            for body in bodies[c]:
                r = http.post("/v1/push", content=body, headers=headers)
                r.raise_for_status()
                assert all(x["status"] == "applied" for x in r.json()["results"]), r.text[:300]

    with ThreadPoolExecutor(clients) as pool:
        elapsed = timed(lambda: list(pool.map(one_client, range(clients))))
    return elapsed, users


def check_exactly_once(local: DynamoDBLocal, names: TableNames, users: list[str],
                       n: int) -> None:
    client = local_client(local.endpoint)
    seen = 0
    for user in users:
        kwargs: dict[str, Any] = {"TableName": names.items, "KeyConditionExpression": "pk = :p",
                                  "ExpressionAttributeValues": {":p": {"S": f"u#{user}"}}}
        while True:
            page = client.query(**kwargs)
            for item in page["Items"]:
                assert item["_v"] == {"N": "1"}, item
                seen += 1
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert seen == n, (seen, n)


def designs(local: DynamoDBLocal, names: TableNames, n: int) -> dict[str, float]:
    client = local_client(local.endpoint, max_pool_connections=64)
    items, clients = names.items, names.clients
    run = uuid.uuid4().hex[:8]

    def read(scope: str, ids: range) -> None:
        keys = [{"pk": {"S": scope}, "sk": {"S": f"todos#t{i}"}} for i in ids]
        client.batch_get_item(RequestItems={items: {"Keys": keys, "ConsistentRead": True}})

    def conditional_puts() -> None:
        def put(i: int) -> None:
            client.put_item(TableName=items, Item=raw_item(f"u#cond{run}", i),
                            ConditionExpression="attribute_not_exists(pk)")
        with ThreadPoolExecutor(16) as pool:
            for s in range(0, n, 99):
                ids = range(s, min(n, s + 99))
                read(f"u#cond{run}", ids)
                list(pool.map(put, ids))

    def transactions() -> None:
        key = {"pk": {"S": f"client#bench{run}"}, "sk": {"S": "state"}}
        client.put_item(TableName=clients, Item={**key, "lmid": {"N": "0"}})
        for s in range(0, n, 99):
            ids = range(s, min(n, s + 99))
            read(f"u#tx{run}", ids)
            actions: list[Any] = [
                *({"Put": {"TableName": items, "Item": raw_item(f"u#tx{run}", i),
                           "ConditionExpression": "attribute_not_exists(pk)"}} for i in ids),
                {"Update": {"TableName": clients, "Key": key,
                            "UpdateExpression": "SET lmid = :n",
                            "ConditionExpression": "lmid = :o",
                            "ExpressionAttributeValues": {":n": {"N": str(ids.stop)},
                                                          ":o": {"N": str(s)}}}}]
            client.transact_write_items(TransactItems=actions)

    return {"BatchWriteItem (baseline)": n / timed(
                lambda: batch_write(client, items, f"u#base{run}", range(n))),
            "per-item conditional PutItem x16 threads": n / timed(conditional_puts),
            "TransactWriteItems 99 puts + client update": n / timed(transactions)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mutations", type=int, default=10_000)
    p.add_argument("--per-push", type=int, default=500)
    p.add_argument("--clients", default="1,4")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--designs", action="store_true")
    args = p.parse_args()
    n, counts = args.mutations, [int(c) for c in args.clients.split(",")]

    with DynamoDBLocal() as local:
        settings = Settings(dev=True, dynamodb_endpoint=local.endpoint, schema=SCHEMA,
                            table_prefix=f"p{uuid.uuid4().hex[:8]}_", rate_limit_per_s=0,
                            jwt_secret="bench" * 8)
        app = create_app(settings)
        names = TableNames.with_prefix(settings.table_prefix)
        with serve(app) as url:
            print("warm-up ...", flush=True)
            baseline(local, names, 2000, 1)
            pysync_push(url, 2000, 1, args.per_push)
            if args.designs:
                designs(local, names, 2000)
            for rnd in range(1, args.rounds + 1):
                for clients in counts:
                    base_s = baseline(local, names, n, clients)
                    push_s, users = pysync_push(url, n, clients, args.per_push)
                    check_exactly_once(local, names, users, n)
                    base, ours = n / base_s, n / push_s
                    print(f"round {rnd}, {clients} client(s): pysync /v1/push "
                          f"{ours:7.0f} mutations/s | raw BatchWriteItem {base:7.0f} items/s"
                          f" | ratio {ours / base:.2f}x  (exactly-once checked)", flush=True)
                if args.designs:
                    figures = designs(local, names, n)
                    base = figures["BatchWriteItem (baseline)"]
                    for name, rate in figures.items():
                        print(f"round {rnd}, design: {name:45s} {rate:7.0f} items/s"
                              f" | ratio {rate / base:.2f}x", flush=True)


if __name__ == "__main__":
    main()
