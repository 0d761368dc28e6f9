"""The one retry boundary of every DynamoDB call on a request path.

botocore's own retries are off (server/db.py), so one policy decides. A call is retried with
jittered exponential backoff when DynamoDB throttles (or a transaction conflicts) and when
it cannot be reached or does not answer in time (connection refused or closed, connect or
read timeout: botocore's timeouts are set in server/db.py). When the attempts or the
request's trouble budget run out: StoreUnavailable, answered 503 store_unavailable with
Retry-After (server/http.py).

The bound (docs/api.md, "DynamoDB trouble"): time spent in failed attempts and in the pauses
between them counts against one budget per request (TROUBLE_BUDGET_S), shared by every call
the request makes; once it is spent no new attempt starts. The last attempt can itself take
at most CONNECT_TIMEOUT_S + READ_TIMEOUT_S, so a request meets its 503 at most
TROUBLE_BUDGET_S + CONNECT_TIMEOUT_S + READ_TIMEOUT_S (9 s) after DynamoDB stopped answering
it. Work that succeeds is never cut short: only trouble is budgeted.

Retrying is safe for every call we make. Throttled calls were not executed. A write whose
answer was lost (read timeout, closed connection) may have been executed: every write is
conditional on what was read (docs/server.md, "Exactly once"), so its retry fails the
condition instead of applying twice, and the caller reads again (a push then answers
`duplicate` for what the lost attempt applied). The few unconditional writes (an events
ticket, a poke of the log) are harmless to repeat; a ticket's redeem is a delete, so an
interrupted redeem leaves the ticket used (401 invalid_ticket: take a new one).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from server.errors import StoreUnavailable

T = TypeVar("T")

THROTTLING_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "TransactionConflictException", "TransactionInProgressException", "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",  # DynamoDB Streams: GetRecords past its rate on a shard
})
# Reasons inside a TransactionCanceledException that mean "try again", not "condition failed".
RETRYABLE_CANCELLATIONS = frozenset({
    "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded",
    "RequestLimitExceeded", "None",
})
# DynamoDB could not be reached, or did not answer in time. botocore's ConnectionError covers
# EndpointConnectionError (refused, DNS) and ConnectTimeoutError; HTTPClientError covers
# ReadTimeoutError and ConnectionClosedError (the answer was lost: the call may have run).
UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (BotoConnectionError, HTTPClientError)

# botocore's timeouts for every DynamoDB client of the server (server/db.py). A paused
# DynamoDB accepts connections (the kernel does) but never answers: the read timeout ends it.
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 5.0
# Failed attempts and backoff pauses a request may spend before it answers 503.
TROUBLE_BUDGET_S = 3.0
# The documented bound: DynamoDB trouble is answered 503 within this (docs/api.md).
STORE_TROUBLE_BOUND_S = TROUBLE_BUDGET_S + CONNECT_TIMEOUT_S + READ_TIMEOUT_S


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base: float = 0.025  # seconds; doubles each attempt, full jitter
    cap: float = 1.0
    retry_after: float = 1.0  # what the 503 tells the client when DynamoDB throttles
    unreachable_retry_after: float = 5.0  # ... when DynamoDB cannot be reached
    budget_s: float = TROUBLE_BUDGET_S  # failed attempts + pauses, per call without a request


DEFAULT_BACKOFF = RetryPolicy()
# Appenders of one scope's log racing for its anchor (server/changelog.py): not DynamoDB
# trouble but contention, settled by re-reading the head, so many quick tries.
APPEND_CONTENTION = RetryPolicy(attempts=50, base=0.002, cap=0.2)


def jitter(attempt: int, backoff: RetryPolicy = DEFAULT_BACKOFF) -> float:
    """The pause before retry number `attempt + 1`: full jitter, exponential from
    `backoff.base`, capped at `backoff.cap`. Every retry of the server pauses this way."""
    return random.uniform(0, min(backoff.cap, backoff.base * 2**attempt))


def pause(attempt: int, backoff: RetryPolicy = DEFAULT_BACKOFF) -> None:
    """Sleep `jitter(attempt, backoff)`: for retries that are not DynamoDB trouble (a
    condition lost to a concurrent writer), so they spend no trouble budget."""
    time.sleep(jitter(attempt, backoff))


@dataclass
class TroubleBudget:
    """Seconds of DynamoDB trouble one request has left (shared by its threads)."""

    left: float
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spend(self, seconds: float) -> float:
        with self.lock:
            self.left -= seconds
            return self.left


_REQUEST_BUDGET: ContextVar[TroubleBudget | None] = ContextVar("pysync_store_budget",
                                                                 default=None)


@contextmanager
def request_budget(seconds: float = TROUBLE_BUDGET_S) -> Iterator[TroubleBudget]:
    """One trouble budget for every with_retries call made in this context (a request),
    including threads started with its context (run_in_threadpool, asyncio.to_thread)."""
    budget = TroubleBudget(seconds)
    token = _REQUEST_BUDGET.set(budget)
    try:
        yield budget
    finally:
        _REQUEST_BUDGET.reset(token)


def error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def cancellation_codes(e: ClientError) -> list[str]:
    """The per-action reason codes of a TransactionCanceledException, in action order."""
    reasons = e.response.get("CancellationReasons") or []
    return [str(r.get("Code", "None")) for r in reasons]


def is_throttling(e: ClientError) -> bool:
    code = error_code(e)
    if code in THROTTLING_CODES:
        return True
    if code == "TransactionCanceledException":
        codes = cancellation_codes(e)
        return bool(codes) and all(c in RETRYABLE_CANCELLATIONS for c in codes) and \
            any(c != "None" for c in codes)
    return False


def with_retries(call: Callable[[], T], backoff: RetryPolicy = DEFAULT_BACKOFF) -> T:
    """`call()`, retried while DynamoDB throttles or cannot be reached; StoreUnavailable when
    the attempts or the trouble budget (the request's, else this call's own) run out."""
    budget = current_budget(backoff)
    for attempt in range(backoff.attempts):
        started = time.monotonic()
        try:
            return call()
        except ClientError as e:
            if not is_throttling(e):
                raise
            cause: Exception = e
            retry_after = backoff.retry_after
        except UNREACHABLE_ERRORS as e:
            cause, retry_after = e, backoff.unreachable_retry_after
        left = budget.spend(time.monotonic() - started)
        wait = jitter(attempt, backoff)
        if attempt + 1 == backoff.attempts or left - wait <= 0:
            raise StoreUnavailable(retry_after) from cause
        budget.spend(wait)
        time.sleep(wait)
    raise AssertionError("unreachable")


def current_budget(backoff: RetryPolicy = DEFAULT_BACKOFF) -> TroubleBudget:
    """The request's trouble budget, or a fresh one for work outside a request."""
    return _REQUEST_BUDGET.get() or TroubleBudget(backoff.budget_s)


