"""GET /v1/pull: a snapshot of the caller's scope, then the deltas of its change log.

The cursor is opaque to clients: base64url of a small JSON object that names the store it
belongs to (`id`: the items and log tables' creation times and the store epoch), the scope
(a hash), and where the reader is:
- snapshot phase: `s` = [log head taken before the snapshot began, last item key read]
- log phase: `p` = the last position returned.
`n` (snapshot phase, optional): the estimate of live items the snapshot has still to bring,
counted once (see `_snapshot`) and counted down page by page.
`t` is the time from which the positions after the cursor are guaranteed to be kept: a
cursor older than the log retention, from another store, or pointing at trimmed positions
gets {"reset": true}, and the client starts again from no cursor. A cursor this server
cannot have issued (not base64url JSON of that shape, a position or time out of range, a
snapshot key DynamoDB could not hold) is 400 invalid_cursor, before any DynamoDB work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pysync.errors import ProtocolError
from pysync.protocol import CLIENT_ID, MAX_COUNTER, PullResponse, ServerRecord
from server.changelog import EPOCH_KEY, FETCH, ChangeLog
from server.clients import client_key
from server.codec import protocol_json
from server.db import MAX_BATCH_GET_KEYS
from server.errors import ClientForbidden
from server.items import record_fields, split_sort_key
from server.retry import batch_get_all, with_retries
from server.tables import TableNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
MAX_CURSOR_CHARS = 4096
CURSOR_VERSION = 1
# Bounds of a cursor's fields (anything outside was not issued by this server):
MAX_POSITION = MAX_COUNTER  # log positions are DynamoDB N counters, well below 2^63
MAX_CURSOR_TIME = 1e11  # epoch seconds (year 5138)
MAX_STORE_ID_CHARS = 200
MAX_SORT_KEY_BYTES = 1024  # DynamoDB's limit for a sort key: the snapshot's last item key
IDENTITY_CACHE_S = 30.0
# The snapshot's "remaining" estimate counts at most this many items (Select=COUNT queries,
# eventually consistent: half the read cost of the snapshot's own strongly consistent reads,
# paid once per item; DynamoDB counts up to 1 MB per call, so a count may take a few calls).
# A one-page snapshot counts nothing. A count cut short is a lower bound: when the countdown
# reaches 0 with items left, that page counts again from where it ends.
COUNT_LIMIT = 10_000
LIVE = "attribute_not_exists(#del) OR #del = :false"  # not a tombstone
RESET = PullResponse((), None, False, 0, reset=True)  # the client starts again from no cursor


def fields_json(image: dict[str, Any]) -> dict[str, Any]:
    return {k: protocol_json(v) for k, v in record_fields(image).items()}


# Pull changes are protocol.ServerRecords. Their `value` is already in protocol JSON form
# here (server.codec.protocol_json: bytes as {"$bytes": ...}), which ServerRecord.to_json
# leaves as it is.

def change_from_item(item: dict[str, Any]) -> ServerRecord:
    """An items-table item (snapshot) as a pull change. No `_v`: not stamped yet, version 0."""
    collection, key = split_sort_key(item["sk"]["S"])
    v = item.get("_v", {}).get("N")
    hlc = item.get("_hlc", {}).get("S")
    return ServerRecord(collection, key, int(v) if v else 0, False, fields_json(item), hlc)


def change_from_entry(entry: dict[str, Any],
                      current: Mapping[str, dict[str, Any]] | None = None) -> ServerRecord:
    """A log entry as a pull change. An entry logged without its fields (`x`: the log could
    not hold them, docs/feed.md) is served from the item as it is now, `current` (read by
    `changes_from_entries`): clients cannot tell the difference."""
    collection, key = split_sort_key(entry["k"]["S"])
    version = int(entry["v"]["N"])
    hlc = entry.get("h", {}).get("S")
    if entry.get(FETCH, {}).get("BOOL"):
        item = (current or {}).get(entry["k"]["S"])
        if item is not None and not item.get("_del", {}).get("BOOL"):
            change = change_from_item(item)
            # The item may have moved on: its later versions follow in the log anyway.
            return replace(change, version=max(version, change.version),
                           hlc=change.hlc or hlc)
        # Gone or a tombstone by now: its delete is in the log too, at this version or above.
        tombstone_v = item.get("_v", {}).get("N") if item is not None else None
        return ServerRecord(collection, key,
                            max(version, int(tombstone_v) if tombstone_v else 0), True, None,
                            (item or {}).get("_hlc", {}).get("S") or hlc)
    deleted = entry["d"]["BOOL"]
    fields = entry.get("f", {}).get("M", {})
    return ServerRecord(collection, key, version, deleted,
                        None if deleted else protocol_json({"M": fields}), hlc)




def current_items(client: DynamoDBClient, table: str, scope: str,
                  item_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The items of `scope` named by `item_keys` (sort keys), strongly consistent; absent
    ones are left out. DynamoDB trouble is retried, then StoreUnavailable (server/retry.py)."""
    found: dict[str, dict[str, Any]] = {}
    wanted = list(dict.fromkeys(item_keys))
    for start in range(0, len(wanted), MAX_BATCH_GET_KEYS):
        keys = [{"pk": {"S": scope}, "sk": {"S": sk}}
                for sk in wanted[start:start + MAX_BATCH_GET_KEYS]]
        responses = batch_get_all(client, {table: {"Keys": keys, "ConsistentRead": True}})
        for item in responses.get(table, []):
            found[item["sk"]["S"]] = item
    return found


