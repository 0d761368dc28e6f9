"""Each scope's ordered change log in DynamoDB: append (the feed) and read (the pull).

Log table layout (pk = scope, sk = position, N):
- sk = 0 is the scope's *anchor*: `head` (the last position written), `at` (when). It never
  expires, so positions never restart, and it is what other processes poll for pokes.
- sk = 1, 2, ... are the changes: `k` (item key), `v` (version), `d` (deleted), `f` (the
  record's fields, typed M), `h` (HLC), `w` (writer), `at`, `ttl` (log retention).
  A change the log cannot hold with its fields (too deep or too large for one log item, or
  refused by DynamoDB's validation) is appended without `f` and with `x` = true: the pull
  reads the item itself when it serves that position (server/pull.py), and an ERROR line
  says so. One record therefore never stalls the feed (docs/feed.md, "Records the log
  cannot hold").

Append is one TransactWriteItems per batch of one scope: put the entries at head+1..head+n
(attribute_not_exists), move the anchor from head to head+n (condition head = old), and for
each entry raise the item's *marker* in the feed table (pk = "m#<scope>", sk = item key)
to its version (condition: lower or absent). Positions therefore only appear together with
the anchor that covers them: no hole a reader could skip, whoever appends concurrently (two
shards, two processes, Lambda). A re-delivered stream record fails its marker condition and
is dropped: the log holds each (item, version) once while the marker lives (2 days, well past
the stream's 24 h). Readers read the anchor first, then only positions <= head, consecutive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pysync.values import DYNAMODB_MAX_NESTING
from server.changes import LogEntry
from server.db import MAX_BATCH_GET_KEYS, MAX_TRANSACTION_ACTIONS, MAX_TRANSACTION_BYTES
from server.records import MAX_ITEM_BYTES, item_size
from server.retry import APPEND_CONTENTION, batch_get_all, pause, with_retries
from server.tables import TableNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ANCHOR = 0
MARKER_TTL_S = 2 * 24 * 3600
FETCH = "x"  # a log entry's flag: no `f`, the pull reads the item (see the module docstring)
# `h` and `w` come from the item's `_hlc` / `_w`, which another program may have set to
# anything: a fields-less entry keeps them only when they are this short.
MAX_META_CHARS = 256

log = logging.getLogger("pysync.feed")


class AppendFailed(RuntimeError):
    """The log could not be appended to after many attempts (the caller retries later)."""


def marker_pk(scope: str) -> str:
    return "m#" + scope


def marker_key(scope: str, item_key: str) -> dict[str, Any]:
    """The feed-table key of the item's marker."""
    return {"pk": {"S": marker_pk(scope)}, "sk": {"S": item_key}}


def marker_version(marker: Mapping[str, Any] | None) -> int:
    """The highest version of the item the log holds, from its marker item; 0 if none."""
    return int(marker["v"]["N"]) if marker else 0


def birth_key(scope: str, item_key: str) -> dict[str, Any]:
    """The feed-table key of the item's birth mark, next to its marker: push writes it when
    it creates a record that has no item and no marker, so that a push re-creating the
    record after another program deleted it outright knows of the earlier life even before
    the feed has logged any of it (server/push.py). `#` never starts an item key."""
    return {"pk": {"S": marker_pk(scope)}, "sk": {"S": "#" + item_key}}


def birth_item(scope: str, item_key: str, hlc: str, writer: str, now: float
               ) -> dict[str, Any]:
    return {**birth_key(scope, item_key), "h": {"S": hlc}, "w": {"S": writer},
            "ttl": {"N": str(int(now + MARKER_TTL_S))}}


def marked_hlc(mark: Mapping[str, Any] | None) -> str:
    """The stamp a marker (of the newest version logged) or a birth mark holds; "" if none."""
    return str(mark["h"]["S"]) if mark and "h" in mark else ""


def approx_size(value: Any) -> int:
    """A generous estimate of an attribute value's stored size, for transaction chunking."""
    if isinstance(value, dict):
        return sum(len(k) + approx_size(v) for k, v in value.items()) + 3
    if isinstance(value, (list, tuple)):
        return sum(approx_size(v) for v in value) + 3
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    return len(str(value).encode("utf-8"))


def nesting(av: Mapping[str, Any]) -> int:
    """Levels of a typed attribute value as DynamoDB counts them (a scalar is 1)."""
    ((kind, raw),) = av.items()
    if kind == "M":
        return 1 + max((nesting(v) for v in raw.values()), default=0)
    if kind == "L":
        return 1 + max((nesting(v) for v in raw), default=0)
    return 1


