"""SyncClient: the loop that keeps a local Database in sync with the server.

One task per round: push the outbox (POST /v1/push) until it is empty, then pull
(GET /v1/pull) until `has_more` is false. Rounds are triggered by local writes (the store's
watch), by pokes from the server (an SSE stream, second task), by the browser coming back
online, and by `sync_now()`. A failed round is retried after a backoff (pysync.engine).

Only one tab per database syncs: the client holds a Web Lock named after the database; the
other tabs' clients wait for it and see the changes through the store's BroadcastChannel.
The browser (online state, Web Locks, online/offline events) is reached only through a
pysync.browser Platform: the database's storage's by default, so on CPython over the
in-memory twin the same client runs unchanged.

Decisions live in pysync.engine (pure); this module only does the I/O around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from pysync.browser import IN_BROWSER, Platform
from pysync.engine import Answer, Backoff, SSEDecoder, classify
from pysync.errors import ProtocolError, SyncError
from pysync.protocol import (
    MAX_MUTATIONS_PER_PUSH,
    EventsTicket,
    PullResponse,
    PushResponse,
    dumps,
    float_if_exact,
    loads,
)
from pysync.replica import Replica
from pysync.store import Change, Database

log = logging.getLogger("pysync.client")

TokenProvider = Callable[[], Awaitable[str]]
StatusCallback = Callable[["SyncStatus"], Any]

CURSOR = "cursor"  # meta key of the pull cursor, written with the changes it covers
REQUEST_TIMEOUT = httpx.Timeout(30.0)
# The server sends a heartbeat every 15 s: three missed ones mean the stream is dead.
EVENTS_TIMEOUT = httpx.Timeout(30.0, read=50.0)


@dataclass(frozen=True)
class SyncStatus:
    online: bool = True  # the browser says so and the last request got an answer
    leader: bool = False  # this tab holds the lock and syncs; other tabs wait
    syncing: bool = False
    pending: int = 0  # local changes not yet acknowledged by the server
    last_error: str | None = None  # the last failure, until a round succeeds
    # The last failure of the pokes stream (ticket or connection), until it connects again:
    # meanwhile changes from elsewhere arrive only with the next round.
    events_error: str | None = None


def dev_token_provider(base_url: str, user: str,
                       http: httpx.AsyncClient | None = None) -> TokenProvider:
    """A token provider for a server in dev mode: POST /v1/dev/token {"user": user}."""

    async def provide() -> str:
        client = http or _default_http()
        try:
            r = await client.post(f"{base_url.rstrip('/')}/v1/dev/token", json={"user": user},
                                  timeout=REQUEST_TIMEOUT)
        finally:
            if http is None:
                await client.aclose()
        if r.status_code != 200:
            raise SyncError("dev_token", f"dev token: HTTP {r.status_code}", status=r.status_code)
        return str(r.json()["token"])

    return provide


def _default_http() -> httpx.AsyncClient:
    if not IN_BROWSER:
        return httpx.AsyncClient()
    from pysync.transport import FetchTransport
    return httpx.AsyncClient(transport=FetchTransport())


class SyncClient:
    """Syncs `db` with the server at `base_url`; `token_provider()` returns a bearer token
    (it is asked again after a 401). `platform`: the browser glue (default: the one of the
    database's storage, see pysync.browser)."""

    def __init__(self, db: Database, base_url: str, token_provider: TokenProvider, *,
                 on_status: StatusCallback | None = None, http: httpx.AsyncClient | None = None,
                 use_lock: bool = True, push_limit: int = MAX_MUTATIONS_PER_PUSH,
                 pull_limit: int = 500, backoff: Backoff | None = None,
                 platform: Platform | None = None) -> None:
        self.db = db
        self._replica = Replica(db)  # the outbox, server changes and meta of `db`
        self._platform = platform or db.storage.platform
        self.base_url = base_url.rstrip("/")
        self.token_provider = token_provider
        self.on_status = on_status
        self.use_lock = use_lock
        self.push_limit = push_limit
        self.pull_limit = pull_limit
        self.status = SyncStatus(online=self._browser_online())
        self._backoff = backoff or Backoff()
        self._events_backoff = Backoff(base_s=1.0)
        self._http = http
        self._own_http = http is None
        self._token: str | None = None
        self._token_lock = asyncio.Lock()
        self._need_push = False
        self._need_pull = False
        self._wake = asyncio.Event()  # a round is wanted
        self._kick = asyncio.Event()  # cut a backoff short (online again, sync_now)
        self._waiters: list[asyncio.Future[SyncStatus]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._events_task: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self._release_lock: Any = None
        self._running = False

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start syncing in the background. When it returns, `status.leader` tells whether
        this tab syncs or waits for the tab that does (and takes over when that one stops)."""
        if self._running:
            return
        self._running = True
        if self._http is None:
            self._http = _default_http()
        self._unwatch = self.db.watch(self._on_change)
        self._listen_network()
        # Known when start() returns: this tab syncs, or another one does and this waits.
        leader = await self._acquire_lock(if_available=True)
        self._set(leader=leader)
        self._spawn(self._main(leader))
        await self._refresh_pending()

    async def stop(self) -> None:
        """Stop syncing; pending changes stay in the outbox for the next start."""
        self._running = False
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._events_task = None
        if self._release_lock is not None:
            self._release_lock()
            self._release_lock = None
        self._unlisten_network()
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(self.status)
        self._waiters.clear()
        self._set(leader=False, syncing=False)

    async def sync_now(self) -> SyncStatus:
        """Push and pull now (skipping any backoff); returns the status after that round.
        Raises the round's SyncError if it failed (code "offline" while the browser is
        offline: the changes stay queued). In a tab that does not hold the sync lock
        it returns at once: the tab that holds it syncs."""
        if not self._running or not self.status.leader:
            return self.status
        waiter: asyncio.Future[SyncStatus] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._want(push=True, pull=True, kick=True)
        return await waiter

    # ---- the rounds ---------------------------------------------------------------------

    async def _main(self, leader: bool) -> None:
        if not leader:
            await self._acquire_lock(if_available=False)
        self._set(leader=True)
        self._restart_events()
        self._want(push=True, pull=True)
        while True:
            await self._wake.wait()
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            if not self._browser_online():
                self._set(online=False)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(SyncError("offline", "the browser is offline"))
                continue  # the online event wakes us
            error = await self._round()
            for waiter in waiters:
                if not waiter.done():
                    if error is None:
                        waiter.set_result(self.status)
                    else:
                        waiter.set_exception(error)
            if error is not None and error.transient:
                await self._pause(self._backoff.next(error.retry_after))
            elif error is not None:
                await self._pause(self._backoff.cap_s)  # not retryable as is: retry slowly

    async def _round(self) -> SyncError | None:
        push, pull = self._need_push, self._need_pull
        self._need_push = self._need_pull = False
        self._set(syncing=True)
        error: SyncError | None = None
        try:
            if push:
                try:
                    await self._push_all()
                except SyncError as e:
                    if e.transient:
                        raise
                    error = e  # e.g. mutation_gap: still worth pulling
            if pull:
                applied = await self._pull_all()
                if applied and push and await self.db.pending_count():
                    # Entries held back until a record's version was known may go now.
                    self._want(push=True)
        except SyncError as e:
            error = e
        except ProtocolError as e:  # a 200 whose body is not what protocol v1 says
            error = _malformed(e)
        except httpx.HTTPError as e:  # a body that broke off midway, for instance
            error = SyncError("unreachable", f"the server could not be reached: {e}")
        except Exception as e:  # a bug or a closed database: report it, retry slowly
            log.exception("sync round failed")
            error = SyncError("client_error", f"{type(e).__name__}: {e}", transient=False)
        if error is not None:
            self._need_push |= push
            self._need_pull |= pull
            log.info("sync round failed: %s", error)
            self._set(syncing=False, online=error.code != "unreachable" and self._browser_online(),
                      last_error=f"{error.code}: {error.message}")
        else:
            self._backoff.reset()
            self._set(syncing=False, online=True, last_error=None)
        await self._refresh_pending()
        return error

    async def _push_all(self) -> None:
        renumbered = False
        while True:
            request = await self._replica.take(self.push_limit)
            if not request.mutations:
                return
            try:
                response = PushResponse.from_json(
                    await self._request("POST", "/v1/push", body=request.to_json()))
            except SyncError as e:
                if e.code == "mutation_gap" and e.expected is not None and not renumbered \
                        and e.expected < request.mutations[0].id:
                    # The server forgot this client (its tables were re-created): give the
                    # unacknowledged entries ids from the one it expects, and push again.
                    count = await self._replica.renumber(e.expected)
                    log.warning("the server expects mutation id %d: %d outbox entries "
                                "renumbered from it", e.expected, count)
                    renumbered = True
                    continue
                await self._replica.release()
                raise
            except Exception:
                # Same ids and content next time: the server answers "duplicate" for any
                # mutation that did get through, so a retry is exactly-once.
                await self._replica.release()
                raise
            await self._replica.acknowledge(response)
            await self._refresh_pending()

    async def _pull_all(self) -> int:
        cursor = await self._replica.get_meta(CURSOR)
        applied = 0
        reset = False
        while True:
            params = {"client_id": self.db.client_id, "limit": str(self.pull_limit)}
            if cursor:
                params["cursor"] = cursor
            page = PullResponse.from_json(await self._request("GET", "/v1/pull", params=params))
            if page.reset:
                if cursor is None or reset:
                    raise SyncError("reset_loop", "the server reset a pull without a cursor",
                                    transient=False)
                # Start over from a snapshot. The outbox stays: pending edits are replayed
                # over the snapshot; confirmed records it lacks are dropped at its end.
                reset = True
                cursor = None
                await self._replica.begin_resync({CURSOR: None})
                continue
            # The cursor is stored in the same transaction as the changes it covers; the
            # last page also ends a resync in progress (the same transaction again).
            await self._replica.apply_server_changes(page.changes, {CURSOR: page.cursor},
                                                     complete=not page.has_more)
            applied += len(page.changes)
            cursor = page.cursor
            if not page.has_more:
                return applied

    async def _request(self, method: str, path: str, *, body: Any = None,
                       params: dict[str, str] | None = None) -> Any:
        assert self._http is not None
        token: str | None = None
        for attempt in range(2):
            token = await self._bearer(stale=token if attempt else None)
            headers = {"Authorization": f"Bearer {token}"}
            content = None
            if body is not None:
                content = dumps(body).encode()
                headers["Content-Type"] = "application/json"
            try:
                r = await self._http.request(method, self.base_url + path, content=content,
                                             params=params, headers=headers,
                                             timeout=REQUEST_TIMEOUT)
            except httpx.TransportError as e:
                raise SyncError("unreachable", f"the server could not be reached: {e}") from None
            answer = classify(r.status_code, _parse(r.content), r.headers.get("retry-after"))
            if answer.verdict == "ok":
                # Strictly, and every digit kept: a fraction a float cannot hold exactly
                # becomes a Decimal. A body that is not JSON is ProtocolError.
                return loads(r.content, parse_float=float_if_exact)
            if answer.verdict == "reauth" and attempt == 0:
                continue
            raise _error(answer)
        raise AssertionError("unreachable")

    async def _bearer(self, stale: str | None = None) -> str:
        """The token; a new one if `stale` (refused with a 401) is still the current one.

        Requests refused at the same time (a push and the events ticket) ask the provider
        once: the lock serialises them, and the later ones find the token already replaced.
        """
        async with self._token_lock:
            if self._token is None or (stale is not None and self._token == stale):
                try:
                    self._token = await self.token_provider()
                except SyncError:
                    raise
                except Exception as e:
                    raise SyncError("no_token", f"the token provider failed: {e}") from None
            return self._token

    # ---- triggers -----------------------------------------------------------------------

    def _want(self, *, push: bool = False, pull: bool = False, kick: bool = False) -> None:
        self._need_push |= push
        self._need_pull |= pull
        self._wake.set()
        if kick:
            self._kick.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep for a backoff, unless the browser comes back online or sync_now is called."""
        self._kick.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), seconds)
        self._wake.set()

    def _on_change(self, changes: list[Change]) -> None:
        if any(c.origin != "server" for c in changes):
            self._want(push=True)
            self._spawn(self._refresh_pending())

    def _on_online(self, _event: Any = None) -> None:
        self._set(online=True)
        if self.status.leader:
            self._restart_events()  # the old stream may be dead without knowing it
            self._want(push=True, pull=True, kick=True)

    def _on_offline(self, _event: Any = None) -> None:
        self._set(online=False)

    # ---- pokes --------------------------------------------------------------------------

    def _restart_events(self) -> None:
        if self._events_task is not None:
            self._events_task.cancel()
        self._events_task = self._spawn(self._events())

    async def _events(self) -> None:
        """Keep one pokes stream open, for as long as the client runs: every failure is
        reported in `status.events_error` and retried after a backoff, never the end."""
        while True:
            retry_after: float | None = None
            try:
                await self._listen()
                error = None
            except asyncio.CancelledError:
                raise
            except SyncError as e:
                error, retry_after = e, e.retry_after
            except ProtocolError as e:
                error = _malformed(e)
            except httpx.HTTPError as e:
                error = SyncError("unreachable", f"the events stream was lost: {e}")
            except Exception as e:  # a bug: the stream must come back all the same
                log.exception("events stream failed")
                error = SyncError("client_error", f"{type(e).__name__}: {e}")
            if error is not None:
                log.info("events stream: %s", error)
                self._set(events_error=f"{error.code}: {error.message}")
            await asyncio.sleep(self._events_backoff.next(retry_after))

    async def _listen(self) -> None:
        """One SSE connection: a single-use ticket, then `poke` events until it ends."""
        assert self._http is not None
        ticket = EventsTicket.from_json(await self._request("POST", "/v1/events/ticket"))
        async with self._http.stream("GET", self.base_url + "/v1/events",
                                     params={"ticket": ticket.ticket},
                                     timeout=EVENTS_TIMEOUT) as r:
            if r.status_code != 200:
                raise _error(classify(r.status_code, _parse(await r.aread()),
                                      r.headers.get("retry-after")))
            self._events_backoff.reset()
            self._set(events_error=None)
            decoder = SSEDecoder()
            async for text in r.aiter_text():
                if any(e.event == "poke" for e in decoder.feed(text)):
                    self._want(pull=True)

    # ---- browser glue -------------------------------------------------------------------

    def _browser_online(self) -> bool:
        return self._platform.online()

    async def _acquire_lock(self, if_available: bool) -> bool:
        """Take the database's sync lock; False if `if_available` and another tab holds it.
        Held until stop() calls the release it returns."""
        if not self.use_lock:
            return True
        release = await self._platform.lock(f"pysync:sync:{self.db.name}", if_available)
        if release is None:
            return False
        self._release_lock = release
        return True

    def _listen_network(self) -> None:
        if self._unlisten is None:
            self._unlisten = self._platform.listen(self._on_online, self._on_offline)

    def _unlisten_network(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None

    # ---- status -------------------------------------------------------------------------

    async def _refresh_pending(self) -> None:
        try:
            pending = await self.db.pending_count()
        except Exception:  # the database closed under us: nothing to report
            return
        self._set(pending=pending)

    def _set(self, **changes: Any) -> None:
        status = replace(self.status, **changes)
        if status == self.status:
            return
        self.status = status
        if self.on_status is not None:
            try:
                result = self.on_status(status)
                if asyncio.iscoroutine(result):
                    self._spawn(result)
            except Exception:
                log.exception("the status callback failed")

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sync task failed", exc_info=task.exception())


def _parse(content: bytes) -> Any:
    """An error answer's body, for its code and message; None if it is not JSON."""
    try:
        return loads(content) if content else None
    except ProtocolError:
        return None


def _error(answer: Answer) -> SyncError:
    return SyncError(answer.code or f"http_{answer.status}", answer.message,
                     status=answer.status, transient=answer.verdict == "retry",
                     retry_after=answer.retry_after, expected=answer.expected)


def _malformed(e: ProtocolError) -> SyncError:
    """A 200 answer that does not follow protocol v1 (a broken proxy, a server bug): nothing
    of it was applied; retried after the backoff like a server error."""
    return SyncError(e.code, f"the server's answer is malformed: {e.message}")