def changes_from_entries(client: DynamoDBClient, table: str, scope: str,
                         entries: Sequence[dict[str, Any]]) -> list[ServerRecord]:
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
    snapshot_left: int | None = None  # snapshot phase: live items estimated still to come

    @property
    def in_snapshot(self) -> bool:
        return self.snapshot_after is not None

    def encode(self) -> str:
        data: dict[str, Any] = {"v": CURSOR_VERSION, "id": self.store, "sc": self.scope,
                                "t": round(self.t, 3), "p": self.position}
        if self.snapshot_after is not None:
            data["s"] = self.snapshot_after
            if self.snapshot_left is not None:
                data["n"] = self.snapshot_left
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor `text` names; ProtocolError invalid_cursor (400) for anything this
        server cannot have issued, so no forged field ever reaches DynamoDB."""
        bad = ProtocolError("invalid_cursor", "the cursor is not one this server issued")
        if len(text) > MAX_CURSOR_CHARS:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw)
        except (binascii.Error, ValueError, RecursionError):
            # (ValueError covers non-ASCII text, bad UTF-8, and ints past Python's digit limit)
            raise bad from None
        if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION \
                or not set(data) <= {"v", "id", "sc", "t", "p", "s", "n"}:
            raise bad
        store, scope, t, p = data.get("id"), data.get("sc"), data.get("t"), data.get("p")
        snap = data.get("s")
        left = data.get("n")
        if not (bounded_text(store, MAX_STORE_ID_CHARS) and bounded_text(scope, 64)
                and number_in(t, 0, MAX_CURSOR_TIME) and isinstance(p, int)
                and number_in(p, 0, MAX_POSITION)
                and (snap is None or bounded_text(snap, MAX_SORT_KEY_BYTES))
                and (left is None or (snap is not None and isinstance(left, int)
                                      and number_in(left, 0, MAX_POSITION)))):
            raise bad
        assert isinstance(store, str)
        assert isinstance(scope, str)
        assert isinstance(p, int)
        assert isinstance(t, (int, float))
        return cls(store, scope, float(t), p, snap, left)


def bounded_text(value: object, max_bytes: int) -> bool:
    """A str DynamoDB can hold (valid UTF-8: no lone surrogate) of at most `max_bytes`."""
    if not isinstance(value, str) or len(value) > max_bytes:
        return False
    try:
        return len(value.encode("utf-8")) <= max_bytes
    except UnicodeEncodeError:
        return False


def number_in(value: object, low: float, high: float) -> bool:
    """An int or finite float (never a bool, NaN or infinity) in low..high."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return low <= value <= high  # False for NaN; an infinity is out of range


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
                with_retries(lambda n=name: self.client.describe_table(  # type: ignore[misc]
                    TableName=n))["Table"]["CreationDateTime"]
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
        responses = batch_get_all(self.client, request)
        for item in responses.get(self.tables.feed, []):
            epoch = int(item["n"]["N"])
        for item in responses.get(self.tables.log, []):
            head = int(item["head"]["N"])
        for item in responses.get(self.tables.clients, []):
            client = dict(item)
        return epoch, head, client

    def pull(self, scope: str, cursor_text: str | None, limit: int,
             client: ClientCheck | None = None) -> dict[str, Any]:
        """`page` as the body of the answer (docs/api.md, protocol v1)."""
        return self.page(scope, cursor_text, limit, client).to_json()

    def page(self, scope: str, cursor_text: str | None, limit: int,
             client: ClientCheck | None = None) -> PullResponse:
        """One page. With `client`, also the client's last_mutation_id, read before the
        changes (so every mutation up to it is in DynamoDB already); 0 without one."""
        return self.page_at(scope, Cursor.decode(cursor_text) if cursor_text is not None
                            else None, limit, client)

    def page_at(self, scope: str, cursor: Cursor | None, limit: int,
                client: ClientCheck | None = None) -> PullResponse:
        """`page`, from a decoded cursor (None: from the beginning, a snapshot)."""
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
            return RESET
        if cursor.in_snapshot:
            return self._snapshot(scope, cursor, head, limit, last_mutation_id)
        return self._deltas(scope, cursor, head, limit, now, last_mutation_id)

    def _snapshot(self, scope: str, cursor: Cursor, head: int, limit: int,
                  last_mutation_id: int) -> PullResponse:
        kwargs: dict[str, Any] = {
            "TableName": self.tables.items, "ConsistentRead": True, "Limit": limit,
            "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": scope}},
        }
        if cursor.snapshot_after:
            kwargs["ExclusiveStartKey"] = {"pk": {"S": scope},
                                           "sk": {"S": cursor.snapshot_after}}
        out = with_retries(lambda: self.client.query(**kwargs))
        changes = tuple(change_from_item(item) for item in out.get("Items", [])
                        if not item.get("_del", {}).get("BOOL"))
        # Changes logged since the snapshot began come after it (an estimate: a record
        # changed meanwhile is counted in both).
        logged = max(0, head - cursor.position)
        last = out.get("LastEvaluatedKey")
        if last:
            # The live items after this page: counted down from the last count, counted
            # (again) when that reaches 0 (the first page, or a count cut short).
            left = (cursor.snapshot_left or 0) - len(changes)
            if left <= 0:
                left = self._count_live({**kwargs, "ExclusiveStartKey": last})
            nxt = Cursor(cursor.store, cursor.scope, cursor.t, cursor.position, last["sk"]["S"],
                         left)
            return PullResponse(changes, nxt.encode(), True, last_mutation_id,
                                remaining=left + logged)
        # The snapshot is complete: continue with the log from the head read before it began.
        nxt = Cursor(cursor.store, cursor.scope, cursor.t, cursor.position)
        return PullResponse(changes, nxt.encode(), head > cursor.position, last_mutation_id,
                            remaining=logged)

    def _count_live(self, query: dict[str, Any]) -> int:
        """The live items from where the snapshot query `query` starts, at most about
        COUNT_LIMIT of them (eventually consistent: an estimate). DynamoDB counts at most
        1 MB per call: the count goes on from where a call stopped, to COUNT_LIMIT."""
        counting = {**query, "Select": "COUNT", "ConsistentRead": False, "Limit": COUNT_LIMIT,
                    "FilterExpression": LIVE, "ExpressionAttributeNames": {"#del": "_del"},
                    "ExpressionAttributeValues": {**query["ExpressionAttributeValues"],
                                                  ":false": {"BOOL": False}}}
        count = scanned = 0
        while scanned < COUNT_LIMIT:
            page = with_retries(lambda q=counting: self.client.query(**q))  # type: ignore[misc]
            count += int(page["Count"])
            scanned += int(page["ScannedCount"])
            last = page.get("LastEvaluatedKey")
            if not last:
                break
            counting = {**counting, "ExclusiveStartKey": last,
                        "Limit": max(1, COUNT_LIMIT - scanned)}
        return count

    def _deltas(self, scope: str, cursor: Cursor, head: int, limit: int,
                now: float, last_mutation_id: int) -> PullResponse:
        if now - cursor.t > self.retention_s or cursor.position > head:
            return RESET
        entries = self.changelog.read(scope, cursor.position, head, limit)
        if head > cursor.position and not entries:
            return RESET  # the next position is gone (trimmed)
        position = cursor.position + len(entries)
        # Positions after `position` were appended after it: no earlier than its time, or
        # (caught up) than now. The retention clock of the next cursor starts there.
        t = float(entries[-1]["at"]["N"]) if entries and position < head else now
        nxt = Cursor(cursor.store, cursor.scope, max(t, cursor.t), position)
        changes = changes_from_entries(self.client, self.tables.items, scope, entries)
        return PullResponse(tuple(changes), nxt.encode(), position < head, last_mutation_id,
                            remaining=head - position)


# ---- the route --------------------------------------------------------------------------------

def parse_limit(raw: str | None) -> int:
    """`limit`: ASCII digits only (no sign, no "²", no 5,000 digits), 1..MAX_LIMIT."""
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_LIMIT))) \
            or not 1 <= int(raw) <= MAX_LIMIT:
        raise ProtocolError("invalid_request", f"limit must be an integer 1..{MAX_LIMIT}")
    return int(raw)


def parse_client_id(raw: str | None) -> str:
    """The one client_id rule, push's (pysync.protocol.CLIENT_ID): pull never binds a
    client_id that push would refuse."""
    if raw is None or not CLIENT_ID.match(raw):
        raise ProtocolError("invalid_request",
                            "client_id is required: 1..128 of letters, digits and _ . : -")
    return raw
