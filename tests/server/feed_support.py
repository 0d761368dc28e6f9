"""Helpers for the feed, pull and events tests: fresh tables on DynamoDB Local, raw writes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from server.config import Settings
from server.context import ServerContext
from server.dynamo_local import DynamoDBLocal
from server.feed import Feed
from server.items import item_key
from server.tables import ensure_tables
from tests.support import wait_until

FAST = {"feed_poll_s": 0.01, "events_poll_s": 0.05, "heartbeat_s": 0.5, "lease_s": 2.0,
        "shard_refresh_s": 0.5}


def fresh_settings(local: DynamoDBLocal, **overrides: Any) -> Settings:
    """Settings on a table prefix nobody else uses, with short poll intervals."""
    values: dict[str, Any] = {"dev": True, "dynamodb_endpoint": local.endpoint,
                              "table_prefix": f"f{uuid.uuid4().hex[:10]}_",
                              "jwt_secret": "x" * 40, **FAST}
    values.update(overrides)
    return Settings(**values)


@dataclass
class Store:
    """A ServerContext on fresh tables plus raw-write helpers (what "another program" does)."""

    ctx: ServerContext

    @classmethod
    def create(cls, local: DynamoDBLocal, **overrides: Any) -> Store:
        ctx = ServerContext.from_settings(fresh_settings(local, **overrides))
        ensure_tables(ctx.dynamodb, ctx.settings.table_prefix)
        return cls(ctx)

    def with_settings(self, **overrides: Any) -> Store:
        settings = replace(self.ctx.settings, **overrides)
        return Store(ServerContext.from_settings(settings))

    def feed(self, **kwargs: Any) -> Feed:
        s = self.ctx.settings
        args: dict[str, Any] = {"log_retention_s": s.log_retention_s,
                                "tombstone_retention_s": s.tombstone_retention_s,
                                "poll_s": s.feed_poll_s, "lease_s": s.lease_s,
                                "shard_refresh_s": s.shard_refresh_s}
        args.update(kwargs)
        return Feed(self.ctx.dynamodb, self.ctx.streams, self.ctx.tables, **args)

    def put(self, scope: str, collection: str, key: str, **fields: Any) -> None:
        """A plain boto3 put, typed by hand: no pysync meta unless given as `_v=...`."""
        item: dict[str, Any] = item_key(scope, collection, key)
        for name, value in fields.items():
            item[name] = typed(value)
        self.ctx.dynamodb.put_item(TableName=self.ctx.tables.items, Item=item)

    def update(self, scope: str, collection: str, key: str, **fields: Any) -> None:
        names = {f"#a{i}": n for i, n in enumerate(fields)}
        values = {f":a{i}": typed(v) for i, v in enumerate(fields.values())}
        self.ctx.dynamodb.update_item(
            TableName=self.ctx.tables.items,
            Key=item_key(scope, collection, key),
            UpdateExpression="SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(fields))),
            ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def delete(self, scope: str, collection: str, key: str) -> None:
        self.ctx.dynamodb.delete_item(
            TableName=self.ctx.tables.items,
            Key=item_key(scope, collection, key))

    def item(self, scope: str, collection: str, key: str) -> dict[str, Any] | None:
        return self.ctx.dynamodb.get_item(
            TableName=self.ctx.tables.items, ConsistentRead=True,
            Key=item_key(scope, collection, key)).get("Item")

    def log(self, scope: str) -> list[dict[str, Any]]:
        """Every log entry of `scope` (not the anchor), in position order."""
        pages = self.ctx.dynamodb.get_paginator("query").paginate(
            TableName=self.ctx.tables.log, ConsistentRead=True,
            KeyConditionExpression="pk = :p AND sk > :z",
            ExpressionAttributeValues={":p": {"S": scope}, ":z": {"N": "0"}})
        return [item for page in pages for item in page["Items"]]

    def stream_records(self) -> list[dict[str, Any]]:
        """Every record currently in the items table's stream (all shards, from the start)."""
        streams = self.ctx.streams
        arn = self.ctx.dynamodb.describe_table(
            TableName=self.ctx.tables.items)["Table"]["LatestStreamArn"]
        records: list[dict[str, Any]] = []
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while it:
                out = streams.get_records(ShardIterator=it, Limit=1000)
                records += [{**r, "__shard": shard["ShardId"]} for r in out["Records"]]
                if not out["Records"]:
                    break
                it = out.get("NextShardIterator")
        return records


def typed(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes):
        return {"B": value}
    if value is None:
        return {"NULL": True}
    if isinstance(value, list):
        return {"L": [typed(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {k: typed(v) for k, v in value.items()}}
    if isinstance(value, set):
        return {"SS": sorted(value)}
    raise TypeError(value)


def entries_summary(entries: list[dict[str, Any]]) -> list[tuple[int, str, int, bool]]:
    """(position, item key, version, deleted) of log entries."""
    return [(int(e["sk"]["N"]), e["k"]["S"], int(e["v"]["N"]), e["d"]["BOOL"]) for e in entries]


def stream_tips(store: Store) -> dict[str, int]:
    """The last sequence number of every shard of the items table's stream, now."""
    tips: dict[str, int] = {}
    for r in store.stream_records():
        seq = int(r["dynamodb"]["SequenceNumber"])
        shard = r["__shard"]
        tips[shard] = max(tips.get(shard, 0), seq)
    return tips


def drain(feed: Feed, store: Store, timeout: float = 20.0,
          advance: Callable[[], Any] | None = None) -> None:
    """Run feed passes until the feed has checkpointed every record in the stream, including
    the records of its own stamps (until a catch-up is followed by no new record).
    `advance`: what moves the feed on instead of a pass here, for a feed that runs in its own
    thread (a server's): e.g. a short sleep."""
    advance = advance or feed.step
    tips = stream_tips(store)

    def settled() -> bool:
        nonlocal tips
        done = feed.checkpoints()
        if not all(int(done.get(shard, "0").replace("SHARD_END", str(seq))) >= seq
                   for shard, seq in tips.items()):
            advance()
            return False
        # A write shows in DynamoDB Local's stream ~10 ms after it returns (stamps too):
        # done once the stream stayed as it was for well over that.
        time.sleep(0.2)
        now = stream_tips(store)
        if now == tips:
            return True
        tips = now
        return False

    wait_until(settled, timeout=timeout, interval=0,
               message="the feed did not catch up with the stream")


def step_until(feed: Feed, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run feed passes in this thread until `predicate()` holds."""
    def check() -> Any:
        feed.step()
        return predicate()
    return wait_until(check, timeout, message="the feed passes did not bring it")


@contextmanager
def running(feed: Feed) -> Iterator[Feed]:
    feed.start()
    try:
        yield feed
    finally:
        feed.stop()
