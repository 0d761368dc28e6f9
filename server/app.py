"""The ASGI application: the sync API under /v1 and the web app with its assets.

The app owns one ServerContext (server/context.py): every route reaches it through
`context_of(request)`. The lifespan makes sure the tables exist, starts the context's
background parts (the poke hub's poller; the change feed's thread when `feed_enabled`) and
closes the context on shutdown, so nothing outlives the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.api import api_routes
from server.config import Settings
from server.context import ServerContext
from server.cors import cors_middleware
from server.events import events_routes
from server.http import CatchBugs, exception_handlers
from server.pull_scopes import pull
from server.scope_routes import scope_routes
from server.static import static_routes
from server.tables import ensure_tables


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


def create_app(settings: Settings) -> Starlette:
    ctx = ServerContext.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(ensure_tables, ctx.dynamodb, settings.table_prefix,
                                settings.create_tables)
        await ctx.start()
        try:
            yield
        finally:
            await ctx.aclose()

    routes: list[BaseRoute] = [Route("/v1/health", health)]
    routes += api_routes(settings)
    routes += [Route("/v1/pull", pull, methods=["GET"]), *events_routes(), *scope_routes()]
    routes += static_routes()  # last: it mounts "/"
    middleware = [*cors_middleware(settings), Middleware(CatchBugs)]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=exception_handlers(),
                    middleware=middleware)
    app.state.ctx = ctx
    return app
