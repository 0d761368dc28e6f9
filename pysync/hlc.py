"""Hybrid logical clock: timestamps that order events across devices despite clock skew.

A stamp is the string "<wall ms, 15 digits>:<counter, 6 digits>:<node>", so stamps compare
correctly as plain strings (DynamoDB and IndexedDB order them the same way Python does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pysync.errors import PysyncError

# A stamp further ahead of the server's clock than this is replaced by the server's own
# stamp (clamped), so one device with a fast clock cannot win every conflict; the feed
# observes stamps up to the same bound.
MAX_CLOCK_SKEW_MS = 60_000
_WALL_DIGITS = 15
_COUNTER_DIGITS = 6
_MAX_COUNTER = 10**_COUNTER_DIGITS - 1


class ClockError(PysyncError):
    """A malformed stamp, or a clock that cannot advance."""


@dataclass(frozen=True, order=True)
class Stamp:
    wall_ms: int
    counter: int
    node: str

    def __str__(self) -> str:
        return f"{self.wall_ms:0{_WALL_DIGITS}d}:{self.counter:0{_COUNTER_DIGITS}d}:{self.node}"

    @classmethod
    def parse(cls, text: str) -> Stamp:
        parts = text.split(":", 2) if isinstance(text, str) else []
        if (len(parts) != 3 or len(parts[0]) != _WALL_DIGITS
                or len(parts[1]) != _COUNTER_DIGITS or not parts[0].isdigit()
                or not parts[1].isdigit() or not parts[2] or len(parts[2]) > 64):
            raise ClockError(f"malformed HLC stamp {text!r}")
        return cls(int(parts[0]), int(parts[1]), parts[2])


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class HybridClock:
    """One node's clock. `now()` stamps a local event; `observe()` merges a remote stamp."""

    def __init__(self, node: str, clock: Callable[[], int] = wall_clock_ms,
                 last: Stamp | None = None) -> None:
        self.node = node
        self._clock = clock
        self._wall = last.wall_ms if last else 0
        self._counter = last.counter if last else 0

    def now(self) -> Stamp:
        physical = self._clock()
        if physical > self._wall:
            self._wall, self._counter = physical, 0
        else:
            self._counter += 1
        return self._stamp()

    def observe(self, remote: Stamp) -> Stamp:
        physical = self._clock()
        wall = max(physical, self._wall, remote.wall_ms)
        if wall == self._wall == remote.wall_ms:
            counter = max(self._counter, remote.counter) + 1
        elif wall == self._wall:
            counter = self._counter + 1
        elif wall == remote.wall_ms:
            counter = remote.counter + 1
        else:
            counter = 0
        self._wall, self._counter = wall, counter
        return self._stamp()

    def _stamp(self) -> Stamp:
        if self._counter > _MAX_COUNTER:
            raise ClockError("HLC counter overflow: more than a million events in one ms")
        return Stamp(self._wall, self._counter, self.node)
