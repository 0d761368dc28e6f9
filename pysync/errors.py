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


class AuthError(PysyncError):
    """A request without valid credentials (HTTP 401). `code` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AuthUnavailable(PysyncError):
    """The token could not be checked right now (the JWKS endpoint is unreachable): HTTP 503."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(PysyncError):
    """Too many requests from one user: retry after `retry_after` seconds (HTTP 429)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded: retry after {retry_after:.1f} s")
        self.retry_after = retry_after


class MutationGap(PysyncError):
    """A push whose first new mutation id is not last_mutation_id + 1: nothing was applied."""

    def __init__(self, expected: int) -> None:
        super().__init__(f"mutation ids must continue at {expected}")
        self.expected = expected


class ClientForbidden(PysyncError):
    """The client_id belongs to another user."""


class StoreUnavailable(PysyncError):
    """DynamoDB kept throttling after retries; nothing was applied twice, retry later."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the store is busy: retry after {retry_after:g} s")
        self.retry_after = retry_after


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
