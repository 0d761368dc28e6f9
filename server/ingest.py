"""Turn a batch of items-table stream records into log appends: shared by the feed and Lambda.

Records are handled in order. Log entries are grouped per scope (order kept within a scope;
scopes are independent) and each scope is appended in one go. Writes by other programs are
stamped in place, deletes by other programs become tombstones (server/changes.py); their
own stream records come back later and are logged then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from server.changelog import ChangeLog, refused_by_dynamodb
from server.changes import LogEntry, StampForeign, TombstoneForeign, classify, version_of
from server.clock import ServerClock
from server.codec import record_value
from server.errors import StoreUnavailable
from server.items import EXTERNAL_WRITER
from server.records import field_hash
from server.retry import with_retries
from server.tables import TableNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger("pysync.feed")

MAX_LIFT_ATTEMPTS = 20  # each failed lift means a push wrote the item again meanwhile
FEED_NODE = "feed"  # the node of the feed's HLC stamps
ForeignAction = TypeVar("ForeignAction", StampForeign, TombstoneForeign)


@dataclass
class IngestResult:
    heads: dict[str, int] = field(default_factory=dict)  # scope -> head after the append
    # The first record (by index) of each scope whose append failed: a Lambda reports the
    # lowest one as a batch item failure, the feed does not checkpoint past it.
    failed_at: int | None = None


def _permanent(e: Exception) -> bool:
    """Whether a failure would recur on every re-read of the same record.

    Throttling, conflicts and lost connections pass (also once the retry boundary,
    server/retry.py, gave up on them: StoreUnavailable); DynamoDB refusing the request as
    invalid, or an error of our own on this record's data, do not.
    """
    if isinstance(e, ClientError):
        return refused_by_dynamodb(e)
    return not isinstance(e, (BotoCoreError, StoreUnavailable))


class Ingestor:
    def __init__(self, client: DynamoDBClient, tables: TableNames, changelog: ChangeLog,
                 tombstone_retention_s: float, clock: ServerClock | None = None) -> None:
        self.client = client
        self.tables = tables
        self.changelog = changelog
        self.tombstone_retention_s = tombstone_retention_s
        # The stamps this feed gives to other programs' writes (ServerClock.stamp_after).
        self.clock = clock or ServerClock(FEED_NODE)

    def ingest(self, records: Sequence[dict[str, Any]]) -> IngestResult:
        by_scope: dict[str, list[tuple[int, LogEntry]]] = {}
        # Highest version of each item seen in this batch (not logged yet: appends come last).
        seen: dict[tuple[str, str], int] = {}
        result = IngestResult()
        for index, record in enumerate(records):
            action = classify(record)
            stamp: StampForeign | None = None  # the stamp being written, if any
            try:
                if isinstance(action, LogEntry) and action.restamp is not None:
                    floor = self._floor(action.scope, action.item_key, seen)
                    if action.version < floor:
                        # Not above what was logged: a stamp that landed on a later state,
                        # or a writer that restarted at 1. Stamp again, above history.
                        stamp = replace(action.restamp,
                                        version=max(floor, action.restamp.version))
                        self._stamp(stamp)
                        continue
                if isinstance(action, LogEntry):
                    by_scope.setdefault(action.scope, []).append((index, action))
                    item = (action.scope, action.item_key)
                    seen[item] = max(seen.get(item, 0), action.version)
                elif isinstance(action, StampForeign):
                    stamp = self._above_history(action, seen)
                    self._stamp(stamp)
                elif isinstance(action, TombstoneForeign):
                    self._tombstone(self._above_history(action, seen))
            except Exception as e:
                if stamp is not None and _permanent(e):
                    # E.g. an item near 400 KB that the stamp's meta would push over: it
                    # would fail the same way on every re-read and stall the shard. The
                    # change is logged unstamped and fields-less (the pull reads the item).
                    seq = str((record.get("dynamodb") or {}).get("SequenceNumber", ""))
                    log.error("could not stamp %s in %s (stream record %s): %s; logging it "
                              "without its fields at version %d, unstamped", stamp.item_key,
                              stamp.scope, seq, e, stamp.version)
                    entry = LogEntry(stamp.scope, stamp.item_key, stamp.version, False, {},
                                     None, EXTERNAL_WRITER, seq, fetch=True)
                    by_scope.setdefault(entry.scope, []).append((index, entry))
                    item = (entry.scope, entry.item_key)
                    seen[item] = max(seen.get(item, 0), entry.version)
                    continue
                log.exception("could not stamp a write by another program")
                result.failed_at = index if result.failed_at is None else min(
                    result.failed_at, index)
        for scope, items in by_scope.items():
            try:
                result.heads[scope] = self.changelog.append(scope, [e for _, e in items])
            except Exception:
                log.exception("could not append to the log of %s", scope)
                first = items[0][0]
                result.failed_at = first if result.failed_at is None else min(
                    result.failed_at, first)
        return result

    def _above_history(self, action: ForeignAction,
                       seen: dict[tuple[str, str], int]) -> ForeignAction:
        """Raise a derived version above every version clients may hold for the item.

        A record's images only show the `_v` of the states they hold; after two outside
        writes in a row (the first not stamped yet) the OldImage has no `_v` at all. The
        log's marker (server/changelog.py) and this batch know the last version logged.
        """
        floor = self._floor(action.scope, action.item_key, seen)
        if action.version >= floor:
            return action
        return replace(action, version=floor)

    def _floor(self, scope: str, item_key: str, seen: dict[tuple[str, str], int]) -> int:
        """The lowest version above every version of the item logged or seen in this batch."""
        return max(seen.get((scope, item_key), 0),
                   self.changelog.logged_version(scope, item_key)) + 1

    def _stamp(self, action: StampForeign) -> None:
        hlc = {"S": self.clock.stamp_after(action.after)}
        fh = dict(action.fh)
        for name in action.changed_fields:
            fh[name] = hlc
        # `_h` (server/records.py): the hashes of the fields this version covers, so that a
        # later outside UpdateItem that keeps the meta is still seen as foreign by a push.
        hashes = {name: {"S": field_hash(record_value(value))}
                  for name, value in action.fields.items()}
        values: dict[str, Any] = {":v": {"N": str(action.version)}, ":h": hlc,
                                  ":w": {"S": EXTERNAL_WRITER}, ":fh": {"M": fh},
                                  ":hh": {"M": hashes}}
        if action.expected_version is None:
            condition = "attribute_exists(pk) AND attribute_not_exists(#v)"
        else:
            condition = "#v = :e"
            values[":e"] = {"N": str(action.expected_version)}
        self._conditional(lambda: with_retries(lambda: self.client.update_item(
            TableName=self.tables.items,
            Key={"pk": {"S": action.scope}, "sk": {"S": action.item_key}},
            UpdateExpression="SET #v = :v, #h = :h, #w = :w, #fh = :fh, #hh = :hh",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#v": "_v", "#h": "_hlc", "#w": "_w", "#fh": "_fh",
                                      "#hh": "_h"},
            ExpressionAttributeValues=values,
        )))

    def _tombstone(self, action: TombstoneForeign) -> None:
        item: dict[str, Any] = {
            "pk": {"S": action.scope}, "sk": {"S": action.item_key},
            "_v": {"N": str(action.version)}, "_del": {"BOOL": True},
            "_hlc": {"S": self.clock.stamp_after(action.after)}, "_w": {"S": EXTERNAL_WRITER},
            "_ttl": {"N": str(int(time.time() + self.tombstone_retention_s))},
        }
        try:
            with_retries(lambda: self.client.put_item(
                TableName=self.tables.items, Item=item,
                ConditionExpression="attribute_not_exists(pk)"))
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            self._lift_reused_version(action)

    def _lift_reused_version(self, action: TombstoneForeign) -> None:
        """The item was written again between the outside delete and this tombstone. If a
        push did it, finding no item, it started the record over at a version the log may
        already hold (the record's earlier life): that write's own stream record is then
        dropped as already logged, and no pull would ever bring it. Lift the item's version
        to the tombstone's (above everything logged): the lift is a change of its own, and
        is logged with the item's current fields. A version at or above it, no item (deleted
        again: its REMOVE follows) or no version (another program's: stamped above the log
        by its own record) need nothing."""
        key = {"pk": {"S": action.scope}, "sk": {"S": action.item_key}}
        for _ in range(MAX_LIFT_ATTEMPTS):
            item = with_retries(lambda: self.client.get_item(
                TableName=self.tables.items, Key=key, ConsistentRead=True)).get("Item")
            current = version_of(item)
            if current is None or current >= action.version:
                return
            try:
                with_retries(lambda c=current: self.client.update_item(  # type: ignore[misc]
                    TableName=self.tables.items, Key=key, UpdateExpression="SET #v = :v",
                    ConditionExpression="#v = :c", ExpressionAttributeNames={"#v": "_v"},
                    ExpressionAttributeValues={":v": {"N": str(action.version)},
                                               ":c": {"N": str(c)}}))
                log.warning("%s in %s was written again at version %d before the feed saw "
                            "another program delete it; lifted to version %d", action.item_key,
                            action.scope, current, action.version)
                return
            except ClientError as e:
                if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        raise RuntimeError(f"could not lift the version of {action.item_key} in "
                           f"{action.scope}: it kept changing")

    @staticmethod
    def _conditional(write: Any) -> None:
        try:
            write()
        except ClientError as e:
            # The item changed again since this record: that newer write has its own record.
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
