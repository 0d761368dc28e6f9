"""CORS: an allow-list of origins, preflight for listed origins only (real app over ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.app import create_app
from server.config import Settings

ALLOWED = "https://app.example.com"
NOWHERE = "http://127.0.0.1:9"  # preflight and 401s never reach DynamoDB


pytestmark = pytest.mark.anyio


def client(**settings: Any) -> httpx.AsyncClient:
    app = create_app(Settings(dynamodb_endpoint=NOWHERE, **settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app),
                             base_url="http://api.example.com")


@pytest.fixture
async def listed() -> AsyncIterator[httpx.AsyncClient]:
    async with client(cors_origins=(ALLOWED,)) as c:
        yield c


async def preflight(c: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await c.options("/v1/push", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})


async def test_preflight_from_a_listed_origin_allows_post_with_authorization(
        listed: httpx.AsyncClient) -> None:
    r = await preflight(listed, ALLOWED)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in r.headers


async def test_preflight_from_an_unlisted_origin_is_refused(listed: httpx.AsyncClient) -> None:
    r = await preflight(listed, "https://evil.example")
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


async def test_a_response_to_a_listed_origin_carries_its_cors_headers(
        listed: httpx.AsyncClient) -> None:
    r = await listed.post("/v1/push", json={}, headers={"Origin": ALLOWED})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "retry-after" in r.headers["access-control-expose-headers"].lower()


async def test_a_response_to_an_unlisted_origin_has_no_cors_headers(
        listed: httpx.AsyncClient) -> None:
    r = await listed.post("/v1/push", json={}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_without_an_allow_list_no_cors_headers_are_sent() -> None:
    async with client() as c:
        r = await preflight(c, ALLOWED)
    assert "access-control-allow-origin" not in r.headers


async def test_a_wildcard_allow_list_never_allows_credentials() -> None:
    async with client(cors_origins=("*",)) as c:
        r = await preflight(c, "https://anyone.example")
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers
