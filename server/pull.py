"""GET /v1/pull: a snapshot of the caller's scope, then the deltas of its change log.

The cursor is opaque to clients: base64url of a small JSON object that names the store it
belongs to (`id`: the items and log tables' creation times and the store epoch), the scope
(a hash), and where the reader is:
- snapshot phase: `s` = [log head taken before the snapshot began, last item key read]
- log phase: `p` = the last position returned.
`t` is the time from which the positions after the cursor are guaranteed to be kept: a
cursor older than the log retention, from another store, or pointing at trimmed positions
gets {"reset": true}, and the client starts again from no cursor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from pysync.errors import ClientForbidden, ProtocolError, StoreUnavailable
from server.auth import authenticate
from server.changelog import EPOCH_KEY, FETCH, ChangeLog
from server.clients import bind_client_sync, client_key
from server.context import context_of
from server.http import JSONBody
from server.retry import DEFAULT_BACKOFF, with_retries
from server.tables import TableNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
MAX_CURSOR_CHARS = 4096
MAX_CLIENT_ID_CHARS = 128
CURSOR_VERSION = 1
IDENTITY_CACHE_S = 30.0


# ---- typed DynamoDB values -> JSON, without a detour through TypeDeserializer ---------------

def json_value(av: dict[str, Any]) -> Any:
    """One typed attribute value as protocol JSON (bytes as {"$bytes": ...}, sets as lists)."""
    (kind, raw), = av.items()
    if kind == "S":
        return raw
    if kind == "N":
        return _number(raw)
    if kind == "BOOL":
        return raw
    if kind == "M":
        return {k: json_value(v) for k, v in raw.items()}
    if kind == "L":
        return [json_value(v) for v in raw]
    if kind == "NULL":
        return None
    if kind == "B":
        return {"$bytes": _b64(raw)}
    if kind == "SS":
        return sorted(raw)
    if kind == "NS":
        return sorted((_number(n) for n in raw), key=Decimal)
    if kind == "BS":
        return [{"$bytes": _b64(b)} for b in sorted(raw)]
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def _number(text: str) -> int | Decimal:
    if text.lstrip("-").isdigit():
        return int(text)
    return Decimal(text)


def _b64(raw: bytes | str) -> str:
    # boto3 gives bytes; a Lambda event gives base64 text already.
    return raw if isinstance(raw, str) else base64.b64encode(raw).decode("ascii")


def fields_json(image: dict[str, Any]) -> dict[str, Any]:
    return {k: json_value(v) for k, v in image.items()
            if k != "pk" and k != "sk" and not k.startswith("_")}


def _split(item_key: str) -> tuple[str, str]:
    collection, _, key = item_key.partition("#")
    return collection, key


def change_from_item(item: dict[str, Any]) -> dict[str, Any]:
    """An items-table item (snapshot) as a pull change. No `_v`: not stamped yet, version 0."""
    collection, key = _split(item["sk"]["S"])
    v = item.get("_v", {}).get("N")
    hlc = item.get("_hlc", {}).get("S")
    return {"collection": collection, "key": key, "version": int(v) if v else 0,
            "deleted": False, "value": fields_json(item), "hlc": hlc}


def change_from_entry(entry: dict[str, Any],
                      current: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A log entry as a pull change. An entry logged without its fields (`x`: the log could
    not hold them, docs/feed.md) is served from the item as it is now, `current` (read by
    `changes_from_entries`): clients cannot tell the difference."""
    collection, key = _split(entry["k"]["S"])
    version = int(entry["v"]["N"])
    hlc = entry.get("h", {}).get("S")
    if entry.get(FETCH, {}).get("BOOL"):
        item = (current or {}).get(entry["k"]["S"])
        if item is not None and not item.get("_del", {}).get("BOOL"):
            change = change_from_item(item)
            # The item may have moved on: its later versions follow in the log anyway.
            return {**change, "version": max(version, change["version"]),
                    "hlc": change["hlc"] or hlc}
        # Gone or a tombstone by now: its delete is in the log too, at this version or above.
        tombstone_v = item.get("_v", {}).get("N") if item is not None else None
        return {"collection": collection, "key": key, "deleted": True, "value": None,
                "version": max(version, int(tombstone_v) if tombstone_v else 0),
                "hlc": (item or {}).get("_hlc", {}).get("S") or hlc}
    deleted = entry["d"]["BOOL"]
    fields = entry.get("f", {}).get("M", {})
    return {"collection": collection, "key": key, "version": version,
            "deleted": deleted, "value": None if deleted else json_value({"M": fields}),
            "hlc": hlc}


_MAX_KEYS_PER_READ = 100  # BatchGetItem's limit


