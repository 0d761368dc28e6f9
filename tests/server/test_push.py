"""apply_push on the real DynamoDB Local: statuses, item layout, strategies, foreign writes."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest

from pysync.hlc import HybridClock, Stamp
from pysync.protocol import Mutation, Op, PushRequest, PushResponse
from server.context import ServerContext
from server.errors import ClientForbidden, MutationGap
from server.items import item_key
from server.push import apply_push
from server.records import decode_item

pytestmark = pytest.mark.dynamodb

USER = "alice"
DEVICE = HybridClock("dev1")  # like a real client: consecutive edits get increasing stamps


def stamp(offset_ms: int = 0, node: str = "dev1") -> str:
    """A stamp `offset_ms` from now; one device's stamps in one test must differ in time."""
    return str(Stamp(time.time_ns() // 1_000_000 + offset_ms, 0, node))


def m(mid: int, op: Op = "put", key: str = "k1", value: dict[str, Any] | None = None,
      collection: str = "notes", base: int | None = None, hlc: str | None = "now") -> Mutation:
    if value is None and op != "delete":
        value = {"title": "t"}
    return Mutation(mid, collection, key, op, value, base,
                    str(DEVICE.now()) if hlc == "now" else hlc)


def push(ctx: ServerContext, scope: str, client_id: str, *mutations: Mutation,
         user: str = USER) -> PushResponse:
    return asyncio.run(apply_push(ctx, user, scope, PushRequest(client_id, tuple(mutations))))


def raw_item(ctx: ServerContext, scope: str, key: str, collection: str = "notes"
             ) -> dict[str, Any] | None:
    got = ctx.dynamodb.get_item(TableName=ctx.tables.items, ConsistentRead=True,
                                Key=item_key(scope, collection, key))
    return got.get("Item")


def statuses(resp: PushResponse) -> list[str]:
    return [r.status for r in resp.results]


def test_put_is_applied_with_version_1_and_stored_in_the_documented_layout(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    resp = push(ctx, scope, client_id, m(1, value={"title": "Milk", "n": 1.5, "big": 10**20,
                                                   "raw": b"\x00\x01", "tags": ["a"],
                                                   "done": False, "note": None}))
    assert resp.last_mutation_id == 1
    assert resp.results[0].status == "applied"
    assert resp.results[0].version == 1
    item = raw_item(ctx, scope, "k1")
    assert item is not None
    assert item["pk"] == {"S": scope}
    assert item["sk"] == {"S": "notes#k1"}
    assert item["title"] == {"S": "Milk"}
    assert item["n"] == {"N": "1.5"}
    assert item["big"] == {"N": str(10**20)}
    assert item["raw"] == {"B": b"\x00\x01"}
    assert item["tags"] == {"L": [{"S": "a"}]}
    assert item["note"] == {"NULL": True}
    assert item["_v"] == {"N": "1"}
    assert item["_del"] == {"BOOL": False}
    assert item["_w"] == {"S": f"{client_id}:1"}
    assert set(item["_fh"]["M"]) == {"title", "n", "big", "raw", "tags", "done", "note"}
    assert "_ttl" not in item


def test_patch_then_delete_bump_the_version_and_leave_a_tombstone(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    resp = push(ctx, scope, client_id, m(1, value={"title": "a", "done": False}),
                m(2, "patch", value={"done": True}, base=1), m(3, "delete", base=2))
    assert [(r.status, r.version) for r in resp.results] == [
        ("applied", 1), ("applied", 2), ("applied", 3)]
    item = raw_item(ctx, scope, "k1")
    assert item is not None
    assert item["_del"] == {"BOOL": True}
    assert "title" not in item
    assert "_ttl" in item
    assert item["_v"] == {"N": "3"}


def test_already_processed_ids_are_duplicates_and_nothing_is_written_again(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    first = (m(1), m(2, "patch", value={"title": "b"}))
    push(ctx, scope, client_id, *first)
    again = push(ctx, scope, client_id, *first, m(3, "patch", value={"x": 1}))
    assert statuses(again) == ["duplicate", "duplicate", "applied"]
    assert again.results[2].version == 3
    assert again.last_mutation_id == 3


def test_a_gap_in_mutation_ids_raises_mutation_gap_and_applies_nothing(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1))
    with pytest.raises(MutationGap) as gap:
        push(ctx, scope, client_id, m(3, key="k2"))
    assert gap.value.expected == 2
    with pytest.raises(MutationGap):
        push(ctx, scope, client_id, m(2, key="k2"), m(4, key="k3"))
    assert raw_item(ctx, scope, "k2") is None
    assert push(ctx, scope, client_id).last_mutation_id == 1


def test_a_client_id_bound_to_another_user_is_forbidden(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1))
    with pytest.raises(ClientForbidden):
        push(ctx, "u#mallory", client_id, m(2), user="mallory")


def test_unknown_collection_is_rejected_and_still_counts_as_processed(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    resp = push(ctx, scope, client_id, m(1, collection="nope"), m(2))
    assert statuses(resp) == ["rejected", "applied"]
    assert resp.results[0].error_code == "unknown_collection"
    assert resp.last_mutation_id == 2


def test_patch_of_a_missing_or_deleted_record_is_rejected(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    resp = push(ctx, scope, client_id, m(1, "patch", key="ghost"), m(2, key="k1"),
                m(3, "delete", key="k1"), m(4, "patch", key="k1"))
    assert statuses(resp) == ["rejected", "applied", "applied", "rejected"]
    assert resp.results[0].error_code == "not_found"
    assert resp.results[3].error_code == "deleted"


def test_a_merged_record_whose_item_fits_but_whose_log_entry_would_not_is_rejected(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    # A log entry carries a few attributes the item has not (position, time, TTL): the
    # largest patch whose item still fits DynamoDB's limit makes a log entry that does not.
    # Push refuses it, so the feed never has to log a pysync record without its fields.
    from pysync.merge import RecordState
    from server.changelog import unloggable
    from server.changes import LogEntry
    from server.items import record_fields
    from server.records import MAX_ITEM_BYTES, encode_item, item_size

    first = "x" * 300_000
    hlc = str(DEVICE.now())

    def candidate(n: int) -> dict[str, Any]:
        # A `version` collection: no per-field stamps, so the item's meta is smallest.
        state = RecordState(fields={"a": first, "b": "y" * n}, version=2, hlc=hlc,
                            deleted=False, exists=True)
        return encode_item(scope, "accounts", "k1", state, f"{client_id}:2")

    low, high = 0, 120_000  # the largest `b` whose item fits
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if item_size(candidate(mid)) <= MAX_ITEM_BYTES else (low, mid - 1)
    item = candidate(low)
    entry = LogEntry(scope, "accounts#k1", 2, False, record_fields(item), hlc, f"{client_id}:2",
                     "")
    assert unloggable(scope, entry) is not None  # the case this test is about
    resp = push(ctx, scope, client_id, m(1, value={"a": first}, collection="accounts"),
                m(2, "patch", value={"b": "y" * low}, collection="accounts", base=1))
    assert statuses(resp) == ["applied", "rejected"]
    assert resp.results[1].error_code == "too_large"


def test_a_record_over_400_kb_after_merge_is_rejected_and_the_record_kept(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    big = "x" * 300_000
    resp = push(ctx, scope, client_id, m(1, value={"a": big}),
                m(2, "patch", value={"b": big}), m(3, "patch", value={"c": "ok"}))
    assert statuses(resp) == ["applied", "rejected", "applied"]
    assert resp.results[1].error_code == "too_large"
    item = raw_item(ctx, scope, "k1")
    assert item is not None
    assert "b" not in item
    assert item["c"] == {"S": "ok"}
    assert item["_v"] == {"N": "2"}


def test_a_malformed_hlc_is_rejected(ctx: ServerContext, scope: str, client_id: str) -> None:
    resp = push(ctx, scope, client_id, m(1, hlc="yesterday"))
    assert resp.results[0].status == "rejected"
    assert resp.results[0].error_code == "invalid_hlc"


def test_null_hlc_is_stamped_with_the_server_clock(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1, hlc=None))
    item = raw_item(ctx, scope, "k1")
    assert item is not None
    server_stamp = Stamp.parse(item["_hlc"]["S"])
    assert server_stamp.node.startswith("server-")
    assert abs(server_stamp.wall_ms - time.time_ns() // 1_000_000) < 60_000


def test_a_stamp_more_than_60_s_ahead_is_clamped_so_a_later_honest_edit_wins(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    skewed = stamp(offset_ms=3_600_000, node="fast")
    push(ctx, scope, client_id, m(1, collection="docs", value={"v": "skewed"}, hlc=skewed))
    item = raw_item(ctx, scope, "k1", "docs")
    assert item is not None
    assert item["_hlc"]["S"] != skewed  # replaced by the server's stamp
    resp = push(ctx, scope, "other-" + client_id,
                m(1, collection="docs", value={"v": "honest"}, hlc=stamp(1000, "slow")))
    assert statuses(resp) == ["applied"]
    item = raw_item(ctx, scope, "k1", "docs")
    assert item is not None
    assert item["v"] == {"S": "honest"}


def test_a_stamp_within_60_s_ahead_is_kept(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    ahead = stamp(offset_ms=30_000)
    push(ctx, scope, client_id, m(1, collection="docs", hlc=ahead))
    item = raw_item(ctx, scope, "k1", "docs")
    assert item is not None
    assert item["_hlc"]["S"] == ahead


def test_version_conflict_returns_the_server_record(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    a = push(ctx, scope, client_id, m(1, collection="accounts", value={"balance": 10}))
    assert a.results[0].version == 1
    push(ctx, scope, client_id, m(2, "patch", collection="accounts", value={"balance": 20},
                                  base=1))
    stale = push(ctx, scope, "other-" + client_id,
                 m(1, "patch", collection="accounts", value={"balance": 99}, base=1))
    r = stale.results[0]
    assert r.status == "conflict"
    assert r.server is not None
    assert (r.server.version, r.server.deleted, r.server.value) == (2, False, {"balance": 20})
    assert r.server.key == "k1"
    assert r.server.collection == "accounts"


def test_version_put_with_null_base_over_an_existing_record_is_a_conflict(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1, collection="accounts"))
    resp = push(ctx, scope, "b" + client_id, m(1, collection="accounts", base=None))
    assert statuses(resp) == ["conflict"]


def test_merge_keeps_concurrent_edits_to_different_fields(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1, value={"title": "a", "done": False}))
    t_title, t_done = stamp(1), stamp(2, "dev2")
    # Two devices edited from version 1; the later-stamped one arrives first.
    push(ctx, scope, "d2" + client_id, m(1, "patch", value={"done": True}, base=1, hlc=t_done))
    resp = push(ctx, scope, client_id, m(2, "patch", value={"title": "b"}, base=1, hlc=t_title))
    assert statuses(resp) == ["applied"]
    item = raw_item(ctx, scope, "k1")
    assert item is not None
    assert item["title"] == {"S": "b"}
    assert item["done"] == {"BOOL": True}


def test_merge_stale_edit_of_the_same_field_loses_with_a_conflict(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    old, new = stamp(1), stamp(2, "dev2")
    push(ctx, scope, client_id, m(1, value={"title": "new"}, hlc=new))
    resp = push(ctx, scope, "d2" + client_id, m(1, "patch", value={"title": "old"}, hlc=old))
    assert statuses(resp) == ["conflict"]
    assert resp.results[0].server is not None
    assert resp.results[0].server.value == {"title": "new"}


def test_lww_older_stamp_loses_the_whole_record(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    old, new = stamp(1), stamp(2, "dev2")
    push(ctx, scope, client_id, m(1, collection="docs", value={"a": 1}, hlc=new))
    resp = push(ctx, scope, "d2" + client_id,
                m(1, "patch", collection="docs", value={"b": 2}, hlc=old))
    assert statuses(resp) == ["conflict"]
    item = raw_item(ctx, scope, "k1", "docs")
    assert item is not None
    assert "b" not in item


def direct_put(ctx: ServerContext, scope: str, key: str, collection: str, **fields: Any
               ) -> None:
    from boto3.dynamodb.types import TypeSerializer
    ser = TypeSerializer()
    ctx.dynamodb.put_item(TableName=ctx.tables.items, Item={
        **item_key(scope, collection, key), **{k: ser.serialize(v) for k, v in fields.items()}})


@pytest.mark.parametrize("collection", ["notes", "docs", "accounts"])
def test_a_stale_push_never_overwrites_a_newer_direct_write(
        ctx: ServerContext, scope: str, client_id: str, collection: str) -> None:
    push(ctx, scope, client_id, m(1, collection=collection, value={"title": "mine"}))
    edited = str(DEVICE.now())  # the device edits offline...
    direct_put(ctx, scope, "k1", collection, title="backend")  # ...a backend job replaces it
    resp = push(ctx, scope, client_id, m(2, "patch", collection=collection,
                                         value={"title": "offline"}, base=1, hlc=edited))
    assert statuses(resp) == ["conflict"]
    server = resp.results[0].server
    assert server is not None
    assert server.value == {"title": "backend"}
    item = raw_item(ctx, scope, "k1", collection)
    assert item is not None
    assert item["title"] == {"S": "backend"}


@pytest.mark.parametrize("collection", ["notes", "docs", "accounts"])
def test_a_direct_write_without_meta_is_adopted_and_a_push_naming_its_version_applies(
        ctx: ServerContext, scope: str, client_id: str, collection: str) -> None:
    direct_put(ctx, scope, "k1", collection, balance=Decimal(5))
    first = push(ctx, scope, client_id, m(1, "patch", collection=collection,
                                          value={"balance": 6}, base=None))
    assert statuses(first) == ["conflict"]
    server = first.results[0].server
    assert server is not None
    assert server.value == {"balance": 5}
    adopted = raw_item(ctx, scope, "k1", collection)
    assert adopted is not None
    assert int(adopted["_v"]["N"]) == server.version
    assert server.hlc is not None
    DEVICE.observe(Stamp.parse(server.hlc))  # clients observe the stamps they receive
    resp = push(ctx, scope, client_id, m(2, "patch", collection=collection,
                                         value={"balance": 6}, base=server.version))
    assert [(r.status, r.version) for r in resp.results] == [("applied", server.version + 1)]
    item = raw_item(ctx, scope, "k1", collection)
    assert item is not None
    assert item["balance"] == {"N": "6"}
    assert not decode_item(item, collection, "k1").foreign


def test_a_direct_update_keeping_the_meta_counts_as_the_next_version(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1, collection="accounts", value={"balance": 1}))
    ctx.dynamodb.update_item(TableName=ctx.tables.items,
                             Key=item_key(scope, "accounts", "k1"),
                             UpdateExpression="SET balance = :b",
                             ExpressionAttributeValues={":b": {"N": "7"}})
    stale = push(ctx, scope, client_id, m(2, "patch", collection="accounts",
                                          value={"balance": 2}, base=1))
    assert statuses(stale) == ["conflict"]
    assert stale.results[0].server is not None
    assert stale.results[0].server.version == 2
    resp = push(ctx, scope, client_id, m(3, "patch", collection="accounts",
                                         value={"balance": 8}, base=2))
    assert [(r.status, r.version) for r in resp.results] == [("applied", 3)]


def test_merge_stale_edit_keeps_a_direct_update_of_another_field(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1, value={"title": "a", "status": "new"}))
    edited = str(DEVICE.now())
    ctx.dynamodb.update_item(TableName=ctx.tables.items, Key=item_key(scope, "notes", "k1"),
                             UpdateExpression="SET #s = :s",
                             ExpressionAttributeNames={"#s": "status"},
                             ExpressionAttributeValues={":s": {"S": "shipped"}})
    resp = push(ctx, scope, client_id, m(2, "patch", value={"title": "b", "status": "open"},
                                         base=1, hlc=edited))
    assert [(r.status, r.version) for r in resp.results] == [("applied", 3)]
    item = raw_item(ctx, scope, "k1")
    assert item is not None
    assert item["title"] == {"S": "b"}
    assert item["status"] == {"S": "shipped"}


def test_delete_under_merge_loses_to_a_later_edit(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    deleted_at, edited_at = stamp(1), stamp(2, "dev2")
    push(ctx, scope, client_id, m(1))
    push(ctx, scope, "d2" + client_id, m(1, "patch", value={"x": 1}, base=1, hlc=edited_at))
    resp = push(ctx, scope, client_id, m(2, "delete", base=1, hlc=deleted_at))
    assert statuses(resp) == ["conflict"]
    item = raw_item(ctx, scope, "k1")
    assert item is not None
    assert item["_del"] == {"BOOL": False}


def test_a_push_whose_writes_exceed_a_transactions_4_mb_is_split_and_fully_applied(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    big = "x" * 340_000
    batch = [m(i, key=f"big{i}", value={"blob": big}) for i in range(1, 13)]  # ~4.1 MB
    resp = push(ctx, scope, client_id, *batch)
    assert statuses(resp) == ["applied"] * 12
    assert resp.last_mutation_id == 12
    assert all(raw_item(ctx, scope, f"big{i}") is not None for i in range(1, 13))


# The optimistic start (server/push.py): `lmid` taken as the first id - 1 and a `put` with a
# null base_version assumed to create its record, each checked by the transaction's own
# conditions. These pushes take the path where the guess is wrong.

def test_a_retry_of_an_applied_push_above_id_1_is_all_duplicates_and_writes_nothing(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1))
    batch = (m(2, key="k2"), m(3, "patch", key="k1", value={"x": 1}, base=1))
    assert statuses(push(ctx, scope, client_id, *batch)) == ["applied", "applied"]
    again = push(ctx, scope, client_id, *batch)
    assert statuses(again) == ["duplicate", "duplicate"]
    assert again.last_mutation_id == 3
    k1, k2 = raw_item(ctx, scope, "k1"), raw_item(ctx, scope, "k2")
    assert k1 is not None
    assert k2 is not None
    assert (k1["_v"], k2["_v"]) == ({"N": "2"}, {"N": "1"})


def test_a_push_above_id_1_from_an_unknown_client_is_a_gap_and_writes_nothing(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    with pytest.raises(MutationGap) as gap:
        push(ctx, scope, client_id, m(5, key="k5"))
    assert gap.value.expected == 1
    assert raw_item(ctx, scope, "k5") is None


def test_a_put_with_null_base_over_an_existing_record_replaces_it_at_the_next_version(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1, value={"title": "a", "done": False}))
    # Another device that never had k1 puts it: not a creation, the next version.
    other = "d2" + client_id
    push(ctx, scope, other, m(1, key="k0"))
    resp = push(ctx, scope, other, m(2, value={"title": "b"}))
    assert statuses(resp) == ["applied"]
    assert resp.results[0].version == 2
    item = raw_item(ctx, scope, "k1")
    assert item is not None
    assert item["title"] == {"S": "b"}
    assert "done" not in item
    assert item["_v"] == {"N": "2"}
    assert item["_w"] == {"S": f"{other}:2"}


def test_a_put_with_null_base_over_a_tombstone_recreates_it_above_its_version(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1), m(2, "delete", base=1))
    other = "d2" + client_id
    push(ctx, scope, other, m(1, key="k0"))
    resp = push(ctx, scope, other, m(2, value={"title": "again"}))
    assert statuses(resp) == ["applied"]
    assert resp.results[0].version == 3
    item = raw_item(ctx, scope, "k1")
    assert item is not None
    assert item["title"] == {"S": "again"}
    assert "_del" in item
    assert item["_del"] == {"BOOL": False}


def test_a_version_put_with_null_base_over_an_existing_record_is_a_conflict_above_id_1(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1, collection="accounts", value={"balance": 1}))
    other = "b" + client_id
    push(ctx, scope, other, m(1, key="k0"))
    resp = push(ctx, scope, other, m(2, collection="accounts", value={"balance": 9}))
    assert statuses(resp) == ["conflict"]
    assert resp.results[0].server is not None
    assert resp.results[0].server.value == {"balance": 1}
    assert push(ctx, scope, other).last_mutation_id == 2


def test_a_too_large_put_with_null_base_over_an_existing_record_is_rejected_and_kept(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    push(ctx, scope, client_id, m(1, value={"title": "keep"}))
    other = "d2" + client_id
    push(ctx, scope, other, m(1, key="k0"))
    resp = push(ctx, scope, other, m(2, value={"a": "x" * 450_000}))
    assert statuses(resp) == ["rejected"]
    assert resp.results[0].error_code == "too_large"
    item = raw_item(ctx, scope, "k1")
    assert item is not None
    assert item["title"] == {"S": "keep"}
    assert item["_v"] == {"N": "1"}
    assert push(ctx, scope, other).last_mutation_id == 2
