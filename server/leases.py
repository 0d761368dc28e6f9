"""Shard leases and checkpoints in the feed table: one worker per shard at a time.

Lease item: pk = "lease#<stream arn>", sk = shard id; `owner`, `until` (epoch ms), `ckpt`
(the last sequence number whose change is durably in the log, or "SHARD_END"). A worker
takes a shard whose lease is free, its own, or expired; it renews while it works. A
checkpoint is written only by the current owner (a condition), so a worker that lost its
lease (paused, partitioned) cannot move a checkpoint the new owner relies on.

Lease expiry compares wall clocks of different processes: keep `duration_s` well above the
expected clock skew (default 10 s; NTP keeps skew in the milliseconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from server.retry import with_retries

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SHARD_END = "SHARD_END"


@dataclass(frozen=True)
class Lease:
    shard_id: str
    owner: str
    until_ms: int
    checkpoint: str | None


def _ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


class Leases:
    def __init__(self, client: DynamoDBClient, table: str, stream_arn: str, owner: str,
                 duration_s: float, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.pk = "lease#" + stream_arn
        self.owner = owner
        self.duration_ms = int(duration_s * 1000)
        self.clock = clock

    def _key(self, shard_id: str) -> dict[str, dict[str, str]]:
        return {"pk": {"S": self.pk}, "sk": {"S": shard_id}}

    def acquire(self, shard_id: str) -> Lease | None:
        """Take or renew the lease of `shard_id`; None if another live worker holds it."""
        now = _ms(self.clock)
        try:
            out = with_retries(lambda: self.client.update_item(
                TableName=self.table, Key=self._key(shard_id),
                UpdateExpression="SET #o = :me, #u = :until",
                ConditionExpression="attribute_not_exists(#o) OR #o = :me OR #u < :now",
                ExpressionAttributeNames={"#o": "owner", "#u": "until"},
                ExpressionAttributeValues={":me": {"S": self.owner},
                                           ":until": {"N": str(now + self.duration_ms)},
                                           ":now": {"N": str(now)}},
                ReturnValues="ALL_NEW",
            ))
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        item = out["Attributes"]
        ckpt = item.get("ckpt", {}).get("S")
        return Lease(shard_id, self.owner, int(item["until"]["N"]), ckpt)

    def checkpoint(self, shard_id: str, sequence_number: str) -> bool:
        """Record progress; False if this worker no longer owns the lease."""
        try:
            with_retries(lambda: self.client.update_item(
                TableName=self.table, Key=self._key(shard_id),
                UpdateExpression="SET ckpt = :c",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":c": {"S": sequence_number},
                                           ":me": {"S": self.owner}},
            ))
            return True
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def release(self, shard_id: str) -> None:
        """Give the lease up now (clean shutdown), so another worker need not wait for expiry."""
        try:
            with_retries(lambda: self.client.update_item(
                TableName=self.table, Key=self._key(shard_id),
                UpdateExpression="REMOVE #o, #u", ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner", "#u": "until"},
                ExpressionAttributeValues={":me": {"S": self.owner}},
            ))
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def checkpoints(self) -> dict[str, str]:
        """Every shard's checkpoint (for parents-before-children ordering)."""
        def read() -> dict[str, str]:
            out: dict[str, str] = {}
            paginator = self.client.get_paginator("query")
            for page in paginator.paginate(
                TableName=self.table, ConsistentRead=True,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": self.pk}},
            ):
                for item in page.get("Items", []):
                    if "ckpt" in item:
                        out[item["sk"]["S"]] = item["ckpt"]["S"]
            return out

        return with_retries(read)
