"""The rest of the browser, for the sync client: online state, Web Locks, network events.

With idb.py (IndexedDB, BroadcastChannel) and transport.py (fetch), this is the only module
that touches `js` / `pyodide` (design.md section 2). The sync client reaches the browser
only through a `Platform`:

- `BrowserPlatform`: `navigator.onLine`, `navigator.locks` (one syncing tab per database)
  and the window's online / offline events, under Pyodide.
- `LocalPlatform`: the same on CPython, over the in-memory storage twin (pysync.memdb):
  online unless a test says otherwise (`set_online`), and one lock per name, shared by every
  client on the same storage, as the tabs of one browser profile share their Web Locks.

A storage carries its platform (`storage.platform`): the browser's IndexedDB carries the
browser's, a `MemoryStorage` its own `LocalPlatform`.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

# Pyodide reports its platform as emscripten: the one test of "are we in a browser".
IN_BROWSER = sys.platform == "emscripten"

Release = Callable[[], None]


class Platform(Protocol):
    """What the sync client needs of the browser around it."""

    def online(self) -> bool:
        """Whether the browser believes it is online (navigator.onLine)."""
        ...

    async def lock(self, name: str, if_available: bool) -> Release | None:
        """Hold the exclusive lock `name` until the returned function is called; None if
        `if_available` and another holder has it. Cancelling the wait gives it up."""
        ...

    def listen(self, on_online: Callable[[], None], on_offline: Callable[[], None]
               ) -> Callable[[], None]:
        """Call `on_online` / `on_offline` when the browser's network state changes;
        returns the function that stops listening."""
        ...


class BrowserPlatform:
    """The browser's own: navigator.onLine, navigator.locks, window online/offline."""

    def online(self) -> bool:
        import js

        return bool(js.navigator.onLine)

    async def lock(self, name: str, if_available: bool) -> Release | None:
        """A Web Lock, held while a promise we resolve on release is pending. Without
        `navigator.locks` (not a secure context) every tab syncs: granted at once."""
        import js
        from pyodide.ffi import create_once_callable, to_js

        if not hasattr(js.navigator, "locks"):
            return _nothing
        granted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        resolvers: list[Any] = []

        def executor(resolve: Any, _reject: Any) -> None:
            resolvers.append(resolve)

        held = js.Promise.new(create_once_callable(executor))

        def on_grant(lock: Any) -> Any:
            if granted.done():  # cancelled meanwhile: let the lock go at once
                return None
            # Not available: the callback gets JS null, which Pyodide passes as `jsnull`.
            ok = lock is not None and bool(js.Boolean(lock))
            granted.set_result(ok)
            return held if ok else None

        options = to_js({"ifAvailable": if_available}, dict_converter=js.Object.fromEntries)
        js.navigator.locks.request(name, options, create_once_callable(on_grant))
        try:
            ok = await granted  # (the once-callables destroy themselves after their call)
        except asyncio.CancelledError:
            if not granted.done():
                granted.cancel()
            raise
        if not ok:
            return None
        resolve = resolvers[0]
        return lambda: resolve()

    def listen(self, on_online: Callable[[], None], on_offline: Callable[[], None]
               ) -> Callable[[], None]:
        import js
        from pyodide.ffi import create_proxy

        proxies = []
        for name, handler in (("online", on_online), ("offline", on_offline)):
            proxy = create_proxy(lambda _event, handler=handler: handler())
            js.window.addEventListener(name, proxy)
            proxies.append((name, proxy))

        def unlisten() -> None:
            for name, proxy in proxies:
                js.window.removeEventListener(name, proxy)
                proxy.destroy()
            proxies.clear()

        return unlisten


def _nothing() -> None:
    return None


class LocalPlatform:
    """The browser's glue on CPython, for clients on one in-memory storage (one "profile").

    Online until `set_online(False)`; the events go out, as the browser's do, from the event
    loop after the change. Locks are exclusive per name and granted in request order.
    """

    def __init__(self) -> None:
        self._online = True
        self._listeners: list[tuple[Callable[[], None], Callable[[], None]]] = []
        self._held: set[str] = set()
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def online(self) -> bool:
        return self._online

    def set_online(self, online: bool) -> None:
        """Flip the online state (as `context.set_offline` does in a browser test)."""
        if online == self._online:
            return
        self._online = online
        loop = asyncio.get_running_loop()
        for on_online, on_offline in list(self._listeners):
            loop.call_soon(on_online if online else on_offline)

    def listen(self, on_online: Callable[[], None], on_offline: Callable[[], None]
               ) -> Callable[[], None]:
        item = (on_online, on_offline)
        self._listeners.append(item)

        def unlisten() -> None:
            if item in self._listeners:
                self._listeners.remove(item)

        return unlisten

    def holds(self, name: str) -> bool:
        """Whether someone holds the lock `name` (for tests)."""
        return name in self._held

    async def lock(self, name: str, if_available: bool) -> Release | None:
        waiters = self._waiters.setdefault(name, deque())
        if name not in self._held and not waiters:
            self._held.add(name)
            return self._releaser(name)
        if if_available:
            return None
        # A future of the loop that waits (a storage outlives event loops: a crash test
        # may reopen it from another asyncio.run).
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # granted as we were cancelled
                self._releaser(name)()
            elif turn in waiters:
                waiters.remove(turn)
            raise
        return self._releaser(name)

    def _releaser(self, name: str) -> Release:
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            waiters = self._waiters.get(name, deque())
            while waiters:
                turn = waiters.popleft()
                if not turn.done():
                    turn.set_result(None)  # the lock passes to the next in line
                    return
            self._held.discard(name)

        return release
