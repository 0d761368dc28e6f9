"""Watchers: who hears of committed changes, and what they receive (`Change`)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from pysync.schema import split_local_name
from pysync.values import Record

log = logging.getLogger("pysync.store")

Origin = Literal["local", "tab", "server"]


@dataclass(frozen=True)
class Change:
    """What a watcher receives: a record that changed, and where the change came from.

    Inside the store `collection` is the local name (schema.local_name); a watcher gets the
    collection's own name and the record's `scope`.
    """

    collection: str
    key: str
    value: Record | None  # None: deleted
    origin: Origin
    scope: str | None = None  # a shared scope's id; None: the personal scope


def public(change: Change) -> Change:
    """The change as a watcher sees it: the collection's name and the scope apart."""
    collection, scope = split_local_name(change.collection)
    return change if scope is None else replace(change, collection=collection, scope=scope)


Watcher = Callable[[list[Change]], Any]
# A watcher of every scope (Database.watch); a collection's watcher has its own scope only.
ANY_SCOPE: Any = object()


class Watchers:
    """The callbacks of one open database, each for one collection or (None) for all."""

    def __init__(self) -> None:
        self._watchers: list[tuple[str | None, Any, Watcher]] = []
        self._tasks: set[asyncio.Future[Any]] = set()  # coroutine watchers still running

    def add(self, callback: Watcher, collection: str | None,
            scope: str | None = ANY_SCOPE) -> Callable[[], None]:
        """Register `callback` for `collection` (None: all) in `scope` (ANY_SCOPE: all);
        returns a function that unsubscribes it."""
        item = (collection, scope, callback)
        self._watchers.append(item)

        def unsubscribe() -> None:
            if item in self._watchers:
                self._watchers.remove(item)

        return unsubscribe

    def notify(self, changes: list[Change]) -> None:
        """Call every watcher concerned; a coroutine is scheduled, never awaited here (the
        caller may be inside a transaction's complete event). A failure is only logged."""
        if not self._watchers:
            return
        shown = [public(c) for c in changes]
        for collection, scope, callback in list(self._watchers):
            mine = [c for c in shown
                    if (collection is None or c.collection == collection)
                    and (scope is ANY_SCOPE or c.scope == scope)]
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
