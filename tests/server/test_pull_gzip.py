"""GET /v1/pull answers are gzipped for a client that accepts gzip (a snapshot page of
records' JSON shrinks many times over), and plain for one that does not: the real server on
a socket, DynamoDB Local, the raw bytes on the wire read with httpx's raw stream."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from server.app import create_app
from server.http import GZIP_MIN_BYTES
from tests.server.feed_support import Store
from tests.support import serve

pytestmark = pytest.mark.dynamodb


@pytest.fixture(scope="module")
def store(dynamodb_local: Any) -> Store:
    return Store.create(dynamodb_local)


@pytest.fixture(scope="module")
def http(store: Store) -> Iterator[httpx.Client]:
    with serve(create_app(store.ctx.settings)) as url, \
            httpx.Client(base_url=url, timeout=httpx.Timeout(30.0)) as client:
        yield client


@pytest.fixture(scope="module")
def user(store: Store) -> str:
    """A user whose scope holds enough records for a page well over GZIP_MIN_BYTES."""
    name = f"gz{uuid.uuid4().hex[:10]}"
    for i in range(40):
        store.put(f"u#{name}", "todos", f"t{i:03d}", title=f"item {i}", done=i % 2 == 0)
    return name


def pull_raw(http: httpx.Client, user: str, accept: str) -> tuple[httpx.Response, bytes]:
    token = http.post("/v1/dev/token", json={"user": user}).json()["token"]
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": accept}
    with http.stream("GET", "/v1/pull", params={"client_id": f"c-{user}", "limit": "100"},
                     headers=headers) as r:
        return r, b"".join(r.iter_raw())


def test_a_pull_page_is_gzipped_for_a_client_that_accepts_gzip(http: httpx.Client,
                                                                user: str) -> None:
    r, raw = pull_raw(http, user, "gzip, deflate")
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in r.headers["vary"].lower()
    body = json.loads(gzip.decompress(raw))
    assert len(body["changes"]) == 40
    assert len(raw) < len(gzip.decompress(raw)) / 3


def test_a_pull_page_is_plain_for_a_client_that_does_not_accept_gzip(http: httpx.Client,
                                                                      user: str) -> None:
    for accept in ("identity", "gzip;q=0", "br"):
        r, raw = pull_raw(http, user, accept)
        assert r.status_code == 200
        assert "content-encoding" not in r.headers, accept
        assert len(json.loads(raw)["changes"]) == 40
        assert len(raw) >= GZIP_MIN_BYTES


def test_a_small_pull_answer_is_not_gzipped(http: httpx.Client) -> None:
    r, raw = pull_raw(http, f"gz{uuid.uuid4().hex[:10]}", "gzip")  # an empty scope
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert json.loads(raw)["changes"] == []
