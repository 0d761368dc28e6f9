"""Shared scopes and their members, kept in the scopes table (design.md section 10).

Layout (pk, sk), every pair written in one transaction so the two sides never disagree:
- ("s#<id>", "#scope"): the scope itself: `title`, `owners` (how many owners it has; a
  transaction that would take it to 0 fails its condition, so two owners demoting each other
  at once cannot leave a scope without one), `created_by`, `created_at`.
- ("s#<id>", "m#<user>"): a member and its `role`.
- ("u#<user>", "s#<id>"): the same membership seen from the user (`role`, the scope's
  `title`), so "my scopes" is one query.
- ("u#<user>", "#user"): the user has signed in to this server at least once (`first_seen`);
  only such users can be added to a scope, so a mistyped name is refused instead of sharing
  with nobody.

Every right is decided here from these items, read strongly consistent, never from the
request. Nothing here knows HTTP: refusals are server errors that server/http.py answers.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import TYPE_CHECKING, Any, ClassVar, cast

from botocore.exceptions import ClientError

from pysync.schema import SCOPE_ID
from pysync.sharing import MAX_TITLE_CHARS, ROLES, Role
from server.errors import ServerError
from server.retry import cancellation_codes, error_code, with_retries

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WRITERS: frozenset[Role] = frozenset({"owner", "editor"})
SCOPE_SK, USER_SK = "#scope", "#user"
# Users noted as signed in, per process: each is written once, not on every request.
KNOWN_USERS_CACHED = 10_000


class ScopeRefused(ServerError):
    """A scope request the server refuses: the status and code section 10 names."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def not_found(scope_id: str) -> ScopeRefused:
    # The same answer for a scope that does not exist and one the caller is not in: a
    # scope's existence does not leak.
    return ScopeRefused(404, "not_found", f"no scope {scope_id!r} of yours")


def scope_pk(scope_id: str) -> str:
    return f"s#{scope_id}"


def user_pk(user: str) -> str:
    return f"u#{user}"


def check_scope_id(value: object) -> str:
    if not isinstance(value, str) or not SCOPE_ID.fullmatch(value):
        raise ScopeRefused(400, "invalid_request",
                           "a scope id is 8-64 characters of A-Z, a-z, 0-9, _ and -")
    return value


def check_title(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TITLE_CHARS or not value.isprintable():
        raise ScopeRefused(400, "invalid_request",
                           f"title: at most {MAX_TITLE_CHARS} printable characters, or null")
    return value


def check_role(value: object) -> Role:
    if value not in ROLES:
        raise ScopeRefused(400, "invalid_request", f"role: one of {', '.join(ROLES)}")
    return value


@dataclass(frozen=True)
class Membership:
    scope: str
    role: Role
    title: str | None

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "role": self.role, "title": self.title}


