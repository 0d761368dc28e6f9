"""The one exception hierarchy of pysync. Every error the library raises is a PysyncError."""

from __future__ import annotations


class PysyncError(Exception):
    """Base class of every pysync error."""


class InvalidValue(PysyncError, ValueError):
    """A record value, key, field name or collection name that pysync refuses.

    Raised before anything is written, so a refused write leaves no trace.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class SchemaError(PysyncError):
    """A collection or index that the schema does not declare, or a schema that is malformed."""


class StorageError(PysyncError):
    """The local database (IndexedDB) failed."""


class StorageFull(StorageError):
    """The browser refused to store more data (QuotaExceededError)."""


class TransactionAborted(StorageError):
    """An IndexedDB transaction was aborted: none of its writes happened."""


class DatabaseClosed(StorageError):
    """The local database is closed (by the app, or because another tab upgraded it)."""


class ProtocolError(PysyncError):
    """A wire message that does not follow protocol v1. `code` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
