"""Run the sync server: `python -m server --dev`, or `pysync-server --dev` where pysync is
installed with its server (`pip install 'pysync[server]'`); docs/server.md lists every option.

By default it starts the embedded DynamoDB Local (in memory, or persistent with
--data-dir), waits until it answers, creates the missing tables, serves, and stops
DynamoDB Local on exit. `--dynamodb aws` talks to real AWS DynamoDB configured by the
standard AWS environment (AWS_REGION, credentials chain); `--dynamodb URL` to any endpoint.
It serves the browser's pysync wheel that the set-up built (`make setup`, or
`python -m server.assets`), and never builds it itself.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from pysync import __version__
from pysync.errors import SchemaError
from pysync.schema import Schema
from server.app import create_app
from server.assets import pysync_wheel, wheel_is_current
from server.config import Settings
from server.db import dynamodb_client
from server.dynamo_local import DynamoDBLocal
from server.paths import WEB, WHEELS_DIR
from server.tables import TablesMissing, ensure_tables


def load_schema(spec: str) -> Schema:
    """The Schema named by "package.module:ATTR" (ATTR defaults to SCHEMA)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SchemaError(f"--schema {spec!r}: cannot import {module_name!r}: {e}") from None
    schema = getattr(module, attr or "SCHEMA", None)
    if not isinstance(schema, Schema):
        raise SchemaError(f"--schema {spec!r}: {attr or 'SCHEMA'} is not a pysync.Schema")
    return schema


# uvicorn's own limits, kept explicit here (docs/api.md, "Slow clients"):
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this (uvicorn's default)
MAX_HEAD_BYTES = 16 * 1024  # a request line + headers larger than this: 400 (h11's default)
GRACEFUL_SHUTDOWN_S = 3  # open SSE streams never end by themselves: bound Ctrl-C's wait


def head_deadline_protocol(timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, plus a deadline for each request's head (request line and
    headers), from the connection's start or the previous response's end.

    uvicorn has none: its keep-alive timer starts only after a response, and every byte
    received cancels it, so a client sending its headers one byte a second (or connecting
    and sending nothing) would hold the connection for ever. Bodies are bounded by the app
    (server/http.py: body_timeout_s, and Connection: close for a body left unread).
    """

    class HeadDeadlineH11Protocol(H11Protocol):
        _head_deadline: asyncio.TimerHandle | None = None

        def _arm_head_deadline(self) -> None:
            self._cancel_head_deadline()
            self._head_deadline = self.loop.call_later(timeout_s, self._head_timed_out)

        def _cancel_head_deadline(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _head_timed_out(self) -> None:
            self._head_deadline = None
            # Still waiting for (the rest of) a request's head: no request is being served.
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_deadline()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the whole head has arrived
                self._cancel_head_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_head_deadline()  # the next request's head

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_deadline()
            super().connection_lost(exc)

    return HeadDeadlineH11Protocol


def uvicorn_config(app: ASGIApp, host: str, port: int, header_timeout_s: float,
                   **overrides: Any) -> uvicorn.Config:
    """How the server runs under uvicorn (tests start theirs with the same config)."""
    options: dict[str, Any] = {
        "host": host, "port": port, "log_level": "info",
        "http": head_deadline_protocol(header_timeout_s),
        "timeout_keep_alive": KEEP_ALIVE_S,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class WheelMissing(RuntimeError):
    """The web app is there to serve but the browser's pysync wheel is not."""


def check_browser_wheel(wheels_dir: Path = WHEELS_DIR) -> Path | None:
    """The browser's pysync wheel this server will serve, checked once at start.

    The server never builds it: a start must not depend on a build tool, nor rewrite a file
    that other servers on the same checkout are serving. None where there is no web app to
    serve (a server installed from the wheel: the API needs no browser wheel).
    """
    if not (WEB / "app").is_dir():
        return None
    wheel = pysync_wheel(wheels_dir)
    if wheel is None:
        raise WheelMissing(
            f"no pysync wheel in {wheels_dir}, so the web app cannot load pysync: "
            "build it with `make setup` (or `python -m server.assets`)"
        )
    if not wheel_is_current(wheel):
        print(f"warning: {wheel.name} is older than pysync's source; the page gets the old "
              "one until `python -m server.assets` (or `make setup`) rebuilds it",
              file=sys.stderr)
    return wheel


def parser(prog: str = "python -m server") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"pysync {__version__}")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--dev", action="store_true",
                   help="enable the dev token issuer (never in production)")
    p.add_argument("--dynamodb", default=os.environ.get("PYSYNC_DYNAMODB", "embedded"),
                   help="'embedded' (start DynamoDB Local, the default), 'aws' (the standard "
                        "AWS environment) or an endpoint URL [env PYSYNC_DYNAMODB]")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="persist the embedded DynamoDB Local in this folder (default: memory)")
    p.add_argument("--schema", default=os.environ.get("PYSYNC_SCHEMA"),
                   help="the shared pysync.Schema as module:ATTR; without one every "
                        "collection is accepted with the merge strategy [env PYSYNC_SCHEMA]")
    p.add_argument("--table-prefix", default=None,
                   help="prefix of the DynamoDB table names [env PYSYNC_TABLE_PREFIX, "
                        "default pysync_]")
    return p


def settings_from(args: argparse.Namespace, endpoint: str | None) -> Settings:
    """Raises SchemaError if --schema does not name a pysync.Schema."""
    overrides: dict[str, object] = {"dev": args.dev, "dynamodb_endpoint": endpoint}
    if args.schema:
        overrides["schema"] = load_schema(args.schema)
    if args.table_prefix is not None:
        overrides["table_prefix"] = args.table_prefix
    return Settings.from_env(**overrides)


def main(argv: list[str] | None = None, prog: str = "python -m server") -> None:
    args = parser(prog).parse_args(argv)
    try:
        settings_from(args, None)  # a wrong --schema fails before anything starts
        check_browser_wheel()  # so does a missing browser wheel
    except (SchemaError, WheelMissing) as e:
        sys.exit(f"error: {e}")
    local: DynamoDBLocal | None = None
    endpoint: str | None
    if args.dynamodb == "embedded":
        local = DynamoDBLocal(data_dir=args.data_dir).start()
        endpoint = local.endpoint
        print(f"DynamoDB Local on {endpoint}" + (f" (data in {args.data_dir})"
                                                  if args.data_dir else " (in memory)"))
    elif args.dynamodb == "aws":
        endpoint = None
    else:
        endpoint = args.dynamodb
    try:
        settings = settings_from(args, endpoint)
        try:
            names = ensure_tables(dynamodb_client(settings), settings.table_prefix,
                                  settings.create_tables)
        except TablesMissing as e:
            sys.exit(f"error: {e}")
        print(f"tables ready: {names.items}, {names.clients}, {names.log}, {names.feed}")
        uvicorn.Server(uvicorn_config(create_app(settings), args.host, args.port,
                                      settings.header_timeout_s)).run()
    finally:
        if local is not None:
            local.stop()


def script() -> None:
    """The `pysync-server` console script (pyproject.toml [project.scripts])."""
    main(prog="pysync-server")


if __name__ == "__main__":
    main()
