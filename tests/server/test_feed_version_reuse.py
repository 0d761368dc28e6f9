"""A record deleted outright by another program and written again by a push before the feed
turned the delete into a tombstone (found by the simulation: seeds 1081, 1578, 1611, 1624).

The push finds no item and starts the record over at version 1, a version the log already
holds for the record's earlier life, so the feed drops its stream record as already logged
and no pull ever brings the new state. The feed must lift the re-created record's version
above everything logged, so the new state reaches every device.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from pysync.protocol import Mutation, PushRequest, PushResponse
from server.pull import Puller
from server.push import apply_push
from tests.server.feed_support import Store, drain

pytestmark = pytest.mark.dynamodb

A = "u#alice"


@pytest.fixture
def store(dynamodb_local: Any) -> Store:
    return Store.create(dynamodb_local)


def push(store: Store, client_id: str, *mutations: Mutation) -> PushResponse:
    return asyncio.run(apply_push(store.ctx, "alice", A, PushRequest(client_id, mutations)))


def test_a_record_recreated_before_the_feed_saw_its_outside_delete_reaches_pulls(
        store: Store) -> None:
    device = uuid.uuid4().hex
    push(store, device, Mutation(1, "todos", "t1", "put", {"title": "first life"}, None, None),
         Mutation(2, "todos", "t1", "patch", {"done": True}, 1, None))
    feed = store.feed()
    drain(feed, store)
    puller = Puller(store.ctx.dynamodb, store.ctx.tables, store.ctx.settings.log_retention_s)
    page = puller.pull(A, None, 100)
    assert [(c["key"], c["version"]) for c in page["changes"]] == [("t1", 2)]
    store.delete(A, "todos", "t1")  # another program, outright, no tombstone
    again = push(store, device, Mutation(3, "todos", "t1", "put", {"title": "second life"},
                                         None, None))
    assert again.results[0].status == "applied"  # before the feed saw the delete
    drain(feed, store)
    changes = []
    cursor = page["cursor"]
    while True:
        out = puller.pull(A, cursor, 100)
        changes += out["changes"]
        cursor = out["cursor"]
        if not out["has_more"]:
            break
    assert changes, "the re-created record never reached the log"
    last = changes[-1]
    assert (last["key"], last["deleted"], last["value"]) == ("t1", False, {"title": "second life"})
    assert last["version"] > 2  # above every version devices may hold
    item = store.item(A, "todos", "t1")
    assert item is not None and int(item["_v"]["N"]) == last["version"]
