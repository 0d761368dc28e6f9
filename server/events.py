"""GET /v1/events: Server-Sent Events that poke a page whenever one of its scopes' logs moves.

A page is poked for its user's personal scope (`{"head": n}`) and for every shared scope the
user is a member of (`{"scope": "<id>", "head": n}`); the memberships are read when the
stream opens and again at each heartbeat (PageScopes).

Pokes are hints (the pull is the truth), so losing one is harmless as long as the next one
comes: every connection starts with a poke, and a poke follows every head change seen.

Where the news comes from, per process (the PokeHub):
- this process's feed thread, right after it appended (no delay); a push committed by this
  process nudges that feed, so it reads the stream at once instead of at its next poll;
- a poller that reads the anchors (log heads) of every scope with a connected page, every
  `events_poll_s`, in BatchGetItem calls: so a page connected here hears about changes
  appended by another process's feed or by the Lambda function;
- after a push through this process to a scope with a page connected here, a chase: that
  scope's anchor alone, read after `events_chase_s` and then at growing intervals until it
  moves, for the case where another process's feed (or Lambda) logs the push;
- the other server processes of the store, by UDP datagram (Peers): a push elsewhere nudges
  this process's feed, an append elsewhere starts a chase of those scopes here at once.

Auth without long-lived tokens in URLs: EventSource cannot send headers, so a page first
calls `POST /v1/events/ticket` with its bearer token and gets a random single-use ticket that
is valid for `ticket_ttl_s` (30 s); it opens `GET /v1/events?ticket=...`. The ticket is
stored hashed in the feed table and deleted when used, so any process can redeem it once.
A client that can send headers (fetch streaming) may instead call `GET /v1/events` with
`Authorization: Bearer ...`.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pysync.errors import ProtocolError
from server.auth import Principal, authenticate
from server.changelog import ChangeLog
from server.context import context_of
from server.errors import AuthError, StoreUnavailable
from server.http import JSONBody
from server.retry import with_retries
from server.scopes import scope_pk

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from server.context import ServerContext
    from server.feed import Feed
    from server.tables import TableNames

log = logging.getLogger("pysync.events")

TICKET_PK = "ticket"


@dataclass(eq=False)
class Subscription:
    scope: str
    head: int
    moved: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Chase:
    """A scope written through this process whose head the hub reads until it moves."""

    since: int  # the highest head this process's pages had seen when the push committed
    gap: float  # the pause before the next read
    due: float  # the event loop's time of the next read
    until: float  # when it gives up (the regular poll goes on)


CHASE_GROWTH = 1.5  # each chase read waits this much longer than the one before


class PokeHub:
    """Fans head changes out to the subscriptions of this process.

    The news comes from this process's feed thread at once (`publish_threadsafe`), from
    the regular poll of every subscribed scope's head (`poll_s`), and, for a scope this
    process just pushed to (`wrote`), from a chase: reads of that scope's head alone after
    `chase_s`, then 1.5 times longer each time, until it moves (the feed that logs the push
    may run in another process or on Lambda) or `chase_window_s` has passed.
    """

    def __init__(self, changelog: ChangeLog, poll_s: float, chase_s: float = 0.02,
                 chase_window_s: float = 2.0, peer_host: str | None = None) -> None:
        self.changelog = changelog
        self.poll_s = poll_s
        self.chase_s = chase_s
        self.chase_window_s = chase_window_s
        # The feed of this process, if it runs one: a push nudges it (server/feed.py).
        self.feed: Feed | None = None
        # The other server processes of the store, told of pushes and appends (Peers).
        self.peers = Peers(changelog.client, changelog.tables, peer_host, self) \
            if peer_host else None
        self._subs: dict[str, set[Subscription]] = {}
        self._chases: dict[str, _Chase] = {}
        self._woken = asyncio.Event()  # a new chase: the poller recomputes its next read
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._poll(), name="pysync-poke-poller")
        if self.peers is not None:
            await self.peers.start(runs_feed=self.feed is not None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.peers is not None:
            await self.peers.stop()

    async def subscribe(self, scope: str, moved: asyncio.Event | None = None
                        ) -> Subscription:
        """A page's subscription to `scope`; `moved` (shared by the subscriptions of one
        page to its several scopes) is set whenever the scope's head moves."""
        # The head is read before the first poke is sent: any append after it pokes again.
        anchor = await run_in_threadpool(self.changelog.anchor, scope)
        sub = Subscription(scope, anchor.head, moved or asyncio.Event())
        self._subs.setdefault(scope, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.scope)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.scope]
                self._chases.pop(sub.scope, None)

    def connections(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def _seen(self, scope: str) -> int:
        return max((sub.head for sub in self._subs.get(scope, ())), default=0)

    def wrote(self, scopes: Iterable[str]) -> None:
        """This process committed a push to `scopes` (the push route, on the event loop):
        nudge the feeds once (this process's, and by datagram those of the other
        processes), and chase each scope's head if a page here watches it, unless this
        process's own feed works the stream: it publishes the append here itself (and a
        feed of another process working another shard sends a datagram)."""
        if self.peers is not None:
            self.peers.send_nudge()
        if self.feed is not None and self.feed.working:
            self.feed.nudge()
            return
        for scope in scopes:
            self._chase(scope, self.chase_s)

    def heard(self, heads: dict[str, int]) -> None:
        """Another process appended to these scopes' logs, up to these heads (a datagram,
        so only a hint): read the heads of those with a page here that has not seen that
        head yet, now (a chase), and poke from what is read."""
        for scope, head in heads.items():
            if head > self._seen(scope):
                self._chase(scope, 0.0)

    def _chase(self, scope: str, first: float) -> None:
        if scope not in self._subs or self._loop is None:
            return
        now = self._loop.time()
        chase = self._chases.get(scope)
        if chase is None:
            self._chases[scope] = _Chase(self._seen(scope), max(first, self.chase_s),
                                         now + first, now + self.chase_window_s)
        else:  # still chasing an earlier push: the new one extends it, reads stay as due
            chase.until = now + self.chase_window_s
            chase.due = min(chase.due, now + first)
            chase.gap = self.chase_s
        self._woken.set()

    def publish(self, heads: dict[str, int]) -> None:
        """New heads (from the poller or the feed). Runs on the event loop."""
        for scope, head in heads.items():
            for sub in self._subs.get(scope, ()):
                if head > sub.head:
                    sub.head = head
                    sub.moved.set()
            chase = self._chases.get(scope)
            if chase is not None and head > chase.since:
                del self._chases[scope]  # caught: the push's change (or a later one) is in

    def publish_threadsafe(self, heads: dict[str, int]) -> None:
        """For the feed thread, right after it appended: pokes this process's pages and
        tells the other processes."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._appended, dict(heads))

    def _appended(self, heads: dict[str, int]) -> None:
        self.publish(heads)
        if self.peers is not None:
            self.peers.send_heads(heads)

    def _due(self, now: float, next_full: float) -> tuple[float, list[str]]:
        """When the next read is due, and which scopes it reads (every subscribed scope at
        the regular poll, else the chased scopes that are due)."""
        for scope in [s for s, c in self._chases.items() if c.until < now]:
            del self._chases[scope]  # gave up: the regular poll goes on
        if now >= next_full:
            return now, list(self._subs)
        due = [s for s, c in self._chases.items() if c.due <= now]
        if due:
            return now, due
        return min([next_full, *(c.due for c in self._chases.values())]), []

    async def _poll(self) -> None:
        # Never ends on an error: DynamoDB down, paused or throttling only delays pokes; the
        # first pass after it comes back publishes every head that moved meanwhile.
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.poll_s
        failing = False
        while True:
            self._woken.clear()
            now = loop.time()
            at, scopes = self._due(now, next_full)
            if at > now:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), at - now)
                continue
            if now >= next_full:
                next_full = now + self.poll_s
            for scope in scopes:
                chase = self._chases.get(scope)
                if chase is not None:  # read now: the next one a little later
                    chase.gap *= CHASE_GROWTH
                    chase.due = now + chase.gap
            if not scopes:
                continue
            try:
                heads = await run_in_threadpool(self.changelog.heads, scopes)
            except Exception:
                if not failing:  # once per outage, not every poll_s
                    log.warning("could not read the log heads; retrying", exc_info=True)
                failing = True
                continue
            if failing:
                log.info("reading the log heads again")
                failing = False
            self.publish(heads)


# ---- peers: the other server processes of the store ------------------------------------------

PEER_PK = "peer"
PEER_RENEW_S = 10.0  # how often a process renews its own entry and re-reads the others'
PEER_LIFE_S = 30.0  # an entry not renewed for this long is no longer sent to
MAX_DATAGRAM = 8192


class Peers(asyncio.DatagramProtocol):
    """UDP datagrams between the server processes of one store (one set of tables), so that
    a push or an append in one process reaches the others' feeds and pages without waiting
    for their polls (docs/feed.md, "Pokes across processes").

    Each process binds a UDP socket on `host` (the address the others reach it at; loopback
    by default, i.e. the processes of one machine) and keeps an entry in the feed table
    (pk "peer", sk "<machine>|<host>:<port>", `until`, `feed`: whether it runs a feed),
    renewed every PEER_RENEW_S; it reads the others' entries at the same time. Two messages,
    each tagged with the store (the feed table's name):
    - {"n": 1}: a push was committed: a process that runs a feed nudges it;
    - {"h": {scope: head}}: these scopes' logs were appended to, up to these heads: a
      process that has pages on one of them, not at that head yet, reads its head at once
      (the hub's chase) and pokes from what it read.
    A datagram is only a hint: what gets poked comes from the log's anchor, so a lost,
    repeated or forged datagram costs at most a few reads (one chase per scope at a time) or
    feed passes, never a wrong poke; the regular polls stay as the fallback.
    """

    def __init__(self, client: DynamoDBClient, tables: TableNames, host: str,
                 hub: PokeHub) -> None:
        self.client = client
        self.tables = tables
        self.host = host
        self.hub = hub
        self.machine = socket.gethostname()
        self.sk: str | None = None
        self.runs_feed = False
        self._transport: asyncio.DatagramTransport | None = None
        self._peers: list[tuple[tuple[str, int], bool]] = []  # (address, runs a feed)
        self._task: asyncio.Task[None] | None = None

    async def start(self, runs_feed: bool) -> None:
        self.runs_feed = runs_feed
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                           local_addr=(self.host, 0))
        self._transport = transport
        host, port = transport.get_extra_info("sockname")[:2]
        self.sk = f"{self.machine}|{host}:{port}"
        self._task = asyncio.create_task(self._keep(), name="pysync-peers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            with suppress(Exception):  # it expires anyway; never hold a shutdown up for it
                await run_in_threadpool(self.client.delete_item, TableName=self.tables.feed,
                                        Key=self._key())

    def _key(self) -> dict[str, Any]:
        return {"pk": {"S": PEER_PK}, "sk": {"S": str(self.sk)}}

    async def _keep(self) -> None:
        failing = False
        while True:
            try:
                await run_in_threadpool(self._renew)
                failing = False
            except Exception:
                if not failing:  # once per outage: the polls still poke meanwhile
                    log.warning("could not renew this process's peer entry", exc_info=True)
                failing = True
            await asyncio.sleep(PEER_RENEW_S)

    def _renew(self) -> None:
        now = time.time()
        with_retries(lambda: self.client.put_item(TableName=self.tables.feed, Item={
            **self._key(), "until": {"N": f"{now + PEER_LIFE_S:.3f}"},
            "feed": {"BOOL": self.runs_feed}, "ttl": {"N": str(int(now + PEER_LIFE_S + 60))}}))
        items = with_retries(lambda: self.client.query(
            TableName=self.tables.feed, KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": PEER_PK}}))["Items"]
        peers: list[tuple[tuple[str, int], bool]] = []
        for item in items:
            sk = item["sk"]["S"]
            if sk == self.sk or float(item["until"]["N"]) < now:
                continue
            machine, _, address = sk.partition("|")
            host, _, port = address.rpartition(":")
            try:
                if ipaddress.ip_address(host).is_loopback and machine != self.machine:
                    continue  # another machine's loopback is not ours
                peers.append(((host, int(port)), item.get("feed", {}).get("BOOL", False)))
            except ValueError:
                continue  # not an entry this code wrote
        self._peers = peers

    def _send(self, message: dict[str, Any], feeds_only: bool = False) -> None:
        transport = self._transport
        if transport is None:
            return
        data = json.dumps({**message, "s": self.tables.feed}).encode()
        for address, feed in self._peers:
            if feed or not feeds_only:
                transport.sendto(data, address)

    def send_nudge(self) -> None:
        self._send({"n": 1}, feeds_only=True)

    def send_heads(self, heads: dict[str, int]) -> None:
        chunk: dict[str, int] = {}
        size = 0
        for scope, head in heads.items():
            if chunk and size + len(scope) > MAX_DATAGRAM // 2:
                self._send({"h": chunk})
                chunk, size = {}, 0
            chunk[scope] = head
            size += len(scope) + 30
        if chunk:
            self._send({"h": chunk})

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) > MAX_DATAGRAM:
            return
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):  # not ours: anybody may send to the port
            return
        if not isinstance(message, dict) or message.get("s") != self.tables.feed:
            return  # another store's, or not ours at all
        if message.get("n") == 1 and self.hub.feed is not None:
            self.hub.feed.nudge()
        heads = message.get("h")
        if isinstance(heads, dict):
            self.hub.heard({s: h for s, h in heads.items() if isinstance(h, int)})

    def error_received(self, exc: Exception) -> None:
        # A peer that went away (ICMP port unreachable): its entry expires soon.
        pass


# ---- tickets ----------------------------------------------------------------------------------

def _ticket_key(ticket: str) -> dict[str, Any]:
    digest = hashlib.sha256(ticket.encode()).hexdigest()
    return {"pk": {"S": TICKET_PK}, "sk": {"S": digest}}


def issue_ticket(client: DynamoDBClient, tables: TableNames, principal: Principal,
                 ttl_s: float) -> str:
    ticket = secrets.token_urlsafe(32)
    expires = time.time() + ttl_s
    # Repeating this put (a retry after a lost answer) writes the same item: harmless.
    with_retries(lambda: client.put_item(TableName=tables.feed, Item={
        **_ticket_key(ticket), "user": {"S": principal.user}, "scope": {"S": principal.scope},
        "exp": {"N": f"{expires:.3f}"}, "ttl": {"N": str(int(expires) + 60)}}))
    return ticket


def redeem_ticket(client: DynamoDBClient, tables: TableNames, ticket: str) -> Principal:
    """The ticket's principal; the ticket is gone afterwards. AuthError if unknown or expired."""
    if not ticket or len(ticket) > 128:
        raise AuthError("invalid_ticket", "the events ticket is invalid")
    # A retry after a lost answer finds the ticket deleted already: 401, and the client takes
    # a new ticket. Single use is kept even then.
    item = with_retries(lambda: client.delete_item(
        TableName=tables.feed, Key=_ticket_key(ticket), ReturnValues="ALL_OLD")
    ).get("Attributes")
    if not item:
        raise AuthError("invalid_ticket", "the events ticket is unknown or was used already")
    if float(item["exp"]["N"]) < time.time():
        raise AuthError("invalid_ticket", "the events ticket has expired")
    return Principal(item["user"]["S"], item["scope"]["S"])


# ---- routes -----------------------------------------------------------------------------------

async def ticket(request: Request) -> Response:
    principal = await authenticate(request)
    ctx = context_of(request)
    value = await run_in_threadpool(issue_ticket, ctx.dynamodb, ctx.tables, principal,
                                    ctx.settings.ticket_ttl_s)
    return JSONBody({"ticket": value, "expires_in": ctx.settings.ticket_ttl_s})


def _poke(head: int, scope: str | None = None) -> str:
    """A poke: the personal scope's is {"head": n}, a shared scope's names it too."""
    data: dict[str, Any] = {"head": head} if scope is None else {"scope": scope, "head": head}
    return f"event: poke\ndata: {json.dumps(data)}\n\n"


class PageScopes:
    """The scopes one page is poked for: its user's personal scope and every shared scope
    the user is a member of, re-read at each heartbeat. A scope joined meanwhile pokes at
    once, so the page pulls its snapshot; one left pokes a last time, so the page pulls and
    learns it was revoked (and drops its records), then stops poking."""

    def __init__(self, ctx: ServerContext, principal: Principal) -> None:
        self.ctx, self.principal = ctx, principal
        self.moved = asyncio.Event()
        self.subs: dict[str, Subscription] = {}  # pk -> subscription
        self.sent: dict[str, int] = {}  # pk -> the head last poked
        self.left: dict[str, int] = {}  # pk -> its head: scopes left, to poke a last time

    async def refresh(self) -> None:
        mine = await run_in_threadpool(self.ctx.scopes.mine, self.principal.user)
        wanted = [self.principal.scope, *(scope_pk(m.scope) for m in mine)]
        for pk in [pk for pk in self.subs if pk not in wanted]:
            sub = self.subs.pop(pk)
            self.ctx.hub.unsubscribe(sub)
            self.sent.pop(pk, None)
            self.left[pk] = sub.head
        for pk in wanted:
            if pk not in self.subs:
                self.subs[pk] = await self.ctx.hub.subscribe(pk, self.moved)

    def pokes(self) -> str:
        """A poke for every scope whose head moved since its last poke."""
        out = "".join(_poke(head, pk[2:]) for pk, head in self.left.items())
        self.left.clear()
        for pk, sub in self.subs.items():
            if self.sent.get(pk) != sub.head:
                self.sent[pk] = sub.head
                out += _poke(sub.head, None if pk == self.principal.scope else pk[2:])
        return out

    def close(self) -> None:
        for sub in self.subs.values():
            self.ctx.hub.unsubscribe(sub)
        self.subs.clear()


async def events(request: Request) -> Response:
    params = request.query_params
    if set(params) - {"ticket"}:
        raise ProtocolError("invalid_request", "the only parameter is 'ticket'")
    ctx = context_of(request)
    if "ticket" in params:
        principal = await run_in_threadpool(redeem_ticket, ctx.dynamodb, ctx.tables,
                                            params["ticket"])
    else:
        principal = await authenticate(request)
    page = PageScopes(ctx, principal)
    try:
        await page.refresh()
    except BaseException:
        page.close()
        raise
    heartbeat = ctx.settings.heartbeat_s

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n" + page.pokes()
            while True:
                try:
                    await asyncio.wait_for(page.moved.wait(), heartbeat)
                except TimeoutError:
                    yield ": heartbeat\n\n"  # keeps proxies from closing an idle stream
                    with suppress(StoreUnavailable):  # the memberships again next time
                        await page.refresh()
                    if pokes := page.pokes():
                        yield pokes
                    continue
                page.moved.clear()
                if pokes := page.pokes():
                    yield pokes
        finally:
            page.close()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def events_routes() -> list[BaseRoute]:
    return [
        Route("/v1/events/ticket", ticket, methods=["POST"]),
        Route("/v1/events", events, methods=["GET"]),
    ]
