"""Fixtures for server tests: a ServerContext on the session's DynamoDB Local.

Each test module gets its own table prefix (its own tables); each test gets its own scope
and client id, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pysync.schema import Collection, Schema
from server.app import create_app
from server.config import Settings
from server.context import ServerContext
from server.dynamo_local import DynamoDBLocal
from server.tables import ensure_tables
from tests.server.fault_support import private_dynamodb_local
from tests.server.feed_support import Store
from tests.support import serve, wait_until

# The schema of the SyncClient-on-the-twin tests (twin_store): one collection per strategy.
TWIN_SCHEMA = Schema(Collection("todos"), Collection("accounts", strategy="version"),
                     Collection("docs", strategy="lww"))

TEST_SCHEMA = Schema(
    Collection("notes"),  # merge
    Collection("docs", strategy="lww"),
    Collection("accounts", strategy="version"),
)


@pytest.fixture(scope="module")
def server_settings(dynamodb_local: DynamoDBLocal) -> Settings:
    settings = Settings(dynamodb_endpoint=dynamodb_local.endpoint,
                        table_prefix=f"t{uuid.uuid4().hex[:10]}_", schema=TEST_SCHEMA)
    ensure_tables(ServerContext.from_settings(settings).dynamodb, settings.table_prefix)
    return settings


@pytest.fixture(scope="module")
def ctx(server_settings: Settings) -> ServerContext:
    return ServerContext.from_settings(server_settings)


@pytest.fixture
def fresh_ctx(server_settings: Settings) -> ServerContext:
    """A context with its own boto3 clients, for tests that hook into botocore events."""
    return ServerContext.from_settings(server_settings)


@pytest.fixture
def store(dynamodb_local: DynamoDBLocal) -> Store:
    """Tables of the test's own, on the session's DynamoDB Local (a module that needs other
    settings, or one set of tables for all its tests, defines its own `store`)."""
    return Store.create(dynamodb_local)


@pytest.fixture
def anyio_backend() -> str:
    """The async tests (pytest.mark.anyio) run on asyncio, as the server does."""
    return "asyncio"


@pytest.fixture
def scope() -> str:
    return f"u#{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client_id() -> str:
    return uuid.uuid4().hex


def read_stream(ctx: ServerContext, scope: str) -> list[dict[str, Any]]:
    """Every stream record of the items table for `scope`, in order.

    Writes a sentinel item in the scope, then reads all shards from TRIM_HORIZON until the
    sentinel shows up, so every earlier write of the test has been seen.
    """
    sentinel = f"~sentinel#{uuid.uuid4().hex}"
    ctx.dynamodb.put_item(TableName=ctx.tables.items,
                          Item={"pk": {"S": scope}, "sk": {"S": sentinel}})
    arn = ctx.dynamodb.describe_table(TableName=ctx.tables.items)["Table"]["LatestStreamArn"]

    def through_sentinel() -> list[dict[str, Any]] | None:
        records: list[dict[str, Any]] = []
        shards = ctx.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        for shard in shards:
            it: str | None = ctx.streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON",
            ).get("ShardIterator")
            while it:
                page = ctx.streams.get_records(ShardIterator=it, Limit=1000)
                batch = page["Records"]
                records += [dict(r) for r in batch if r["dynamodb"]["Keys"]["pk"]["S"] == scope]
                it = page.get("NextShardIterator") if batch else None
        if any(r["dynamodb"]["Keys"]["sk"]["S"] == sentinel for r in records):
            return records
        return None

    records = wait_until(through_sentinel, timeout=30, interval=0.05,
                         message="the sentinel never reached the stream")
    return [r for r in records if r["dynamodb"]["Keys"]["sk"]["S"] != sentinel]


@pytest.fixture(scope="module")
def local() -> Iterator[DynamoDBLocal]:
    """A DynamoDB Local of the module's own, for tests that pause, kill or restart it (the
    session's `dynamodb_local` is shared by every other test)."""
    with private_dynamodb_local() as local:
        yield local


@pytest.fixture(scope="module")
def twin_store(dynamodb_local: DynamoDBLocal) -> Store:
    """Tables for the real SyncClient on the IndexedDB twin (tests/server/test_client_*.py):
    TWIN_SCHEMA, the change feed on; one set per module."""
    return Store.create(dynamodb_local, feed_enabled=True, schema=TWIN_SCHEMA)


@pytest.fixture(scope="module")
def twin_url(twin_store: Store) -> Iterator[str]:
    """The real server (uvicorn on a real socket) over `twin_store`."""
    with serve(create_app(twin_store.ctx.settings)) as base:
        yield base
