"""The change feed: tail every shard of the items table's stream into the per-scope logs.

One background thread per server process. Each pass: (re)discover shards now and then, take
the lease of every shard it can (server/leases.py), and for each owned shard read one batch
(GetRecords), ingest it (server/ingest.py: log appends, stamps), and only then checkpoint.
A child shard is read only after its parent's checkpoint is SHARD_END (or the parent has left
the stream), so an item's changes are logged in order across shard splits.

Faults:
- ExpiredIteratorException: a new iterator after the checkpoint; records re-read are dropped
  by the log's markers (server/changelog.py).
- TrimmedDataAccessException from GetRecords: a new iterator after the checkpoint. Only if
  that fails too (the checkpoint is older than the stream's 24 h) were changes lost for
  good: the feed then bumps the store *epoch*, every cursor answers {"reset": true} and
  clients re-read a snapshot; it resumes at TRIM_HORIZON.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from server.changelog import ChangeLog, bump_epoch
from server.ingest import Ingestor
from server.leases import SHARD_END, Leases
from server.retry import RetryPolicy, jitter, with_retries
from server.tables import TableNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

FEED_RETRY_CAP_S = 5.0  # the longest pause after failed passes

log = logging.getLogger("pysync.feed")

OnAppend = Callable[[dict[str, int]], None]  # scope -> new head


def eligible_shards(shards: list[dict[str, Any]], checkpoints: dict[str, str]) -> list[str]:
    """Shards to read now: not finished, and whose parent (if still listed) is finished."""
    present = {s["ShardId"] for s in shards}
    out = []
    for shard in shards:
        shard_id = shard["ShardId"]
        if checkpoints.get(shard_id) == SHARD_END:
            continue
        parent = shard.get("ParentShardId")
        if parent and parent in present and checkpoints.get(parent) != SHARD_END:
            continue
        out.append(shard_id)
    return out


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Feed:
    def __init__(self, dynamodb: DynamoDBClient, streams: DynamoDBStreamsClient,
                 tables: TableNames, *, log_retention_s: float, tombstone_retention_s: float,
                 poll_s: float = 0.25, chase_s: float = 0.01, lease_s: float = 10.0,
                 shard_refresh_s: float = 10.0, batch_size: int = 1000,
                 owner: str | None = None, on_append: OnAppend | None = None) -> None:
        self.dynamodb = dynamodb
        self.streams = streams
        self.tables = tables
        self.poll_s = poll_s
        self.chase_s = chase_s
        self.lease_s = lease_s
        self.shard_refresh_s = shard_refresh_s
        self.batch_size = batch_size
        self.owner = owner or worker_id()
        self.on_append = on_append
        self.changelog = ChangeLog(dynamodb, tables, log_retention_s)
        self.ingestor = Ingestor(dynamodb, tables, self.changelog, tombstone_retention_s)
        self._stream_arn: str | None = None
        self._leases: Leases | None = None
        self._shards: list[dict[str, Any]] = []
        self._checkpoints: dict[str, str] = {}
        self._refreshed_at = float("-inf")
        self._held: dict[str, float] = {}  # shard id -> lease expiry (epoch s)
        self._iterators: dict[str, str] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by nudge() and stop(): ends an idle wait
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> Feed:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pysync-feed", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, release: bool = True) -> None:
        """Stop the thread; release the leases so another process can take over at once."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if release and self._leases is not None:
            for shard_id in list(self._held):
                try:
                    self._leases.release(shard_id)
                except Exception:
                    log.warning("could not release the lease of %s", shard_id, exc_info=True)
        self._held.clear()
        self._iterators.clear()

    @property
    def working(self) -> bool:
        """Whether this feed holds a shard's lease (else it stands by)."""
        return bool(self._held)

    def nudge(self) -> None:
        """A write to the items table was just committed (this process's push, any thread):
        read the stream now, and if its record is not there yet, again after `chase_s`,
        then twice that, and so on up to `poll_s`, instead of waiting out the idle poll. A
        nudge during a chase starts it over; nudges only ever add passes while writes come
        in, so an idle feed still makes one GetRecords per shard every `poll_s`. A feed that
        holds no shard's lease (standing by) ignores it: its passes would only try to take
        leases another process holds."""
        if self.working:
            self._wake.set()

    def _run(self) -> None:
        # A failed pass (DynamoDB or its stream unreachable, throttled) is retried under the
        # server's one retry policy (server/retry.py): full jitter from the poll interval,
        # capped at 5 s. The first failure of a run is logged with its traceback, the
        # following ones in one line each, so an outage does not fill the log.
        retry = RetryPolicy(base=self.poll_s, cap=FEED_RETRY_CAP_S)
        failures = 0
        chase: float | None = None  # the next pause while chasing a nudge's record
        while not self._stop.is_set():
            if self._wake.is_set():  # cleared before the pass: a nudge during it is kept
                self._wake.clear()
                chase = self.chase_s
            try:
                handled = self.step()
                if failures:
                    log.warning("feed pass works again after %d failed passes", failures)
                failures = 0
            except Exception as e:
                if failures == 0:
                    log.exception("feed pass failed")
                else:
                    log.warning("feed pass failed again (%d in a row): %s", failures + 1, e)
                failures += 1
                handled = 0
                chase = None
                self._stop.wait(jitter(min(failures, 8), retry))
            if handled:
                continue  # a full page may have more behind it: straight on
            if chase is not None and chase < self.poll_s:
                pause, chase = chase, chase * 2
            else:
                pause, chase = self.poll_s, None
            self._wake.wait(pause)

    # ---- one pass ------------------------------------------------------------------------

    @property
    def leases(self) -> Leases:
        if self._leases is None:
            arn = self.stream_arn()
            self._leases = Leases(self.dynamodb, self.tables.feed, arn, self.owner, self.lease_s)
        return self._leases

    def stream_arn(self) -> str:
        if self._stream_arn is None:
            table = with_retries(lambda: self.dynamodb.describe_table(
                TableName=self.tables.items))["Table"]
            arn = table.get("LatestStreamArn")
            if not arn:
                raise RuntimeError(f"table {self.tables.items} has no stream")
            self._stream_arn = arn
        return self._stream_arn

    def _refresh(self) -> None:
        shards: list[dict[str, Any]] = []
        start: str | None = None
        while True:
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn()}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            desc = with_retries(lambda k=kwargs: self.streams.describe_stream(**k)  # type: ignore[misc]
                                )["StreamDescription"]
            shards += [dict(s) for s in desc.get("Shards", [])]
            start = desc.get("LastEvaluatedShardId")
            if not start:
                break
        self._shards = shards
        self._checkpoints = self.leases.checkpoints()
        self._refreshed_at = time.monotonic()

    def step(self) -> int:
        """Read one batch from every shard this worker may work; return the records handled."""
        if time.monotonic() - self._refreshed_at > self.shard_refresh_s:
            self._refresh()
        handled = 0
        for shard_id in eligible_shards(self._shards, self._checkpoints):
            if self._stop.is_set():
                break
            if not self._hold(shard_id):
                continue
            handled += self._read(shard_id)
        return handled

    def checkpoints(self) -> dict[str, str]:
        """This worker's view of the shards' checkpoints (for tests and diagnostics)."""
        return dict(self._checkpoints)

    def _hold(self, shard_id: str) -> bool:
        until = self._held.get(shard_id)
        if until is not None and until - time.time() > self.lease_s / 2:
            return True
        lease = self.leases.acquire(shard_id)
        if lease is None:
            self._drop(shard_id)
            return False
        if until is None or until <= time.time():  # (re)taken: resume from the checkpoint
            self._iterators.pop(shard_id, None)
            if lease.checkpoint:
                self._checkpoints[shard_id] = lease.checkpoint
            else:
                self._checkpoints.pop(shard_id, None)
        self._held[shard_id] = lease.until_ms / 1000
        return True

    def _drop(self, shard_id: str) -> None:
        self._held.pop(shard_id, None)
        self._iterators.pop(shard_id, None)

    def _iterator(self, shard_id: str) -> str | None:
        arn = self.stream_arn()
        ckpt = self._checkpoints.get(shard_id)
        try:
            if ckpt:
                out = with_retries(lambda: self.streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard_id, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    SequenceNumber=ckpt))
            else:
                out = with_retries(lambda: self.streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"))
            return out.get("ShardIterator")
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code == "TrimmedDataAccessException":
                self._data_lost(shard_id, f"{code} after {ckpt}")
                out = with_retries(lambda: self.streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"))
                return out.get("ShardIterator")
            if code == "ResourceNotFoundException":  # the shard left the stream
                if ckpt != SHARD_END:
                    self._data_lost(shard_id, f"{code}: {e}")
                self._checkpoint(shard_id, SHARD_END)
                return None
            raise

    def _data_lost(self, shard_id: str, why: str) -> None:
        log.error("stream records of shard %s were lost before the feed read them (%s): "
                  "bumping the store epoch, every client will reset", shard_id, why)
        bump_epoch(self.dynamodb, self.tables)

    def _checkpoint(self, shard_id: str, seq: str) -> bool:
        if not self.leases.checkpoint(shard_id, seq):
            self._drop(shard_id)
            return False
        self._checkpoints[shard_id] = seq
        return True

    def _read(self, shard_id: str) -> int:
        iterator = self._iterators.pop(shard_id, None) or self._iterator(shard_id)
        if iterator is None:
            return 0
        try:
            out = with_retries(lambda: self.streams.get_records(ShardIterator=iterator,
                                                                Limit=self.batch_size))
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code == "ExpiredIteratorException":
                return 0  # the next pass starts a new iterator from the checkpoint
            if code == "TrimmedDataAccessException":
                # The iterator points before the trim horizon. Whether records were lost is
                # decided by the checkpoint: the next pass asks for an iterator after it,
                # which fails with TrimmedDataAccess only if the checkpoint itself is gone.
                # (DynamoDB Local raises this for an iterator taken on an empty shard.)
                return 0
            raise
        records: list[dict[str, Any]] = out.get("Records", [])  # type: ignore[assignment]
        if records:
            result = self.ingestor.ingest(records)
            if result.heads and self.on_append is not None:
                self.on_append(result.heads)
            done = len(records) if result.failed_at is None else result.failed_at
            if done and not self._checkpoint(
                    shard_id, str(records[done - 1]["dynamodb"]["SequenceNumber"])):
                return len(records)
            if result.failed_at is not None:
                return len(records)  # no iterator kept: re-read from the checkpoint
        next_iterator = out.get("NextShardIterator")
        if next_iterator:
            self._iterators[shard_id] = next_iterator
        else:
            self._checkpoint(shard_id, SHARD_END)
        return len(records)
