"""The pull's "remaining" estimate (docs/api.md): what a page says is left of the sequence,
counted once for a snapshot and derived from the log positions for deltas (pull.Puller)."""

from __future__ import annotations

from typing import Any

import pytest

from pysync.errors import ProtocolError
from server import pull as pull_module
from server.pull import Cursor, Puller
from tests.server.feed_support import Store, drain, step_until
from tests.server.test_pull import forge

pytestmark = pytest.mark.dynamodb


@pytest.fixture(scope="module")
def store(dynamodb_local: Any) -> Store:
    return Store.create(dynamodb_local)


def puller(store: Store) -> Puller:
    return Puller(store.ctx.dynamodb, store.ctx.tables, 3600)


def pages(p: Puller, scope: str, cursor: str | None, limit: int) -> list[dict[str, Any]]:
    out = []
    while True:
        page = p.pull(scope, cursor, limit)
        out.append(page)
        cursor = page["cursor"]
        if not page["has_more"]:
            return out


def test_snapshot_pages_count_down_the_live_items_left(store: Store, scope: str) -> None:
    p, feed = puller(store), store.feed()
    for i in range(8):
        store.put(scope, "todos", f"t{i}", n=i, _v=1)
    drain(feed, store)
    store.delete(scope, "todos", "t3")  # a tombstone: not a change the snapshot brings
    drain(feed, store)
    start = Cursor.decode(p.pull(scope, None, 1000)["cursor"]).position
    seq = pages(p, scope, None, 3)
    received = 0
    for page in seq:
        received += len(page["changes"])
        assert received + page["remaining"] == 7, page
    assert seq[-1]["remaining"] == 0
    assert start == len(store.log(scope))


def test_changes_logged_during_a_snapshot_count_in_remaining(store: Store,
                                                             scope: str) -> None:
    p, feed = puller(store), store.feed()
    for i in range(4):
        store.put(scope, "todos", f"t{i}", n=i, _v=1)
    drain(feed, store)
    first = p.pull(scope, None, 2)
    assert first["remaining"] == 2
    store.put(scope, "todos", "a9", n=9, _v=1)  # before the snapshot's position: a delta
    step_until(feed, lambda: len(store.log(scope)) == 5)
    second = p.pull(scope, first["cursor"], 2)
    assert second["remaining"] == 1  # no live item left in the snapshot; one change logged
    rest = pages(p, scope, second["cursor"], 2)
    assert [c["key"] for page in rest for c in page["changes"]] == ["a9"]
    assert rest[-1]["remaining"] == 0


def test_delta_pages_say_how_many_log_positions_are_left(store: Store, scope: str) -> None:
    p, feed = puller(store), store.feed()
    cursor = pages(p, scope, None, 100)[-1]["cursor"]
    for i in range(5):
        store.put(scope, "todos", f"t{i}", n=i, _v=1)
    step_until(feed, lambda: len(store.log(scope)) == 5)
    seq = pages(p, scope, cursor, 2)
    assert [page["remaining"] for page in seq] == [3, 1, 0]


def test_a_count_cut_short_is_counted_again_when_it_runs_out(
        store: Store, scope: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # COUNT_LIMIT is the real bound of one counting Query: lowered so that 9 items need
    # several counts.
    monkeypatch.setattr(pull_module, "COUNT_LIMIT", 2)
    p, feed = puller(store), store.feed()
    for i in range(9):
        store.put(scope, "todos", f"t{i}", n=i, _v=1)
    drain(feed, store)
    seq = pages(p, scope, None, 2)
    received = 0
    for page in seq:
        received += len(page["changes"])
        left = 9 - received
        assert 0 < page["remaining"] <= left if left else page["remaining"] == 0, page
    assert received == 9


def test_the_estimate_costs_one_eventually_consistent_count_per_item(
        store: Store, scope: str) -> None:
    """Measured: the read units of a 300-item snapshot pulled in pages of 100, with the
    estimate and without it (DynamoDB Local reports ReturnConsumedCapacity)."""
    p, feed = puller(store), store.feed()
    for i in range(300):
        store.put(scope, "todos", f"t{i:03}", title=f"Buy milk and bread ({i})", done=False,
                  position=i, _v=1)
    drain(feed, store, timeout=120)
    units: dict[str, float] = {"count": 0.0, "page": 0.0}

    def ask(params: dict[str, Any], **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"

    def count(parsed: dict[str, Any], model: Any, params: dict[str, Any] | None = None,
              **_: Any) -> None:
        consumed = parsed.get("ConsumedCapacity") or {}
        kind = "count" if "Count" in parsed and "Items" not in parsed else "page"
        units[kind] += float(consumed.get("CapacityUnits", 0))

    events = store.ctx.dynamodb.meta.events
    events.register("provide-client-params.dynamodb.Query", ask)
    events.register("after-call.dynamodb.Query", count)
    try:
        seq = pages(p, scope, None, 100)
    finally:
        events.unregister("provide-client-params.dynamodb.Query", ask)
        events.unregister("after-call.dynamodb.Query", count)
    assert sum(len(page["changes"]) for page in seq) == 300
    print(f"\nsnapshot of 300 items in pages of 100: {units['page']} read units for the "
          f"pages, {units['count']} for the remaining estimate")
    # One count of the items after the first page (eventually consistent: half the units of
    # reading them strongly consistent), never a count per page.
    assert 0 < units["count"] <= units["page"] / 2


def test_a_count_of_items_left_in_a_log_cursor_is_invalid(store: Store, scope: str) -> None:
    p = puller(store)
    cursor = pages(p, scope, None, 100)[-1]["cursor"]
    assert not Cursor.decode(cursor).in_snapshot
    with pytest.raises(ProtocolError) as e:
        p.pull(scope, forge(cursor, n="3"), 10)
    assert e.value.code == "invalid_cursor"