def entry_item(scope: str, position: int, e: LogEntry, at: Mapping[str, str],
               ttl: Mapping[str, str]) -> dict[str, Any]:
    """The log item of one change at `position`."""
    entry: dict[str, Any] = {
        "pk": {"S": scope}, "sk": {"N": str(position)}, "k": {"S": e.item_key},
        "v": {"N": str(e.version)}, "d": {"BOOL": e.deleted}, "at": at, "ttl": ttl,
    }
    if e.fetch:
        entry[FETCH] = {"BOOL": True}
    elif not e.deleted:
        entry["f"] = {"M": e.fields}
    if e.hlc:
        entry["h"] = {"S": e.hlc}
    if e.writer:
        entry["w"] = {"S": e.writer}
    return entry


_WIDEST = {"N": "9" * 20}  # stands for any position, time or ttl when sizing an entry


def unloggable(scope: str, e: LogEntry) -> str | None:
    """Why the log cannot hold `e` as it is (DynamoDB would refuse its item), or None."""
    if e.fetch or e.deleted:
        return None
    if nesting({"M": e.fields}) > DYNAMODB_MAX_NESTING:
        return f"its fields nest deeper than {DYNAMODB_MAX_NESTING} levels inside the log entry"
    size = item_size(entry_item(scope, 10**19, e, _WIDEST, _WIDEST))
    if size > MAX_ITEM_BYTES:
        return f"its log entry would be {size} bytes, over DynamoDB's {MAX_ITEM_BYTES}"
    return None


def without_fields(e: LogEntry) -> LogEntry | None:
    """`e` as a fields-less entry (the pull reads the item), one step smaller each call:
    first without `f`, then without `h` and `w` too; None once nothing is left to drop."""
    if not e.fetch:
        return replace(e, fields={}, fetch=True,
                       hlc=e.hlc if e.hlc and len(e.hlc) <= MAX_META_CHARS else None,
                       writer=e.writer if e.writer and len(e.writer) <= MAX_META_CHARS
                       else None)
    if e.hlc or e.writer:
        return replace(e, hlc=None, writer=None)
    return None


def refused_by_dynamodb(e: ClientError) -> bool:
    """DynamoDB refused the request as invalid: retrying the same request cannot help."""
    error = e.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    # AWS reports some capacity limits as a ValidationException about throughput: transient.
    return error.get("Code") == "ValidationException" and "throughput" not in message


def _marker_keys(chunk: Sequence[LogEntry]) -> list[str]:
    return list(dict.fromkeys(e.item_key for e in chunk))


@dataclass(frozen=True)
class Anchor:
    head: int
    at: float


