"""DynamoDB calls retried with backoff when DynamoDB throttles, then StoreUnavailable.

botocore's own retries are off (server/db.py), so one policy decides: a few quick retries
with jittered exponential backoff, then the push answers 503 with Retry-After. Retrying is
safe for every call we make: writes are conditional on what we read, so a retried write can
never apply twice (docs/server.md, "Exactly once").
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from botocore.exceptions import ClientError

from pysync.errors import StoreUnavailable

T = TypeVar("T")

THROTTLING_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "TransactionConflictException", "TransactionInProgressException", "InternalServerError",
    "ServiceUnavailable",
})
# Reasons inside a TransactionCanceledException that mean "try again", not "condition failed".
RETRYABLE_CANCELLATIONS = frozenset({
    "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded",
    "RequestLimitExceeded", "None",
})


@dataclass(frozen=True)
class Backoff:
    attempts: int = 6
    base: float = 0.025  # seconds; doubles each attempt, full jitter
    cap: float = 1.0
    retry_after: float = 1.0  # what the 503 tells the client


DEFAULT_BACKOFF = Backoff()


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


def with_retries(call: Callable[[], T], backoff: Backoff = DEFAULT_BACKOFF) -> T:
    """`call()`, retried while DynamoDB throttles; StoreUnavailable when it keeps doing so."""
    for attempt in range(backoff.attempts):
        try:
            return call()
        except ClientError as e:
            if not is_throttling(e):
                raise
            if attempt + 1 == backoff.attempts:
                raise StoreUnavailable(backoff.retry_after) from e
            time.sleep(random.uniform(0, min(backoff.cap, backoff.base * 2**attempt)))
    raise AssertionError("unreachable")
