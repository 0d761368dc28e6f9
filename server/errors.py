"""The errors only the server raises. Each one knows the answer it becomes (status, code,
message, headers, extra fields), and server/http.py turns every one of them into that answer
with one handler.

They are pysync errors (`ServerError` derives from `pysync.errors.PysyncError`), so there is
still one hierarchy with one root; they live here because no client code raises or catches
them, and the browser's wheel carries no server code. A client sees them only as the HTTP
answers they become, which it reads as `pysync.errors.SyncError`.
"""

from __future__ import annotations

from typing import Any

from pysync.errors import PysyncError


class ServerError(PysyncError):
    """Base class of the errors the server answers with a status of their own.

    `message` is what the log sees; `answer_message` what the client sees (the same unless a
    subclass keeps internal detail out of the answer). `retry_after` (seconds) becomes a
    Retry-After header.
    """

    status: int = 500
    code: str = "internal_error"
    retry_after: float | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def answer_message(self) -> str:
        return self.message

    def headers(self) -> dict[str, str]:
        return {}

    def extra(self) -> dict[str, Any]:
        """Fields of the answer's `error` object besides code and message."""
        return {}


class AuthError(ServerError):
    """A request without valid credentials (HTTP 401). `code` is the machine-readable reason."""

    status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def headers(self) -> dict[str, str]:
        challenge = "Bearer" if self.code == "missing_token" else 'Bearer error="invalid_token"'
        return {"WWW-Authenticate": challenge}


class AuthUnavailable(ServerError):
    """The token could not be checked right now (the JWKS endpoint is unreachable): HTTP 503.
    The answer does not repeat why (the log has it)."""

    retry_after: float
    status = 503
    code = "auth_unavailable"
    answer_message = "the token cannot be checked right now"

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(ServerError):
    """Too many requests from one user: retry after `retry_after` seconds (HTTP 429)."""

    retry_after: float
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded: retry after {retry_after:.1f} s")
        self.retry_after = retry_after


class MutationGap(ServerError):
    """A push whose first new mutation id is not last_mutation_id + 1: nothing was applied
    (HTTP 409, with the id expected)."""

    status = 409
    code = "mutation_gap"

    def __init__(self, expected: int) -> None:
        super().__init__(f"mutation ids must continue at {expected}")
        self.expected = expected

    def extra(self) -> dict[str, Any]:
        return {"expected": self.expected}


class ClientForbidden(ServerError):
    """The client_id belongs to another user (HTTP 403; the answer names neither)."""

    status = 403
    code = "forbidden"
    answer_message = "this client_id belongs to another user"


class StoreUnavailable(ServerError):
    """DynamoDB kept throttling or could not be reached after retries; nothing was applied
    twice, retry later (HTTP 503 with Retry-After)."""

    retry_after: float
    status = 503
    code = "store_unavailable"
    answer_message = "the data store is busy, retry later"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the store is busy: retry after {retry_after:g} s")
        self.retry_after = retry_after