def current_items(client: DynamoDBClient, table: str, scope: str,
                  item_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The items of `scope` named by `item_keys` (sort keys), strongly consistent; absent
    ones are left out. Throttling is retried, then StoreUnavailable (server/retry.py)."""
    found: dict[str, dict[str, Any]] = {}
    wanted = list(dict.fromkeys(item_keys))
    calls: Any = client  # the stubs' TypedDicts add nothing over plain dicts here
    for start in range(0, len(wanted), _MAX_KEYS_PER_READ):
        todo: list[dict[str, Any]] = [{"pk": {"S": scope}, "sk": {"S": sk}}
                                      for sk in wanted[start:start + _MAX_KEYS_PER_READ]]
        for attempt in range(DEFAULT_BACKOFF.attempts):
            request = {table: {"Keys": todo, "ConsistentRead": True}}
            out: dict[str, Any] = with_retries(
                lambda r=request: calls.batch_get_item(RequestItems=r))  # type: ignore[misc]
            for item in out.get("Responses", {}).get(table, []):
                found[item["sk"]["S"]] = item
            todo = out.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            if not todo:
                break
            time.sleep(random.uniform(0, min(DEFAULT_BACKOFF.cap,
                                             DEFAULT_BACKOFF.base * 2**attempt)))
        else:
            raise StoreUnavailable(DEFAULT_BACKOFF.retry_after)
    return found


def changes_from_entries(client: DynamoDBClient, table: str, scope: str,
                         entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log entries as pull changes, reading the items of fields-less entries in one go."""
    fetch = [e["k"]["S"] for e in entries if e.get(FETCH, {}).get("BOOL")]
    current = current_items(client, table, scope, fetch) if fetch else {}
    return [change_from_entry(e, current) for e in entries]


@dataclass(frozen=True)
class ClientCheck:
    """Who pulls: the client_id must belong to `user`; `bind` binds it on first use."""

    client_id: str
    user: str
    bind: Callable[[], int]


# ---- the cursor -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Cursor:
    store: str
    scope: str  # hash of the scope
    t: float
    position: int  # log phase: last position returned; snapshot phase: the head before it
    snapshot_after: str | None = None  # snapshot phase: last item key read ("" = none yet)

    @property
    def in_snapshot(self) -> bool:
        return self.snapshot_after is not None

    def encode(self) -> str:
        data: dict[str, Any] = {"v": CURSOR_VERSION, "id": self.store, "sc": self.scope,
                                "t": round(self.t, 3), "p": self.position}
        if self.snapshot_after is not None:
            data["s"] = self.snapshot_after
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        bad = ProtocolError("invalid_cursor", "the cursor is not one this server issued")
        if len(text) > MAX_CURSOR_CHARS:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw)
        except (binascii.Error, ValueError):
            raise bad from None
        if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
            raise bad
        store, scope, t, p = data.get("id"), data.get("sc"), data.get("t"), data.get("p")
        snap = data.get("s")
        if (not isinstance(store, str) or not isinstance(scope, str)
                or not isinstance(t, (int, float)) or isinstance(t, bool)
                or not isinstance(p, int) or isinstance(p, bool) or p < 0
                or (snap is not None and not isinstance(snap, str))):
            raise bad
        return cls(store, scope, float(t), p, snap)


