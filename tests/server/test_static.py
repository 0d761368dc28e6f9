"""The web app, the Pyodide runtime and the wheels, served from our own origin with caching."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import struct
import zipfile
from pathlib import Path

import httpx
import pytest

from server.app import create_app
from server.assets import ensure_pysync_wheel
from server.config import Settings
from server.paths import APP_DIR
from server.static import current_build


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


def test_build_json_names_the_build_and_its_bundle(http: Http) -> None:
    r = http.get("/build.json")
    body = r.json()
    assert r.headers["cache-control"] == "no-cache"
    assert body == {"build": body["build"], "bundle": f"/build/{body['build']}/site-packages.bin"}


def test_the_bundle_holds_every_wheel_but_micropip_and_is_immutable(http: Http) -> None:
    bundle = http.get(http.get("/build.json").json()["bundle"])
    assert bundle.headers["cache-control"] == "public, max-age=31536000, immutable"
    data = bundle.content
    (size,) = struct.unpack("<I", data[:4])
    index = json.loads(data[4:4 + size])
    assert 4 + size + sum(n for _, n in index) == len(data)  # boot.js checks the same
    files = {path for path, _ in index}
    assert {"pysync/__init__.py", "pysync/idb_helper.js", "httpx/__init__.py",
            "anyio/__init__.py", "typing_extensions.py"} <= files
    assert not any(path.startswith("micropip") for path in files)
    wheel = zipfile.ZipFile(ensure_pysync_wheel())
    offset = 4 + size
    for path, n in index:  # the bytes are the wheel's own
        if path == "pysync/store.py":
            assert data[offset:offset + n] == wheel.read("pysync/store.py")
        offset += n


def test_an_older_builds_bundle_is_a_404(http: Http) -> None:
    r = http.get("/build/0123456789abcdef0123/site-packages.bin")
    assert r.status_code == 404
    assert "reload" in r.text


def test_the_service_worker_names_the_build_and_caches_its_files(http: Http) -> None:
    build = http.get("/build.json").json()
    r = http.get("/sw.js")
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["content-type"].startswith("text/javascript")
    assert f"const BUILD = {json.dumps(build['build'])};" in r.text
    files = json.loads(re.search(r"const FILES = (\[.*?\]);", r.text)[1])  # type: ignore[index]
    assert {"/", "/index.html", "/test.html", "/boot.js", "/demo.py", "/build.json",
            build["bundle"], "/pyodide/pyodide.asm.wasm"} <= set(files)
    assert all(f.startswith("/") and not f.startswith("//") for f in files)  # our origin only
    assert all(http.get(f).status_code == 200 for f in files)


def test_a_changed_file_is_a_new_build(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    shutil.copytree(APP_DIR, app_dir)
    before = current_build(app_dir).version
    (app_dir / "demo.css").write_text((app_dir / "demo.css").read_text() + "\n/* new */\n")
    assert current_build(app_dir).version != before