class Scopes:
    """The scopes table's rules. Blocking boto3 calls: run them off the event loop."""

    GENERATED_ID_BYTES: ClassVar[int] = 12  # 16 characters of base64url

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        # Typed loosely: the transactions are built as plain dicts.
        self.client: Any = client
        self.table = table
        self._known: OrderedDict[str, None] = OrderedDict()
        self._known_lock = Lock()

    # ---- users ---------------------------------------------------------------------------

    def note_user(self, user: str) -> None:
        """Remember that `user` signed in (once per process and user)."""
        with self._known_lock:
            if user in self._known:
                self._known.move_to_end(user)
                return
        with_retries(lambda: self.client.update_item(
            TableName=self.table, Key=self._key(user_pk(user), USER_SK),
            UpdateExpression="SET first_seen = if_not_exists(first_seen, :now)",
            ExpressionAttributeValues={":now": {"N": str(int(time.time()))}}))
        with self._known_lock:
            self._known[user] = None
            while len(self._known) > KNOWN_USERS_CACHED:
                self._known.popitem(last=False)

    def noted(self, user: str) -> bool:
        """Whether `user` was noted by this process already (no DynamoDB call)."""
        with self._known_lock:
            return user in self._known

    def user_exists(self, user: str) -> bool:
        return self._get(user_pk(user), USER_SK) is not None

    # ---- scopes --------------------------------------------------------------------------

    def create(self, owner: str, scope_id: str | None, title: str | None
               ) -> tuple[Membership, bool]:
        """A new scope owned by `owner`; (membership, created). Asking again for an id the
        caller owns is an idempotent retry (created False); any other existing id is
        409 scope_exists."""
        sid = scope_id or secrets.token_urlsafe(self.GENERATED_ID_BYTES)
        now = {"N": str(int(time.time()))}
        meta = {**self._key(scope_pk(sid), SCOPE_SK), "owners": {"N": "1"},
                "created_by": {"S": owner}, "created_at": now, **_title_attr(title)}
        try:
            with_retries(lambda: self.client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table, "Item": meta,
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table, "Item": self._member_item(sid, owner,
                                                                              "owner")}},
                {"Put": {"TableName": self.table,
                         "Item": self._user_item(owner, sid, "owner", title)}},
            ]))
        except ClientError as e:
            if error_code(e) != "TransactionCanceledException" or \
                    cancellation_codes(e)[:1] != ["ConditionalCheckFailed"]:
                raise
            existing = self.membership(owner, sid)
            if existing is None or existing.role != "owner":
                raise ScopeRefused(409, "scope_exists",
                                   f"the scope id {sid!r} is taken") from None
            return existing, False
        return Membership(sid, "owner", title), True

    def mine(self, user: str) -> list[Membership]:
        """Every scope `user` is a member of, in id order."""
        found: list[Membership] = []
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table, ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :s)",
            ExpressionAttributeValues={":pk": {"S": user_pk(user)}, ":s": {"S": "s#"}})
        for page in with_retries(lambda: list(pages)):
            for item in page["Items"]:
                found.append(Membership(item["sk"]["S"][2:], cast(Role, item["role"]["S"]),
                                        _title_of(item)))
        return found

    def membership(self, user: str, scope_id: str) -> Membership | None:
        """`user`'s membership of the scope, read strongly consistent; None if not a member."""
        item = self._get(user_pk(user), scope_pk(scope_id))
        if item is None:
            return None
        return Membership(scope_id, cast(Role, item["role"]["S"]), _title_of(item))

    def members(self, caller: str, scope_id: str) -> list[tuple[str, Role]]:
        """The scope's members and roles; 404 unless `caller` is one of them."""
        self._require_member(caller, scope_id)
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table, ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :m)",
            ExpressionAttributeValues={":pk": {"S": scope_pk(scope_id)}, ":m": {"S": "m#"}})
        return [(item["sk"]["S"][2:], cast(Role, item["role"]["S"]))
                for page in with_retries(lambda: list(pages)) for item in page["Items"]]

    def set_role(self, caller: str, scope_id: str, user: str, role: Role) -> None:
        """Add `user` to the scope with `role`, or change its role; owners only."""
        mine = self._require_member(caller, scope_id)
        if mine.role != "owner":
            raise ScopeRefused(403, "forbidden", "only an owner can manage members")
        if not self.user_exists(user):
            raise ScopeRefused(404, "unknown_user",
                               f"no user {user!r} has signed in to this server")
        current = self.membership(user, scope_id)
        before = current.role if current else None
        if before == role:
            return
        delta = (role == "owner") - (before == "owner")
        self._write_membership(scope_id, user, before, role, mine.title, delta, acting=caller)

    def remove(self, caller: str, scope_id: str, user: str) -> None:
        """Remove `user` from the scope: owners remove anyone, members themselves."""
        mine = self._require_member(caller, scope_id)
        if user != caller and mine.role != "owner":
            raise ScopeRefused(403, "forbidden", "only an owner can remove other members")
        current = self.membership(user, scope_id) if user != caller else mine
        if current is None:
            raise ScopeRefused(404, "not_found", f"{user!r} is not a member of this scope")
        self._write_membership(scope_id, user, current.role, None, mine.title,
                               -1 if current.role == "owner" else 0,
                               acting=caller if user != caller else None)

    # ---- inside --------------------------------------------------------------------------

    def _require_member(self, user: str, scope_id: str) -> Membership:
        found = self.membership(user, scope_id)
        if found is None:
            raise not_found(scope_id)
        return found

    def _write_membership(self, scope_id: str, user: str, before: Role | None,
                          role: Role | None, title: str | None, owners_delta: int,
                          acting: str | None) -> None:
        """Both sides of one membership (`role` None removes it) and the owner count, at
        once. The count may not fall below 1 (409 last_owner); the owner `acting` must still
        be one when it commits (403 forbidden: its right was checked on a read that may be
        stale by now); the member must still hold the role it was read with (`before`), else
        another change came first (409 conflict): so the count never drifts from the
        members."""
        actions: list[dict[str, Any]] = []
        if owners_delta:
            actions.append({"Update": {
                "TableName": self.table, "Key": self._key(scope_pk(scope_id), SCOPE_SK),
                "UpdateExpression": "ADD owners :d",
                "ConditionExpression": "attribute_exists(pk) AND owners > :floor",
                "ExpressionAttributeValues": {":d": {"N": str(owners_delta)},
                                              ":floor": {"N": str(max(0, -owners_delta))}}}})
        if acting is not None and acting != user:
            actions.append({"ConditionCheck": {
                "TableName": self.table, "Key": self._key(scope_pk(scope_id), f"m#{acting}"),
                "ConditionExpression": "#r = :owner", "ExpressionAttributeNames": {"#r": "role"},
                "ExpressionAttributeValues": {":owner": {"S": "owner"}}}})
        member_key = self._key(scope_pk(scope_id), f"m#{user}")
        still: dict[str, Any] = (
            {"ConditionExpression": "#r = :before", "ExpressionAttributeNames": {"#r": "role"},
             "ExpressionAttributeValues": {":before": {"S": before}}}
            if before else {"ConditionExpression": "attribute_not_exists(pk)"})
        if role is None:
            actions += [{"Delete": {"TableName": self.table, "Key": member_key, **still}},
                        {"Delete": {"TableName": self.table,
                                    "Key": self._key(user_pk(user), scope_pk(scope_id))}}]
        else:
            actions += [{"Put": {"TableName": self.table,
                                 "Item": self._member_item(scope_id, user, role), **still}},
                        {"Put": {"TableName": self.table,
                                 "Item": self._user_item(user, scope_id, role, title)}}]
        try:
            with_retries(lambda: self.client.transact_write_items(TransactItems=actions))
        except ClientError as e:
            if error_code(e) != "TransactionCanceledException":
                raise
            failed = [a for a, code in zip(actions, cancellation_codes(e), strict=False)
                      if code == "ConditionalCheckFailed"]
            if failed and "Update" in failed[0]:
                raise ScopeRefused(409, "last_owner",
                                   "a scope keeps at least one owner") from None
            if failed and "ConditionCheck" in failed[0]:
                raise ScopeRefused(403, "forbidden", "only an owner can manage members") from None
            raise ScopeRefused(409, "conflict",
                               "the scope's members changed meanwhile: try again") from None

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        item = with_retries(lambda: self.client.get_item(
            TableName=self.table, Key=self._key(pk, sk), ConsistentRead=True)).get("Item")
        return cast("dict[str, Any] | None", item)

    @staticmethod
    def _key(pk: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def _member_item(self, scope_id: str, user: str, role: Role) -> dict[str, Any]:
        return {**self._key(scope_pk(scope_id), f"m#{user}"), "role": {"S": role}}

    def _user_item(self, user: str, scope_id: str, role: Role, title: str | None
                   ) -> dict[str, Any]:
        return {**self._key(user_pk(user), scope_pk(scope_id)), "role": {"S": role},
                **_title_attr(title)}


def _title_attr(title: str | None) -> dict[str, Any]:
    return {"title": {"S": title}} if title is not None else {}


def _title_of(item: dict[str, Any]) -> str | None:
    return str(item["title"]["S"]) if "title" in item else None
