"""GET /v1/pull over every scope of the caller (design.md section 10), with one cursor.

The caller reads its personal scope and each shared scope it is a member of (or the subset
named by `scopes=`), each one paged by server/pull.py's Puller exactly as a lone scope is:
a snapshot first, then its change log. This module only composes them:

- The cursor (opaque to clients) is base64url of {"v": 2, "id": store, "u": owner, "sc":
  {name: [t, p, s, n]}}: for each scope read so far (name "" is the personal scope, else the
  shared scope's id) the fields of its own pull cursor (server/pull.py's Cursor), the store
  id hoisted; `u` is the hash of the personal scope it was issued for, so another user's
  cursor resets. A version-1 cursor (from a server before shared scopes) is the personal
  scope's.
- Each page reads the caller's memberships (strongly consistent) and every scope's log head
  in one BatchGetItem; a scope caught up costs nothing more. Scopes are served in order
  (personal, then shared by id) until the page is full: a scope joined since the cursor
  starts with its snapshot.
- A scope in the cursor the caller is no longer a member of is named in `revoked` once (its
  position leaves the cursor). A scope left out by `scopes=` keeps its position, untouched.
- Anything that resets one scope (another store, retention passed) resets the whole cursor:
  the client starts again from no cursor, as before.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from pysync.errors import ProtocolError
from pysync.protocol import PullResponse
from pysync.schema import SCOPE_ID
from server.auth import sign_in
from server.clients import bind_client_sync
from server.context import context_of
from server.http import JSONBody
from server.pull import (
    MAX_CURSOR_CHARS,
    MAX_CURSOR_TIME,
    MAX_POSITION,
    MAX_SORT_KEY_BYTES,
    MAX_STORE_ID_CHARS,
    RESET,
    ClientCheck,
    Cursor,
    Puller,
    bounded_text,
    number_in,
    parse_client_id,
    parse_limit,
    scope_hash,
)
from server.scopes import Scopes, scope_pk

if TYPE_CHECKING:
    from server.changelog import ChangeLog

MULTI_CURSOR_VERSION = 2
PERSONAL = ""  # the personal scope's name in a cursor
PERSONAL_PARAM = "personal"  # ... and in `scopes=`
# A cursor names at most this many scopes: past it, a GET's query string would not fit
# the server's request line (about 60 bytes per scope once encoded).
MAX_CURSOR_SCOPES = 200
MAX_MULTI_CURSOR_CHARS = MAX_CURSOR_CHARS * 4


@dataclass(frozen=True)
class MultiCursor:
    store: str
    owner: str  # scope_hash of the personal scope it was issued for
    scopes: dict[str, Cursor]  # name ("" personal, else a shared scope id) -> its cursor

    def encode(self) -> str:
        fields: dict[str, list[Any]] = {}
        for name, c in self.scopes.items():
            entry: list[Any] = [round(c.t, 3), c.position]
            if c.snapshot_after is not None:
                entry.append(c.snapshot_after)
                if c.snapshot_left is not None:
                    entry.append(c.snapshot_left)
            fields[name] = entry
        data = {"v": MULTI_CURSOR_VERSION, "id": self.store, "u": self.owner, "sc": fields}
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, personal: str) -> MultiCursor:
        """The cursor `text` names (a version-1 cursor: the personal scope's only);
        ProtocolError invalid_cursor for anything this server cannot have issued."""
        bad = ProtocolError("invalid_cursor", "the cursor is not one this server issued")
        if len(text) > MAX_MULTI_CURSOR_CHARS:
            raise bad
        try:
            data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, ValueError, RecursionError):
            raise bad from None
        if isinstance(data, dict) and data.get("v") != MULTI_CURSOR_VERSION:
            # A version-1 cursor (or invalid_cursor); one of another scope is well-formed,
            # and resets like any cursor this server cannot serve (Puller.page_at).
            one = Cursor.decode(text)
            return cls(one.store, one.scope, {PERSONAL: one})
        if not isinstance(data, dict) or set(data) != {"v", "id", "u", "sc"} \
                or not bounded_text(data["id"], MAX_STORE_ID_CHARS) \
                or not bounded_text(data["u"], 64) \
                or not isinstance(data["sc"], dict) or len(data["sc"]) > MAX_CURSOR_SCOPES:
            raise bad
        store: str = data["id"]
        scopes = {}
        for name, entry in data["sc"].items():
            if name != PERSONAL and not SCOPE_ID.fullmatch(name):
                raise bad
            pk = personal if name == PERSONAL else scope_pk(name)
            scopes[name] = _entry(entry, store, pk, bad)
        return cls(store, data["u"], scopes)


def _entry(entry: object, store: str, pk: str, bad: ProtocolError) -> Cursor:
    if not isinstance(entry, list) or not 2 <= len(entry) <= 4:
        raise bad
    t, p, *snapshot = entry
    after = snapshot[0] if snapshot else None
    left = snapshot[1] if len(snapshot) > 1 else None
    if not (number_in(t, 0, MAX_CURSOR_TIME) and isinstance(p, int)
            and number_in(p, 0, MAX_POSITION)
            and (after is None or bounded_text(after, MAX_SORT_KEY_BYTES))
            and (left is None or (isinstance(left, int) and number_in(left, 0, MAX_POSITION)))):
        raise bad
    return Cursor(store, scope_hash(pk), float(t), p, after, left)


def parse_scopes(raw: str | None) -> frozenset[str] | None:
    """`scopes=personal,<id>,...`: the names asked for; None (absent) means all."""
    if raw is None:
        return None
    names = raw.split(",")
    if not names or len(names) > MAX_CURSOR_SCOPES or not all(
            n == PERSONAL_PARAM or SCOPE_ID.fullmatch(n) for n in names):
        raise ProtocolError("invalid_request", "scopes must be a comma-separated list of "
                                               "'personal' and scope ids")
    return frozenset(PERSONAL if n == PERSONAL_PARAM else n for n in names)


class ScopedPuller:
    """Pages over the caller's scopes. Blocking boto3 calls: run it off the event loop."""

    def __init__(self, puller: Puller, scopes: Scopes, clock: Any = None) -> None:
        self.puller, self.scope_rules = puller, scopes
        self.clock = clock or puller.clock

    @property
    def changelog(self) -> ChangeLog:
        return self.puller.changelog

    def page(self, user: str, personal: str, cursor_text: str | None, limit: int,
             client: ClientCheck, only: frozenset[str] | None = None) -> PullResponse:
        cursor = MultiCursor.decode(cursor_text, personal) if cursor_text else None
        if cursor is not None and cursor.owner != scope_hash(personal):
            return RESET  # another user's cursor: well-formed, not one to serve here
        member_of = sorted(m.scope for m in self.scope_rules.mine(user))
        names = [n for n in [PERSONAL, *member_of] if only is None or n in only]
        revoked = sorted(n for n in (cursor.scopes if cursor else {})
                         if n != PERSONAL and n not in member_of)
        kept = {n: c for n, c in (cursor.scopes if cursor else {}).items()
                if n not in revoked and n not in names}  # left out by `scopes=`
        pk = {n: personal if n == PERSONAL else scope_pk(n) for n in names}
        heads = self.changelog.heads([pk[n] for n in names]) if names else {}
        return self._serve(names, pk, heads, cursor, limit, client, kept, tuple(revoked),
                           scope_hash(personal))

    def _serve(self, names: Sequence[str], pk: dict[str, str], heads: dict[str, int],
               cursor: MultiCursor | None, limit: int, client: ClientCheck,
               kept: dict[str, Cursor], revoked: tuple[str, ...], owner: str
               ) -> PullResponse:
        out = dict(kept)
        changes: list[Any] = []
        remaining = 0
        has_more = False
        store = cursor.store if cursor else None
        last_mutation_id: int | None = None
        for name in names:
            at = cursor.scopes.get(name) if cursor else None
            room = limit - len(changes)
            behind = at is None or at.in_snapshot or at.position < heads[pk[name]]
            if at is not None and at.position > heads[pk[name]] and not at.in_snapshot:
                return RESET  # the log went back: another store
            if last_mutation_id is not None and (not behind or room <= 0):
                if at is not None:  # caught up (or no room left): its position stands
                    out[name] = at if behind else replace(at, t=self.clock())
                has_more |= behind
                continue
            # The first scope always goes to the Puller: it checks the client and reads
            # the client's last_mutation_id (before any change), and names the store.
            page = self.puller.page_at(pk[name], at, max(room, 1),
                                       client if last_mutation_id is None else None)
            if page.reset or page.cursor is None:
                return RESET
            nxt = Cursor.decode(page.cursor)
            if store is not None and nxt.store != store:
                return RESET
            store = nxt.store
            if last_mutation_id is None:
                last_mutation_id = page.last_mutation_id
            scope = None if name == PERSONAL else name
            changes += [replace(c, scope=scope) for c in page.changes]
            remaining += page.remaining or 0
            has_more |= page.has_more
            out[name] = nxt
        if last_mutation_id is None:  # `scopes=` named none of the caller's scopes
            last_mutation_id = client.bind()
        # (no scope read: no store known; the next pull that reads one resets, harmlessly)
        text = MultiCursor(store or "", owner, out).encode()
        return PullResponse(tuple(changes), text, has_more, last_mutation_id,
                            remaining=remaining, revoked=revoked)


# ---- the route --------------------------------------------------------------------------------

PARAMS = ("client_id", "cursor", "limit", "scopes")


def _params(request: Request) -> tuple[str, str | None, int, frozenset[str] | None]:
    query = request.query_params
    for name in query:
        if name not in PARAMS:
            raise ProtocolError("invalid_request", f"unknown parameter {name[:40]!r}")
        if len(query.getlist(name)) > 1:
            raise ProtocolError("invalid_request", f"parameter {name!r} given twice")
    client_id = parse_client_id(query.get("client_id"))
    cursor = query.get("cursor") or None
    return client_id, cursor, parse_limit(query.get("limit")), parse_scopes(
        query.get("scopes"))


async def pull(request: Request) -> Response:
    principal = await sign_in(request)
    client_id, cursor, limit, only = _params(request)
    if cursor is not None:
        MultiCursor.decode(cursor, principal.scope)  # 400 before any DynamoDB work
    ctx = context_of(request)
    check = ClientCheck(client_id, principal.user,
                        lambda: bind_client_sync(ctx, client_id, principal.user))
    puller = ScopedPuller(ctx.puller, ctx.scopes)
    page = await run_in_threadpool(puller.page, principal.user, principal.scope, cursor,
                                   limit, check, only)
    return JSONBody(page.to_json())
