"""pysync.conflicts: what a resolver's answer becomes, how a partial merge loss is seen, and
the events' form between tabs. Pure logic, on CPython."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from pysync.conflicts import ConflictEvent, MergeWatch, decide
from pysync.protocol import ServerRecord

LOCAL, SERVER, BASE = {"n": 3}, {"n": 2}, {"n": 1}


def run(resolve: Any) -> tuple[Any, str | None]:
    return asyncio.run(decide(resolve, LOCAL, SERVER, BASE))


def test_without_a_resolver_the_server_copy_is_kept() -> None:
    assert run(None) == (SERVER, None)


def test_a_coroutine_resolver_is_awaited() -> None:
    async def later(local: Any, server: Any, base: Any) -> Any:
        await asyncio.sleep(0)
        return {"n": local["n"] + server["n"] - base["n"]}

    assert run(later) == ({"n": 4}, None)


def test_none_deletes() -> None:
    assert run(lambda local, server, base: None) == (None, None)


def test_a_raising_resolver_keeps_the_server_copy_with_the_error() -> None:
    def broken(local: Any, server: Any, base: Any) -> Any:
        raise KeyError("balance")

    assert run(broken) == (SERVER, "KeyError: 'balance'")


def test_a_result_pysync_cannot_store_keeps_the_server_copy() -> None:
    result, error = run(lambda local, server, base: {"n": float("nan")})
    assert result == SERVER
    assert error is not None
    assert error.startswith("InvalidValue")
    assert run(lambda local, server, base: ["not", "a", "record"])[0] == SERVER


def test_the_resolver_gets_copies() -> None:
    def meddle(local: Any, server: Any, base: Any) -> Any:
        server["n"] = 99
        return local

    run(meddle)
    assert SERVER == {"n": 2}


def test_a_watched_merge_edit_is_overwritten_when_its_version_shows_another_value() -> None:
    watch = MergeWatch()
    watch.watch("todos", "t1", 4, {"title": "Oat", "done": True}, {"title": "Oat", "done": True})
    assert watch.check(ServerRecord("todos", "t1", 3, False, {"title": "x"})) is None
    assert len(watch) == 1  # an older version: still watched
    event = watch.check(ServerRecord("todos", "t1", 4, False, {"title": "Soy", "done": True}))
    assert event == ConflictEvent("todos", "t1", "merge", "overwritten",
                                  {"title": "Oat", "done": True},
                                  {"title": "Soy", "done": True},
                                  {"title": "Soy", "done": True})
    assert len(watch) == 0


def test_a_watched_edit_that_held_or_whose_version_was_skipped_says_nothing() -> None:
    watch = MergeWatch()
    watch.watch("todos", "t1", 4, {"n": 1.5}, {"n": 1.5})
    assert watch.check(ServerRecord("todos", "t1", 4, False, {"n": Decimal("1.5")})) is None
    watch.watch("todos", "t2", 4, {"n": 1}, {"n": 1})
    assert watch.check(ServerRecord("todos", "t2", 6, False, {"n": 2})) is None
    assert len(watch) == 0


def test_an_event_crosses_to_another_tab_unchanged() -> None:
    event = ConflictEvent("accounts", "a", "version", "conflict", {"b": b"\x00", "d":
                          Decimal("0.1234567890123456789")}, None, {"n": 2**60}, "E: x")
    assert ConflictEvent.from_message(event.to_message()) == event


def test_records_compare_as_data_whatever_their_numbers_type() -> None:
    from pysync.conflicts import same_record

    assert same_record({"n": 1.5, "l": [1, {"d": 2}]},
                       {"n": Decimal("1.5"), "l": [Decimal(1), {"d": 2.0}]})
    assert not same_record({"n": 1.5}, {"n": 1.25})
    assert not same_record({"b": True}, {"b": 1})
    assert same_record(None, None)
    assert not same_record({"n": 1}, None)
