"""What every request handler and background task of one server app shares: the ServerContext.

Everything an app holds for its lifetime lives here, created with the context and closed
with it, never in a module global or lazily on `app.state`: the DynamoDB clients, the push
core's clock and thread pools, the token verifier (it caches JWKS keys), the rate limiter,
the puller, the poke hub and the change feed. A second app in the same process (a test, the
simulation's server restart) gets state of its own.

create_app (server/app.py) makes the context; the app's lifespan starts its background
parts (`start`: the poke hub's poller, and the feed thread when `feed_enabled`) and closes
it (`aclose`). A context made with `from_settings` alone (the tests' push and pull cores)
needs neither: its pools start threads on first use.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from server.clock import ServerClock
from server.config import Settings
from server.db import dynamodb_client, streams_client
from server.tables import TableNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

    from server.auth import TokenVerifier
    from server.events import PokeHub
    from server.feed import Feed
    from server.pull import Puller
    from server.ratelimit import RateLimiter
    from server.scopes import Scopes

# A push's thread mostly waits for DynamoDB, so the pools are sized for concurrent pushes,
# not for cores: asyncio's default pool (cores + 4 threads, 6 on 2 cores) let at most 6
# pushes per process wait on DynamoDB at once, while DynamoDB (Local's JVM as much as the
# service) does more with more requests in flight. Commits run on their own pool so that
# the request's thread can compute the next chunk meanwhile (one commit in flight per push);
# reads of one push run concurrently. All stay under the client's 64 pooled connections
# (server/db.py) together with the feed's.
MAX_CONCURRENT_PUSHES = 24
MAX_CONCURRENT_READS = 8


@dataclass
class PushPools:
    """The push core's threads (server/push.py)."""

    pushers: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=MAX_CONCURRENT_PUSHES, thread_name_prefix="push"))
    committers: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=MAX_CONCURRENT_PUSHES, thread_name_prefix="push-commit"))
    readers: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=MAX_CONCURRENT_READS, thread_name_prefix="push-read"))

    def shutdown(self) -> None:
        # No new work is accepted; work in flight finishes on its threads.
        for pool in (self.pushers, self.committers, self.readers):
            pool.shutdown(wait=False)


@dataclass(eq=False)
class ServerContext:
    settings: Settings
    dynamodb: DynamoDBClient
    streams: DynamoDBStreamsClient
    tables: TableNames
    clock: ServerClock  # the push core's HLC, shared by its threads
    pools: PushPools
    verifier: TokenVerifier
    rate_limiter: RateLimiter
    puller: Puller
    hub: PokeHub  # pokes the pages connected to GET /v1/events
    feed: Feed | None  # the change feed's thread, when settings.feed_enabled
    scopes: Scopes  # shared scopes and their members

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerContext:
        # These modules reach the context of a request through this one (context_of):
        # imported here, not at the top, so that neither import needs the other first.
        from server.auth import TokenVerifier
        from server.changelog import ChangeLog
        from server.events import PokeHub
        from server.feed import Feed
        from server.pull import Puller
        from server.ratelimit import RateLimiter
        from server.scopes import Scopes

        dynamodb, streams = dynamodb_client(settings), streams_client(settings)
        tables = TableNames.with_prefix(settings.table_prefix)
        s = settings
        hub = PokeHub(ChangeLog(dynamodb, tables, s.log_retention_s), s.events_poll_s,
                      s.events_chase_s, s.events_chase_window_s, s.peer_host or None)
        feed = Feed(dynamodb, streams, tables, log_retention_s=s.log_retention_s,
                    tombstone_retention_s=s.tombstone_retention_s, poll_s=s.feed_poll_s,
                    chase_s=s.feed_chase_s, lease_s=s.lease_s,
                    shard_refresh_s=s.shard_refresh_s,
                    on_append=hub.publish_threadsafe) if s.feed_enabled else None
        hub.feed = feed  # a push through this app nudges its feed (PokeHub.wrote)
        return cls(settings, dynamodb, streams, tables, ServerClock.for_push(), PushPools(),
                   TokenVerifier(settings),
                   RateLimiter(s.rate_limit_per_s, s.rate_limit_burst),
                   Puller(dynamodb, tables, s.log_retention_s), hub, feed,
                   Scopes(dynamodb, tables.scopes))

    async def start(self) -> None:
        """Start the background parts: the poke hub's poller, the feed thread."""
        await self.hub.start()
        if self.feed is not None:
            self.feed.start()

    async def aclose(self) -> None:
        """Stop the feed (releasing its leases, so another process takes over at once) and
        the poke hub, and let the push pools' threads end."""
        try:
            if self.feed is not None:
                await run_in_threadpool(self.feed.stop)
        finally:
            await self.hub.stop()
            self.pools.shutdown()


def context_of(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx
