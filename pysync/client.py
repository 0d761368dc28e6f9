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

Conflicts (pysync.conflicts): each push answer's conflicts and rejections become
`ConflictEvent`s for `on_conflict`, and a `version` collection's resolver decides what is
pushed next. The tab that syncs forwards the events, and answers the other tabs' `synced()`
and `sync_now()`, over the store's BroadcastChannel (Replica.post / listen).

Decisions live in pysync.engine and pysync.conflicts (pure); this module only does the I/O
around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from pysync import sharing
from pysync.browser import IN_BROWSER, Platform
from pysync.conflicts import ConflictEvent, MergeWatch, decide
from pysync.engine import Answer, Backoff, SSEDecoder, classify
from pysync.errors import ProtocolError, SchemaError, SyncError
from pysync.protocol import (
    FORBIDDEN,
    MAX_MUTATIONS_PER_PUSH,
    EventsTicket,
    PullResponse,
    PushResponse,
    dumps,
    float_if_exact,
    loads,
)
from pysync.replica import Acked, Replica
from pysync.schema import Strategy, split_local_name
from pysync.sharing import Member, Role, ScopeInfo
from pysync.store import Change, Database

log = logging.getLogger("pysync.client")

TokenProvider = Callable[[], Awaitable[str]]
StatusCallback = Callable[["SyncStatus"], Any]
ConflictCallback = Callable[[ConflictEvent], Any]

