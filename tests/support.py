"""Test helpers shared by the server and end-to-end suites: a real server on a real socket."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from server.assets import ensure_pysync_wheel
from server.dynamo_local import free_port, terminate
from server.paths import ROOT


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02,
               message: str = "the condition did not hold",
               pause: Callable[[float], object] = time.sleep) -> Any:
    """Call `predicate` until it returns something true, and return that; raise
    AssertionError(message) if `timeout` seconds pass first. The tests' one poll loop: a
    bounded wait for something asynchronous (a feed, a stream, a process), never a timing
    assertion. `pause` waits `interval` seconds between calls (a Playwright page's
    wait_for_timeout, so its route handlers run meanwhile); a predicate that itself moves
    things on (a feed pass) may poll with no interval."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout:g} s)")
        if interval > 0:
            pause(interval)


# Dev tokens of one server process are accepted by the others given the same secret.
SHARED_SECRET = "a-dev-secret-shared-by-every-server-process-of-a-test"


def answers_health(url: str) -> bool:
    """Whether the server at `url` answers /v1/health with 200 (yet)."""
    try:
        return httpx.get(f"{url}/v1/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def serve(app: ASGIApp, port: int | None = None,
          config: uvicorn.Config | None = None) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port in a thread; yield its base URL.
    `config`, if given, is used as it is (its own app, host and port)."""
    if config is None:
        # A page's open events stream would hold a graceful shutdown forever: after 2 s its
        # task is cancelled, and the app's lifespan still shuts down (the feed stops).
        config = uvicorn.Config(app, host="127.0.0.1", port=port or free_port(),
                                log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=2)
    port = config.port
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()

    def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited before it started")
        return server.started

    wait_until(started, timeout=30, message="uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        if thread.is_alive():
            # Going on would leave this server's feed running against whatever the test
            # does next (e.g. tables dropped and made again).
            raise RuntimeError(f"uvicorn on port {port} did not stop")


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

            def healthy() -> bool:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"server exited: {log.read().decode()[-3000:]}")
                return answers_health(url)

            wait_until(healthy, timeout=60, interval=0.1, message="server did not start")
            yield url, proc
        finally:
            terminate(proc)
