"""pysync: an offline-first local database on IndexedDB, synced with DynamoDB."""

from pysync.errors import (
    DatabaseClosed,
    InvalidValue,
    ProtocolError,
    PysyncError,
    SchemaError,
    StorageError,
    StorageFull,
    TransactionAborted,
)
from pysync.hlc import HybridClock, Stamp
from pysync.schema import Collection, Index, Schema, Strategy

__all__ = [
    "Collection",
    "DatabaseClosed",
    "HybridClock",
    "Index",
    "InvalidValue",
    "ProtocolError",
    "PysyncError",
    "Schema",
    "SchemaError",
    "Stamp",
    "StorageError",
    "StorageFull",
    "Strategy",
    "TransactionAborted",
]
