"""Serving the web app, the Pyodide runtime and the wheels, all from our own origin.

Pyodide's files are versioned by the npm package, so they are cached as immutable; the page
and the wheels change while developing, so they are revalidated with ETags on every load.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from server.assets import wheel_manifest
from server.paths import PYODIDE_DIR, WEB, WHEELS_DIR

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class CachedStaticFiles(StaticFiles):
    """StaticFiles that adds one Cache-Control policy to every response."""

    def __init__(self, *, cache_control: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.cache_control = cache_control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_cache(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers.append((b"cache-control", self.cache_control.encode()))
                message["headers"] = headers
            await send(message)

        await super().__call__(scope, receive, send_with_cache)  # type: ignore[arg-type]


async def manifest(request: Request) -> Response:
    return JSONResponse(
        {"wheels": wheel_manifest()}, headers={"cache-control": REVALIDATE}
    )


def static_routes() -> list[BaseRoute]:
    return [
        Route("/wheels/manifest.json", manifest),
        Mount(
            "/pyodide",
            CachedStaticFiles(directory=PYODIDE_DIR, check_dir=False, cache_control=IMMUTABLE),
        ),
        Mount(
            "/wheels",
            CachedStaticFiles(directory=WHEELS_DIR, check_dir=False, cache_control=REVALIDATE),
        ),
        Mount(
            "/",
            CachedStaticFiles(directory=WEB / "app", html=True, check_dir=False,
                              cache_control=REVALIDATE),
        ),
    ]
