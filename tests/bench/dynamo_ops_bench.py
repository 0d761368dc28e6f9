"""Benchmark (not a test): what each kind of DynamoDB call costs DynamoDB Local, per record, so
that a change to push's calls can be priced before it is built.

    python -m tests.bench.dynamo_ops_bench [--rounds 30]

Each line is one kind of call over 99 records (a push chunk's worth), run `--rounds` times on
fresh keys of the real tables (server/tables.py); it prints DynamoDB Local's CPU ms per call
(user + system of its process, all threads) and per record, and wall ms per call. The last
lines add up what a creation-only push chunk asks of DynamoDB Local against the raw
TransactWriteItems baseline of tests/bench/load_bench.py, for the layouts of the feed-table
marks weighed in docs/server.md ("Push performance"): the ratio is the best push
throughput that layout can reach while DynamoDB Local's CPU is the bottleneck.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from typing import Any

from server.db import MAX_BATCH_GET_KEYS, MAX_BATCH_WRITE_ITEMS
from server.dynamo_local import DynamoDBLocal, local_client
from server.tables import TableNames, ensure_tables
from tests.bench.load_bench import cpu_s

RECORDS = 99
STAMP = {"S": "0001764374400000-0000-server"}


class Calls:
    """The calls measured, each over RECORDS records of keys never used before."""

    def __init__(self, client: Any, tables: TableNames) -> None:
        self.client, self.tables = client, tables
        self.fresh = itertools.count()

    @staticmethod
    def item(n: int, j: int) -> dict[str, Any]:
        return {"pk": {"S": f"u#{n}"}, "sk": {"S": f"todos#{j:04d}"}, "title": {"S": "x" * 40},
                "_v": {"N": "1"}, "_hlc": STAMP, "_w": {"S": f"c{n}:{j}"}}

    @staticmethod
    def mark(n: int, j: int, prefix: str = "") -> dict[str, Any]:
        return {"pk": {"S": f"m#u#{n}"}, "sk": {"S": f"{prefix}todos#{j:04d}"}, "h": STAMP,
                "w": {"S": f"c{n}:{j}"}}

    def _transact(self, table: str, build: Callable[[int, int], dict[str, Any]]) -> None:
        n = next(self.fresh)
        self.client.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": build(n, j),
                     "ConditionExpression": "attribute_not_exists(pk)"}}
            for j in range(RECORDS)])

    def transact_items(self) -> None:
        self._transact(self.tables.items, self.item)

    def transact_marks(self) -> None:
        self._transact(self.tables.feed, self.mark)

    def batch_write_marks(self) -> None:
        n = next(self.fresh)
        puts = [{"PutRequest": {"Item": self.mark(n, j, "#")}} for j in range(RECORDS)]
        for i in range(0, RECORDS, MAX_BATCH_WRITE_ITEMS):
            self.client.batch_write_item(
                RequestItems={self.tables.feed: puts[i:i + MAX_BATCH_WRITE_ITEMS]})

    def batch_get(self, keys_per_record: int) -> None:
        n = next(self.fresh)
        keys = [{"pk": {"S": f"m#u#{n}"}, "sk": {"S": f"{p}todos#{j:04d}"}}
                for j in range(RECORDS) for p in ("", "#")[:keys_per_record]]
        for i in range(0, len(keys), MAX_BATCH_GET_KEYS):
            self.client.batch_get_item(RequestItems={self.tables.feed: {
                "Keys": keys[i:i + MAX_BATCH_GET_KEYS], "ConsistentRead": True}})


TRANSACT_ITEMS = "TransactWriteItems, 99 conditional puts (items table)"
GET_99, GET_198 = "BatchGetItem, 99 keys (feed table)", "BatchGetItem, 198 keys (feed table)"
WRITE_99 = "BatchWriteItem, 99 puts (feed table)"
# What a creation-only chunk asks of DynamoDB Local besides its transaction, per layout.
LAYOUTS: dict[str, list[str]] = {
    "raw TransactWriteItems (the baseline)": [],
    "marker + birth mark per record (today)": [GET_198, WRITE_99],
    "one mark per record (birth in the marker)": [GET_99, WRITE_99],
    "marker reads only (no birth marks)": [GET_99],
}


def measure(pid: int, calls: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """DynamoDB Local CPU ms per call, printed with the per-record share and the wall time."""
    for run in calls.values():  # warm DynamoDB Local's JIT
        for _ in range(5):
            run()
    cpu: dict[str, float] = {}
    print(f"{'call':58s} {'DDB CPU ms':>10s} {'per record':>10s} {'wall ms':>8s}")
    for name, run in calls.items():
        cpu0, wall0 = cpu_s(pid), time.perf_counter()
        for _ in range(rounds):
            run()
        cpu[name] = (cpu_s(pid) - cpu0) * 1000 / rounds
        wall = (time.perf_counter() - wall0) * 1000 / rounds
        print(f"{name:58s} {cpu[name]:10.1f} {cpu[name] / RECORDS:10.2f} {wall:8.1f}")
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with DynamoDBLocal() as ddb:
        client = local_client(ddb.endpoint)
        c = Calls(client, ensure_tables(client, "opsbench"))
        cpu = measure(ddb.pid, {
            TRANSACT_ITEMS: c.transact_items,
            "TransactWriteItems, 99 conditional puts (feed table)": c.transact_marks,
            WRITE_99: c.batch_write_marks,
            GET_99: lambda: c.batch_get(1),
            GET_198: lambda: c.batch_get(2),
        }, args.rounds)
    raw = cpu[TRANSACT_ITEMS]
    print(f"\n{'creation-only chunk of 99, DynamoDB Local CPU':58s} {'ms':>10s} "
          f"{'best ratio':>10s}")
    for layout, extra in LAYOUTS.items():
        total = raw + sum(cpu[name] for name in extra)
        print(f"{layout:58s} {total:10.1f} {raw / total:10.2f}x")


if __name__ == "__main__":
    main()
