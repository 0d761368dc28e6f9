"""The shared-scope routes of design.md section 10: create and list scopes, list, set and
remove members. Each one: authenticate (401) -> rate limit (429) -> strict input (400/413/415)
-> the rule in server/scopes.py (403/404/409) -> the answer. Nothing is written unless every
check passed.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.auth import check_user, sign_in
from server.context import context_of
from server.errors import AuthError
from server.http import JSONBody, read_json
from server.ratelimit import rate_limiter_of
from server.scopes import ScopeRefused, check_role, check_scope_id, check_title

SCOPE_BODY_LIMIT = 4096


async def _caller(request: Request) -> str:
    principal = await sign_in(request)
    rate_limiter_of(request).take(principal.user)
    return principal.user


async def _body(request: Request, allowed: set[str]) -> dict[str, Any]:
    body = await read_json(request, SCOPE_BODY_LIMIT)
    if not isinstance(body, dict) or not set(body) <= allowed:
        raise ScopeRefused(400, "invalid_request",
                           f"the body must be an object with at most: {', '.join(sorted(allowed))}")
    return body


def _user_param(request: Request) -> str:
    try:
        return check_user(request.path_params["user"])
    except AuthError as e:
        raise ScopeRefused(400, "invalid_request", f"user: {e.message}") from None


async def create_scope(request: Request) -> Response:
    user = await _caller(request)
    body = await _body(request, {"id", "title"})
    scope_id = check_scope_id(body["id"]) if body.get("id") is not None else None
    title = check_title(body.get("title"))
    scopes = context_of(request).scopes
    membership, created = await run_in_threadpool(scopes.create, user, scope_id, title)
    return JSONBody(membership.to_json(), 201 if created else 200)


async def list_scopes(request: Request) -> Response:
    user = await _caller(request)
    mine = await run_in_threadpool(context_of(request).scopes.mine, user)
    return JSONBody({"scopes": [m.to_json() for m in mine]})


async def list_members(request: Request) -> Response:
    user = await _caller(request)
    scope_id = check_scope_id(request.path_params["scope"])
    members = await run_in_threadpool(context_of(request).scopes.members, user, scope_id)
    return JSONBody({"members": [{"user": u, "role": r} for u, r in members]})


async def set_member(request: Request) -> Response:
    caller = await _caller(request)
    scope_id = check_scope_id(request.path_params["scope"])
    user = _user_param(request)
    body = await _body(request, {"role"})
    role = check_role(body.get("role"))
    await run_in_threadpool(context_of(request).scopes.set_role, caller, scope_id, user, role)
    return JSONBody({"user": user, "role": role})


async def remove_member(request: Request) -> Response:
    caller = await _caller(request)
    scope_id = check_scope_id(request.path_params["scope"])
    user = _user_param(request)
    await run_in_threadpool(context_of(request).scopes.remove, caller, scope_id, user)
    return Response(status_code=204)


def scope_routes() -> list[BaseRoute]:
    return [
        Route("/v1/scopes", create_scope, methods=["POST"]),
        Route("/v1/scopes", list_scopes, methods=["GET"]),
        Route("/v1/scopes/{scope}/members", list_members, methods=["GET"]),
        # `path`: a user id may hold a "/" (sent percent-encoded, decoded before routing).
        Route("/v1/scopes/{scope}/members/{user:path}", set_member, methods=["PUT"]),
        Route("/v1/scopes/{scope}/members/{user:path}", remove_member, methods=["DELETE"]),
    ]
