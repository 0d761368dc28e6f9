"""A mutation's effect lands exactly once: lost responses, crashes after commit, races,
and DynamoDB throttling. Counts versions AND the items table's stream records.

DynamoDB Local never throttles and never crashes between commit and response, so those
faults are injected with botocore event hooks on a context of the test's own; each test
says which hook it uses.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pysync.hlc import HybridClock
from pysync.protocol import Mutation, Op, PushRequest, PushResponse
from server.context import ServerContext
from server.errors import StoreUnavailable
from server.items import item_key, sort_key
from server.push import apply_push
from tests.server.conftest import read_stream
from tests.server.fault_support import client_error, raising, times

pytestmark = pytest.mark.dynamodb

DEVICE = HybridClock("dev1")


class SimulatedCrash(Exception):
    """Raised by a hook after DynamoDB committed: the server 'dies' before answering."""


def m(mid: int, key: str = "k1", op: Op = "put", collection: str = "notes",
      value: dict[str, Any] | None = None, base: int | None = None) -> Mutation:
    if value is None and op != "delete":
        value = {"n": mid}
    return Mutation(mid, collection, key, op, value, base, str(DEVICE.now()))


def push(ctx: ServerContext, scope: str, client_id: str, *mutations: Mutation
         ) -> PushResponse:
    return asyncio.run(apply_push(ctx, "alice", scope, PushRequest(client_id, mutations)))


def version(ctx: ServerContext, scope: str, key: str, collection: str = "notes") -> int:
    item = ctx.dynamodb.get_item(TableName=ctx.tables.items, ConsistentRead=True,
                                 Key=item_key(scope, collection, key))["Item"]
    return int(item["_v"]["N"])


def writes_of(ctx: ServerContext, scope: str, key: str, collection: str = "notes"
              ) -> list[int]:
    """The `_v` of every stream record of one item, in order."""
    return [int(r["dynamodb"]["NewImage"]["_v"]["N"]) for r in read_stream(ctx, scope)
            if r["dynamodb"]["Keys"]["sk"]["S"] == sort_key(collection, key)]


def test_a_retry_after_a_lost_response_applies_nothing_again(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    batch = (m(1), m(2, op="patch", value={"x": 1}), m(3, key="k2"))
    push(ctx, scope, client_id, *batch)  # the response is "lost": the client sends it again
    again = push(ctx, scope, client_id, *batch)
    assert [r.status for r in again.results] == ["duplicate"] * 3
    assert version(ctx, scope, "k1") == 2
    assert writes_of(ctx, scope, "k1") == [2]  # two mutations, one combined write
    assert writes_of(ctx, scope, "k2") == [1]


def test_a_retry_of_a_push_answered_with_a_conflict_answers_duplicate_with_the_record(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, "other" + client_id, m(1, collection="accounts", value={"b": 0}))
    stale = m(1, op="patch", collection="accounts", value={"b": 1}, base=7)
    first = push(ctx, scope, client_id, stale)  # a conflict; the answer is "lost"
    assert first.results[0].status == "conflict"
    again = push(ctx, scope, client_id, stale)
    result = again.results[0]
    assert result.status == "duplicate"
    assert result.server is not None
    assert (result.server.version, result.server.value) == (1, {"b": 0})


def test_a_crash_after_the_commit_then_a_retry_leaves_one_effect(
        fresh_ctx: ServerContext, scope: str, client_id: str) -> None:
    # Hook: 'after-call.dynamodb.TransactWriteItems' raises once DynamoDB has committed.
    def crash(**_: Any) -> None:
        raise SimulatedCrash

    fresh_ctx.dynamodb.meta.events.register("after-call.dynamodb.TransactWriteItems", crash)
    with pytest.raises(SimulatedCrash):
        push(fresh_ctx, scope, client_id, m(1), m(2, op="patch", value={"y": 2}))
    fresh_ctx.dynamodb.meta.events.unregister("after-call.dynamodb.TransactWriteItems", crash)
    retry = push(fresh_ctx, scope, client_id, m(1), m(2, op="patch", value={"y": 2}),
                 m(3, op="patch", value={"z": 3}))
    assert [r.status for r in retry.results] == ["duplicate", "duplicate", "applied"]
    assert retry.results[2].version == 3
    assert writes_of(fresh_ctx, scope, "k1") == [2, 3]


def test_two_racing_requests_from_one_client_apply_each_mutation_once(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    batch = tuple(m(i, key=f"k{i % 3}", op="put") for i in range(1, 31))
    barrier = threading.Barrier(2)
    answers: list[PushResponse] = []

    def run() -> None:
        barrier.wait()
        answers.append(push(ctx, scope, client_id, *batch))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.last_mutation_id for a in answers] == [30, 30]
    for i in range(1, 31):
        assert sorted(a.results[i - 1].status for a in answers) == ["applied", "duplicate"]
    for k in ("k0", "k1", "k2"):
        assert version(ctx, scope, k) == 10
    stream = [writes_of(ctx, scope, k) for k in ("k0", "k1", "k2")]
    assert all(w[-1] == 10 and w == sorted(set(w)) for w in stream)


def test_two_clients_editing_different_fields_at_once_both_survive_under_merge(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    collection = "notes"
    push(ctx, scope, client_id, m(1, collection=collection, value={}))
    _race(ctx, scope, [
        (client_id, m(2, op="patch", collection=collection, value={"a": "A"}, base=1)),
        ("other" + client_id, m(1, op="patch", collection=collection, value={"b": "B"}, base=1)),
    ])
    item = ctx.dynamodb.get_item(TableName=ctx.tables.items, ConsistentRead=True,
                                 Key=item_key(scope, collection, "k1"))["Item"]
    assert {k: v["S"] for k, v in item.items() if k in ("a", "b")} == {"a": "A", "b": "B"}
    assert version(ctx, scope, "k1", collection) == 3


def test_two_clients_writing_one_record_at_once_under_lww_keep_the_newer_stamp(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    older = m(1, collection="docs", value={"who": "older"})
    newer = Mutation(1, "docs", "k1", "put", {"who": "newer"}, None, str(DEVICE.now()))
    answers = _race(ctx, scope, [(client_id, older), ("other" + client_id, newer)])
    item = ctx.dynamodb.get_item(TableName=ctx.tables.items, ConsistentRead=True,
                                 Key=item_key(scope, "docs", "k1"))["Item"]
    assert item["who"] == {"S": "newer"}
    applied = sum(a.results[0].status == "applied" for a in answers)
    assert applied in (1, 2)  # the older one is applied only if it landed first


def test_two_clients_writing_one_record_at_once_under_version_one_wins_one_conflicts(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1, collection="accounts", value={"b": 0}))
    answers = _race(ctx, scope, [
        (client_id, m(2, op="patch", collection="accounts", value={"b": 1}, base=1)),
        ("other" + client_id, m(1, op="patch", collection="accounts", value={"b": 2}, base=1)),
    ])
    assert sorted(a.results[0].status for a in answers) == ["applied", "conflict"]
    assert version(ctx, scope, "k1", "accounts") == 2


def _race(ctx: ServerContext, scope: str, pushes: list[tuple[str, Mutation]]
          ) -> list[PushResponse]:
    barrier = threading.Barrier(len(pushes))
    answers: list[PushResponse] = []

    def run(cid: str, mutation: Mutation) -> None:
        barrier.wait()
        answers.append(push(ctx, scope, cid, mutation))

    threads = [threading.Thread(target=run, args=p) for p in pushes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == len(pushes)
    return answers


def _throttle(ctx: ServerContext, operation: str, n: int, code: str) -> list[int]:
    """Hook: 'before-call.dynamodb.<operation>' raises `code` the first `n` calls; the call
    count."""
    hook = times(n, raising(client_error(operation, code)))
    ctx.dynamodb.meta.events.register(f"before-call.dynamodb.{operation}", hook)
    calls: list[int] = hook.calls  # type: ignore[attr-defined]
    return calls


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException",
                                  "ThrottlingException", "RequestLimitExceeded",
                                  "TransactionConflictException"])
def test_throttled_writes_are_retried_and_applied_once(
        fresh_ctx: ServerContext, scope: str, client_id: str, code: str) -> None:
    calls = _throttle(fresh_ctx, "TransactWriteItems", 2, code)
    resp = push(fresh_ctx, scope, client_id, m(1), m(2, key="k2"))
    assert [r.status for r in resp.results] == ["applied", "applied"]
    assert calls[0] == 3
    assert writes_of(fresh_ctx, scope, "k1") == [1]


def test_a_cancelled_transaction_for_transaction_conflict_is_retried(
        fresh_ctx: ServerContext, scope: str, client_id: str) -> None:
    # Hook: the first TransactWriteItems is cancelled with a TransactionConflict reason.
    calls = [0]

    def hook(**_: Any) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise ClientError({"Error": {"Code": "TransactionCanceledException",
                                         "Message": "injected"},
                               "CancellationReasons": [{"Code": "TransactionConflict"},
                                                       {"Code": "None"}]},
                              "TransactWriteItems")

    fresh_ctx.dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", hook)
    resp = push(fresh_ctx, scope, client_id, m(1))
    assert resp.results[0].status == "applied"
    assert calls[0] == 2


def test_throttling_that_persists_raises_store_unavailable_and_a_later_retry_applies_once(
        fresh_ctx: ServerContext, ctx: ServerContext, scope: str, client_id: str) -> None:
    _throttle(fresh_ctx, "TransactWriteItems", 10**6, "ThrottlingException")
    with pytest.raises(StoreUnavailable) as busy:
        push(fresh_ctx, scope, client_id, m(1), m(2))
    assert busy.value.retry_after > 0
    resp = push(ctx, scope, client_id, m(1), m(2))  # DynamoDB is fine again
    assert [r.status for r in resp.results] == ["applied", "applied"]
    assert writes_of(ctx, scope, "k1") == [2]


def test_throttled_reads_are_retried(
        fresh_ctx: ServerContext, scope: str, client_id: str) -> None:
    push(fresh_ctx, scope, client_id, m(1))
    calls = _throttle(fresh_ctx, "BatchGetItem", 2, "ProvisionedThroughputExceededException")
    # An edit of a record the client holds is read first (a creation is assumed absent
    # and not read: server/push.py).
    resp = push(fresh_ctx, scope, client_id, m(2, op="patch", value={"y": 2}, base=1))
    assert resp.results[0].status == "applied"
    assert calls[0] == 3


def test_a_push_over_99_records_commits_in_chunks_each_mutation_once(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    batch = tuple(m(i, key=f"r{i}") for i in range(1, 251))  # 3 transactions
    resp = push(ctx, scope, client_id, *batch)
    assert resp.last_mutation_id == 250
    assert {r.status for r in resp.results} == {"applied"}
    assert all(version(ctx, scope, f"r{i}") == 1 for i in (1, 99, 100, 199, 250))
    assert push(ctx, scope, client_id, *batch).results[-1].status == "duplicate"
    assert writes_of(ctx, scope, "r250") == [1]


@pytest.mark.parametrize(("field", "status", "a"), [
    ("b", "applied", {"N": "1"}),  # another field: both writes survive
    ("a", "conflict", {"S": "direct"}),  # the same field: the newer direct write wins
])
def test_a_record_written_by_another_program_during_a_push_is_never_overwritten(
        fresh_ctx: ServerContext, ctx: ServerContext, scope: str, client_id: str,
        field: str, status: str, a: dict[str, str]) -> None:
    push(ctx, scope, "setup" + client_id, m(1, key="r150", value={"a": 0}))
    # Hook: when the push's first transaction goes out, another program (boto3 on another
    # client) updates a record of the push's second chunk, already read, behind its back.
    def meddle(**_: Any) -> None:
        fresh_ctx.dynamodb.meta.events.unregister(
            "before-call.dynamodb.TransactWriteItems", meddle)
        ctx.dynamodb.update_item(TableName=ctx.tables.items,
                                 Key=item_key(scope, "notes", "r150"),
                                 UpdateExpression="SET #f = :x",
                                 ExpressionAttributeNames={"#f": field},
                                 ExpressionAttributeValues={":x": {"S": "direct"}})

    fresh_ctx.dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", meddle)
    batch = tuple(m(i, key=f"r{i}") for i in range(1, 150))
    batch += (m(150, op="patch", key="r150", value={"a": 1}, base=1),)
    resp = push(fresh_ctx, scope, client_id, *batch)
    assert resp.results[-1].status == status
    item = ctx.dynamodb.get_item(TableName=ctx.tables.items, ConsistentRead=True,
                                 Key=item_key(scope, "notes", "r150"))["Item"]
    assert item["a"] == a
    assert item.get("b", {"S": "direct"}) == {"S": "direct"}
