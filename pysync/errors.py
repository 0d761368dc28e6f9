"""The one exception hierarchy of pysync. Every error the library raises is a PysyncError.

The errors only the server raises (auth, rate limit, mutation gap, store unavailable) are
PysyncErrors too, defined in server/errors.py: the client never raises or catches them.
"""

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


class NotFound(PysyncError, LookupError):
    """A patch of a record that does not exist (or is deleted) locally. Nothing was written."""


class StorageError(PysyncError):
    """The local database (IndexedDB) failed."""


class StorageFull(StorageError):
    """The browser refused to store more data (QuotaExceededError)."""


class TransactionAborted(StorageError):
    """An IndexedDB transaction was aborted: none of its writes happened."""


class ConstraintViolation(TransactionAborted):
    """A write broke a unique index (IndexedDB's ConstraintError): none of its writes happened."""


class DatabaseClosed(StorageError):
    """The local database is closed (by the app, or because another tab upgraded it)."""


class ProtocolError(PysyncError):
    """A wire message that does not follow protocol v1. `code` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SyncError(PysyncError):
    """The sync client could not push or pull. `code` is the server's error code (or
    "unreachable" when no answer came, "invalid_response" or "malformed_json" when the answer
    did not follow the protocol); `transient` errors are retried with a backoff. `expected`:
    the mutation id a `mutation_gap` answer asks for."""

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 transient: bool = True, retry_after: float | None = None,
                 expected: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        self.expected = expected
