"""Pull logic on DynamoDB Local: snapshot, deltas, paging, cursors, resets (pull.Puller)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysync.errors import ProtocolError
from server.changelog import bump_epoch
from server.pull import Cursor, Puller
from tests.server.feed_support import Store, drain, step_until

pytestmark = pytest.mark.dynamodb

A = "u#alice"


@pytest.fixture(scope="module")
def store(dynamodb_local: Any) -> Store:
    """One set of tables for the module (conftest's `store` is one a test): each test here
    pulls scopes of its own, and the property test's examples share the tables."""
    return Store.create(dynamodb_local)


def puller(store: Store, clock: Any = None, retention_s: float = 3600) -> Puller:
    if clock is None:
        return Puller(store.ctx.dynamodb, store.ctx.tables, retention_s)
    return Puller(store.ctx.dynamodb, store.ctx.tables, retention_s, clock=clock)


State = dict[tuple[str, str], dict[str, Any]]


def apply(state: State, changes: list[dict[str, Any]]) -> None:
    """What a client does: keep the higher version."""
    for c in changes:
        k = (c["collection"], c["key"])
        if k not in state or c["version"] >= state[k]["version"]:
            state[k] = c


def pull_all(p: Puller, scope: str, cursor: str | None, limit: int = 100) -> tuple[str, State]:
    state: State = {}
    while True:
        out = p.pull(scope, cursor, limit)
        assert not out.get("reset"), out
        apply(state, out["changes"])
        cursor = out["cursor"]
        if not out["has_more"]:
            return cursor, state


def live(state: State) -> dict[tuple[str, str], Any]:
    return {k: (c["version"], c["value"]) for k, c in state.items() if not c["deleted"]}


def test_a_direct_boto3_write_is_visible_in_the_next_pull(store: Store, scope: str) -> None:
    p, feed = puller(store), store.feed()
    cursor, state = pull_all(p, scope, None)
    assert state == {}
    store.put(scope, "todos", "t1", title="written by a script", tags={"a", "b"})
    step_until(feed, lambda: store.log(scope))
    out = p.pull(scope, cursor, 100)
    assert out["changes"] == [{"collection": "todos", "key": "t1", "version": 1,
                               "deleted": False, "hlc": out["changes"][0]["hlc"],
                               "value": {"title": "written by a script", "tags": ["a", "b"]},
                               "scope": None}]
    assert out["has_more"] is False


def test_snapshot_pages_then_continues_from_the_head_before_it(store: Store,
                                                               scope: str) -> None:
    p, feed = puller(store), store.feed()
    for i in range(7):
        store.put(scope, "todos", f"t{i}", n=i, _v=1)
    step_until(feed, lambda: len(store.log(scope)) == 7)
    first = p.pull(scope, None, 3)
    assert [c["key"] for c in first["changes"]] == ["t0", "t1", "t2"]
    assert first["has_more"]
    store.put(scope, "todos", "t0", n=100, _v=2)  # changes during the snapshot...
    store.put(scope, "todos", "t9", n=9, _v=1)
    step_until(feed, lambda: len(store.log(scope)) == 9)
    cursor, state = first["cursor"], dict[tuple[str, str], dict[str, Any]]()
    apply(state, first["changes"])
    rest_cursor, rest = pull_all(p, scope, cursor, 3)
    state.update({k: v for k, v in rest.items() if k not in state
                  or v["version"] >= state[k]["version"]})
    # ...come as deltas from the head read before the snapshot began.
    assert live(state)[("todos", "t0")] == (2, {"n": 100})
    assert ("todos", "t9") in state
    assert len(live(state)) == 8
    assert Cursor.decode(rest_cursor).position == 9


def test_deletes_come_as_tombstones_and_snapshots_leave_them_out(store: Store,
                                                                  scope: str) -> None:
    p, feed = puller(store), store.feed()
    store.put(scope, "todos", "t1", title="x", _v=1)
    store.put(scope, "todos", "t2", title="y", _v=1)
    drain(feed, store)
    cursor, _ = pull_all(p, scope, None)
    store.delete(scope, "todos", "t1")
    step_until(feed, lambda: len(store.log(scope)) == 3)
    out = p.pull(scope, cursor, 100)
    assert [(c["key"], c["version"], c["deleted"], c["value"]) for c in out["changes"]] == \
        [("t1", 2, True, None)]
    _, fresh = pull_all(p, scope, None)
    assert list(fresh) == [("todos", "t2")]


def test_cursor_older_than_the_log_retention_resets(store: Store, scope: str) -> None:
    now = [1_000_000.0]
    p = puller(store, clock=lambda: now[0], retention_s=100)
    cursor, _ = pull_all(p, scope, None)
    now[0] += 99
    assert not p.pull(scope, cursor, 10).get("reset")
    now[0] += 102
    assert p.pull(scope, cursor, 10) == {"reset": True}


def test_a_caught_up_cursor_renews_its_retention(store: Store, scope: str) -> None:
    now = [1_000_000.0]
    p = puller(store, clock=lambda: now[0], retention_s=100)
    cursor, _ = pull_all(p, scope, None)
    for _ in range(3):  # a client that keeps pulling never resets
        now[0] += 90
        out = p.pull(scope, cursor, 10)
        assert not out.get("reset")
        cursor = out["cursor"]


def test_cursor_resets_when_its_positions_were_trimmed(store: Store, scope: str) -> None:
    p, feed = puller(store), store.feed()
    cursor, _ = pull_all(p, scope, None)
    for i in range(3):
        store.put(scope, "todos", f"t{i}", _v=1)
    step_until(feed, lambda: len(store.log(scope)) == 3)
    store.ctx.dynamodb.delete_item(TableName=store.ctx.tables.log,  # what TTL does
                                   Key={"pk": {"S": scope}, "sk": {"N": "1"}})
    assert p.pull(scope, cursor, 10) == {"reset": True}


def test_cursor_resets_after_the_store_epoch_moved(store: Store, scope: str) -> None:
    p = puller(store)
    cursor, _ = pull_all(p, scope, None)
    bump_epoch(store.ctx.dynamodb, store.ctx.tables)  # the feed lost stream records
    assert p.pull(scope, cursor, 10) == {"reset": True}
    assert "changes" in p.pull(scope, None, 10)  # the reset path: start again, no cursor


def test_cursor_of_another_scope_resets(store: Store, scope: str) -> None:
    p = puller(store)
    cursor, _ = pull_all(p, scope, None)
    assert p.pull("u#someone-else", cursor, 10) == {"reset": True}


@pytest.mark.parametrize("bad", ["", "not base64 !", "e30", "x" * 5000,
                                 Cursor("a", "b", 1.0, 0).encode()[:-3]])
def test_malformed_cursor_is_a_protocol_error(store: Store, bad: str) -> None:
    with pytest.raises(ProtocolError) as e:
        puller(store).pull(A, bad, 10)
    assert e.value.code == "invalid_cursor"


def forge(cursor: str, **fields: str) -> str:
    """`cursor` with some fields replaced by raw JSON text (what an attacker can write)."""
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    text = json.dumps({k: v for k, v in data.items() if k not in fields})[:-1]
    text += "".join(f', "{k}": {v}' for k, v in fields.items()) + "}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


FORGED = {
    "huge position": {"p": str(10**300)},
    "position past 2^63": {"p": str(2**63)},
    "huge integer time": {"t": str(10**400)},
    "infinite time": {"t": "1e999"},
    "NaN time": {"t": "NaN"},
    "negative time": {"t": "-1"},
    "boolean position": {"p": "true"},
    "snapshot key longer than a sort key": {"s": json.dumps("x" * 1100)},
    "snapshot key with a lone surrogate": {"s": '"\\ud800"'},
    "snapshot key not a string": {"s": "[1]"},
    "negative count of items left": {"n": "-1"},
    "fractional count of items left": {"n": "1.5"},
    "count of items left past 2^63": {"n": str(2**63)},
    "count of items left not a number": {"n": '"5"'},
    "unknown field": {"zz": "1"},
    "deep nesting": {"zz": "[" * 1100 + "]" * 1100},
}


@pytest.mark.parametrize("fields", list(FORGED.values()), ids=list(FORGED))
@pytest.mark.parametrize("phase", ["snapshot", "log"])
def test_a_cursor_with_forged_fields_is_invalid_before_any_dynamodb_work(
        store: Store, scope: str, phase: str, fields: dict[str, str]) -> None:
    p = puller(store)
    store.put(scope, "todos", "t1", title="x", _v=1)
    out = p.pull(scope, None, 1 if phase == "snapshot" else 100)
    cursor = out["cursor"]
    assert Cursor.decode(cursor).in_snapshot == (phase == "snapshot")
    with pytest.raises(ProtocolError) as e:
        p.pull(scope, forge(cursor, **fields), 10)
    assert e.value.code == "invalid_cursor"


def test_a_cursor_at_the_bounds_is_accepted(store: Store, scope: str) -> None:
    p = puller(store)
    cursor, _ = pull_all(p, scope, None)
    # A position far above the head is one this server could issue later: reset, not 400.
    assert p.pull(scope, forge(cursor, p=str(2**63 - 1)), 10) == {"reset": True}


# ---- incremental state equals a full recompute ------------------------------------------

keys = st.sampled_from(["a", "b", "c", "d"])
ops = st.lists(st.one_of(
    st.tuples(st.just("pysync_put"), keys, st.integers(0, 9)),
    st.tuples(st.just("script_put"), keys, st.integers(0, 9)),
    st.tuples(st.just("script_update"), keys, st.integers(0, 9)),
    st.tuples(st.just("delete"), keys, st.just(0)),
    st.tuples(st.just("pull"), st.just(""), st.integers(1, 4)),
), min_size=1, max_size=10)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_snapshot_plus_deltas_equals_a_fresh_snapshot(store: Store, ops: list[Any]) -> None:
    scope = f"u#{uuid.uuid4().hex[:8]}"
    p, feed = puller(store), store.feed()
    versions: dict[str, int] = {}
    state: State = {}
    cursor: str | None = None
    for op, key, n in ops:
        if op == "pull":
            feed.step()
            out = p.pull(scope, cursor, n)
            apply(state, out["changes"])
            cursor = out["cursor"]
            continue
        item = store.item(scope, "todos", key)
        v = int(item["_v"]["N"]) if item and "_v" in item else 0
        if op == "pysync_put":
            store.put(scope, "todos", key, n=n, _v=v + 1)
        elif op == "script_put":
            store.put(scope, "todos", key, n=n)
        elif op == "script_update":
            store.update(scope, "todos", key, n=n)
        elif item is not None:
            store.delete(scope, "todos", key)
        versions[key] = v
    drain(feed, store)
    _, rest = pull_all(p, scope, cursor)
    apply(state, list(rest.values()))
    _, fresh = pull_all(p, scope, None)
    assert live(state) == live(fresh)
