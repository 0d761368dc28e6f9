"""The feed's stamp of another program's write comes after the edits it overwrote (issue 7, h).

On DynamoDB Local with the real push core: a device whose clock runs ahead (within the
push's 60 s clamp) writes a record, then another program overwrites it with boto3. The
feed's stamp must be above the device's stamp, else a stale edit stamped in between would
beat the outside write under merge and lww.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from pysync.hlc import Stamp
from pysync.protocol import Mutation, PushRequest, PushResponse
from server.pull import Puller
from server.push import apply_push
from tests.server.feed_support import Store, drain

pytestmark = pytest.mark.dynamodb

A = "u#alice"


@pytest.fixture
def store(dynamodb_local: Any) -> Store:
    # A context of its own, so clocks of their own (the push core's in the context, the
    # feed's in each Feed): these tests make both observe stamps 30 s ahead, which must not
    # carry over into later tests of the process.
    return Store.create(dynamodb_local)


def ahead(ms: int, node: str) -> str:
    """A stamp `ms` ahead of this machine's clock: a device whose clock runs fast."""
    return str(Stamp(time.time_ns() // 1_000_000 + ms, 0, node))


def push(store: Store, client_id: str, mutation: Mutation) -> PushResponse:
    return asyncio.run(apply_push(store.ctx, "alice", A,
                                  PushRequest(client_id, (mutation,))))


def test_an_outside_write_is_stamped_above_the_stamp_it_overwrote(store: Store) -> None:
    pushed = ahead(30_000, "fastdev")
    first = push(store, uuid.uuid4().hex,
                 Mutation(1, "todos", "t1", "put", {"title": "from the device"}, None, pushed))
    assert first.results[0].status == "applied"
    store.put(A, "todos", "t1", title="from a script")  # boto3, no meta: after the push
    drain(store.feed(), store)
    item = store.item(A, "todos", "t1")
    assert item is not None
    assert item["_w"] == {"S": "external"}
    assert Stamp.parse(item["_hlc"]["S"]) > Stamp.parse(pushed)
    assert Stamp.parse(item["_fh"]["M"]["title"]["S"]) > Stamp.parse(pushed)


def test_a_stale_edit_stamped_before_the_outside_write_does_not_beat_it(store: Store) -> None:
    # A second device edits the version it had, with a stamp after the first device's but
    # before the feed stamped the outside write (by its own clock, ~30 s earlier).
    push(store, uuid.uuid4().hex, Mutation(1, "todos", "t1", "put",
                                           {"title": "from the device"}, None,
                                           ahead(30_000, "fastdev")))
    store.put(A, "todos", "t1", title="from a script")
    drain(store.feed(), store)
    stale = push(store, uuid.uuid4().hex,
                 Mutation(1, "todos", "t1", "patch", {"title": "stale edit"}, 1,
                          ahead(20_000, "otherdev")))
    assert stale.results[0].status in ("applied", "conflict")
    puller = Puller(store.ctx.dynamodb, store.ctx.tables, store.ctx.settings.log_retention_s)
    [change] = puller.pull(A, None, 100)["changes"]
    assert change["value"] == {"title": "from a script"}


def test_push_adopting_an_outside_write_after_a_restart_stamps_it_above_the_record(
        store: Store) -> None:
    pushed = ahead(30_000, "fastdev")
    first = push(store, uuid.uuid4().hex, Mutation(
        1, "todos", "t1", "put", {"title": "from the device", "n": 1}, None, pushed))
    assert first.results[0].status == "applied"
    store.update(A, "todos", "t1", title="from a script")  # keeps the meta: push adopts it
    restarted = store.with_settings()  # a new context: a clock that never saw `pushed`
    asyncio.run(apply_push(restarted.ctx, "alice", A, PushRequest(uuid.uuid4().hex, (
        Mutation(1, "todos", "t1", "patch", {"n": 2}, None, None),))))
    item = store.item(A, "todos", "t1")
    assert item is not None
    assert item["title"] == {"S": "from a script"}
    assert Stamp.parse(item["_fh"]["M"]["title"]["S"]) > Stamp.parse(pushed)
