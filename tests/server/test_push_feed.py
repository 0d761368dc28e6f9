"""Push and the change feed agree on writes by other programs: a write the feed has stamped
is taken at the feed's version, so a client that pulled it pushes without a conflict."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pysync.hlc import HybridClock
from pysync.protocol import Mutation, PushRequest, PushResponse
from server.dynamo_local import DynamoDBLocal
from server.push import apply_push
from tests.server.conftest import TEST_SCHEMA
from tests.server.feed_support import Store, drain

pytestmark = pytest.mark.dynamodb

DEVICE = HybridClock("dev1")


def push(store: Store, mid: int, base: int | None, **value: Any) -> PushResponse:
    m = Mutation(mid, "accounts", "a1", "patch" if base else "put", value, base,
                 str(DEVICE.now()))
    return asyncio.run(apply_push(store.ctx, "alice", "u#alice",
                                  PushRequest("c1", (m,))))


def test_a_direct_update_stamped_by_the_feed_is_taken_at_the_feeds_version(
        dynamodb_local: DynamoDBLocal) -> None:
    store = Store.create(dynamodb_local, schema=TEST_SCHEMA)
    assert push(store, 1, None, balance=1, owner="me").results[0].version == 1
    store.update("u#alice", "accounts", "a1", balance=7)  # another program
    drain(store.feed(), store)
    item = store.item("u#alice", "accounts", "a1")
    assert item is not None
    assert item["_v"] == {"N": "2"}  # the feed's stamp
    stale = push(store, 2, 1, balance=2)
    assert stale.results[0].status == "conflict"
    resp = push(store, 3, 2, owner="you")
    assert [(r.status, r.version) for r in resp.results] == [("applied", 3)]
    item = store.item("u#alice", "accounts", "a1")
    assert item is not None
    assert item["balance"] == {"N": "7"}
    assert item["owner"] == {"S": "you"}


def test_a_second_direct_update_after_the_feeds_stamp_is_not_overwritten_by_a_stale_push(
        dynamodb_local: DynamoDBLocal) -> None:
    store = Store.create(dynamodb_local, schema=TEST_SCHEMA)
    assert push(store, 1, None, balance=1).results[0].version == 1
    store.update("u#alice", "accounts", "a1", balance=7)  # another program
    drain(store.feed(), store)  # stamped at version 2, with `_h`
    store.update("u#alice", "accounts", "a1", balance=9)  # again, before the feed stamps it
    stale = push(store, 2, 2, balance=2)  # based on the stamped version 2
    assert stale.results[0].status == "conflict"
    item = store.item("u#alice", "accounts", "a1")
    assert item is not None
    assert item["balance"] == {"N": "9"}
