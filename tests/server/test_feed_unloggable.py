"""Records the change log cannot hold never stall the feed (issue 7, a), on DynamoDB Local.

DynamoDB stores an attribute 32 levels deep, but the log keeps a record's fields one level
deeper (inside its `f` map), and an item near 400 KB has no room for the feed's stamp. Such
a record is logged without its fields; the pull reads the item when it serves it.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from server.changelog import FETCH, ChangeLog
from server.changes import LogEntry
from server.pull import Puller
from server.records import MAX_ITEM_BYTES
from tests.server.feed_support import Store, step_until

pytestmark = pytest.mark.dynamodb

DEEP, BIG, OTHER = "u#deep", "u#big", "u#other"


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def _puller(store: Store) -> Puller:
    return Puller(store.ctx.dynamodb, store.ctx.tables, store.ctx.settings.log_retention_s)


def start_cursor(puller: Puller, scope: str) -> str:
    """The cursor of a client that has read the (empty) scope's snapshot."""
    page = puller.pull(scope, None, 100)
    assert page["changes"] == []
    assert not page["has_more"]
    cursor: str = page["cursor"]
    return cursor


def pull_changes(puller: Puller, scope: str, cursor: str) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = puller.pull(scope, cursor, 100)["changes"]
    return changes


def test_an_item_too_deep_for_the_log_does_not_stall_and_reaches_pull_with_its_fields(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    puller = _puller(store)
    deep_cursor, other_cursor = start_cursor(puller, DEEP), start_cursor(puller, OTHER)
    # Another program writes 31 nested lists: fine for DynamoDB in the item, one level too
    # many inside a log entry's `f` map.
    store.put(DEEP, "todos", "d1", title="deep", tree=nested(31))
    # One record per batch: the record after the deep one is read only once the feed has
    # checkpointed past it (before the fix it never was).
    feed = store.feed(batch_size=1)
    step_until(feed, lambda: (store.item(DEEP, "todos", "d1") or {}).get("_v"))  # stamped
    store.put(OTHER, "todos", "o1", title="hello", _v=1, _w="c:1")
    with caplog.at_level(logging.ERROR, logger="pysync.feed"):
        step_until(feed, lambda: store.log(OTHER))
    [other] = pull_changes(puller, OTHER, other_cursor)
    assert (other["key"], other["value"]) == ("o1", {"title": "hello"})
    [entry] = store.log(DEEP)
    assert entry[FETCH] == {"BOOL": True}
    assert "f" not in entry
    [deep] = pull_changes(puller, DEEP, deep_cursor)
    assert (deep["key"], deep["version"], deep["deleted"]) == ("d1", 1, False)
    assert deep["value"] == {"title": "deep", "tree": nested(31)}
    assert "todos#d1 version 1 cannot be logged with its fields" in caplog.text


def test_an_item_with_no_room_for_the_stamp_is_logged_unstamped_and_reaches_pull(
        store: Store) -> None:
    puller = _puller(store)
    big_cursor, other_cursor = start_cursor(puller, BIG), start_cursor(puller, OTHER)
    # An item a few bytes under DynamoDB's 400 KB: the stamp's meta would push it over,
    # so the stamp fails the same way on every re-read of the record.
    blob = "b" * (MAX_ITEM_BYTES - 60 - len("pk" + BIG + "sk" + "todos#b1" + "blob"))
    store.put(BIG, "todos", "b1", blob=blob)
    store.put(OTHER, "todos", "o1", title="after", _v=1, _w="c:1")
    feed = store.feed(batch_size=1)
    step_until(feed, lambda: store.log(OTHER) and store.log(BIG))
    [other] = pull_changes(puller, OTHER, other_cursor)
    assert other["value"] == {"title": "after"}
    assert "_v" not in (store.item(BIG, "todos", "b1") or {})  # never stamped
    [big] = pull_changes(puller, BIG, big_cursor)
    assert (big["key"], big["version"], big["value"]) == ("b1", 1, {"blob": blob})


def test_an_entry_dynamodb_refuses_is_logged_without_fields_and_its_neighbours_with_theirs(
        store: Store) -> None:
    # A number DynamoDB refuses never comes from a stream image; it stands for any entry
    # that DynamoDB's validation refuses in ways the log does not foresee.
    log = ChangeLog(store.ctx.dynamodb, store.ctx.tables, retention_s=3600)

    def entry(key: str, fields: dict[str, Any]) -> LogEntry:
        return LogEntry("u#a", f"todos#{key}", 1, False, fields, None, None, "0")

    log.append("u#a", [entry("a", {"n": {"N": "1"}}), entry("bad", {"n": {"N": "x"}}),
                       entry("c", {"n": {"N": "3"}})])
    a, bad, c = store.log("u#a")
    assert (a["f"], c["f"]) == ({"M": {"n": {"N": "1"}}}, {"M": {"n": {"N": "3"}}})
    assert bad["k"] == {"S": "todos#bad"}
    assert bad[FETCH] == {"BOOL": True}
    assert "f" not in bad
