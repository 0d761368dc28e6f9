"""The ASGI application: the sync API under /v1 and the web app with its assets."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.config import Settings
from server.static import static_routes


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


def create_app(settings: Settings) -> Starlette:
    routes: list[BaseRoute] = [Route("/v1/health", health)]
    routes += static_routes()  # last: it mounts "/"
    app = Starlette(routes=routes)
    app.state.settings = settings
    return app
