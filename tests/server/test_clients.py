"""bind_client on DynamoDB Local: a client_id belongs to the user who first used it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pysync.protocol import Mutation, PushRequest
from server.clients import bind_client
from server.context import ServerContext
from server.errors import ClientForbidden
from server.push import apply_push

pytestmark = pytest.mark.dynamodb


def test_a_new_client_is_bound_with_last_mutation_id_0(
        ctx: ServerContext, client_id: str) -> None:
    assert asyncio.run(bind_client(ctx, client_id, "alice")) == 0
    assert asyncio.run(bind_client(ctx, client_id, "alice")) == 0


def test_another_user_presenting_a_bound_client_id_is_forbidden(
        ctx: ServerContext, client_id: str) -> None:
    asyncio.run(bind_client(ctx, client_id, "alice"))
    with pytest.raises(ClientForbidden):
        asyncio.run(bind_client(ctx, client_id, "bob"))


def test_bind_client_returns_the_last_processed_mutation_id(
        ctx: ServerContext, scope: str, client_id: str) -> None:
    mutations = tuple(Mutation(i, "notes", f"k{i}", "put", {"i": i}) for i in (1, 2, 3))
    asyncio.run(apply_push(ctx, "alice", scope, PushRequest(client_id, mutations)))
    assert asyncio.run(bind_client(ctx, client_id, "alice")) == 3


def test_two_users_racing_for_a_new_client_id_get_one_owner(
        ctx: ServerContext, client_id: str) -> None:
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def run(user: str) -> None:
        barrier.wait()
        try:
            asyncio.run(bind_client(ctx, client_id, user))
            outcomes[user] = "bound"
        except ClientForbidden:
            outcomes[user] = "forbidden"

    threads = [threading.Thread(target=run, args=(u,)) for u in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["bound", "forbidden"]
