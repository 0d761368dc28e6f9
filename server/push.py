"""POST /v1/push, the core: apply a client's mutations to DynamoDB exactly once."""

from __future__ import annotations

from pysync.protocol import PushRequest, PushResponse
from server.context import ServerContext


async def apply_push(
    ctx: ServerContext, user: str, scope: str, request: PushRequest
) -> PushResponse:
    """Apply `request` in `scope` for `user`; see docs/server.md.

    Raises MutationGap (nothing applied), ClientForbidden, StoreUnavailable (retry later;
    whatever was applied is recorded and a retry will not apply it again).
    """
    raise NotImplementedError
