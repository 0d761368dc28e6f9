"""Users of the shared-scope routes, for the API tests: each one signed in with a dev token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from tests.server.api_support import Api


@dataclass
class User:
    api: Api
    name: str
    token: str

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        if body is not None:
            kwargs["json"] = body
        return self.api.http.request(method, path, headers=headers, **kwargs)

    def create(self, **body: Any) -> httpx.Response:
        return self.call("POST", "/v1/scopes", body)

    def scopes(self) -> list[dict[str, Any]]:
        r = self.call("GET", "/v1/scopes")
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["scopes"]
        return found

    def members(self, scope: str) -> httpx.Response:
        return self.call("GET", f"/v1/scopes/{scope}/members")

    def share(self, scope: str, user: str, role: str) -> httpx.Response:
        return self.call("PUT", f"/v1/scopes/{scope}/members/{quote(user, safe='')}",
                         {"role": role})

    def unshare(self, scope: str, user: str) -> httpx.Response:
        return self.call("DELETE", f"/v1/scopes/{scope}/members/{quote(user, safe='')}")


def signed_in(api: Api, prefix: str = "user") -> User:
    """A user who has made an authenticated request (so scopes can be shared with it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    user = User(api, name, api.token(name))
    user.scopes()
    return user


def owned_scope(owner: User, title: str | None = "Groceries") -> str:
    r = owner.create(title=title)
    assert r.status_code == 201, r.text
    scope: str = r.json()["scope"]
    return scope


def scopes_table(api: Api) -> list[dict[str, Any]]:
    """Every item of the scopes table, as DynamoDB holds it (first_seen aside: reading a
    user's scopes notes it, which is not a write of the request under test)."""
    pages = api.ctx.dynamodb.get_paginator("scan").paginate(
        TableName=api.ctx.tables.scopes, ConsistentRead=True)
    return sorted((item for page in pages for item in page["Items"]),
                  key=lambda i: (i["pk"]["S"], i["sk"]["S"]))
