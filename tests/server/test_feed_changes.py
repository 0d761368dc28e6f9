"""Pure parts of the feed and pull, on plain CPython: stream record -> action, typed -> JSON,
cursors."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from server.changes import LogEntry, StampForeign, TombstoneForeign, classify
from server.pull import Cursor


def record(event: str, new: dict[str, Any] | None = None,
           old: dict[str, Any] | None = None, sk: str = "todos#t1") -> dict[str, Any]:
    keys = {"pk": {"S": "u#a"}, "sk": {"S": sk}}
    body: dict[str, Any] = {"Keys": keys, "SequenceNumber": "100"}
    if new is not None:
        body["NewImage"] = {**keys, **new}
    if old is not None:
        body["OldImage"] = {**keys, **old}
    return {"eventName": event, "dynamodb": body}


def test_a_pysync_write_is_logged_with_its_fields_only() -> None:
    action = classify(record("INSERT", {"_v": {"N": "1"}, "_hlc": {"S": "h"}, "_w": {"S": "c:1"},
                                        "_fh": {"M": {}}, "title": {"S": "x"}}))
    assert action == LogEntry("u#a", "todos#t1", 1, False, {"title": {"S": "x"}}, "h", "c:1",
                              "100")


def test_a_tombstone_is_logged_as_a_delete_without_fields() -> None:
    action = classify(record("MODIFY", {"_v": {"N": "3"}, "_del": {"BOOL": True}, "a": {"S": "x"}},
                             {"_v": {"N": "2"}, "a": {"S": "x"}}))
    assert isinstance(action, LogEntry)
    assert action.deleted
    assert action.fields == {}


def test_an_update_that_keeps_the_version_is_stamped_with_the_changed_fields() -> None:
    action = classify(record("MODIFY", {"_v": {"N": "3"}, "a": {"S": "x"}, "b": {"N": "2"}},
                             {"_v": {"N": "3"}, "a": {"S": "x"}, "b": {"N": "1"}, "c": {"S": "y"}}))
    assert action == StampForeign("u#a", "todos#t1", 3, 4, ("b", "c"), {},
                                  {"a": {"S": "x"}, "b": {"N": "2"}})


def test_a_put_without_meta_over_a_versioned_item_continues_its_versions() -> None:
    action = classify(record("MODIFY", {"a": {"S": "new"}}, {"_v": {"N": "7"}, "a": {"S": "x"}}))
    assert isinstance(action, StampForeign)
    assert action.expected_version is None
    assert action.version == 8


def test_a_lower_version_written_by_someone_else_is_stamped_above_both() -> None:
    action = classify(record("MODIFY", {"_v": {"N": "2"}}, {"_v": {"N": "5"}}))
    assert isinstance(action, StampForeign)
    assert action.version == 6


def test_removals() -> None:
    live = classify(record("REMOVE", old={"_v": {"N": "4"}, "a": {"S": "x"}}))
    assert live == TombstoneForeign("u#a", "todos#t1", 5)
    assert classify(record("REMOVE", old={"_v": {"N": "4"}, "_del": {"BOOL": True}})) is None


def test_a_write_over_an_unstamped_item_carries_a_restamp() -> None:
    action = classify(record("MODIFY", {"_v": {"N": "1"}, "a": {"S": "y"}}, {"a": {"S": "x"}}))
    assert isinstance(action, LogEntry)
    assert action.restamp is not None
    assert action.restamp.expected_version == 1


def test_keys_outside_pysyncs_layout_are_ignored() -> None:
    for sk in ("nohash", "#key", "coll#"):
        assert classify(record("INSERT", {"_v": {"N": "1"}}, sk=sk)) is None
    assert classify({"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"N": "1"}}}}) is None


@given(store=st.text(max_size=30), scope=st.text(max_size=20),
       t=st.floats(0, 4e9, allow_nan=False), p=st.integers(0, 2**62),
       snap=st.none() | st.text(max_size=50))
def test_cursors_round_trip(store: str, scope: str, t: float, p: int, snap: str | None) -> None:
    c = Cursor(store, scope, round(t, 3), p, snap)
    assert Cursor.decode(c.encode()) == c


def test_a_stamp_and_a_tombstone_must_come_after_the_newest_hlc_the_record_showed() -> None:
    older, newer = "000000000000005:000000:a", "000000000000009:000003:b"
    put = classify(record("MODIFY", {"t": {"S": "x"}, "_hlc": {"S": older}},
                          {"_v": {"N": "1"}, "_hlc": {"S": newer}, "t": {"S": "y"}}))
    assert isinstance(put, StampForeign)
    assert put.after == newer
    gone = classify(record("REMOVE", old={"_v": {"N": "4"}, "_hlc": {"S": newer}}))
    assert isinstance(gone, TombstoneForeign)
    assert gone.after == newer
    junk = classify(record("MODIFY", {"t": {"S": "x"}, "_hlc": {"S": "not a stamp"}}))
    assert isinstance(junk, StampForeign)
    assert junk.after is None


def test_a_stamp_goes_above_a_far_future_hlc_without_dragging_the_feeds_clock() -> None:
    # Another program may set `_hlc` to anything; push never accepts one over 60 s ahead.
    from pysync.hlc import Stamp, wall_clock_ms
    from server.clock import ServerClock

    feed_clock = ServerClock("feed")
    far = Stamp(wall_clock_ms() + 10**9, 7, "junk")
    assert Stamp.parse(feed_clock.stamp_after(str(far))) > far
    assert Stamp.parse(feed_clock.stamp_after(None)).wall_ms < far.wall_ms
