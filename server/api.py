"""The push API routes: POST /v1/push and, in dev mode only, POST /v1/dev/token.

A push goes: authenticate (401) -> rate limit (429) -> content type (415) -> size (413) ->
strict JSON (400) -> envelope (400/413) -> apply_push (403/409/503) -> 200. Authentication
comes first so an anonymous caller never makes the server read or parse a body.
Errors are raised as pysync errors and answered by server/http.py's exception handlers.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pysync.errors import ProtocolError
from pysync.protocol import PushRequest, loads
from server.auth import check_user, sign_in, verifier_of
from server.config import Settings
from server.context import context_of
from server.errors import AuthError
from server.http import JSONBody, read_body, read_json, require_json
from server.push import apply_push
from server.ratelimit import rate_limiter_of
from server.scopes import scope_pk

DEV_TOKEN_BODY_LIMIT = 4096
INLINE_PARSE_BYTES = 64 * 1024


def parse_push(body: bytes, max_mutations: int) -> PushRequest:
    return PushRequest.from_json(loads(body), max_mutations)


async def push(request: Request) -> Response:
    principal = await sign_in(request)
    rate_limiter_of(request).take(principal.user)
    settings = context_of(request).settings
    require_json(request)
    body = await read_body(request, settings.max_body_bytes)
    if len(body) > INLINE_PARSE_BYTES:
        # Validating a big push takes tens of ms of pure Python: keep the event loop free.
        parsed = await run_in_threadpool(parse_push, body, settings.max_mutations)
    else:
        parsed = parse_push(body, settings.max_mutations)
    result = await apply_push(context_of(request), principal.user, principal.scope, parsed)
    # The change feed and pokes, at once, for each scope the push wrote to.
    context_of(request).hub.wrote({principal.scope, *(scope_pk(m.scope) for m in
                                                      parsed.mutations if m.scope is not None)})
    return JSONBody(result.to_json())


async def dev_token(request: Request) -> Response:
    if not context_of(request).settings.dev:
        # Indistinguishable from a route that does not exist.
        raise ProtocolError("not_found", "not found")
    body = await read_json(request, DEV_TOKEN_BODY_LIMIT)
    if not isinstance(body, dict) or set(body) != {"user"}:
        raise ProtocolError("invalid_request", 'the body must be {"user": "<name>"}')
    try:
        user = check_user(body["user"])
    except AuthError as e:
        raise ProtocolError("invalid_request", f"user: {e.message}") from None
    verifier = verifier_of(request)
    return JSONBody({"token": verifier.issue_dev_token(user), "user": user,
                     "expires_in": verifier.settings.dev_token_ttl_s})


def api_routes(settings: Settings) -> list[BaseRoute]:
    # settings is accepted for symmetry with the other route factories; the handlers read
    # the app's own settings from the ServerContext.
    return [
        Route("/v1/push", push, methods=["POST"]),
        Route("/v1/dev/token", dev_token, methods=["POST"]),
    ]
