"""Which user owns a client_id, and how far that client's mutations have been processed."""

from __future__ import annotations

from server.context import ServerContext


async def bind_client(ctx: ServerContext, client_id: str, user: str) -> int:
    """Bind `client_id` to `user` on first use; return its last processed mutation id.

    Raises ClientForbidden if the client_id already belongs to another user.
    """
    raise NotImplementedError
