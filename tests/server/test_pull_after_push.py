"""Push, then pull, over a real socket with the feed running: pysync's own writes and writes by
other programs in between, as one client sees them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pysync.schema import Collection, Schema
from server.app import create_app
from tests.server.feed_support import Store
from tests.support import serve, wait_until

pytestmark = pytest.mark.dynamodb

SCHEMA = Schema(Collection("todos"), Collection("accounts", strategy="version"))


@pytest.fixture(scope="module")
def store(dynamodb_local: Any) -> Store:
    return Store.create(dynamodb_local, feed_enabled=True, schema=SCHEMA)


@pytest.fixture(scope="module")
def http(store: Store) -> Iterator[httpx.Client]:
    with serve(create_app(store.ctx.settings)) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        yield client


def login(http: httpx.Client, user: str) -> dict[str, str]:
    token = http.post("/v1/dev/token", json={"user": user}).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def push(http: httpx.Client, headers: dict[str, str], client_id: str,
         mutations: list[dict[str, Any]]) -> dict[str, Any]:
    r = http.post("/v1/push", headers=headers,
                  json={"protocol": 1, "client_id": client_id, "mutations": mutations})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def pull_until(http: httpx.Client, headers: dict[str, str], client_id: str, cursor: str | None,
               done: Any) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """Pull (looping while has_more) until `done(changes)`; the feed is asynchronous."""
    changes: list[dict[str, Any]] = []
    last: dict[str, Any] = {}

    def attempt() -> bool:
        nonlocal cursor, last
        while True:
            params = {"client_id": client_id, **({"cursor": cursor} if cursor else {})}
            last = http.get("/v1/pull", params=params, headers=headers).json()
            changes.extend(last["changes"])
            cursor = last["cursor"]
            if not last["has_more"]:
                return bool(done(changes))

    wait_until(attempt, timeout=20, interval=0.05)
    assert cursor is not None
    return cursor, changes, last


def test_pushed_changes_come_back_with_their_versions_and_last_mutation_id(
        store: Store, http: httpx.Client) -> None:
    headers = login(http, "gina")
    cursor, _, first = pull_until(http, headers, "gina-1", None, lambda c: True)
    assert first["last_mutation_id"] == 0
    push(http, headers, "gina-1", [
        {"id": 1, "collection": "todos", "key": "t1", "op": "put",
         "value": {"title": "Milk"}, "base_version": None, "hlc": None},
        {"id": 2, "collection": "todos", "key": "t1", "op": "patch",
         "value": {"done": True}, "base_version": 1, "hlc": None}])
    _, changes, last = pull_until(http, headers, "gina-1", cursor,
                                  lambda c: any(x["version"] == 2 for x in c))
    assert last["last_mutation_id"] == 2
    # (a push may write both mutations of one record as one item write, at version 2)
    assert changes[-1]["key"] == "t1"
    assert changes[-1]["version"] == 2
    assert changes[-1]["value"] == {"title": "Milk", "done": True}


def test_a_push_based_on_the_version_before_a_direct_write_is_a_conflict(
        store: Store, http: httpx.Client) -> None:
    headers = login(http, "hal")
    result = push(http, headers, "hal-1", [
        {"id": 1, "collection": "accounts", "key": "a1", "op": "put",
         "value": {"balance": 10}, "base_version": None, "hlc": None}])
    assert result["results"][0] == {"id": 1, "status": "applied", "version": 1}
    cursor, _, _ = pull_until(http, headers, "hal-1", None, lambda c: len(c) == 1)
    store.update("u#hal", "accounts", "a1", balance=99)  # a backend job, no pysync meta
    _, changes, _ = pull_until(http, headers, "hal-1", cursor,
                               lambda c: any(x["value"] == {"balance": 99} for x in c))
    assert changes[-1]["value"] == {"balance": 99}
    assert changes[-1]["version"] > 1
    stale = push(http, headers, "hal-1", [
        {"id": 2, "collection": "accounts", "key": "a1", "op": "patch",
         "value": {"balance": 11}, "base_version": 1, "hlc": None}])
    assert stale["results"][0]["status"] == "conflict"
    assert stale["results"][0]["server"]["value"] == {"balance": 99}
    item = store.item("u#hal", "accounts", "a1")
    assert item is not None
    assert item["balance"] == {"N": "99"}
