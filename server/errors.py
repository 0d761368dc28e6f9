"""The errors only the server raises. Each one is answered by server/http.py with its status.

They are pysync errors (`ServerError` derives from `pysync.errors.PysyncError`), so there is
still one hierarchy with one root; they live here because no client code raises or catches
them, and the browser's wheel carries no server code. A client sees them only as the HTTP
answers they become, which it reads as `pysync.errors.SyncError`.
"""

from __future__ import annotations

from pysync.errors import PysyncError


class ServerError(PysyncError):
    """Base class of the errors the server answers with a status of their own."""


class AuthError(ServerError):
    """A request without valid credentials (HTTP 401). `code` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AuthUnavailable(ServerError):
    """The token could not be checked right now (the JWKS endpoint is unreachable): HTTP 503."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(ServerError):
    """Too many requests from one user: retry after `retry_after` seconds (HTTP 429)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded: retry after {retry_after:.1f} s")
        self.retry_after = retry_after


class MutationGap(ServerError):
    """A push whose first new mutation id is not last_mutation_id + 1: nothing was applied."""

    def __init__(self, expected: int) -> None:
        super().__init__(f"mutation ids must continue at {expected}")
        self.expected = expected


class ClientForbidden(ServerError):
    """The client_id belongs to another user."""


class StoreUnavailable(ServerError):
    """DynamoDB kept throttling or could not be reached after retries; nothing was applied
    twice, retry later (HTTP 503 with Retry-After)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the store is busy: retry after {retry_after:g} s")
        self.retry_after = retry_after
