"""pysync.idb without a browser: what needs no IndexedDB (error mapping, request shapes)."""

from __future__ import annotations

import asyncio
import json

import pytest

from pysync import idb
from pysync.errors import (
    ConstraintViolation,
    DatabaseClosed,
    StorageError,
    StorageFull,
    TransactionAborted,
)


def failure(name: str) -> str:
    return json.dumps({"name": name, "message": "m"})


@pytest.mark.parametrize(("name", "error"), [
    ("QuotaExceededError", StorageFull),
    ("ConstraintError", ConstraintViolation),
    ("InvalidStateError", DatabaseClosed),
    ("AbortError", TransactionAborted),
    ("UnknownError", TransactionAborted),
])
def test_dom_exceptions_map_to_pysync_errors(name: str, error: type) -> None:
    e = idb._error(failure(name))
    assert type(e) is error
    assert name in str(e)


def test_a_failed_open_is_a_storage_error_not_an_abort() -> None:
    e = idb._error(failure("VersionError"), "opening database 'x'")
    assert type(e) is StorageError


def test_a_range_read_travels_as_bounds_and_flags() -> None:
    r = idb.get_all("records", "ix", (["a"], False), (["a", []], True), limit=5, reverse=True)
    assert r.to_json() == ["all", "records", "ix", [["a"], False, ["a", []], True], 5, True]


def test_an_unbounded_read_has_no_range() -> None:
    assert idb.count("outbox").to_json() == ["count", "outbox", None, None, None, False]


def test_importing_pysync_needs_no_browser() -> None:
    import pysync

    assert callable(pysync.open_database)
    assert idb._helper is None


def test_a_completion_resumes_its_task_inside_the_event_that_settles_it() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        completion = idb.Completion(loop)
        trace: list[str] = []

        async def waiter() -> None:
            trace.append("result " + repr(await completion))

        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)  # the task now waits on the completion

        def event() -> None:  # what a transaction's complete event does
            completion.settle("")
            trace.append("event returns")

        loop.call_soon(event)
        await task
        return trace

    assert asyncio.run(main()) == ["result ''", "event returns"]


def test_a_completion_settled_while_a_task_runs_resumes_its_waiter_later() -> None:
    async def main() -> list[str]:
        completion = idb.Completion(asyncio.get_running_loop())
        trace: list[str] = []

        async def waiter() -> None:
            trace.append("result " + repr(await completion))

        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)
        completion.settle('{"name": "AbortError"}')  # from inside this running task
        trace.append("settled")
        await task
        return trace

    assert asyncio.run(main()) == ["settled", "result '{\"name\": \"AbortError\"}'"]


def test_a_cancelled_wait_on_a_completion_raises_cancelled_and_ignores_the_late_end() -> None:
    async def main() -> bool:
        completion = idb.Completion(asyncio.get_running_loop())
        task = asyncio.ensure_future(asyncio.wait_for(completion, 0.01))
        with pytest.raises(TimeoutError):
            await task
        completion.settle("")  # the transaction ends afterwards: nothing happens
        return completion.cancelled()

    assert asyncio.run(main())


def test_an_already_settled_completion_is_awaited_without_waiting() -> None:
    async def main() -> str:
        completion = idb.Completion(asyncio.get_running_loop())
        completion.settle("")
        return await completion

    assert asyncio.run(main()) == ""


def test_a_stale_check_maps_to_stale_a_transaction_abort() -> None:
    e = idb._error(failure("StaleError"))
    assert isinstance(e, idb.Stale)
    assert isinstance(e, TransactionAborted)
