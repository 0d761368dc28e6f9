"""Run the sync server: `python -m server --dev` (see README.md for every option)."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from server.app import create_app
from server.assets import ensure_pysync_wheel
from server.config import Settings
from server.dynamo_local import DynamoDBLocal


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dev", action="store_true", help="enable the dev token issuer")
    parser.add_argument(
        "--dynamodb", default="embedded",
        help="'embedded' (start DynamoDB Local), 'aws' (standard AWS environment) or a URL",
    )
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="persist the embedded DynamoDB Local here (default: in memory)")
    args = parser.parse_args()

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
    settings = Settings.from_env(dev=args.dev, dynamodb_endpoint=endpoint)
    try:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    main()
