"""The web app, the Pyodide runtime and the wheels, served from our own origin with caching."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from server.app import create_app
from server.assets import ensure_pysync_wheel
from server.config import Settings


class Http:
    """GETs through the real app over ASGI. No lifespan: serving files needs no DynamoDB."""

    def __init__(self) -> None:
        self.app = create_app(Settings(dynamodb_endpoint="http://127.0.0.1:9"))

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.get(path, headers=headers)

        return asyncio.run(go())


@pytest.fixture(scope="module")
def http() -> Http:
    ensure_pysync_wheel()
    return Http()


def test_pyodide_files_are_cached_as_immutable(http: Http) -> None:
    r = http.get("/pyodide/pyodide.mjs")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_the_page_is_revalidated_and_answers_304_when_unchanged(http: Http) -> None:
    r = http.get("/test.html")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-cache"
    again = http.get("/test.html", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


def test_the_wheel_manifest_lists_micropip_first_and_pysync(http: Http) -> None:
    r = http.get("/wheels/manifest.json")
    wheels = r.json()["wheels"]
    assert r.headers["cache-control"] == "no-cache"
    assert wheels[0].startswith("micropip-")
    assert any(w.startswith("pysync-") for w in wheels)
    assert all(http.get(f"/wheels/{w}").status_code == 200 for w in wheels)


@pytest.mark.parametrize("path", ["/wheels/../../pyproject.toml", "/..%2f..%2fpyproject.toml",
                                  "/pyodide/../../package.json", "/demo.py.bak"])
def test_nothing_outside_the_served_folders_is_reachable(http: Http, path: str) -> None:
    assert http.get(path).status_code == 404
