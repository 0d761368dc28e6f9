"""Test helpers shared by the server and end-to-end suites: a real server on a real socket."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from server.assets import ensure_pysync_wheel
from server.dynamo_local import free_port, terminate
from server.paths import ROOT

# Dev tokens of one server process are accepted by the others given the same secret.
SHARED_SECRET = "a-dev-secret-shared-by-every-server-process-of-a-test"


@contextmanager
def serve(app: ASGIApp, port: int | None = None,
          config: uvicorn.Config | None = None) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port in a thread; yield its base URL.
    `config`, if given, is used as it is (its own app, host and port)."""
    if config is None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port or free_port(),
                                log_level="warning", lifespan="on")
    port = config.port
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def server_process(endpoint: str, prefix: str, *, feed: bool,
                   env: Mapping[str, str] | None = None) -> Iterator[tuple[str, Any]]:
    """A real `python -m server --dev` process on a free loopback port, against the DynamoDB
    at `endpoint`; yields (base URL, the Popen). Its output goes to a temporary file, shown
    if it exits before answering /v1/health."""
    ensure_pysync_wheel()  # the set-up's step: a server's start serves the wheel, never builds it
    port = free_port()
    full_env = {**os.environ, "PYSYNC_JWT_SECRET": SHARED_SECRET, "PYSYNC_TABLE_PREFIX": prefix,
                "PYSYNC_FEED": "1" if feed else "0", **(env or {})}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--dev", "--dynamodb", endpoint,
             "--port", str(port)], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"server exited: {log.read().decode()[-3000:]}")
                try:
                    if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start")
                time.sleep(0.1)
            yield url, proc
        finally:
            terminate(proc)
