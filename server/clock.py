"""The server's hybrid logical clocks: one for the push core, one for the change feed.

Each is owned by whoever stamps with it (the ServerContext for push, the Ingestor for the
feed), never by the module, so that a new app or feed starts with a clock of its own and
tests need no process-wide state to reset.
"""

from __future__ import annotations

import secrets
import threading

from pysync.hlc import MAX_CLOCK_SKEW_MS, HybridClock, Stamp, wall_clock_ms


class ServerClock:
    """An HLC shared by the threads of one owner (the push workers, or a feed's ingestor)."""

    def __init__(self, node: str) -> None:
        self._lock = threading.Lock()
        self._clock = HybridClock(node)

    @classmethod
    def for_push(cls) -> ServerClock:
        """The push core's clock: a node name of its own per server (it breaks HLC ties)."""
        return cls(f"server-{secrets.token_hex(4)}")

    @property
    def node(self) -> str:
        return self._clock.node

    def now(self) -> str:
        with self._lock:
            return str(self._clock.now())

    def after(self, stamp: str) -> str:
        """A stamp newer than both `stamp` and this clock."""
        with self._lock:
            return str(self._clock.observe(Stamp.parse(stamp)))

    def accept(self, text: str | None) -> str:
        """The stamp a mutation competes with: its own, the server's if null or too far
        ahead. Raises ClockError if malformed."""
        if text is None:
            return self.now()
        stamp = Stamp.parse(text)
        if stamp.wall_ms > wall_clock_ms() + MAX_CLOCK_SKEW_MS:
            return self.now()
        with self._lock:
            self._clock.observe(stamp)
        return text

    def stamp_after(self, observed: str | None) -> str:
        """The feed's stamp for a write by another program: newer than `observed` (the
        record's newest `_hlc` before or in that write) and than this clock, so the write
        wins under merge and lww as the one that came last. A pysync push may carry a stamp
        up to MAX_CLOCK_SKEW_MS ahead: observed like `accept` does. One further ahead was not
        written by pysync; the stamp goes just above it without dragging this clock there."""
        with self._lock:
            if observed is None:
                return str(self._clock.now())
            seen = Stamp.parse(observed)  # well-formed: server.changes.newest_hlc
            if seen.wall_ms <= wall_clock_ms() + MAX_CLOCK_SKEW_MS:
                return str(self._clock.observe(seen))
            return str(HybridClock(self._clock.node, lambda: 0, seen).now())
