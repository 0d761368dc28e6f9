"""Server settings: one frozen dataclass, built from arguments or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pysync.schema import Schema


@dataclass(frozen=True)
class Settings:
    # Dev mode enables POST /v1/dev/token. Never in production.
    dev: bool = False
    # None means real AWS DynamoDB, configured by the standard AWS environment.
    dynamodb_endpoint: str | None = None
    region: str = "us-east-1"
    table_prefix: str = "pysync_"
    schema: Schema = field(default_factory=Schema)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "dev": env.get("PYSYNC_DEV", "") == "1",
            "dynamodb_endpoint": env.get("PYSYNC_DYNAMODB_ENDPOINT") or None,
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            "table_prefix": env.get("PYSYNC_TABLE_PREFIX", "pysync_"),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
