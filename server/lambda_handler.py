"""The feed as an AWS Lambda function: a DynamoDB Streams event source mapping on the items table.

    handler = server.lambda_handler.handler
    environment: PYSYNC_TABLE_PREFIX (and PYSYNC_DYNAMODB_ENDPOINT only for DynamoDB Local)

It runs the same ingest code as the server's feed thread (server/ingest.py): writes by other
programs are stamped, changes are appended to their scope's log (dense positions, duplicates
dropped by the markers, so Lambda's at-least-once retries are harmless). Turn the feed thread
off in the servers (PYSYNC_FEED=0) when Lambda does the work; the servers' event watchers
still see the log heads move and poke their clients.

Partial batch response: when a record cannot be processed, the handler returns
{"batchItemFailures": [{"itemIdentifier": <its SequenceNumber>}]} for the first such
record; Lambda retries from there (records before it are done; records after it that did
go through are dropped as duplicates on the retry). Enable ReportBatchItemFailures on the
mapping (docs/feed.md). A record the log cannot hold (too deep, too large, refused by
DynamoDB) is not such a failure: it is logged without its fields and the pull reads the
item (server/changelog.py), so it cannot make Lambda retry the batch for ever.
"""

from __future__ import annotations

from typing import Any

from server.changelog import ChangeLog
from server.codec import from_event
from server.config import Settings
from server.db import dynamodb_client
from server.ingest import Ingestor
from server.tables import TableNames

_ingestor: Ingestor | None = None


def ingestor_for(settings: Settings) -> Ingestor:
    client = dynamodb_client(settings)
    tables = TableNames.with_prefix(settings.table_prefix)
    return Ingestor(client, tables, ChangeLog(client, tables, settings.log_retention_s),
                    settings.tombstone_retention_s)


def normalize(record: dict[str, Any]) -> dict[str, Any]:
    body = dict(record.get("dynamodb") or {})
    for image in ("Keys", "NewImage", "OldImage"):
        if image in body:
            body[image] = {k: from_event(v) for k, v in body[image].items()}
    return {**record, "dynamodb": body}


def process(ingestor: Ingestor, event: dict[str, Any]) -> dict[str, Any]:
    records = [normalize(r) for r in event.get("Records") or []]
    result = ingestor.ingest(records)
    failures: list[dict[str, str]] = []
    if result.failed_at is not None:
        seq = records[result.failed_at].get("dynamodb", {}).get("SequenceNumber", "")
        failures.append({"itemIdentifier": str(seq)})
    return {"batchItemFailures": failures}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _ingestor
    if _ingestor is None:  # once per container, reused across invocations
        _ingestor = ingestor_for(Settings.from_env(feed_enabled=False))
    return process(_ingestor, event)
