"""A real sync server (uvicorn on loopback, real DynamoDB Local) for the API tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from pysync.hlc import HybridClock
from pysync.protocol import dumps
from pysync.schema import Collection, Schema
from server.app import create_app
from server.config import Settings
from server.context import ServerContext
from server.dynamo_local import DynamoDBLocal
from tests.support import serve

SCHEMA = Schema(Collection("todos"), Collection("notes", strategy="version"))
SECRET = "test-secret-" + "x" * 32
# Each test mutation gets a fresh stamp, as a real client's clock gives.
CLOCK = HybridClock("testnode")


@dataclass
class Api:
    url: str
    app: Starlette
    http: httpx.Client

    @property
    def ctx(self) -> ServerContext:
        ctx: ServerContext = self.app.state.ctx
        return ctx

    def token(self, user: str) -> str:
        r = self.http.post("/v1/dev/token", json={"user": user})
        r.raise_for_status()
        token: str = r.json()["token"]
        return token

    def push(self, token: str | None, body: Any, headers: dict[str, str] | None = None,
             **kwargs: Any) -> httpx.Response:
        """POST /v1/push; a dict/list body is sent as exact JSON, bytes or a byte iterator
        (chunked, no Content-Length) as they are."""
        content = body if not isinstance(body, (dict, list)) else dumps(body).encode()
        h = {"Content-Type": "application/json"}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        return self.http.post("/v1/push", content=content, headers=h, **kwargs)

    def items(self, scope: str) -> list[dict[str, Any]]:
        """Every item of `scope` in the items table, raw, read back with boto3."""
        pages = self.ctx.dynamodb.get_paginator("query").paginate(
            TableName=self.ctx.tables.items, ConsistentRead=True,
            KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": scope}})
        return [item for page in pages for item in page["Items"]]


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}_"


def client_id() -> str:
    return uuid.uuid4().hex


def mutation(mid: int, key: str = "k", **over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"id": mid, "collection": "todos", "key": key, "op": "put",
                         "value": {"title": f"t{mid}"}, "base_version": None,
                         "hlc": str(CLOCK.now())}
    m.update(over)
    return m


def push_body(cid: str, *mutations: dict[str, Any], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"protocol": 1, "client_id": cid, "mutations": list(mutations)}
    body.update(over)
    return body


@contextmanager
def running_api(local: DynamoDBLocal, **overrides: Any) -> Iterator[Api]:
    settings: dict[str, Any] = {"dev": True, "dynamodb_endpoint": local.endpoint,
                                "table_prefix": unique_prefix(), "schema": SCHEMA,
                                "jwt_secret": SECRET}
    settings.update(overrides)
    app = create_app(Settings(**settings))
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield Api(url, app, http)