def batch_get_all(client: Any, request_items: dict[str, Any],
                  backoff: RetryPolicy = DEFAULT_BACKOFF) -> dict[str, list[dict[str, Any]]]:
    """BatchGetItem until no key is left unprocessed: each call through with_retries, and
    UnprocessedKeys (DynamoDB's partial throttling) asked again after a backoff pause, like a
    throttled call; StoreUnavailable if keys are still left after the attempts or the budget.
    Returns the items found, per table."""
    budget = current_budget(backoff)
    found: dict[str, list[dict[str, Any]]] = {}
    request = request_items
    for attempt in range(backoff.attempts):
        out: dict[str, Any] = with_retries(
            lambda r=request: client.batch_get_item(RequestItems=r),  # type: ignore[misc]
            backoff)
        for table, items in out.get("Responses", {}).items():
            found.setdefault(table, []).extend(items)
        request = dict(out.get("UnprocessedKeys") or {})
        if not request:
            return found
        wait = jitter(attempt, backoff)
        if budget.spend(wait) <= 0:
            break
        time.sleep(wait)
    raise StoreUnavailable(backoff.retry_after)


def batch_write_all(client: Any, request_items: dict[str, Any],
                    backoff: RetryPolicy = DEFAULT_BACKOFF) -> None:
    """BatchWriteItem until no item is left unprocessed, under the same rules as
    batch_get_all (UnprocessedItems is DynamoDB's partial throttling)."""
    budget = current_budget(backoff)
    request = request_items
    for attempt in range(backoff.attempts):
        out: dict[str, Any] = with_retries(
            lambda r=request: client.batch_write_item(RequestItems=r),  # type: ignore[misc]
            backoff)
        request = dict(out.get("UnprocessedItems") or {})
        if not request:
            return
        pause = random.uniform(0, min(backoff.cap, backoff.base * 2**attempt))
        if budget.spend(pause) <= 0:
            break
        time.sleep(pause)
    raise StoreUnavailable(backoff.retry_after)
