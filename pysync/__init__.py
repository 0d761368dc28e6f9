"""pysync: an offline-first local database on IndexedDB, synced with DynamoDB."""

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
    TransactionAborted,
)
from pysync.hlc import HybridClock, Stamp
from pysync.schema import Collection, Index, Schema, Strategy
from pysync.store import Change, Database, Doc, LocalCollection, delete_database, open_database

__all__ = [
    "Change",
    "Collection",
    "ConstraintViolation",
    "Database",
    "DatabaseClosed",
    "Doc",
    "HybridClock",
    "Index",
    "InvalidValue",
    "LocalCollection",
    "NotFound",
    "ProtocolError",
    "PysyncError",
    "Schema",
    "SchemaError",
    "Stamp",
    "StorageError",
    "StorageFull",
    "Strategy",
    "TransactionAborted",
    "delete_database",
    "open_database",
]
