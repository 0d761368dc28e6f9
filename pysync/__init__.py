"""pysync: an offline-first local database on IndexedDB, synced with DynamoDB."""

from typing import TYPE_CHECKING, Any

from pysync.conflicts import ConflictEvent
from pysync.errors import (
    ConstraintViolation,
    DatabaseClosed,
    InvalidValue,
    NotFound,
    ProtocolError,
    PysyncError,
    SchemaError,
    StorageError,
    StorageFull,
    SyncError,
    TransactionAborted,
)
from pysync.hlc import HybridClock, Stamp
from pysync.schema import Collection, Index, Schema, Strategy
from pysync.sharing import Member, ScopeInfo
from pysync.store import Change, Database, Doc, LocalCollection, delete_database, open_database

# The one place the version is written: pyproject.toml reads it (hatch's dynamic version), and
# the browser's wheel (server/assets.py) is named after it.
__version__ = "0.1.0"

if TYPE_CHECKING:
    from pysync.client import SyncClient, SyncStatus, dev_token_provider
    from pysync.memdb import MemoryStorage

_LAZY = {"SyncClient", "SyncStatus", "dev_token_provider"}


def __getattr__(name: str) -> Any:
    # The sync client pulls in httpx: imported on first use, so a page that only uses the
    # local store does not pay for it at boot.
    if name in _LAZY:
        from pysync import client

        return getattr(client, name)
    if name == "MemoryStorage":  # the in-memory twin of IndexedDB, for CPython
        from pysync import memdb

        return memdb.MemoryStorage
    raise AttributeError(f"module 'pysync' has no attribute {name!r}")


__all__ = [
    "Change",
    "Collection",
    "ConflictEvent",
    "ConstraintViolation",
    "Database",
    "DatabaseClosed",
    "Doc",
    "HybridClock",
    "Index",
    "InvalidValue",
    "LocalCollection",
    "Member",
    "MemoryStorage",
    "NotFound",
    "ProtocolError",
    "PysyncError",
    "Schema",
    "SchemaError",
    "ScopeInfo",
    "Stamp",
    "StorageError",
    "StorageFull",
    "Strategy",
    "SyncClient",
    "SyncError",
    "SyncStatus",
    "TransactionAborted",
    "delete_database",
    "dev_token_provider",
    "open_database",
]
