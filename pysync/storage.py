"""The storage seam: the small IndexedDB surface the store runs on, and its two backends.

- `IndexedDB`: the browser's IndexedDB through pysync.idb (the default under Pyodide).
- `pysync.memdb.MemoryStorage`: an in-memory twin with the browser's transaction rules
  (the default on CPython, where there is no IndexedDB).

The store issues requests with pysync.idb's descriptors (`idb.get`, `idb.get_all`, ...),
which are plain data, and only opens databases and channels through a `Storage`. A storage
also carries the browser glue the sync client needs (`platform`, see pysync.browser): a
browser profile has its own IndexedDB, Web Locks and online state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from pysync import idb
from pysync.browser import IN_BROWSER, BrowserPlatform, Platform


class Transaction(Protocol):
    """One transaction: issue requests synchronously, await `done()` once."""

    def write(self, writes: Sequence[idb.Write], *, sliced: bool = False) -> None: ...

    def read(self, requests: Sequence[idb.Read], then: Callable[[list[Any]], None]) -> None:
        ...

    def abort(self) -> None: ...

    async def done(self) -> None: ...


class Channel(Protocol):
    """A BroadcastChannel: strings to the other connections of the same name."""

    def post(self, message: str) -> None: ...

    def close(self) -> None: ...


class Connection(Protocol):
    """An open database."""

    name: str
    closed: bool

    def transaction(self, stores: Sequence[str], mode: idb.Mode = "readonly") -> Transaction:
        ...

    async def checked_write(self, stores: Sequence[str], expect: Sequence[tuple[str, Any, Any]],
                            writes: Sequence[idb.Write],
                            announce: tuple[Any, str] | None = None) -> None: ...

    def close(self) -> None: ...


class Storage(Protocol):
    """Where databases live: the browser's IndexedDB, or the in-memory twin."""

    @property
    def platform(self) -> Platform: ...

    async def open(self, name: str, version: int, upgrades: Mapping[int, Sequence[idb.Step]],
                   on_close: Callable[[str], None] | None = None) -> Connection: ...

    def channel(self, name: str, on_message: Callable[[str], None]) -> Channel: ...

    async def delete_database(self, name: str) -> None: ...


class IndexedDB:
    """The browser's IndexedDB and glue (pysync.idb, pysync.browser)."""

    def __init__(self) -> None:
        self._platform = BrowserPlatform()

    @property
    def platform(self) -> Platform:
        return self._platform

    async def open(self, name: str, version: int, upgrades: Mapping[int, Sequence[idb.Step]],
                   on_close: Callable[[str], None] | None = None) -> Connection:
        return await idb.Connection.open(name, version, upgrades, on_close)

    def channel(self, name: str, on_message: Callable[[str], None]) -> Channel:
        return idb.Channel(name, on_message)

    async def delete_database(self, name: str) -> None:
        await idb.delete_database(name)


_default: Storage | None = None


def default_storage() -> Storage:
    """The browser's IndexedDB under Pyodide; on CPython one in-memory storage for the
    process (pass your own `MemoryStorage` to keep tests apart)."""
    global _default
    if _default is None:
        if IN_BROWSER:
            _default = IndexedDB()
        else:
            from pysync.memdb import MemoryStorage

            _default = MemoryStorage()
    return _default
