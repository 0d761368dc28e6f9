"""GET /v1/events: Server-Sent Events that poke a page whenever its scope's log moves.

Pokes are hints (the pull is the truth), so losing one is harmless as long as the next one
comes: every connection starts with a poke, and a poke follows every head change seen.

Where the news comes from, per process (the PokeHub):
- this process's feed thread, right after it appended (no delay);
- a poller that reads the anchors (log heads) of every scope with a connected page, every
  `events_poll_s`, in BatchGetItem calls: so a page connected here hears about changes
  appended by another process's feed or by the Lambda function.

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
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
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
from server.errors import AuthError
from server.http import JSONBody
from server.retry import with_retries

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from server.tables import TableNames

log = logging.getLogger("pysync.events")

TICKET_PK = "ticket"


@dataclass(eq=False)
class Subscription:
    scope: str
    head: int
    moved: asyncio.Event = field(default_factory=asyncio.Event)


class PokeHub:
    """Fans head changes out to the subscriptions of this process."""

    def __init__(self, changelog: ChangeLog, poll_s: float) -> None:
        self.changelog = changelog
        self.poll_s = poll_s
        self._subs: dict[str, set[Subscription]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._poll(), name="pysync-poke-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def subscribe(self, scope: str) -> Subscription:
        # The head is read before the first poke is sent: any append after it pokes again.
        anchor = await run_in_threadpool(self.changelog.anchor, scope)
        sub = Subscription(scope, anchor.head)
        self._subs.setdefault(scope, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.scope)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.scope]

    def connections(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def publish(self, heads: dict[str, int]) -> None:
        """New heads (from the poller or the feed). Runs on the event loop."""
        for scope, head in heads.items():
            for sub in self._subs.get(scope, ()):
                if head > sub.head:
                    sub.head = head
                    sub.moved.set()

    def publish_threadsafe(self, heads: dict[str, int]) -> None:
        """For the feed thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.publish, dict(heads))

    async def _poll(self) -> None:
        # Never ends on an error: DynamoDB down, paused or throttling only delays pokes; the
        # first pass after it comes back publishes every head that moved meanwhile.
        failing = False
        while True:
            await asyncio.sleep(self.poll_s)
            scopes = list(self._subs)
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


def _poke(head: int) -> str:
    return f"event: poke\ndata: {json.dumps({'head': head})}\n\n"


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
    hub = ctx.hub
    sub = await hub.subscribe(principal.scope)
    heartbeat = ctx.settings.heartbeat_s

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n" + _poke(sub.head)
            while True:
                try:
                    await asyncio.wait_for(sub.moved.wait(), heartbeat)
                except TimeoutError:
                    yield ": heartbeat\n\n"  # keeps proxies from closing an idle stream
                    continue
                sub.moved.clear()
                yield _poke(sub.head)
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def events_routes() -> list[BaseRoute]:
    return [
        Route("/v1/events/ticket", ticket, methods=["POST"]),
        Route("/v1/events", events, methods=["GET"]),
    ]
