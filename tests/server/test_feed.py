"""The change feed on the real DynamoDB Local stream: stamping, logging, leases, restarts."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from server.changelog import read_epoch
from server.feed import eligible_shards
from server.items import EXTERNAL_WRITER
from server.leases import SHARD_END
from tests.server.fault_support import client_error, raising, times
from tests.server.feed_support import Store, drain, entries_summary, step_until
from tests.support import wait_until

pytestmark = pytest.mark.dynamodb

A = "u#alice"


def test_direct_put_without_meta_is_stamped_and_logged_at_version_1(store: Store) -> None:
    store.put(A, "todos", "t1", title="Milk")
    feed = store.feed()
    step_until(feed, lambda: store.log(A))
    item = store.item(A, "todos", "t1")
    assert item is not None
    assert item["_v"] == {"N": "1"}
    assert item["_w"] == {"S": EXTERNAL_WRITER}
    assert item["_fh"]["M"]["title"] == item["_hlc"]
    [entry] = store.log(A)
    assert entries_summary([entry]) == [(1, "todos#t1", 1, False)]
    assert entry["f"]["M"] == {"title": {"S": "Milk"}}


def test_pysync_stamped_write_is_logged_as_is_and_not_rewritten(store: Store) -> None:
    store.put(A, "todos", "t1", title="Milk", _v=1, _hlc="000000000000001:000000:c", _w="c:1")
    feed = store.feed()
    drain(feed, store)
    assert entries_summary(store.log(A)) == [(1, "todos#t1", 1, False)]
    assert store.item(A, "todos", "t1")["_w"] == {"S": "c:1"}  # type: ignore[index]


def test_update_that_keeps_the_version_gets_the_next_version(store: Store) -> None:
    store.put(A, "todos", "t1", title="Milk", done=False, _v=3)
    store.update(A, "todos", "t1", done=True)  # another program: _v untouched
    feed = store.feed()
    step_until(feed, lambda: len(store.log(A)) == 2)
    log = store.log(A)
    assert entries_summary(log) == [(1, "todos#t1", 3, False), (2, "todos#t1", 4, False)]
    assert log[1]["f"]["M"]["done"] == {"BOOL": True}
    item = store.item(A, "todos", "t1")
    assert item is not None
    assert set(item["_fh"]["M"]) == {"done"}


def test_put_that_drops_the_meta_continues_from_the_old_version(store: Store) -> None:
    store.put(A, "todos", "t1", title="Milk", _v=5)
    store.put(A, "todos", "t1", title="Bread")  # a whole-item put without meta
    feed = store.feed()
    step_until(feed, lambda: len(store.log(A)) == 2)
    assert [v for _, _, v, _ in entries_summary(store.log(A))] == [5, 6]


def test_direct_delete_becomes_a_logged_tombstone(store: Store) -> None:
    store.put(A, "todos", "t1", title="Milk", _v=2)
    store.delete(A, "todos", "t1")
    feed = store.feed()
    step_until(feed, lambda: len(store.log(A)) == 2)
    assert entries_summary(store.log(A)) == [(1, "todos#t1", 2, False), (2, "todos#t1", 3, True)]
    item = store.item(A, "todos", "t1")
    assert item is not None
    assert item["_del"] == {"BOOL": True}
    assert "_ttl" in item


def test_removal_of_a_tombstone_is_not_logged(store: Store) -> None:
    store.put(A, "todos", "t1", _v=4, _del=True, _ttl=1)
    store.delete(A, "todos", "t1")  # what TTL expiry does
    drain(store.feed(), store)
    assert entries_summary(store.log(A)) == [(1, "todos#t1", 4, True)]
    assert store.item(A, "todos", "t1") is None


def test_items_outside_pysyncs_layout_are_ignored(store: Store) -> None:
    store.ctx.dynamodb.put_item(TableName=store.ctx.tables.items,
                                Item={"pk": {"S": A}, "sk": {"S": "no-hash-here"}})
    store.put(A, "todos", "t1", title="x", _v=1)
    drain(store.feed(), store)
    assert [k for _, k, _, _ in entries_summary(store.log(A))] == ["todos#t1"]


def test_a_second_worker_waits_for_the_lease_then_resumes_at_the_checkpoint(
        store: Store) -> None:
    # (2 s: long enough that a loaded machine does not let the lease lapse between the
    # first worker's step and the second's; 0.5 s did on a load average of 10)
    short = store.with_settings(lease_s=2.0)
    first = short.feed(batch_size=2)
    for i in range(4):
        store.put(A, "todos", f"t{i}", n=i, _v=1)
    step_until(first, lambda: len(store.log(A)) >= 2)
    second = short.feed()
    assert second.step() == 0  # the first worker holds the shard
    first.stop(release=False)  # dies without releasing: the lease must expire
    step_until(second, lambda: len(store.log(A)) == 4, timeout=20)
    drain(second, store)
    assert sorted(k for _, k, _, _ in entries_summary(store.log(A))) == \
        [f"todos#t{i}" for i in range(4)]


def test_crash_before_checkpoint_neither_loses_nor_duplicates(store: Store) -> None:
    scopes = [f"u#user{i}" for i in range(4)]
    for n in range(30):
        for s in scopes:
            store.put(s, "todos", f"t{n % 7}", n=n, _v=n + 1)
    short = store.with_settings(lease_s=0.3)
    crashing = short.feed(batch_size=25)
    calls = {"n": 0}

    def crash_on_third_checkpoint(shard_id: str, seq: str) -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("process killed between log append and checkpoint")
        return real_checkpoint(shard_id, seq)

    real_checkpoint = crashing.leases.checkpoint
    crashing.leases.checkpoint = crash_on_third_checkpoint  # type: ignore[method-assign,assignment]

    def step_until_killed() -> None:
        for _ in range(10):
            crashing.step()

    with pytest.raises(RuntimeError, match="process killed"):
        step_until_killed()
    restarted = short.feed(batch_size=25)
    step_until(restarted, lambda: sum(len(store.log(s)) for s in scopes) == 120,
             timeout=15)
    drain(restarted, store)
    for s in scopes:
        log = entries_summary(store.log(s))
        assert [p for p, _, _, _ in log] == list(range(1, 31))  # dense: no gap
        assert [v for _, _, v, _ in log] == list(range(1, 31))  # each change once, in order


def _client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)


def _fail_get_records_once(store: Store, code: str) -> dict[str, int]:
    """Make the next GetRecords raise the real AWS error `code`; "left" drops to 0 when it did."""
    injected = {"left": 1}

    def fail(**kwargs: Any) -> None:
        if injected["left"]:
            injected["left"] -= 1
            raise _client_error(code, "GetRecords")

    store.ctx.streams.meta.events.register("before-call.dynamodbstreams.GetRecords", fail)
    return injected


def test_expired_iterator_is_replaced_without_losing_records(store: Store) -> None:
    # DynamoDB Local never expires an iterator: a botocore hook raises the real error once.
    feed = store.feed()
    store.put(A, "todos", "t0", _v=1)
    step_until(feed, lambda: store.log(A))
    injected = _fail_get_records_once(store, "ExpiredIteratorException")
    store.put(A, "todos", "t1", _v=1)
    store.put(A, "todos", "t2", _v=1)
    step_until(feed, lambda: len(store.log(A)) == 3)
    drain(feed, store)
    assert injected["left"] == 0
    assert [k for _, k, _, _ in entries_summary(store.log(A))] == \
        ["todos#t0", "todos#t1", "todos#t2"]


def test_trimmed_checkpoint_bumps_the_epoch_and_resumes_from_trim_horizon(store: Store) -> None:
    # DynamoDB Local never trims within a test: a botocore hook raises the real error once,
    # as AWS does when the checkpoint is older than the stream's 24 h retention.
    store.put(A, "todos", "t0", _v=1)
    first = store.feed()
    step_until(first, lambda: store.log(A))
    first.stop()
    injected = {"left": 1}

    def trimmed(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("ShardIteratorType") == "AFTER_SEQUENCE_NUMBER" and injected["left"]:
            injected["left"] -= 1
            raise _client_error("TrimmedDataAccessException", "GetShardIterator")

    store.ctx.streams.meta.events.register(
        "provide-client-params.dynamodbstreams.GetShardIterator", trimmed)
    assert read_epoch(store.ctx.dynamodb, store.ctx.tables) == 0
    store.put(A, "todos", "t1", _v=1)
    second = store.feed()
    step_until(second, lambda: len(store.log(A)) == 2)
    drain(second, store)
    assert injected["left"] == 0
    assert read_epoch(store.ctx.dynamodb, store.ctx.tables) == 1
    # Re-reading from TRIM_HORIZON re-delivers t0; the log markers keep it once.
    assert [k for _, k, _, _ in entries_summary(store.log(A))] == ["todos#t0", "todos#t1"]


def test_children_wait_for_their_parent_to_finish() -> None:
    # DynamoDB Local never splits a shard, so the ordering rule is checked on its own.
    shards = [{"ShardId": "p"}, {"ShardId": "c1", "ParentShardId": "p"},
              {"ShardId": "c2", "ParentShardId": "gone"}]
    assert eligible_shards(shards, {}) == ["p", "c2"]
    assert eligible_shards(shards, {"p": "123"}) == ["p", "c2"]
    assert eligible_shards(shards, {"p": SHARD_END}) == ["c1", "c2"]
    assert eligible_shards(shards, {"p": SHARD_END, "c1": SHARD_END, "c2": SHARD_END}) == []


def test_delete_right_after_an_unstamped_outside_write_stays_above_history(
        store: Store) -> None:
    feed = store.feed()
    store.put(A, "todos", "t1", n=1, _v=2)
    step_until(feed, lambda: store.log(A))
    store.put(A, "todos", "t1", n=2)  # no meta: its OldImage has _v 2, NewImage none...
    store.delete(A, "todos", "t1")  # ...and this REMOVE's OldImage has no _v at all
    step_until(feed, lambda: len(store.log(A)) == 2)
    assert entries_summary(store.log(A))[-1] == (2, "todos#t1", 3, True)


def test_a_write_restarting_at_version_1_over_an_unstamped_item_is_raised_above_history(
        store: Store) -> None:
    feed = store.feed()
    store.put(A, "todos", "t1", n=1, _v=5)
    step_until(feed, lambda: store.log(A))
    store.put(A, "todos", "t1", n=2)  # an outside write, not stamped yet...
    store.put(A, "todos", "t1", n=3, _v=1)  # ...then a writer that saw no _v starts at 1
    step_until(feed, lambda: len(store.log(A)) == 2)
    assert entries_summary(store.log(A))[-1] == (2, "todos#t1", 6, False)
    assert store.log(A)[-1]["f"]["M"] == {"n": {"N": "3"}}


def test_trimmed_iterator_with_an_intact_checkpoint_loses_nothing(store: Store) -> None:
    # GetRecords raises TrimmedDataAccess once (a hook; DynamoDB Local also does it by itself
    # for an iterator taken on an empty shard): the checkpoint still exists, so no reset.
    feed = store.feed()
    store.put(A, "todos", "t0", _v=1)
    step_until(feed, lambda: store.log(A))
    injected = _fail_get_records_once(store, "TrimmedDataAccessException")
    store.put(A, "todos", "t1", _v=1)
    step_until(feed, lambda: len(store.log(A)) == 2)
    assert injected["left"] == 0
    assert read_epoch(store.ctx.dynamodb, store.ctx.tables) == 0


def test_concurrent_writers_across_many_scopes_are_logged_in_order_without_skips(
        store: Store) -> None:
    import threading

    from server.pull import Puller

    scopes = [f"u#many{i}" for i in range(6)]
    writers, per_writer = 3, 8
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:  # writer w owns key "w<w>" in every scope, raising its version each time
            for n in range(per_writer):
                for s in scopes:
                    store.put(s, "todos", f"w{w}", n=n, _v=n + 1)
        except BaseException as e:
            errors.append(e)

    puller = Puller(store.ctx.dynamodb, store.ctx.tables, 3600)
    cursors = {s: puller.pull(s, None, 1000)["cursor"] for s in scopes}
    received: dict[str, list[tuple[str, int]]] = {s: [] for s in scopes}
    feed = store.feed()
    feed.start()
    try:
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        total = writers * per_writer

        def tail() -> bool:  # readers pull while the writers and the feed run
            for s in scopes:
                out = puller.pull(s, cursors[s], 7)
                received[s] += [(c["key"], c["version"]) for c in out["changes"]]
                cursors[s] = out["cursor"]
            return all(len(r) == total for r in received.values())

        wait_until(tail, timeout=60, interval=0.01)
        for t in threads:
            t.join()
    finally:
        feed.stop()
    assert not errors
    for s in scopes:
        got = received[s]
        assert len(set(got)) == len(got) == writers * per_writer  # nothing twice, nothing lost
        for w in range(writers):  # each item's versions arrive in order
            assert [v for k, v in got if k == f"w{w}"] == list(range(1, per_writer + 1))
        positions = [p for p, _, _, _ in entries_summary(store.log(s))]
        assert positions == list(range(1, len(positions) + 1))


def test_a_stamp_records_field_hashes_so_a_later_outside_update_stays_detectable(
        store: Store) -> None:
    from server.records import decode_item, field_hash

    store.put(A, "todos", "t1", title="Milk", n=1)
    feed = store.feed()
    step_until(feed, lambda: store.log(A))
    stamped = store.item(A, "todos", "t1")
    assert stamped is not None
    assert decode_item(stamped, "todos", "t1").foreign_fields == frozenset()
    assert stamped["_h"]["M"] == {"title": {"S": field_hash("Milk")}, "n": {"S": field_hash(1)}}
    store.update(A, "todos", "t1", n=2)  # another outside write, keeping the stamped meta
    changed = store.item(A, "todos", "t1")
    assert changed is not None
    assert changed["_h"]["M"]["n"] != {"S": field_hash(2)}


def test_an_outage_logs_one_traceback_then_one_line_per_failed_pass_and_the_recovery(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # A fake for the fault: DynamoDB Local cannot be made to fail a pass on demand here
    # (tests/server/test_faults_store.py pauses a real DynamoDB Local with SIGSTOP).
    feed = store.feed(poll_s=0.01)
    passes = [0]

    def failing_step() -> int:
        passes[0] += 1
        if passes[0] <= 3:
            raise ConnectionError("DynamoDB unreachable")
        return 0

    feed.step = failing_step  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="pysync.feed"):
        feed.start()
        try:
            wait_until(lambda: passes[0] > 4, timeout=20, message="the feed kept failing")
        finally:
            feed.stop()
    failed = [r for r in caplog.records if "feed pass failed" in r.getMessage()]
    assert [r.exc_info is not None for r in failed] == [True, False, False]
    assert any("works again after 3 failed passes" in r.getMessage() for r in caplog.records)


def test_throttled_stream_and_table_calls_are_retried_inside_the_pass(store: Store) -> None:
    # Fakes for faults DynamoDB Local cannot produce: throttling of GetRecords and of the
    # stamp the feed writes for another program's put; server/retry.py retries both.
    feed = store.feed()
    reads = times(1, raising(client_error("GetRecords", "LimitExceededException")))
    stamps = times(1, raising(client_error("UpdateItem", "ThrottlingException")))
    feed.streams.meta.events.register("before-call.dynamodbstreams.GetRecords", reads)
    store.ctx.dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", stamps)
    store.put(A, "todos", "t1", title="from another program")
    step_until(feed, lambda: len(store.log(A)) >= 1)  # (drain would read the stream too)
    assert [k for _, k, _, _ in entries_summary(store.log(A))] == ["todos#t1"]
    assert reads.calls[0] > 1  # type: ignore[attr-defined]
    assert stamps.calls[0] > 1  # type: ignore[attr-defined]