CURSOR = "cursor"  # meta key of the pull cursor, written with the changes it covers
REQUEST_TIMEOUT = httpx.Timeout(30.0)
# The server sends a heartbeat every 15 s: three missed ones mean the stream is dead.
EVENTS_TIMEOUT = httpx.Timeout(30.0, read=50.0)
# A tab that does not sync asks the one that does again after this long without an answer
# (that tab may have closed, and another taken over, meanwhile).
ASK_AGAIN_S = 1.0
# The status fields the syncing tab shares with the other tabs of the database.
SHARED_STATUS = ("syncing", "last_error", "events_error", "progress", "last_synced_at")


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
    # (received, total) while a pull brings a snapshot or a long run of changes: total is
    # the server's estimate ("remaining"); None when no such pull is under way.
    progress: tuple[int, int] | None = None
    last_synced_at: int | None = None  # epoch ms when a round last reached the head
    paused: bool = False  # pause() was called: no network activity until resume()


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
    database's storage, see pysync.browser). `on_conflict(event)`: called with a
    `pysync.ConflictEvent` for every local edit that did not survive as written, in every
    tab of the database (a coroutine function is scheduled)."""

    def __init__(self, db: Database, base_url: str, token_provider: TokenProvider, *,
                 on_status: StatusCallback | None = None, http: httpx.AsyncClient | None = None,
                 use_lock: bool = True, push_limit: int = MAX_MUTATIONS_PER_PUSH,
                 pull_limit: int = 500, backoff: Backoff | None = None,
                 platform: Platform | None = None,
                 on_conflict: ConflictCallback | None = None) -> None:
        self.db = db
        self._replica = Replica(db)  # the outbox, server changes and meta of `db`
        self._platform = platform or db.storage.platform
        self.base_url = base_url.rstrip("/")
        self.token_provider = token_provider
        self.on_status = on_status
        self.on_conflict = on_conflict
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
        self._paused = False
        self._leftovers = True  # conflicts a closed tab may have left to their resolver
        self._merge_watch = MergeWatch()
        self._unlisten_tabs: Callable[[], None] | None = None
        self._rounds_started = 0
        # Each waits for the end of the next round: (its number, its error, whether it pulled
        # to the head).
        self._round_ends: list[asyncio.Future[tuple[int, SyncError | None, bool]]] = []
        self._asks: dict[str, asyncio.Future[dict[str, Any]]] = {}  # this tab's, by id
        self._answering: set[str] = set()  # other tabs' asks this tab is working on

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
        self._unlisten_tabs = self._replica.listen(self._on_tab)
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
        if self._unlisten_tabs is not None:
            self._unlisten_tabs()
            self._unlisten_tabs = None
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
        self._end_round_waits(SyncError("stopped", "the sync client stopped", transient=False),
                              False)
        for ask in self._asks.values():
            if not ask.done():
                ask.cancel()
        self._asks.clear()
        self._answering.clear()
        self._set(leader=False, syncing=False, progress=None)

    async def sync_now(self) -> SyncStatus:
        """Push and pull now (skipping any backoff); returns the status after that round.
        Raises the round's SyncError if it failed (code "offline" while the browser is
        offline, "paused" while paused: the changes stay queued). In a tab that does not
        hold the sync lock it asks the tab that does, and waits for that round."""
        if not self._running:
            return self.status
        if self._paused:
            raise SyncError("paused", "the sync client is paused")
        if not self.status.leader:
            answer = await self._ask({"op": "sync_now"}, until_leader=True)
            if answer.get("error"):
                raise SyncError(str(answer["error"]), str(answer.get("message", "")))
            if answer:
                return self.status
            # This tab took over meanwhile: the round is its own.
        waiter: asyncio.Future[SyncStatus] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._want(push=True, pull=True, kick=True)
        return await waiter

    async def synced(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (the API)
        """Return once every local write made before the call, in this tab or any other tab
        of the database, is acknowledged by the server and a pull has reached the head.
        Raises SyncError("timeout") after `timeout` seconds (None: wait as long as it takes).
        Failed rounds are retried as usual meanwhile; while paused, nothing moves. In a tab
        that does not hold the sync lock, the tab that does is asked."""
        if not self._running:
            raise SyncError("not_started", "the sync client is not started", transient=False)
        try:
            async with asyncio.timeout(timeout):
                mark = await self._replica.outbox_mark()
                while not self.status.leader:
                    answer = await self._ask({"op": "synced", "mark": mark},
                                             until_leader=True)
                    if answer.get("op") == "synced_ok":
                        return
                await self._synced_here(mark)
        except TimeoutError:
            raise SyncError("timeout", f"not synced within {timeout} s") from None

    def pause(self) -> None:
        """Stop all network activity (rounds and the pokes stream) until resume(); local
        writes go on and wait in the outbox. A request already on its way finishes; no new
        one starts."""
        if self._paused:
            return
        self._paused = True
        if self._events_task is not None:
            self._events_task.cancel()
            self._events_task = None
        self._set(paused=True)

    def resume(self) -> None:
        """Restart network activity after pause(): a round pushes what waited."""
        if not self._paused:
            return
        self._paused = False
        self._set(paused=False)
        if self._running and self.status.leader:
            self._restart_events()
            self._want(push=True, pull=True, kick=True)

    # ---- shared scopes (docs/sharing.md) ------------------------------------------------

    async def create_scope(self, title: str | None = None, *, scope_id: str | None = None
                           ) -> str:
        """A new shared scope that you own; its id. Needs the network (SyncError if the
        server cannot be reached)."""
        return await sharing.create_scope(self._scope_request, title, scope_id)

    async def scopes(self) -> list[ScopeInfo]:
        """The shared scopes you are a member of, with your role in each."""
        return await sharing.list_scopes(self._scope_request)

    async def members(self, scope: str) -> list[Member]:
        """A scope's members and their roles (SyncError not_found unless you are one)."""
        return await sharing.list_members(self._scope_request, scope)

    async def share(self, scope: str, user: str, role: Role) -> None:
        """Give `user` (who has signed in to the server once) `role` in `scope`; owners
        only. Changing a member's role is the same call."""
        await sharing.share(self._scope_request, scope, user, role)

    async def unshare(self, scope: str, user: str) -> None:
        """Remove `user` from `scope` (owners remove anyone, members themselves)."""
        await sharing.unshare(self._scope_request, scope, user)

    async def _scope_request(self, method: str, path: str, *, body: Any = None) -> Any:
        if self._http is None:
            raise SyncError("not_started", "start() the sync client before managing scopes")
        return await self._request(method, path, body=body)

    # ---- the rounds ---------------------------------------------------------------------

    async def _main(self, leader: bool) -> None:
        if not leader:
            await self._acquire_lock(if_available=False)
        self._set(leader=True)
        self._leftovers = True
        self._restart_events()
        self._want(push=True, pull=True)
        while True:
            await self._wake.wait()
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            if self._paused or not self._browser_online():
                if not self._paused:
                    self._set(online=False)
                self._finish(waiters, SyncError("paused", "the sync client is paused")
                             if self._paused else
                             SyncError("offline", "the browser is offline"), False)
                continue  # resume() or the online event wakes us
            self._rounds_started += 1
            pulled = self._need_pull
            error = await self._round()
            self._finish(waiters, error, pulled)
            if error is not None and error.code == "paused":
                continue  # not a failure: resume() starts the next round
            if error is not None and error.transient:
                await self._pause(self._backoff.next(error.retry_after))
            elif error is not None:
                await self._pause(self._backoff.cap_s)  # not retryable as is: retry slowly

    def _finish(self, waiters: list[asyncio.Future[SyncStatus]], error: SyncError | None,
                pulled: bool) -> None:
        """A round ended (or could not start): tell sync_now() and synced() callers."""
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(self.status)
                else:
                    waiter.set_exception(error)
        self._end_round_waits(error, pulled)

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
        if error is not None and error.code == "paused":
            self._need_push |= push
            self._need_pull |= pull
            self._set(syncing=False, progress=None)
        elif error is not None:
            self._need_push |= push
            self._need_pull |= pull
            log.info("sync round failed: %s", error)
            self._set(syncing=False, online=error.code != "unreachable" and self._browser_online(),
                      last_error=f"{error.code}: {error.message}", progress=None)
        else:
            self._backoff.reset()
            done: dict[str, Any] = {"last_synced_at": int(time.time() * 1000)} if pull else {}
            self._set(syncing=False, online=True, last_error=None, progress=None, **done)
        await self._refresh_pending()
        return error

    async def _push_all(self) -> None:
        renumbered = False
        while True:
            request = await self._replica.take(self.push_limit)
            if not request.mutations:
                # Conflicts a closed tab left to their resolver (looked for once per lock).
                if self._leftovers and await self._resolve_waiting():
                    continue
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
            acked = await self._replica.acknowledge(response)
            await self._settle(acked)
            if any(a.refused for a in acked):
                await self._resolve_waiting()
            await self._refresh_pending()

    async def _pull_all(self) -> int:
        cursor = await self._replica.get_meta(CURSOR)
        applied = 0
        reset = False
        while True:
            # Every scope the user belongs to (design.md section 10).
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
                self._merge_watch.forget()
                await self._replica.begin_resync({CURSOR: None})
                continue
            # The cursor is stored in the same transaction as the changes it covers; the
            # last page also ends a resync in progress (the same transaction again).
            dropped = await self._replica.apply_server_changes(
                page.changes, {CURSOR: page.cursor}, complete=not page.has_more,
                revoked=page.revoked)
            for d in dropped:  # writes into a scope the user was removed from
                self._emit(ConflictEvent(d.entry.collection, d.entry.key,
                                         self._strategy(d.entry.collection), "rejected",
                                         d.local, None, None, FORBIDDEN))
            applied += len(page.changes)
            cursor = page.cursor
            if len(self._merge_watch):
                for change in page.changes:
                    event = self._merge_watch.check(change)
                    if event is not None:
                        self._emit(event)
            if page.remaining is not None and (page.has_more or self.status.progress):
                # A pull of more than one page: how far it has got (received, total).
                self._set(progress=(applied, applied + page.remaining))
            if not page.has_more:
                return applied

    async def _request(self, method: str, path: str, *, body: Any = None,
                       params: dict[str, str] | None = None) -> Any:
        assert self._http is not None
        token: str | None = None
        for attempt in range(2):
            if self._paused:  # a round under way when pause() came: no further request
                raise SyncError("paused", "the sync client is paused")
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
            if answer.verdict == "ok" and r.status_code == 204:
                return None  # done, and nothing to say (DELETE of a member)
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

    # ---- conflicts ----------------------------------------------------------------------

    def _strategy(self, name: str) -> Strategy:
        """The strategy of the collection stored under local name `name` (schema.local_name);
        "merge" for data of a collection the schema no longer declares."""
        collection = split_local_name(name)[0]
        return self.db.schema.get(collection).strategy if collection in self.db.schema \
            else "merge"

    async def _settle(self, acked: list[Acked]) -> None:
        """A push answer's conflicts and rejections: events for the app, a `version`
        collection's resolver asked what to push next; `merge` edits applied are watched
        for fields a newer stamp kept (pysync.conflicts)."""
        for a in acked:
            e, status = a.entry, a.result.status
            if status not in ("conflict", "rejected", "applied") and not a.refused:
                continue
            try:
                decl = self.db.schema.get(split_local_name(e.collection)[0])
            except SchemaError:
                continue
            if status == "rejected":
                self._emit(ConflictEvent(e.collection, e.key, decl.strategy, "rejected",
                                         a.local, a.server, a.server,
                                         a.result.error_code or "rejected"))
            elif status == "applied":
                if decl.strategy == "merge" and e.op != "delete" and e.value is not None \
                        and a.result.version is not None:
                    self._merge_watch.watch(e.collection, e.key, a.result.version, e.value,
                                            a.local)
            elif decl.strategy != "version":
                self._emit(ConflictEvent(e.collection, e.key, decl.strategy, "overwritten",
                                         a.local, a.server, a.server))
            elif decl.resolve is None or a.result.server is None:  # the server's copy is kept
                self._emit(ConflictEvent(e.collection, e.key, "version", "conflict", a.local,
                                         a.server, a.server))
            # (With a resolver: stored as unresolved by acknowledge; _resolve_waiting.)

    async def _resolve_waiting(self) -> bool:
        """Ask the resolvers about the `version` conflicts waiting for them (those of the
        last push answer, or left by a tab closed before its resolver's result was stored)
        and store each decision; then tell the app. True if a result was stored (to push)."""
        self._leftovers = False
        stored = False
        for conflict in await self._replica.unresolved():
            try:
                resolve = self.db.schema.get(split_local_name(conflict.collection)[0]).resolve
            except SchemaError:
                resolve = None
            result, error = await decide(resolve, conflict.local, conflict.server,
                                         conflict.base)
            try:
                stored |= await self._replica.resolve(
                    conflict, result, write=resolve is not None and error is None)
            except Exception as exc:  # e.g. a unique index the result breaks: server kept
                log.warning("a resolver's result could not be stored", exc_info=True)
                await self._replica.resolve(conflict, None, write=False)
                result, error = conflict.server, f"{type(exc).__name__}: {exc}"
            self._emit(ConflictEvent(conflict.collection, conflict.key, "version", "conflict",
                                     conflict.local, conflict.server, result, error))
        return stored

    def _emit(self, event: ConflictEvent) -> None:
        """To this tab's on_conflict, and to the other tabs' (the syncing tab forwards)."""
        event = event.public()
        self._replica.post({"op": "event", "event": event.to_message()})
        self._deliver(event)

    def _deliver(self, event: ConflictEvent) -> None:
        if self.on_conflict is None:
            return
        try:
            result = self.on_conflict(event)
            if asyncio.iscoroutine(result):
                self._spawn(result)
        except Exception:
            log.exception("the conflict callback failed")

    # ---- the other tabs -------------------------------------------------------------------

    def _on_tab(self, data: dict[str, Any]) -> None:
        """A message from another tab's sync client (Replica.listen)."""
        op = data.get("op")
        if op == "event":
            try:
                event = ConflictEvent.from_message(data["event"])
            except (KeyError, TypeError, ValueError):
                log.warning("ignored a malformed conflict event from another tab")
                return
            self._deliver(event)
        elif op == "status":
            if not self.status.leader and isinstance(data.get("status"), dict):
                shared = {k: v for k, v in data["status"].items() if k in SHARED_STATUS}
                if isinstance(shared.get("progress"), list):
                    shared["progress"] = tuple(shared["progress"])
                self._set(**shared)
        elif op in ("sync_now", "synced") and self.status.leader and self._running:
            ask = str(data.get("id"))
            if ask not in self._answering:
                self._answering.add(ask)
                self._spawn(self._answer(ask, data))
        elif op in ("round", "synced_ok"):
            waiter = self._asks.get(str(data.get("id")))
            if waiter is not None and not waiter.done():
                waiter.set_result(data)

    async def _answer(self, ask: str, data: dict[str, Any]) -> None:
        """Another tab's sync_now() or synced(), run here (this tab syncs)."""
        try:
            if data.get("op") == "synced":
                mark = data.get("mark")
                await self._synced_here(mark if isinstance(mark, int) else 0)
                self._replica.post({"op": "synced_ok", "id": ask})
                return
            try:
                await self.sync_now()
                self._replica.post({"op": "round", "id": ask, "error": None})
            except SyncError as e:
                self._replica.post({"op": "round", "id": ask, "error": e.code,
                                    "message": e.message})
        finally:
            self._answering.discard(ask)

    async def _ask(self, request: dict[str, Any], until_leader: bool = False
                   ) -> dict[str, Any]:
        """Ask the tab that syncs, and wait for its answer; asked again every ASK_AGAIN_S
        (that tab may have gone, another taken over). `until_leader`: give up (answer {})
        if this tab takes over meanwhile."""
        ask = uuid.uuid4().hex
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._asks[ask] = waiter
        try:
            while True:
                if until_leader and self.status.leader:
                    return {}
                self._replica.post({**request, "id": ask})
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(waiter), ASK_AGAIN_S)
        finally:
            self._asks.pop(ask, None)

    async def _synced_here(self, mark: int) -> None:
        """In the syncing tab: wait until no outbox entry at or below `mark` is left and a
        round that started after the call pulled to the head."""
        after = self._rounds_started
        self._want(push=True, pull=True, kick=True)
        while True:
            number, error, pulled = await self._next_round_end()
            if error is not None and error.code == "stopped":
                raise error
            if number > after and error is None and pulled \
                    and await self._replica.pending_through(mark) == 0:
                return
            # Not yet: another round (after the backoff, if this one failed).
            self._want(push=True, pull=True)

    def _next_round_end(self) -> asyncio.Future[tuple[int, SyncError | None, bool]]:
        end: asyncio.Future[tuple[int, SyncError | None, bool]] = \
            asyncio.get_running_loop().create_future()
        self._round_ends.append(end)
        return end

    def _end_round_waits(self, error: SyncError | None, pulled: bool) -> None:
        ends, self._round_ends = self._round_ends, []
        for end in ends:
            if not end.done():
                end.set_result((self._rounds_started, error, pulled))

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
        if self.status.leader and not self._paused:
            self._restart_events()  # the old stream may be dead without knowing it
            self._want(push=True, pull=True, kick=True)

    def _on_offline(self, _event: Any = None) -> None:
        self._set(online=False)

    # ---- pokes --------------------------------------------------------------------------

    def _restart_events(self) -> None:
        if self._events_task is not None:
            self._events_task.cancel()
            self._events_task = None
        if not self._paused:
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
        before, self.status = self.status, status
        if status.leader and self._running and any(
                getattr(before, k) != getattr(status, k) for k in SHARED_STATUS):
            # The other tabs show how the sync goes too.
            self._replica.post({"op": "status", "status": {
                k: getattr(status, k) for k in SHARED_STATUS}})
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
