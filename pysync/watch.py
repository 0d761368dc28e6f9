"""Watchers: who hears of committed changes, and what they receive (`Change`)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pysync.values import Record

log = logging.getLogger("pysync.store")

Origin = Literal["local", "tab", "server"]


@dataclass(frozen=True)
class Change:
    """What a watcher receives: a record that changed, and where the change came from."""

    collection: str
    key: str
    value: Record | None  # None: deleted
    origin: Origin


Watcher = Callable[[list[Change]], Any]


class Watchers:
    """The callbacks of one open database, each for one collection or (None) for all."""

    def __init__(self) -> None:
        self._watchers: list[tuple[str | None, Watcher]] = []
        self._tasks: set[asyncio.Future[Any]] = set()  # coroutine watchers still running

    def add(self, callback: Watcher, collection: str | None) -> Callable[[], None]:
        """Register `callback`; returns a function that unsubscribes it."""
        item = (collection, callback)
        self._watchers.append(item)

        def unsubscribe() -> None:
            if item in self._watchers:
                self._watchers.remove(item)

        return unsubscribe

    def notify(self, changes: list[Change]) -> None:
        """Call every watcher concerned; a coroutine is scheduled, never awaited here (the
        caller may be inside a transaction's complete event). A failure is only logged."""
        for collection, callback in list(self._watchers):
            mine = [c for c in changes if collection is None or c.collection == collection]
            if not mine:
                continue
            try:
                result = callback(mine)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("a watcher failed")
