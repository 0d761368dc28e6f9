"""The DynamoDB tables pysync uses, and their idempotent creation.

- items   pk=scope (S), sk="<collection>#<key>" (S); stream NEW_AND_OLD_IMAGES; TTL on _ttl.
          The records themselves: fields as top-level attributes plus the _ meta attributes.
- clients pk (S), sk (S): per-client state, pk="client#<id>", sk="state": owner, lmid (the
          last processed mutation id, moved in the same transaction as the writes it covers).
- log     pk=scope (S), sk=position (N): each scope's ordered change log (sk=0: the scope's
          anchor, its head); TTL on ttl. See server/changelog.py.
- feed    pk (S), sk (S): shard leases and checkpoints ("lease#<stream arn>", shard id),
          per-item log markers ("m#<scope>", item key; TTL), the store epoch ("meta",
          "epoch") and SSE tickets ("ticket", id; TTL). TTL on ttl. See docs/feed.md.
- scopes  pk (S), sk (S): shared scopes, their members (both ways) and the users who signed
          in. See server/scopes.py and docs/sharing.md.

All tables are PAY_PER_REQUEST. `ensure_tables` creates the missing ones and waits for them;
it never alters or deletes an existing table, so running it on every start is safe. Where the
tables are made by someone else (deploy/template.yaml, whose server role may not create
tables), `create=False` only checks that they exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from server.retry import with_retries

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class TablesMissing(RuntimeError):
    """Tables the server needs do not exist, and it was told not to create them."""


@dataclass(frozen=True)
class TableSpec:
    suffix: str
    sort_key_type: Literal["S", "N"] = "S"
    stream: bool = False
    ttl_attribute: str | None = None


ITEMS = TableSpec("items", stream=True, ttl_attribute="_ttl")
CLIENTS = TableSpec("clients", ttl_attribute="ttl")
LOG = TableSpec("log", sort_key_type="N", ttl_attribute="ttl")
FEED = TableSpec("feed", ttl_attribute="ttl")
SCOPES = TableSpec("scopes")
ALL_TABLES = (ITEMS, CLIENTS, LOG, FEED, SCOPES)


@dataclass(frozen=True)
class TableNames:
    items: str
    clients: str
    log: str
    feed: str
    scopes: str

    @classmethod
    def with_prefix(cls, prefix: str) -> TableNames:
        return cls(*(prefix + spec.suffix for spec in ALL_TABLES))


def _create_args(name: str, spec: TableSpec) -> dict[str, Any]:
    args: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": spec.sort_key_type},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if spec.stream:
        args["StreamSpecification"] = {
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    return args


def _missing(client: DynamoDBClient, prefix: str) -> list[str]:
    missing = []
    for spec in ALL_TABLES:
        try:
            with_retries(lambda n=prefix + spec.suffix: client.describe_table(  # type: ignore[misc]
                TableName=n))
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            missing.append(prefix + spec.suffix)
    return missing


def ensure_tables(client: DynamoDBClient, prefix: str, create: bool = True) -> TableNames:
    """Create whichever of pysync's tables are missing (with `create=False`, raise
    TablesMissing instead); return their names."""
    names = TableNames.with_prefix(prefix)
    if not create:
        missing = _missing(client, prefix)
        if missing:
            raise TablesMissing(f"tables missing: {', '.join(missing)} (table creation is off, "
                                "PYSYNC_CREATE_TABLES=0: create them first, e.g. with "
                                "deploy/template.yaml)")
        return names
    created: list[tuple[str, TableSpec]] = []
    for spec in ALL_TABLES:
        name = prefix + spec.suffix
        try:
            args = _create_args(name, spec)
            with_retries(lambda a=args: client.create_table(**a))  # type: ignore[misc]
            created.append((name, spec))
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceInUseException":
                raise
    for name, spec in created:
        client.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        if spec.ttl_attribute:
            ttl = {"Enabled": True, "AttributeName": spec.ttl_attribute}
            with_retries(lambda n=name, t=ttl: client.update_time_to_live(  # type: ignore[misc]
                TableName=n, TimeToLiveSpecification=t))
    return names
