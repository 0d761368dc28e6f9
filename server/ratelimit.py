"""Per-user rate limiting: a token bucket per user, kept in this process's memory.

Each user's bucket holds up to `burst` tokens and refills at `rate` tokens per second; a
request takes one token or is refused with the time until one is back. In-process means each
server process counts on its own: N processes behind a load balancer allow N times the rate,
which is fine for its purpose (stopping one runaway client from hogging a process). Pure logic
with an injectable clock, so it is tested without waiting.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import Request

from server.context import context_of
from server.errors import RateLimited

# Buckets of idle users are dropped past this many, oldest first: a dropped bucket is a full
# bucket, so forgetting one never lets a user exceed the rate by more than one burst.
MAX_TRACKED_USERS = 100_000


class RateLimiter:
    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, user: str) -> None:
        """Spend one token of `user`'s bucket, or raise RateLimited(retry_after)."""
        if not self.enabled:
            return
        now = self._clock()
        tokens, last = self._buckets.pop(user, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[user] = (tokens, now)
            raise RateLimited((1.0 - tokens) / self.rate)
        self._buckets[user] = (tokens - 1.0, now)
        while len(self._buckets) > MAX_TRACKED_USERS:
            self._buckets.popitem(last=False)


def rate_limiter_of(request: Request) -> RateLimiter:
    """The app's one RateLimiter (shared by every route that counts requests), owned by its
    ServerContext."""
    return context_of(request).rate_limiter
