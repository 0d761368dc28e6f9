"""The sync client's decisions, without I/O: what an HTTP answer means, how long to wait,
and how to read a Server-Sent Events stream. `pysync.client` does the I/O around them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal

Verdict = Literal["ok", "retry", "reauth", "gap", "fatal"]


@dataclass(frozen=True)
class Answer:
    """What to do with one HTTP answer of the sync API."""

    verdict: Verdict
    status: int
    code: str | None = None
    message: str = ""
    retry_after: float | None = None
    expected: int | None = None  # mutation_gap: the id the server wants next


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds: delta-seconds, or an HTTP date (relative to `now`, epoch s)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    if now is None:
        return None  # a date needs a clock; without one the backoff schedule decides
    return max(0.0, when - now)


def classify(status: int, body: Any, retry_after: str | None = None) -> Answer:
    """The verdict for an answer of /v1/push, /v1/pull or /v1/events/ticket.

    Transient (429, 5xx, and 408) is retried after a backoff, honouring Retry-After; 401 asks
    for a fresh token; 409 mutation_gap cannot be fixed by retrying the same request; any
    other 4xx is a bug or a misconfiguration: retrying would only repeat it.
    """
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    wait = parse_retry_after(retry_after)
    if 200 <= status < 300:
        return Answer("ok", status)
    if status == 401:
        return Answer("reauth", status, code, message)
    if status == 409 and code == "mutation_gap":
        expected = error.get("expected") if isinstance(error, dict) else None
        return Answer("gap", status, code, message,
                      expected=expected if isinstance(expected, int) else None)
    if status in (408, 429) or status >= 500:
        return Answer("retry", status, code, message or f"HTTP {status}", wait)
    return Answer("fatal", status, code, message or f"HTTP {status}")


class Backoff:
    """Exponential backoff with full jitter, capped; Retry-After wins when it is longer.

    Full jitter (a random delay in [base*2^n / 2, base*2^n]) keeps many pages that lost the
    server at the same moment from coming back at the same moment.
    """

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0,
                 rand: Callable[[], float] = random.random) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.rand = rand
        self.failures = 0

    def next(self, retry_after: float | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2.0 ** self.failures)
        self.failures += 1
        delay = ceiling / 2 + ceiling / 2 * self.rand()
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    """Incremental text/event-stream parser (the WHATWG rules: fields, comments, CR/LF/CRLF).

    Chunks may split lines anywhere; `feed` returns the events completed by this chunk.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: str) -> list[SSEEvent]:
        text = self._buffer + chunk
        # A trailing CR may be the first half of CRLF: keep it until the next chunk.
        cut = len(text) - 1 if text.endswith("\r") else len(text)
        text, self._buffer = text[:cut], text[cut:]
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._buffer = lines.pop() + self._buffer
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(SSEEvent(self._event or "message", "\n".join(self._data),
                                           self._id))
                self._event, self._data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
            elif name == "id" and "\0" not in value:
                self._id = value
            elif name == "retry" and value.isdigit():
                self.retry_ms = int(value)
        return events
