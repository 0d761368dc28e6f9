"""The per-scope change log on DynamoDB Local: dense positions under concurrent appenders."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from server.changelog import ChangeLog
from server.changes import LogEntry
from server.errors import StoreUnavailable
from tests.server.fault_support import raising, times
from tests.server.feed_support import Store, entries_summary

pytestmark = pytest.mark.dynamodb


def _log(store: Store) -> ChangeLog:
    return ChangeLog(store.ctx.dynamodb, store.ctx.tables, retention_s=3600)


def entry(scope: str, key: str, version: int) -> LogEntry:
    return LogEntry(scope, f"todos#{key}", version, False, {"n": {"N": str(version)}},
                    None, None, "0")


def test_appends_get_consecutive_positions_from_one(store: Store) -> None:
    log = _log(store)
    assert log.append("u#a", [entry("u#a", "x", 1), entry("u#a", "y", 1)]) == 2
    assert log.append("u#a", [entry("u#a", "x", 2)]) == 3
    assert entries_summary(store.log("u#a")) == [
        (1, "todos#x", 1, False), (2, "todos#y", 1, False), (3, "todos#x", 2, False)]
    assert log.anchor("u#a").head == 3


def test_a_change_appended_twice_is_logged_once(store: Store) -> None:
    log = _log(store)
    log.append("u#a", [entry("u#a", "x", 1), entry("u#a", "x", 2)])
    # Re-delivery after a crash: the same records again, followed by a new one.
    log.append("u#a", [entry("u#a", "x", 1), entry("u#a", "x", 2), entry("u#a", "x", 3)])
    assert [v for _, _, v, _ in entries_summary(store.log("u#a"))] == [1, 2, 3]


def test_concurrent_appenders_to_one_scope_leave_no_hole_and_no_duplicate(
        store: Store) -> None:
    # Several workers (e.g. two shards holding items of one scope) append at the same time,
    # while a reader tails the log the way /v1/pull does: anchor first, then positions.
    workers, per_worker = 4, 15
    log = _log(store)
    seen: list[int] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def append(w: int) -> None:
        try:
            for i in range(per_worker):
                log.append("u#a", [entry("u#a", f"w{w}", i + 1)])
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    def read() -> None:
        position = 0
        while True:
            finished = done.is_set()
            head = log.anchor("u#a").head
            for e in log.read("u#a", position, head, 100):
                seen.append(int(e["sk"]["N"]))
                position += 1
            if finished and position == head:
                return

    threads = [threading.Thread(target=append, args=(w,)) for w in range(workers)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join(timeout=30)
    assert not errors
    total = workers * per_worker
    assert seen == list(range(1, total + 1))  # the reader never skipped a position
    entries = entries_summary(store.log("u#a"))
    assert [p for p, _, _, _ in entries] == list(range(1, total + 1))
    for w in range(workers):  # each worker's changes once, in its order
        assert [v for _, k, v, _ in entries if k == f"todos#w{w}"] == \
            list(range(1, per_worker + 1))


def test_reading_never_returns_past_a_missing_position(store: Store) -> None:
    log = _log(store)
    log.append("u#a", [entry("u#a", k, 1) for k in "abcd"])
    store.ctx.dynamodb.delete_item(TableName=store.ctx.tables.log,
                                   Key={"pk": {"S": "u#a"}, "sk": {"N": "3"}})
    assert [int(e["sk"]["N"]) for e in log.read("u#a", 0, 4, 100)] == [1, 2]
    assert log.read("u#a", 2, 4, 100) == []


def test_heads_of_many_scopes_in_one_call(store: Store) -> None:
    log = _log(store)
    log.append("u#a", [entry("u#a", "x", 1)])
    log.append("u#b", [entry("u#b", "x", 1), entry("u#b", "y", 1)])
    scopes = ["u#a", "u#b", *[f"u#none{i}" for i in range(120)]]
    heads = log.heads(scopes)
    assert heads["u#a"] == 1
    assert heads["u#b"] == 2
    assert heads["u#none7"] == 0
    assert len(heads) == len(scopes)


def test_entries_expire_by_ttl_after_the_retention(store: Store) -> None:
    ChangeLog(store.ctx.dynamodb, store.ctx.tables, retention_s=3600,
              clock=lambda: 1_000_000.0).append("u#a", [entry("u#a", "x", 1)])
    [stored] = store.log("u#a")
    # Retention plus a day of margin for clock skew; the anchor itself never expires.
    assert int(stored["ttl"]["N"]) == 1_000_000 + 3600 + 24 * 3600
    anchor = store.ctx.dynamodb.get_item(TableName=store.ctx.tables.log,
                                         Key={"pk": {"S": "u#a"}, "sk": {"N": "0"}})["Item"]
    assert "ttl" not in anchor


# Faults DynamoDB Local cannot produce on demand (throttling, a connection that times out),
# injected with a botocore hook on the store's own client: the append's transaction goes
# through the one retry boundary (server/retry.py) like every request path's calls.

def _fail_transactions(store: Store, n: int, fault: Exception) -> list[int]:
    """The store's transactions raise `fault` the first `n` times; the call count."""
    hook = times(n, raising(fault))
    store.ctx.dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", hook)
    calls: list[int] = hook.calls  # type: ignore[attr-defined]
    return calls


def test_an_append_whose_connection_times_out_is_retried_and_logged_once(
        store: Store) -> None:
    fault = ReadTimeoutError(endpoint_url=store.ctx.settings.dynamodb_endpoint or "")
    calls = _fail_transactions(store, 1, fault)
    assert _log(store).append("u#a", [entry("u#a", "x", 1)]) == 1
    assert calls[0] == 2
    assert entries_summary(store.log("u#a")) == [(1, "todos#x", 1, False)]


def test_an_append_dynamodb_keeps_throttling_gives_up_with_store_unavailable(
        store: Store) -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}},
                            "TransactWriteItems")
    _fail_transactions(store, 10**6, throttled)
    with pytest.raises(StoreUnavailable):
        _log(store).append("u#a", [entry("u#a", "x", 1)])
    assert store.log("u#a") == []
