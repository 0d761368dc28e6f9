"""Which user owns a client_id, and how far that client's mutations have been processed.

One item per client in the clients table: pk="client#<client_id>", sk="state", with
`owner` (the user who first used it) and `lmid` (last processed mutation id). Push advances
`lmid` in the same transaction that applies the mutations (server/push.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from botocore.exceptions import ClientError

from server.context import ServerContext
from server.errors import ClientForbidden
from server.retry import error_code, with_retries


def client_key(client_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"client#{client_id}"}, "sk": {"S": "state"}}


def bind_client_sync(ctx: ServerContext, client_id: str, user: str) -> int:
    """bind_client for code already running in a worker thread."""
    table = ctx.tables.clients
    key = client_key(client_id)
    for _ in range(3):
        got = with_retries(lambda: ctx.dynamodb.get_item(
            TableName=table, Key=key, ConsistentRead=True))
        item = got.get("Item")
        if item is not None:
            if item["owner"]["S"] != user:
                raise ClientForbidden(f"client_id {client_id!r} belongs to another user")
            return int(item["lmid"]["N"])
        try:
            with_retries(lambda: ctx.dynamodb.put_item(
                TableName=table,
                Item={**key, "owner": {"S": user}, "lmid": {"N": "0"},
                      "created": {"N": str(int(time.time()))}},
                ConditionExpression="attribute_not_exists(pk)",
            ))
            return 0
        except ClientError as e:
            if error_code(e) != "ConditionalCheckFailedException":
                raise
            # Another request bound it first: read who.
    raise AssertionError("client item keeps appearing and vanishing")


async def bind_client(ctx: ServerContext, client_id: str, user: str) -> int:
    """Bind `client_id` to `user` on first use; return its last processed mutation id.

    Raises ClientForbidden if the client_id already belongs to another user, and
    StoreUnavailable if DynamoDB keeps throttling.
    """
    return await asyncio.to_thread(bind_client_sync, ctx, client_id, user)
