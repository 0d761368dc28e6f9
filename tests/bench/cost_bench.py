"""Benchmark (not a test): DynamoDB request units per push, per logged change and per pulled
change, measured on the real server, feed and DynamoDB Local, priced at on-demand rates.

    python -m tests.bench.cost_bench [--pushes 400]

Every DynamoDB call of the server process (push, pull, the feed) asks for
ReturnConsumedCapacity=TOTAL through a botocore hook, and DynamoDB Local reports the units
real DynamoDB would charge for single-item, batch and query calls (1 KB per write unit,
4 KB per strongly consistent read unit). It does not report transactions as DynamoDB bills
them, so TransactWriteItems is counted from the request by DynamoDB's rule: two write
units per action per KB of item (Put: the item sent; Update and ConditionCheck: 1 KB, exact
for the items of this benchmark, which are all under 1 KB). docs/deploy.md turns the
figures into dollars per million pushes.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import httpx

from server.app import create_app
from server.config import Settings
from server.dynamo_local import DynamoDBLocal
from tests.server.feed_support import Store, drain
from tests.support import serve

# On-demand prices, us-east-1, USD per million request units (AWS pricing page, 2026-11).
WRITE_PRICE = 0.625
READ_PRICE = 0.125
READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: names plus values (numbers about half their
    digits, maps and lists 3 bytes plus their elements)."""
    def value(av: dict[str, Any]) -> int:
        (kind, raw), = av.items()
        if kind == "M":
            return 3 + sum(len(k.encode()) + value(v) for k, v in raw.items())
        if kind == "L":
            return 3 + sum(value(v) for v in raw)
        if kind == "N":
            return len(raw) // 2 + 2
        if kind in ("BOOL", "NULL"):
            return 1
        return len(raw.encode()) if isinstance(raw, str) else len(raw)
    return sum(len(name.encode()) + value(av) for name, av in item.items())


class Meter:
    """Request units consumed by one boto3 client's calls, read and write apart."""

    def __init__(self) -> None:
        self.units: dict[str, float] = {"read": 0.0, "write": 0.0}

    def attach(self, client: Any) -> None:
        events = client.meta.events
        for op in READS | WRITES:
            events.register(f"provide-client-params.dynamodb.{op}", self._ask)
            events.register(f"after-call.dynamodb.{op}", self._count)

    def _ask(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"
        if model.name == "TransactWriteItems":
            self.units["write"] += sum(
                2 * max(1, -(-item_bytes(a["Put"]["Item"]) // 1024)) if "Put" in a else 2
                for a in params["TransactItems"])

    def _count(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems":
            return  # counted from the request
        consumed = parsed.get("ConsumedCapacity") or []
        if isinstance(consumed, dict):
            consumed = [consumed]
        units = sum(float(c.get("CapacityUnits", 0)) for c in consumed)
        self.units["write" if model.name in WRITES else "read"] += units

    def take(self) -> tuple[float, float]:
        """(read units, write units) since the last take."""
        read, write = self.units["read"], self.units["write"]
        self.units = {"read": 0.0, "write": 0.0}
        return read, write


def push(http: httpx.Client, client_id: str, first_id: int, mutations: list[dict[str, Any]]
         ) -> None:
    body = {"protocol": 1, "client_id": client_id, "mutations": [
        {"id": first_id + i, "base_version": None, "hlc": None, **m}
        for i, m in enumerate(mutations)]}
    r = http.post("/v1/push", json=body)
    r.raise_for_status()
    assert all(x["status"] == "applied" for x in r.json()["results"]), r.text[:300]


def todo(i: int) -> dict[str, Any]:
    """A typical record: about 120 bytes stored."""
    return {"title": f"Buy milk and bread for the weekend ({i})", "done": False,
            "list": "groceries", "position": i}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pushes", type=int, default=400)
    args = p.parse_args()
    n = args.pushes
    with DynamoDBLocal() as local:
        settings = Settings(dev=True, dynamodb_endpoint=local.endpoint, rate_limit_per_s=0,
                            table_prefix=f"c{uuid.uuid4().hex[:8]}_", jwt_secret="cost" * 10)
        app = create_app(settings)
        store = Store(app.state.ctx)
        meter = Meter()
        meter.attach(store.ctx.dynamodb)
        rows: list[tuple[str, int, float, float]] = []
        with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
            token = http.post("/v1/dev/token", json={"user": "cost"}).json()["token"]
            http.headers["Authorization"] = f"Bearer {token}"
            start = http.get("/v1/pull", params={"client_id": "device-b"}).json()["cursor"]
            meter.take()
            for i in range(n):
                push(http, "device-a", i + 1, [{"collection": "todos", "key": f"t{i}",
                                               "op": "put", "value": todo(i)}])
            rows.append(("push of 1 put (new record)", n, *meter.take()))
            for i in range(n):
                push(http, "device-a", n + i + 1, [{"collection": "todos", "key": f"t{i}",
                                                   "op": "patch", "value": {"done": True}}])
            rows.append(("push of 1 patch", n, *meter.take()))
            batches = n // 10
            for b in range(batches):
                push(http, "device-a", 2 * n + 10 * b + 1, [
                    {"collection": "todos", "key": f"t{10 * b + i}", "op": "patch",
                     "value": {"position": -i}} for i in range(10)])
            rows.append(("push of 10 patches (per mutation)", batches * 10, *meter.take()))
            feed = store.feed()
            drain(feed, store, timeout=120)
            changes = 2 * n + batches * 10
            rows.append(("feed: one change into the log", changes, *meter.take()))
            cursor, pulled = start, 0
            while True:
                out = http.get("/v1/pull", params={"client_id": "device-b", "cursor": cursor,
                                                   "limit": "100"}).json()
                pulled += len(out["changes"])
                cursor = out["cursor"]
                if not out["has_more"]:
                    break
            assert pulled == changes, (pulled, changes)
            rows.append(("pull: a change in pages of 100", pulled, *meter.take()))
            # What a poke costs: one change, then the other device's pull that fetches it.
            rounds = max(10, n // 10)
            totals = [0.0, 0.0]
            for r in range(rounds):
                push(http, "device-a", 2 * n + batches * 10 + r + 1, [
                    {"collection": "todos", "key": "t0", "op": "patch", "value": {"n": r}}])
                drain(feed, store, timeout=60)
                meter.take()
                out = http.get("/v1/pull", params={"client_id": "device-b", "cursor": cursor}
                               ).json()
                assert len(out["changes"]) == 1, out
                assert not out["has_more"], out
                cursor = out["cursor"]
                read, write = meter.take()
                totals[0] += read
                totals[1] += write
            rows.append(("pull: one request after a poke", rounds, *totals))
    print(f"{'':40s} {'read units':>11s} {'write units':>12s} {'USD per million':>16s}")
    for name, count, read, write in rows:
        usd = (read * READ_PRICE + write * WRITE_PRICE) / count
        print(f"{name:40s} {read / count:11.2f} {write / count:12.2f} {usd:16.2f}", flush=True)


if __name__ == "__main__":
    main()
