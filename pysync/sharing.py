"""The client side of the shared-scope routes (design.md section 10, docs/sharing.md).

SyncClient's `create_scope`, `scopes`, `members`, `share` and `unshare` call these with its
own authenticated request function, so they share its token, its retry of a refused token
and its error mapping: a refusal arrives as `pysync.SyncError` with the server's `code`
(`forbidden`, `not_found`, `unknown_user`, `last_owner`, ...). Arguments are checked here
first, so a call that cannot succeed fails at once with `InvalidValue` and sends nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from pysync.errors import InvalidValue, ProtocolError
from pysync.schema import SCOPE_ID

Role = Literal["owner", "editor", "viewer"]
ROLES: tuple[Role, ...] = ("owner", "editor", "viewer")
MAX_TITLE_CHARS = 200

# SyncClient._request: (method, path, *, body=None) -> the parsed JSON answer (None for 204).
Request = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class ScopeInfo:
    """One of my scopes: its id, my role in it, its title."""

    scope: str
    role: Role
    title: str | None


@dataclass(frozen=True)
class Member:
    user: str
    role: Role


def check_scope_id(scope: object) -> str:
    if not isinstance(scope, str) or not SCOPE_ID.fullmatch(scope):
        raise InvalidValue(f"a scope id is 8-64 characters of A-Z, a-z, 0-9, _ and -, "
                           f"not {scope!r}")
    return scope


def _check_role(role: object) -> Role:
    if role not in ROLES:
        raise InvalidValue(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def _check_user(user: object) -> str:
    if not isinstance(user, str) or not user or not user.isprintable():
        raise InvalidValue(f"a user is a non-empty printable string, not {user!r}")
    return user


def _role(value: object) -> Role:
    if value not in ROLES:
        raise ProtocolError("invalid_response", f"the server named an unknown role {value!r}")
    return value


def _members_path(scope: str, user: str | None = None) -> str:
    path = f"/v1/scopes/{check_scope_id(scope)}/members"
    return path if user is None else f"{path}/{quote(_check_user(user), safe='')}"


async def create_scope(request: Request, title: str | None = None,
                       scope_id: str | None = None) -> str:
    """A new shared scope owned by the caller; its id. `scope_id` picks the id (asking
    again for one you own returns it again: a safe retry); by default the server makes one."""
    if title is not None and (not isinstance(title, str) or len(title) > MAX_TITLE_CHARS
                              or not title.isprintable()):
        raise InvalidValue(f"a title is at most {MAX_TITLE_CHARS} printable characters")
    body: dict[str, Any] = {"title": title}
    if scope_id is not None:
        body["id"] = check_scope_id(scope_id)
    answer = await request("POST", "/v1/scopes", body=body)
    return check_scope_id(answer["scope"])


async def list_scopes(request: Request) -> list[ScopeInfo]:
    answer = await request("GET", "/v1/scopes")
    return [ScopeInfo(check_scope_id(s["scope"]), _role(s["role"]), s.get("title"))
            for s in answer["scopes"]]


async def list_members(request: Request, scope: str) -> list[Member]:
    answer = await request("GET", _members_path(scope))
    return [Member(str(m["user"]), _role(m["role"])) for m in answer["members"]]


async def share(request: Request, scope: str, user: str, role: Role) -> None:
    await request("PUT", _members_path(scope, user), body={"role": _check_role(role)})


async def unshare(request: Request, scope: str, user: str) -> None:
    await request("DELETE", _members_path(scope, user))
