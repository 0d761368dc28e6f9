"""pysync.idb without a browser: what needs no IndexedDB (error mapping, request shapes)."""

from __future__ import annotations

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
    assert type(e) is error and name in str(e)


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

    assert pysync.open_database and idb._helper is None
