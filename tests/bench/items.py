"""Items written and read with raw boto3, for the benchmarks' baselines and set-up."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from server.context import ServerContext


def fill(ctx: ServerContext, scope: str, records: int, collection: str,
         attributes: Callable[[int], dict[str, Any]]) -> None:
    """`records` items `<collection>#<n:07d>` in `scope`, each with `attributes(n)` (typed),
    written with boto3 BatchWriteItem on 8 threads."""
    def batch(start: int) -> None:
        requests = [{"PutRequest": {"Item": {"pk": {"S": scope},
                                             "sk": {"S": f"{collection}#{n:07d}"},
                                             **attributes(n)}}}
                    for n in range(start, min(start + 25, records))]
        todo: dict[str, Any] = {ctx.tables.items: requests}
        while todo:
            todo = dict(ctx.dynamodb.batch_write_item(RequestItems=todo)
                        .get("UnprocessedItems") or {})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(batch, range(0, records, 25)))


def raw_query(ctx: ServerContext, scope: str, limit: int | None = None) -> tuple[float, int]:
    """A boto3 Query of the scope, strongly consistent like a snapshot's, in pages of `limit`
    items (None: DynamoDB's own 1 MB pages); (seconds, items)."""
    t0 = time.perf_counter()
    count = 0
    kwargs: dict[str, Any] = {"TableName": ctx.tables.items, "ConsistentRead": True,
                              "KeyConditionExpression": "pk = :p",
                              "ExpressionAttributeValues": {":p": {"S": scope}}}
    if limit is not None:
        kwargs["Limit"] = limit
    while True:
        page = ctx.dynamodb.query(**kwargs)
        count += len(page["Items"])
        if "LastEvaluatedKey" not in page:
            return time.perf_counter() - t0, count
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