def scope_hash(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


# ---- the pull itself (blocking boto3; the route runs it in a thread) -------------------------

class Puller:
    def __init__(self, client: DynamoDBClient, tables: TableNames, log_retention_s: float,
                 clock: Any = time.time) -> None:
        self.client = client
        self.tables = tables
        self.changelog = ChangeLog(client, tables, log_retention_s)
        self.retention_s = log_retention_s
        self.clock = clock
        self._tables_id: str | None = None
        self._tables_id_at = float("-inf")

    def _tables_identity(self) -> str:
        """The items and log tables' creation times (cached: they change only on re-creation)."""
        if self._tables_id is None or time.monotonic() - self._tables_id_at > IDENTITY_CACHE_S:
            created = [
                self.client.describe_table(TableName=name)["Table"]["CreationDateTime"]
                for name in (self.tables.items, self.tables.log)
            ]
            self._tables_id = "-".join(str(int(c.timestamp() * 1000)) for c in created)
            self._tables_id_at = time.monotonic()
        return self._tables_id

    def _read_state(self, scope: str, client_key: dict[str, Any] | None
                    ) -> tuple[int, int, dict[str, Any] | None]:
        """The store epoch, the scope's log head and the client's item (if asked), in one
        strongly consistent BatchGetItem: one round trip before the changes are read."""
        anchor_key = {"pk": {"S": scope}, "sk": {"N": "0"}}
        request: dict[str, Any] = {
            self.tables.feed: {"Keys": [EPOCH_KEY], "ConsistentRead": True},
            self.tables.log: {"Keys": [anchor_key], "ConsistentRead": True},
        }
        if client_key is not None:
            request[self.tables.clients] = {"Keys": [client_key], "ConsistentRead": True}
        epoch = head = 0
        client: dict[str, Any] | None = None
        while request:
            out = self.client.batch_get_item(RequestItems=request)
            responses = out.get("Responses", {})
            for item in responses.get(self.tables.feed, []):
                epoch = int(item["n"]["N"])
            for item in responses.get(self.tables.log, []):
                head = int(item["head"]["N"])
            for item in responses.get(self.tables.clients, []):
                client = dict(item)
            request = dict(out.get("UnprocessedKeys") or {})
        return epoch, head, client

    def pull(self, scope: str, cursor_text: str | None, limit: int,
             client: ClientCheck | None = None) -> dict[str, Any]:
        """One page. With `client`, also the client's last_mutation_id, read before the
        changes (so every mutation up to it is in DynamoDB already)."""
        cursor = Cursor.decode(cursor_text) if cursor_text is not None else None
        epoch, head, client_item = self._read_state(
            scope, client_key(client.client_id) if client else None)
        last_mutation_id = 0
        if client is not None:
            if client_item is None:  # first use of this client_id: bind it
                last_mutation_id = client.bind()
            elif client_item["owner"]["S"] != client.user:
                raise ClientForbidden(f"client_id {client.client_id!r} belongs to another user")
            else:
                last_mutation_id = int(client_item["lmid"]["N"])
        store = f"{self._tables_identity()}-{epoch}"
        now = self.clock()
        if cursor is None:
            cursor = Cursor(store, scope_hash(scope), now, head, "")
        elif cursor.store != store or cursor.scope != scope_hash(scope):
            return {"reset": True}
        if cursor.in_snapshot:
            result = self._snapshot(scope, cursor, head, limit)
        else:
            result = self._deltas(scope, cursor, head, limit, now)
        if client is not None and not result.get("reset"):
            result["last_mutation_id"] = last_mutation_id
        return result

    def _snapshot(self, scope: str, cursor: Cursor, head: int, limit: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "TableName": self.tables.items, "ConsistentRead": True, "Limit": limit,
            "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": scope}},
        }
        if cursor.snapshot_after:
            kwargs["ExclusiveStartKey"] = {"pk": {"S": scope},
                                           "sk": {"S": cursor.snapshot_after}}
        out = self.client.query(**kwargs)
        changes = [change_from_item(item) for item in out.get("Items", [])
                   if not item.get("_del", {}).get("BOOL")]
        last = out.get("LastEvaluatedKey")
        if last:
            nxt = Cursor(cursor.store, cursor.scope, cursor.t, cursor.position, last["sk"]["S"])
            return {"changes": changes, "cursor": nxt.encode(), "has_more": True}
        # The snapshot is complete: continue with the log from the head read before it began.
        nxt = Cursor(cursor.store, cursor.scope, cursor.t, cursor.position)
        return {"changes": changes, "cursor": nxt.encode(), "has_more": head > cursor.position}

    def _deltas(self, scope: str, cursor: Cursor, head: int, limit: int,
                now: float) -> dict[str, Any]:
        if now - cursor.t > self.retention_s or cursor.position > head:
            return {"reset": True}
        entries = self.changelog.read(scope, cursor.position, head, limit)
        if head > cursor.position and not entries:
            return {"reset": True}  # the next position is gone (trimmed)
        position = cursor.position + len(entries)
        # Positions after `position` were appended after it: no earlier than its time, or
        # (caught up) than now. The retention clock of the next cursor starts there.
        t = float(entries[-1]["at"]["N"]) if entries and position < head else now
        nxt = Cursor(cursor.store, cursor.scope, max(t, cursor.t), position)
        changes = changes_from_entries(self.client, self.tables.items, scope, entries)
        return {"changes": changes, "cursor": nxt.encode(),
                "has_more": position < head}


# ---- the route --------------------------------------------------------------------------------

def puller_of(request: Request) -> Puller:
    state = request.app.state
    puller: Puller | None = getattr(state, "puller", None)
    if puller is None:
        ctx = context_of(request)
        puller = Puller(ctx.dynamodb, ctx.tables, ctx.settings.log_retention_s)
        state.puller = puller
    return puller


def _params(request: Request) -> tuple[str, str | None, int]:
    query = request.query_params
    for name in query:
        if name not in ("client_id", "cursor", "limit"):
            raise ProtocolError("invalid_request", f"unknown parameter {name!r}")
        if len(query.getlist(name)) > 1:
            raise ProtocolError("invalid_request", f"parameter {name!r} given twice")
    client_id = query.get("client_id")
    if not client_id or len(client_id) > MAX_CLIENT_ID_CHARS or not client_id.isprintable():
        raise ProtocolError("invalid_request",
                            f"client_id is required: 1..{MAX_CLIENT_ID_CHARS} printable chars")
    cursor = query.get("cursor") or None
    raw_limit = query.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise ProtocolError("invalid_request", f"limit must be an integer 1..{MAX_LIMIT}")
        limit = int(raw_limit)
    return client_id, cursor, limit


async def pull(request: Request) -> Response:
    principal = await authenticate(request)
    client_id, cursor, limit = _params(request)
    if cursor is not None:
        Cursor.decode(cursor)  # 400 before any DynamoDB work
    ctx = context_of(request)
    check = ClientCheck(client_id, principal.user,
                        lambda: bind_client_sync(ctx, client_id, principal.user))
    result = await run_in_threadpool(puller_of(request).pull, principal.scope, cursor, limit,
                                     check)
    return JSONBody(result)
