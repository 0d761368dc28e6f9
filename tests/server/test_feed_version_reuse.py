"""A record deleted outright by another program and written again by a push before the feed
turned the delete into a tombstone (found by the simulation: seeds 1015, 1081, 1404, 1578,
1611, 1624 and others).

Finding no item, the push used to start the record over at version 1, a version the log
already holds for the record's earlier life: one version number then named two states (two
mutations answered with it), the feed dropped the new state's stream record as already
logged, and a `version` edit based on the old number was accepted. The push now starts such
a record above what the log holds (competing as the tombstone the feed will write); the
re-created record takes a fresh version from the server clock, since the earlier life may
have versions the feed has not logged yet. The feed still lifts a re-created record whose
version is not above the log (what a push did before this fix; a life the log holds nothing
of yet).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from pysync.protocol import Mutation, PushRequest, PushResponse
from pysync.schema import Collection, Schema
from server.pull import Puller
from server.push import apply_push
from tests.server.feed_support import Store, drain

pytestmark = pytest.mark.dynamodb

A = "u#alice"


def push(store: Store, client_id: str, *mutations: Mutation) -> PushResponse:
    return asyncio.run(apply_push(store.ctx, "alice", A, PushRequest(client_id, mutations)))


def earlier_life(store: Store, device: str, collection: str = "todos") -> Puller:
    """t1 written at versions 1 and 2, both logged; then deleted outright by another program
    (no tombstone yet: the feed has not seen the delete)."""
    push(store, device,
         Mutation(1, collection, "t1", "put", {"title": "first life"}, None, None),
         Mutation(2, collection, "t1", "patch", {"done": True}, 1, None))
    drain(store.feed(), store)
    store.delete(A, collection, "t1")
    return Puller(store.ctx.dynamodb, store.ctx.tables, store.ctx.settings.log_retention_s)


def test_a_push_recreating_a_record_deleted_outright_answers_a_version_above_the_log(
        store: Store) -> None:
    earlier_life(store, uuid.uuid4().hex)
    again = push(store, uuid.uuid4().hex,
                 Mutation(1, "todos", "t1", "put", {"title": "second life"}, None, None))
    assert again.results[0].status == "applied"
    assert again.results[0].version is not None
    assert again.results[0].version > 2


def test_a_recreation_starts_above_versions_of_the_earlier_life_not_logged_yet(
        store: Store) -> None:
    device = uuid.uuid4().hex
    push(store, device,
         Mutation(1, "todos", "t1", "put", {"title": "first life"}, None, None),
         Mutation(2, "todos", "t1", "patch", {"done": True}, 1, None))
    drain(store.feed(), store)
    late = push(store, device, Mutation(3, "todos", "t1", "patch", {"done": False}, 2, None))
    assert late.results[0].version == 3  # not logged: the feed has not run since
    store.delete(A, "todos", "t1")
    again = push(store, uuid.uuid4().hex,
                 Mutation(1, "todos", "t1", "put", {"title": "second life"}, None, None))
    assert again.results[0].version is not None
    assert again.results[0].version > 3


def test_a_version_edit_based_on_the_earlier_life_is_a_conflict_with_the_deletion(
        dynamodb_local: Any) -> None:
    store = Store.create(dynamodb_local, schema=Schema(Collection("accounts",
                                                                   strategy="version")))
    device = uuid.uuid4().hex
    earlier_life(store, device, "accounts")
    stale = push(store, device,
                 Mutation(3, "accounts", "t1", "put", {"title": "from version 2"}, 2, None))
    result = stale.results[0]
    assert result.status == "conflict"
    assert result.server is not None
    assert result.server.deleted
    assert result.server.version > 2


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
    assert item is not None
    assert int(item["_v"]["N"]) == last["version"]


def test_a_recreation_starts_above_an_earlier_life_the_log_holds_nothing_of(
        store: Store) -> None:
    push(store, uuid.uuid4().hex,
         Mutation(1, "todos", "t1", "put", {"title": "first life"}, None, None))
    store.delete(A, "todos", "t1")  # before the feed ever ran
    again = push(store, uuid.uuid4().hex,
                 Mutation(1, "todos", "t1", "put", {"title": "second life"}, None, None))
    assert again.results[0].version is not None
    assert again.results[0].version > 1


def test_a_record_never_written_before_is_created_at_version_1(store: Store) -> None:
    created = push(store, uuid.uuid4().hex,
                   Mutation(1, "todos", "fresh", "put", {"title": "new"}, None, None))
    assert created.results[0].version == 1
