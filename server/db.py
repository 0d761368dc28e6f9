"""The boto3 DynamoDB clients the server uses: DynamoDB Local, or real AWS."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from server.config import Settings
from server.retry import CONNECT_TIMEOUT_S, READ_TIMEOUT_S

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

# DynamoDB's request limits, as the server's writers and readers use them.
MAX_TRANSACTION_ACTIONS = 100  # TransactWriteItems: actions per call
MAX_TRANSACTION_BYTES = 3_500_000  # of its 4 MB: room for keys, expressions and overhead
MAX_BATCH_GET_KEYS = 100  # BatchGetItem: keys per call
MAX_BATCH_WRITE_ITEMS = 25  # BatchWriteItem: items per call

# Pooled connections for concurrent requests; botocore retries are ours to control
# (server/retry.py retries throttling and unreachable DynamoDB, then answers 503).
# Short timeouts so that a DynamoDB that accepts connections but never answers (paused,
# overloaded) costs a request a bounded time (botocore's default read timeout is 60 s).
# botocore's client-side parameter validation is off: our requests are built by code, and
# DynamoDB validates them anyway; it cost a third of push's CPU time (docs/server.md).
_CONFIG = Config(max_pool_connections=64, retries={"total_max_attempts": 1, "mode": "standard"},
                 connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                 parameter_validation=False)


def _kwargs(settings: Settings) -> dict[str, str]:
    if settings.dynamodb_endpoint is None:
        return {"region_name": settings.region}  # credentials from the standard AWS chain
    return {"region_name": settings.region, "endpoint_url": settings.dynamodb_endpoint,
            "aws_access_key_id": "local", "aws_secret_access_key": "local"}


def dynamodb_client(settings: Settings) -> DynamoDBClient:
    return boto3.client("dynamodb", config=_CONFIG, **_kwargs(settings))  # type: ignore[call-overload,no-any-return]


def streams_client(settings: Settings) -> DynamoDBStreamsClient:
    return boto3.client("dynamodbstreams", config=_CONFIG, **_kwargs(settings))  # type: ignore[call-overload,no-any-return]
