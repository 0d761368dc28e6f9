"""Serving the web app, the Pyodide runtime and the wheels, all from our own origin.

Pyodide's files are versioned by the npm package, so they are cached as immutable; the page
and the wheels change while developing, so they are revalidated with ETags on every load.

The build: every file the page needs to open (the app shell, Pyodide's runtime files and the
site-packages bundle) is hashed into one build version (`current_build`). `/build.json` names
it; the bundle is served under it (`/build/<version>/site-packages.bin`, immutable); and the
service worker (`/sw.js`, web/app/sw.js with the version and the file list written in) caches
exactly those files under it, so a new build means a new worker and a new cache, and the
old one is deleted (docs/server.md, "Boot and offline open").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from server.assets import site_packages_bundle, wheel_manifest
from server.paths import APP_DIR, PYODIDE_DIR, WHEELS_DIR

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# What loadPyodide() fetches from the bundle (checked by tests/e2e/test_offline.py: an
# offline reload boots from these alone).
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
                 "pyodide-lock.json")
# The app shell: the pages and what they load. "/" is index.html under a second URL.
APP_FILES = ("index.html", "test.html", "boot.js", "demo.py", "demo.css")
SW_TEMPLATE = "sw.js"
BUILD_PLACEHOLDER = '"__PYSYNC_BUILD__"'
FILES_PLACEHOLDER = "[/* __PYSYNC_FILES__ */]"


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


@dataclass(frozen=True)
class Build:
    version: str  # a hash of every file below: any change gives a new version
    bundle: bytes  # the site-packages bundle (server.assets.site_packages_bundle)
    files: tuple[str, ...]  # the URLs the service worker caches, this build's bytes at each

    @property
    def bundle_url(self) -> str:
        return f"/build/{self.version}/site-packages.bin"


_digests: dict[tuple[Path, int, int], bytes] = {}


def _digest(path: Path) -> bytes:
    """sha256 of a file, remembered while its mtime and size stay (the wasm is 9 MB)."""
    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _digests:
        _digests[key] = hashlib.sha256(path.read_bytes()).digest()
    return _digests[key]


def current_build(app_dir: Path = APP_DIR) -> Build:
    """The build the server serves now, computed from the files themselves on each call (so
    an edited page or a rebuilt wheel is a new build without a restart; hashes are cached)."""
    bundle = site_packages_bundle(WHEELS_DIR)
    sources = [(f"/pyodide/{name}", PYODIDE_DIR / name) for name in PYODIDE_FILES]
    sources += [(f"/{name}", app_dir / name) for name in (*APP_FILES, SW_TEMPLATE)]
    h = hashlib.sha256(hashlib.sha256(bundle).digest())
    for url, path in sources:
        h.update(url.encode() + b"\0" + _digest(path))
    version = h.hexdigest()[:20]
    files = ("/", *(url for url, _ in sources if url != f"/{SW_TEMPLATE}"), "/build.json",
             f"/build/{version}/site-packages.bin")
    return Build(version, bundle, files)


class BuildRoutes:
    """/build.json, the bundle and /sw.js of the app in `app_dir` (tests serve a copy)."""

    def __init__(self, app_dir: Path) -> None:
        self.app_dir = app_dir

    async def build_json(self, request: Request) -> Response:
        build = current_build(self.app_dir)
        return JSONResponse({"build": build.version, "bundle": build.bundle_url},
                            headers={"cache-control": REVALIDATE})

    async def bundle(self, request: Request) -> Response:
        build = current_build(self.app_dir)
        if request.path_params["version"] != build.version:
            # A page of an older build: a clear 404, and its next load gets the new build.
            return PlainTextResponse("not this server's build; reload the page",
                                     status_code=404)
        return Response(build.bundle, media_type="application/octet-stream",
                        headers={"cache-control": IMMUTABLE})

    async def service_worker(self, request: Request) -> Response:
        build = current_build(self.app_dir)
        source = (self.app_dir / SW_TEMPLATE).read_text("utf-8")
        source = source.replace(BUILD_PLACEHOLDER, json.dumps(build.version))
        source = source.replace(FILES_PLACEHOLDER, json.dumps(list(build.files)))
        return Response(source, media_type="text/javascript",
                        headers={"cache-control": REVALIDATE})


async def manifest(request: Request) -> Response:
    return JSONResponse(
        {"wheels": wheel_manifest()}, headers={"cache-control": REVALIDATE}
    )


def static_routes(app_dir: Path = APP_DIR) -> list[BaseRoute]:
    build = BuildRoutes(app_dir)
    return [
        Route("/build.json", build.build_json),
        Route("/build/{version}/site-packages.bin", build.bundle),
        Route(f"/{SW_TEMPLATE}", build.service_worker),
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
            CachedStaticFiles(directory=app_dir, html=True, check_dir=False,
                              cache_control=REVALIDATE),
        ),
    ]