class ChangeLog:
    def __init__(self, client: DynamoDBClient, tables: TableNames, retention_s: float,
                 clock: Any = time.time) -> None:
        self.client = client
        self.tables = tables
        self.retention_s = retention_s
        self.clock = clock
        # Last head this appender wrote per scope: usually still the head (one feed per
        # shard), which saves a read per append; a stale one only fails the condition.
        self._known_heads: dict[str, int] = {}

    # ---- reading -------------------------------------------------------------------------
    # Reads go through the retry boundary (server/retry.py): throttling and an unreachable
    # DynamoDB end in StoreUnavailable (503 on a request path; the poller and the feed log it
    # and try again on their next pass).

    def anchor(self, scope: str) -> Anchor:
        out = with_retries(lambda: self.client.get_item(
            TableName=self.tables.log, ConsistentRead=True,
            Key={"pk": {"S": scope}, "sk": {"N": "0"}}))
        item = out.get("Item")
        if not item:
            return Anchor(0, 0.0)
        return Anchor(int(item["head"]["N"]), float(item.get("at", {}).get("N", "0")))

    def heads(self, scopes: Sequence[str]) -> dict[str, int]:
        """Current heads of many scopes (BatchGetItem, strongly consistent)."""
        heads = dict.fromkeys(scopes, 0)
        todo = list(scopes)
        while todo:
            chunk, todo = todo[:MAX_BATCH_GET_KEYS], todo[MAX_BATCH_GET_KEYS:]
            request: dict[str, Any] = {self.tables.log: {
                "Keys": [{"pk": {"S": s}, "sk": {"N": "0"}} for s in chunk],
                "ConsistentRead": True, "ProjectionExpression": "pk, head"}}
            for item in batch_get_all(self.client, request).get(self.tables.log, []):
                heads[item["pk"]["S"]] = int(item["head"]["N"])
        return heads

    def read(self, scope: str, after: int, head: int, limit: int) -> list[dict[str, Any]]:
        """Entries after `after`, up to `head` (read from the anchor first), consecutive only."""
        if head <= after:
            return []
        out = with_retries(lambda: self.client.query(
            TableName=self.tables.log, ConsistentRead=True, Limit=limit,
            KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
            ExpressionAttributeValues={":p": {"S": scope}, ":a": {"N": str(after + 1)},
                                       ":b": {"N": str(head)}},
        ))
        entries: list[dict[str, Any]] = []
        expected = after + 1
        for item in out.get("Items", []):
            if int(item["sk"]["N"]) != expected:
                break  # never skip a position (a trimmed one makes the caller reset)
            entries.append(item)
            expected += 1
        return entries

    # ---- appending -----------------------------------------------------------------------

    def append(self, scope: str, entries: Sequence[LogEntry]) -> int:
        """Append `entries` (in order) to `scope`'s log, dropping duplicates; return the head."""
        pending = [self._loggable(scope, e) for e in entries]
        head = -1
        attempt = 0
        trust_known = True
        solo = 0  # the next entries go one per transaction, to find one DynamoDB refuses
        while pending:
            known = self._known_heads.pop(scope, None)
            head = known if known is not None and trust_known else self.anchor(scope).head
            trust_known = False
            chunk = pending[:1] if solo else self._chunk(pending)
            now = self.clock()
            items = self._transaction(scope, head, chunk, now)
            try:
                # DynamoDB trouble (throttling, a conflicting transaction, no answer) is
                # retried by the one boundary, then StoreUnavailable: the batch is read again.
                with_retries(lambda t=items: self.client.transact_write_items(  # type: ignore[misc]
                    TransactItems=t))
                pending = pending[len(chunk):]
                head += len(chunk)
                self._known_heads[scope] = head
                attempt = 0
                trust_known = True
                solo = max(0, solo - len(chunk))
                continue
            except ClientError as e:
                code = e.response["Error"]["Code"]
                reasons: list[Any] = list(e.response.get("CancellationReasons") or [])
                refused = [i for i in range(len(chunk))
                           if self._reason(reasons, i) == "ValidationError"]
                if refused or refused_by_dynamodb(e):
                    # Permanent for these entries: never retry them as they are (that
                    # stalled the shard). Name them from the reasons, else split the chunk.
                    if not refused and len(chunk) > 1:
                        solo = len(chunk)
                        continue
                    for i in refused or [0]:
                        smaller = without_fields(chunk[i])
                        if smaller is None:
                            raise
                        self._alarm(scope, chunk[i], f"DynamoDB refused it: {e}")
                        pending[i] = smaller
                    continue
                if code == "TransactionCanceledException":
                    keys = _marker_keys(chunk)
                    failed = [k for i, k in enumerate(keys)
                              if self._reason(reasons, len(chunk) + i) == "ConditionalCheckFailed"]
                    if failed:
                        # Markers say some of these (item, version)s are logged already:
                        # re-delivered records. Drop exactly those and try again.
                        logged = {k: self._marker(scope, k) for k in failed}
                        kept = [e for e in chunk if e.version > logged.get(e.item_key, -1)]
                        pending = kept + pending[len(chunk):]
                        continue
                else:
                    raise
            attempt += 1  # another appender moved the head: read it again
            if attempt >= APPEND_CONTENTION.attempts:
                raise AppendFailed(f"could not append to the log of {scope!r}")
            pause(attempt, APPEND_CONTENTION)
        if len(self._known_heads) > 10_000:
            self._known_heads.clear()
        return head if head >= 0 else self.anchor(scope).head

    def _loggable(self, scope: str, e: LogEntry) -> LogEntry:
        why = unloggable(scope, e)
        if why is None:
            return e
        self._alarm(scope, e, why)
        return without_fields(e) or e

    @staticmethod
    def _alarm(scope: str, e: LogEntry, why: str) -> None:
        # The operator's signal (docs/feed.md): the change still reaches clients, but the
        # record is one pysync would never have written; find the program that wrote it.
        log.error("change log of %s: %s version %d cannot be logged with its fields (%s): "
                  "logged without them, pulls read the item instead (stream record %s)",
                  scope, e.item_key, e.version, why, e.seq)

    @staticmethod
    def _reason(reasons: list[Any], index: int) -> str | None:
        if index < len(reasons):
            code = reasons[index].get("Code")
            return code if isinstance(code, str) else None
        return None

    def logged_version(self, scope: str, item_key: str) -> int:
        """The highest version of the item logged in the last 2 days (its marker), or 0."""
        return max(self._marker(scope, item_key), 0)

    def _marker(self, scope: str, item_key: str) -> int:
        item = with_retries(lambda: self.client.get_item(
            TableName=self.tables.feed, ConsistentRead=True,
            Key=marker_key(scope, item_key))).get("Item")
        return marker_version(item) if item else -1

    @staticmethod
    def _chunk(pending: list[LogEntry]) -> list[LogEntry]:
        chunk: list[LogEntry] = []
        size = 0
        for entry in pending:
            entry_size = approx_size(entry.fields) + 300
            if chunk and (2 * len(chunk) + 3 > MAX_TRANSACTION_ACTIONS
                          or size + entry_size > MAX_TRANSACTION_BYTES):
                # (at most one entry put and one marker update per entry, plus the anchor)
                break
            chunk.append(entry)
            size += entry_size
        return chunk

    def _transaction(self, scope: str, head: int, chunk: list[LogEntry],
                     now: float) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        at = {"N": f"{now:.3f}"}
        ttl = {"N": str(int(now + self.retention_s + 24 * 3600))}
        for i, e in enumerate(chunk):
            entry = entry_item(scope, head + 1 + i, e, at, ttl)
            items.append({"Put": {"TableName": self.tables.log, "Item": entry,
                                  "ConditionExpression": "attribute_not_exists(pk)"}})
        # One marker update per item (a transaction touches an item once): it moves from
        # below the item's lowest version in the chunk to its highest.
        # It also keeps the newest version's stamp: push needs it for a record that another
        # program deleted outright (server/push.py, _adopt_outside_delete).
        for item_key in _marker_keys(chunk):
            entries = [e for e in chunk if e.item_key == item_key]
            newest = max(entries, key=lambda e: e.version)
            values = {":v": {"N": str(newest.version)},
                      ":low": {"N": str(min(e.version for e in entries))},
                      ":t": {"N": str(int(now + MARKER_TTL_S))}}
            expression = "SET v = :v, #t = :t REMOVE h"
            if newest.hlc:
                expression = "SET v = :v, #t = :t, h = :h"
                values[":h"] = {"S": newest.hlc}
            items.append({"Update": {
                "TableName": self.tables.feed, "Key": marker_key(scope, item_key),
                "UpdateExpression": expression,
                "ConditionExpression": "attribute_not_exists(v) OR v < :low",
                "ExpressionAttributeNames": {"#t": "ttl"}, "ExpressionAttributeValues": values,
            }})
        new_head = {"N": str(head + len(chunk))}
        update: dict[str, Any] = {
            "TableName": self.tables.log,
            "Key": {"pk": {"S": scope}, "sk": {"N": str(ANCHOR)}},
            "UpdateExpression": "SET head = :h, #at = :at",
            "ExpressionAttributeNames": {"#at": "at"},
            "ExpressionAttributeValues": {":h": new_head, ":at": at},
        }
        if head == 0:
            update["ConditionExpression"] = "attribute_not_exists(head) OR head = :old"
        else:
            update["ConditionExpression"] = "head = :old"
        update["ExpressionAttributeValues"][":old"] = {"N": str(head)}
        items.append({"Update": update})
        return items


# ---- the store epoch ---------------------------------------------------------------------
# One number for the whole store, in the feed table. The feed raises it when stream records
# were lost (trimmed before they were read); cursors carry it, so every cursor then resets.

EPOCH_KEY = {"pk": {"S": "meta"}, "sk": {"S": "epoch"}}


def bump_epoch(client: DynamoDBClient, tables: TableNames) -> int:
    # A retry after a lost answer may bump twice: harmless, the epoch only has to move.
    out = with_retries(lambda: client.update_item(
        TableName=tables.feed, Key=EPOCH_KEY, UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="UPDATED_NEW"))
    return int(out["Attributes"]["n"]["N"])


def read_epoch(client: DynamoDBClient, tables: TableNames) -> int:
    item = with_retries(lambda: client.get_item(
        TableName=tables.feed, Key=EPOCH_KEY, ConsistentRead=True)).get("Item")
    return int(item["n"]["N"]) if item else 0
