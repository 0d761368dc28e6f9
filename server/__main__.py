"""Run the sync server: `python -m server --dev` (docs/server.md lists every option).

By default it starts the embedded DynamoDB Local (in memory, or persistent with
--data-dir), waits until it answers, creates the missing tables, serves, and stops
DynamoDB Local on exit. `--dynamodb aws` talks to real AWS DynamoDB configured by the
standard AWS environment (AWS_REGION, credentials chain); `--dynamodb URL` to any endpoint.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import uvicorn

from pysync.errors import SchemaError
from pysync.schema import Schema
from server.app import create_app
from server.assets import ensure_pysync_wheel
from server.config import Settings
from server.context import ServerContext
from server.dynamo_local import DynamoDBLocal
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        settings_from(args, None)  # a wrong --schema fails before anything starts
    except SchemaError as e:
        sys.exit(f"error: {e}")
    ensure_pysync_wheel()
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
            names = ensure_tables(ServerContext.from_settings(settings).dynamodb,
                                  settings.table_prefix, settings.create_tables)
        except TablesMissing as e:
            sys.exit(f"error: {e}")
        print(f"tables ready: {names.items}, {names.clients}, {names.log}, {names.feed}")
        # Open SSE streams never end by themselves: without a bound, Ctrl-C would wait on them.
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info",
                    timeout_graceful_shutdown=3)
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    main()
