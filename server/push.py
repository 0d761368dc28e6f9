"""POST /v1/push, the core: apply a client's mutations to DynamoDB exactly once.

How (docs/server.md has the why and the measurements):
1. Bind the client to the user and read its last processed mutation id `lmid`.
2. Ids <= lmid are `duplicate`; the rest must continue at lmid + 1, else MutationGap.
3. The new mutations go in chunks touching at most 99 records. For each chunk: read its
   records (one strongly consistent BatchGetItem), compute every outcome in memory in id
   order (pysync.merge), then ONE TransactWriteItems: each changed record put on condition
   that it is still what was read, plus the client item's `lmid` moved from the value we
   read to the chunk's last id. Either all of it happens or none.
4. A retry after a lost response or a crash finds `lmid` moved: duplicates, nothing
   written again. Two racing requests of one client: the loser's transaction fails on
   `lmid`, it re-reads and answers duplicates. A record written concurrently by someone
   else fails its condition: the chunk is re-read and recomputed.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from pysync.hlc import ClockError, Stamp
from pysync.merge import ABSENT, Applied, Conflict, Edit, RecordState, Rejected, apply_change
from pysync.protocol import FORBIDDEN, Mutation, MutationResult, PushRequest, PushResponse
from pysync.schema import Schema, Strategy
from server.changelog import birth_item, birth_key, marked_hlc, marker_key, unloggable
from server.changes import LogEntry
from server.clients import bind_client_sync, client_key
from server.clock import ServerClock
from server.config import Settings
from server.context import ServerContext
from server.db import (
    MAX_BATCH_GET_KEYS,
    MAX_BATCH_WRITE_ITEMS,
    MAX_TRANSACTION_ACTIONS,
    MAX_TRANSACTION_BYTES,
)
from server.errors import MutationGap, StoreUnavailable
from server.items import Item, item_key, record_fields, sort_key, split_sort_key
from server.records import (
    MAX_ITEM_BYTES,
    StoredRecord,
    decode_item,
    encode_item,
    field_hash,
    item_size,
    server_record,
)
from server.retry import (
    DEFAULT_BACKOFF,
    batch_get_all,
    batch_write_all,
    cancellation_codes,
    error_code,
    pause,
    with_retries,
)
from server.scopes import WRITERS, scope_pk

MAX_RECORDS_PER_TRANSACTION = MAX_TRANSACTION_ACTIONS - 1  # + the client item
MAX_CONTENTION_ROUNDS = 8


class _Raced(Exception):
    """Another request of the same client moved its lmid first."""


def strategy_of(schema: Schema, collection: str) -> Strategy | None:
    """The collection's strategy; any collection is `merge` while the schema is empty."""
    if not schema.collections:
        return "merge"
    return schema.get(collection).strategy if collection in schema else None


def check_sequence(mutations: Sequence[Mutation], last: int) -> None:
    """Ids must be consecutive; the first one above `last` must be `last + 1`."""
    for prev, cur in itertools.pairwise(mutations):
        if cur.id != prev.id + 1:
            raise MutationGap(last + 1)
    new = [m for m in mutations if m.id > last]
    if new and new[0].id != last + 1:
        raise MutationGap(last + 1)


async def apply_push(
    ctx: ServerContext, user: str, scope: str, request: PushRequest
) -> PushResponse:
    """Apply `request` in `scope` for `user`; see docs/server.md.

    Raises MutationGap (nothing applied), ClientForbidden, StoreUnavailable (retry later;
    whatever was applied is recorded and a retry will not apply it again).
    """
    call = functools.partial(contextvars.copy_context().run, apply_push_sync, ctx, user, scope,
                             request)  # what asyncio.to_thread does, on our own pool
    return await asyncio.get_running_loop().run_in_executor(ctx.pools.pushers, call)


@dataclass
class _Progress:
    """Where a push stands with the client's `lmid`, across its scope runs."""

    last: int  # the client's last processed mutation id, as known now
    guessed: bool  # `last` is the optimistic guess, not proven by a commit or a read yet


def apply_push_sync(ctx: ServerContext, user: str, scope: str,
                    request: PushRequest) -> PushResponse:
    mutations, client_id = _authorized(ctx, user, request.mutations), request.client_id
    # Optimistic start (docs/server.md, "Push performance"): a client's push almost always
    # continues right after its last acknowledged id, so that is taken as `lmid` without
    # reading it. The transaction's own condition on the client item (lmid = the value
    # taken AND owner = this user) checks the guess: if it was wrong (a retry of a push
    # already applied, a gap, an unknown or foreign client_id), nothing is written and the
    # push goes on as if it had read the client item first (_Raced below). A first push
    # (id 1) reads, since its client item usually does not exist yet.
    guessed = bool(mutations) and mutations[0].id > 1 and _consecutive(mutations)
    if guessed:
        progress = _Progress(mutations[0].id - 1, True)
    else:
        progress = _Progress(bind_client_sync(ctx, client_id, user), False)
        check_sequence(mutations, progress.last)
    results: dict[int, MutationResult] = {}
    runs = _scope_runs(mutations, scope)
    for run_scope, run in runs:
        _apply_run(ctx, user, client_id, run_scope, run, mutations, progress, results)
    duplicate: dict[int, MutationResult] = {}
    for run_scope, run in runs:
        duplicate.update(_duplicates(ctx, run_scope, [m for m in run if m.id not in results]))
    return PushResponse(progress.last, tuple(results.get(m.id) or duplicate.get(m.id) or
                                             MutationResult(m.id, "duplicate")
                                             for m in mutations))


def _authorized(ctx: ServerContext, user: str, mutations: Sequence[Mutation]
                ) -> tuple[Mutation, ...]:
    """The mutations, those into a shared scope `user` may not write (viewer, not a member,
    no such scope) turned into `forbidden` rejections: they count as processed, their
    neighbours apply. Each shared scope's membership is read once, strongly consistent."""
    shared = {m.scope for m in mutations if m.scope is not None and m.rejection is None}
    writable = {sid for sid in shared
                if (membership := ctx.scopes.membership(user, sid)) is not None
                and membership.role in WRITERS}
    return tuple(
        Mutation.rejected(m.id, FORBIDDEN, f"you may not write to scope {m.scope!r}")
        if m.scope is not None and m.rejection is None and m.scope not in writable else m
        for m in mutations)


def _scope_runs(mutations: Sequence[Mutation], personal: str
                ) -> list[tuple[str, list[Mutation]]]:
    """The mutations cut into runs of consecutive ids in one scope (its DynamoDB pk), in id
    order: each run is applied like a push of its own, the client's `lmid` carried over."""
    runs: list[tuple[str, list[Mutation]]] = []
    for m in mutations:
        pk = scope_pk(m.scope) if m.scope is not None else personal
        if runs and runs[-1][0] == pk:
            runs[-1][1].append(m)
        else:
            runs.append((pk, [m]))
    return runs


def _apply_run(ctx: ServerContext, user: str, client_id: str, scope: str,
               run: Sequence[Mutation], mutations: Sequence[Mutation], progress: _Progress,
               results: dict[int, MutationResult]) -> None:
    """Apply the run's mutations above `progress.last`, chunk by chunk, into `results`."""
    pending = [m for m in run if m.id > progress.last]
    # Every record of the run is read up front, concurrently, except those assumed absent
    # (_assumed_absent); after that each chunk starts from the states the previous chunks
    # wrote, so only a failed condition reads again.
    stored = _read_records(ctx, scope, pending, skip=_assumed_absent(pending))
    planned: _Planned | None = None
    failures = 0
    while pending:
        plan = planned or _plan_checked(ctx, scope, client_id, pending, stored)
        commit_args = (ctx, user, client_id, progress.last, plan.chunk[-1].id,
                       plan.computed.writes)
        rest = pending[len(plan.chunk):]
        view = {**stored, **plan.written()}
        planned = None
        try:
            if rest:
                # While DynamoDB works on this chunk, compute the next one as if it succeeds.
                # (in the request's context: its DynamoDB trouble budget, server/retry.py)
                commit = ctx.pools.committers.submit(functools.partial(
                    contextvars.copy_context().run, _commit, *commit_args))
                planned = _plan_checked(ctx, scope, client_id, rest, view)
                committed = commit.result()
            else:  # the last chunk (most pushes have one): no other thread to hand it to
                committed = _commit(*commit_args)
        except _Raced:
            progress.last = bind_client_sync(ctx, client_id, user)
            if progress.guessed:  # nothing was written yet: answer as if `lmid` had been read
                check_sequence(mutations, progress.last)
                progress.guessed = False
            pending = [m for m in pending if m.id > progress.last]
            stored.update(_read_records(ctx, scope, pending))  # the winner wrote some
            planned = None
            continue
        progress.guessed = False  # the commit's condition proved `last`
        if committed:
            results.update(plan.computed.results)
            progress.last, pending, stored, failures = plan.chunk[-1].id, rest, view, 0
            continue
        # A record changed between our read and our write (or one assumed absent exists):
        # read the chunk's records, recompute. A wrong assumption is not contention.
        if not any(stored[w.sk].assumed for w in plan.computed.writes):
            failures += 1
            if failures >= MAX_CONTENTION_ROUNDS:
                raise StoreUnavailable(DEFAULT_BACKOFF.retry_after)
            pause(failures)
        stored.update(_read_records(ctx, scope, plan.chunk))
        planned = None


def _duplicates(ctx: ServerContext, scope: str, mutations: Sequence[Mutation]
                ) -> dict[int, MutationResult]:
    """Answers for mutations processed before (a retry after a lost answer, docs/api.md):
    each carries its record as it is now, if it has an item. The first answer may have been
    a conflict or a rejection that wrote nothing: without the record the client would wait
    for a version no pull brings."""
    if not mutations:
        return {}
    now = _read_records(ctx, scope, mutations)
    # (an item that is gone, deleted outright by another program, has no record to give:
    # the feed's tombstone reaches the client through the pull)
    return {m.id: MutationResult(m.id, "duplicate", server=server_record(record))
            for m in mutations if m.rejection is None
            and (record := now[sort_key(m.collection, m.key)]).state.exists}


def _consecutive(mutations: Sequence[Mutation]) -> bool:
    return all(cur.id == prev.id + 1 for prev, cur in itertools.pairwise(mutations))


def _assumed_absent(pending: Sequence[Mutation]) -> set[str]:
    """Records whose first mutation here is a `put` by a client that never had them
    (base_version null): almost always creations, so they are not read but assumed absent.
    A write relying on it is conditioned on the item's absence (attribute_not_exists(pk),
    exactly what a read finding nothing would give); if the item exists the transaction
    writes nothing and the chunk is read and recomputed. An outcome that writes nothing
    (a rejection, a conflict) would have no such check: _plan_checked reads those first."""
    first: dict[str, Mutation] = {}
    for m in pending:
        if m.rejection is None:
            first.setdefault(sort_key(m.collection, m.key), m)
    return {sk for sk, m in first.items() if m.op == "put" and m.base_version is None}


def _plan_checked(ctx: ServerContext, scope: str, client_id: str,
                  pending: Sequence[Mutation], stored: dict[str, StoredRecord]) -> _Planned:
    """_plan, where every outcome computed from an assumed-absent record is checked by its
    write's condition; records assumed absent but not written are read, and the chunk
    computed again. Reads go into `stored`."""
    while True:
        plan = _plan(ctx.settings, ctx.clock, scope, client_id, pending, stored)
        written = {w.sk for w in plan.computed.writes}
        unchecked = [m for m in plan.chunk if m.rejection is None and
                     stored[sk := sort_key(m.collection, m.key)].assumed and sk not in written]
        if not unchecked:
            return plan
        stored.update(_read_records(ctx, scope, unchecked))  # no longer assumed: ends


def _first_chunk(pending: Sequence[Mutation]) -> list[Mutation]:
    records: set[tuple[str, str]] = set()
    chunk: list[Mutation] = []
    for m in pending:
        records.add((m.collection, m.key))
        if len(records) > MAX_RECORDS_PER_TRANSACTION:
            break
        chunk.append(m)
    return chunk


@dataclass
class _Write:
    sk: str
    item: Item
    size: int
    was: StoredRecord  # the record as read: the write's condition
    state: RecordState  # what the item holds once written


@dataclass
class _Computed:
    results: dict[int, MutationResult]
    writes: list[_Write]


@dataclass
class _Planned:
    chunk: list[Mutation]
    computed: _Computed

    def written(self) -> dict[str, StoredRecord]:
        """The chunk's records as they are once its transaction has committed."""
        return {w.sk: StoredRecord(w.was.collection, w.was.key, w.state, frozenset(),
                                   w.state.version, record_fields(w.item))
                for w in self.computed.writes}


def _plan(settings: Settings, clock: ServerClock, scope: str, client_id: str,
          pending: Sequence[Mutation], stored: dict[str, StoredRecord]) -> _Planned:
    """The next chunk and its outcomes; halved until its writes fit in one transaction."""
    chunk = _first_chunk(pending)
    while True:
        computed = _compute(settings, clock, scope, client_id, chunk, stored)
        if sum(w.size for w in computed.writes) <= MAX_TRANSACTION_BYTES or len(chunk) == 1:
            return _Planned(chunk, computed)
        chunk = chunk[: len(chunk) // 2]




def _read_records(ctx: ServerContext, scope: str, mutations: Sequence[Mutation],
                  skip: set[str] | frozenset[str] = frozenset()) -> dict[str, StoredRecord]:
    """The records `mutations` touch, read strongly consistent; those in `skip` are not
    read but assumed absent (StoredRecord.assumed). Each record's log marker is read in the
    same calls: a record with no item starts above what the log holds (_after_log)."""
    keys = {sort_key(m.collection, m.key): (m.collection, m.key) for m in mutations
            if m.rejection is None}
    wanted = [(ctx.tables.items, item_key(scope, c, k)) for sk, (c, k) in keys.items()
              if sk not in skip]
    wanted += [(ctx.tables.feed, key) for sk in keys
               for key in (marker_key(scope, sk), birth_key(scope, sk))]
    groups = [wanted[i:i + MAX_BATCH_GET_KEYS]
              for i in range(0, len(wanted), MAX_BATCH_GET_KEYS)]
    found: dict[str, Item] = {}
    markers: dict[str, Item] = {}
    request = contextvars.copy_context()  # the request's DynamoDB trouble budget
    for items, marks in ctx.pools.readers.map(lambda g: request.copy().run(_batch_get, ctx, g),
                                              groups):
        found.update(items)
        markers.update(marks)
    return {sk: _after_log(StoredRecord(c, k, ABSENT, assumed=True) if sk in skip
                           else decode_item(found.get(sk), c, k), markers.get(sk),
                           markers.get(birth_key(scope, sk)["sk"]["S"]))
            for sk, (c, k) in keys.items()}


def _after_log(record: StoredRecord, marker: Item | None, birth: Item | None) -> StoredRecord:
    """Flag a record with no item though the log holds versions of it or push marked its
    birth (server/changelog.birth_key): another program deleted it outright and the feed
    may not have logged all of its earlier life yet (_adopt_outside_delete)."""
    if record.state.exists or (marker is None and birth is None):
        return record
    born_by = str(birth["w"]["S"]) if birth and marker is None else ""
    return replace(record, earlier_life=True, born_by=born_by,
                   earlier_hlc=max(marked_hlc(marker), marked_hlc(birth)))


def _fresh_version(clock: ServerClock, floor: int) -> int:
    """A version taken from the server clock's milliseconds (at least `floor`): above any
    counter a record's earlier life or another program's writes can have reached."""
    return max(Stamp.parse(clock.now()).wall_ms, floor)


def _batch_get(ctx: ServerContext, keys: list[tuple[str, Item]]
               ) -> tuple[dict[str, Item], dict[str, Item]]:
    """The items and the log markers among `keys` (table, key), by sort key."""
    request: dict[str, Any] = {}
    for table, key in keys:
        request.setdefault(table, {"Keys": [], "ConsistentRead": True})["Keys"].append(key)
    responses = batch_get_all(ctx.dynamodb, request)
    by_sk = {table: {item["sk"]["S"]: item for item in responses.get(table, [])}
             for table in (ctx.tables.items, ctx.tables.feed)}
    return by_sk[ctx.tables.items], by_sk[ctx.tables.feed]


def _adopt(clock: ServerClock, record: StoredRecord, base_version: int | None,
           stamp: str) -> RecordState:
    """The state a mutation competes with when another program wrote the record.

    The foreign write becomes a pysync version: `_v + 1` if it kept the meta, else a fresh
    version taken from the server clock's milliseconds, above any counter the record can
    have reached, so it never collides with a version a client already holds. A client
    whose base_version names that version has seen the write: the foreign fields keep their
    stamps and its edit competes normally. Otherwise the foreign write is newer than the
    mutation: its fields get a server stamp after the mutation's, so the mutation loses on
    them (merge), entirely (lww), or on version mismatch (version).
    """
    state = record.state
    version = state.version
    if record.stored_version is None:
        version = _fresh_version(clock, version + 1)
    if base_version is not None and base_version == version:
        return replace(state, version=version)
    # Newer than the mutation and than the record's own clock: a fresh server clock (another
    # process, or this one restarted) may not have seen the stamps the record already has,
    # and a record's clock never goes back (the feed's rule, ServerClock.stamp_after).
    newer = clock.stamp_after(max(stamp, _well_formed(state.hlc) or stamp))
    stamps = dict(state.stamps)
    for name in record.foreign_fields:
        stamps[name] = newer
    return replace(state, version=version, hlc=newer, stamps=stamps)


def _well_formed(hlc: str) -> str | None:
    """A record's `_hlc` if it is a stamp (another program may have written anything)."""
    try:
        Stamp.parse(hlc)
    except ClockError:
        return None
    return hlc


def _adopt_outside_delete(clock: ServerClock, record: StoredRecord) -> RecordState:
    """The tombstone of a record another program deleted outright (StoredRecord.earlier_life),
    written by push before the feed writes its own (server/ingest.py, which then finds the
    item and leaves it). Its version is fresh (_fresh_version): the earlier life may have
    versions the feed has not logged yet, and one version number must never name two
    states. Its stamp, like the feed's for an outside delete (server/ingest.stamp_after), is
    above the deleted record's newest stamp as far as it is known (the log's and the birth
    mark's) and the server's clock, which has seen every stamp this process accepted: the
    delete counts as the newest write, and a record's clock never goes back."""
    newest = record.earlier_hlc or clock.now()
    return replace(record.state, version=_fresh_version(clock, record.state.version + 1),
                   fields={}, stamps={}, hlc=clock.after(newest), deleted=True, exists=True)


# One pass over the chunk, each mutation's steps in order; the named steps are out already.
def _compute(settings: Settings, clock: ServerClock, scope: str,  # noqa: C901
             client_id: str, chunk: Sequence[Mutation], stored: dict[str, StoredRecord]
             ) -> _Computed:
    states: dict[str, RecordState] = {}
    writers: dict[str, str] = {}
    encoded: dict[str, Item] = {}  # the item for states[sk], when already built
    sizes: dict[str, int] = {}
    results: dict[int, MutationResult] = {}
    for m in chunk:
        if m.rejection is not None:  # refused by PushRequest.from_json (docs/api.md)
            results[m.id] = _rejected(m, m.rejection.code, m.rejection.message)
            continue
        sk = sort_key(m.collection, m.key)
        strategy = strategy_of(settings.schema, m.collection)
        if strategy is None:
            results[m.id] = _rejected(m, "unknown_collection",
                                      f"the schema has no collection {m.collection!r}")
            continue
        if sk not in states and stored[sk].earlier_life and \
                not _own_failed_attempt(stored[sk].born_by, client_id, m.id):
            # Before the mutation's stamp is taken: one the server gives comes after it.
            # Written even if this mutation loses, like an adoption below.
            states[sk] = _adopt_outside_delete(clock, stored[sk])
            writers[sk] = f"{client_id}:{m.id}"
        try:
            stamp = clock.accept(m.hlc)
        except ClockError as e:
            results[m.id] = _rejected(m, "invalid_hlc", str(e))
            continue
        current = states.get(sk)
        if current is None:
            current = stored[sk].state
            if stored[sk].foreign:
                # Adoption is written even if this mutation loses, so the record's version
                # stops moving and the client can name it in its next try.
                current = _adopt(clock, stored[sk], m.base_version, stamp)
                states[sk] = current
                writers[sk] = f"{client_id}:{m.id}"
        outcome = apply_change(strategy, current, Edit(m.op, m.value, m.base_version, stamp))
        if isinstance(outcome, Rejected):
            results[m.id] = _rejected(m, outcome.code, outcome.message)
        elif isinstance(outcome, Conflict):
            results[m.id] = MutationResult(m.id, "conflict", server=server_record(
                StoredRecord(m.collection, m.key, current)))
        elif isinstance(outcome, Applied):
            new = outcome.state
            if new is not current:
                writer = f"{client_id}:{m.id}"
                built = _writable(settings, scope, m, new, writer)
                if built is None:
                    results[m.id] = _rejected(
                        m, "too_large", "the record would exceed DynamoDB's 400 KB item limit")
                    continue
                writers[sk] = writer
                encoded[sk], sizes[sk] = built
            states[sk] = new
            results[m.id] = MutationResult(m.id, "applied", version=new.version)
    return _Computed(results, _writes(settings, scope, states, writers, encoded, sizes, stored))


def _writable(settings: Settings, scope: str, m: Mutation, new: RecordState, writer: str
              ) -> tuple[Item, int] | None:
    """The item for the record's new state and its size, or None if DynamoDB or the change
    log could not hold it."""
    candidate = encode_item(scope, m.collection, m.key, new, writer,
                            tombstone_s=settings.tombstone_retention_s)
    size = item_size(candidate)
    if size > MAX_ITEM_BYTES or _unloggable(scope, candidate, size):
        return None
    return candidate, size


def _writes(settings: Settings, scope: str, states: dict[str, RecordState],
            writers: dict[str, str], encoded: dict[str, Item], sizes: dict[str, int],
            stored: dict[str, StoredRecord]) -> list[_Write]:
    """The items to write: each record's final state in the chunk, if a mutation (or an
    adoption) changed it; `encoded` and `sizes` hold those already built and measured."""
    writes = []
    for sk, state in states.items():
        if sk in writers:
            item = encoded.get(sk) or encode_item(
                scope, *split_sort_key(sk), state, writers[sk],
                tombstone_s=settings.tombstone_retention_s)
            writes.append(_Write(sk, item, sizes.get(sk) or item_size(item), stored[sk], state))
    return writes


# A log entry holds the item's fields plus a few short attributes, but not the item's `_h`
# and `_fh` maps: only an item this close to the limit can make a log entry too large.
_LOG_ENTRY_MARGIN = 2048


def _unloggable(scope: str, candidate: Item, size: int) -> bool:
    """Whether the change log could not hold this item's change with its fields (the feed
    would log it fields-less: docs/feed.md). Push refuses what the log cannot hold."""
    if size <= MAX_ITEM_BYTES - _LOG_ENTRY_MARGIN:
        return False
    entry = LogEntry(scope, candidate["sk"]["S"], int(candidate["_v"]["N"]), False,
                     record_fields(candidate), candidate["_hlc"]["S"], candidate["_w"]["S"], "")
    return unloggable(scope, entry) is not None


def _rejected(m: Mutation, code: str, message: str) -> MutationResult:
    # The rejection counts as processed once committed, so the response must render: a
    # message quoting input is made valid UTF-8 (a lone surrogate escaped) here, whatever
    # produced it.
    safe = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return MutationResult(m.id, "rejected", error_code=code, error_message=safe)


# DynamoDB's limit is 4 KB per expression; past this, the write falls back to a whole Put.
_MAX_EXPRESSION_CHARS = 3800
_META_WRITTEN = ("_v", "_hlc", "_h", "_fh", "_del", "_w")


def _write_action(table: str, w: _Write) -> dict[str, Any]:
    """An Update that touches only the fields this push changed, on condition that `_v`
    and those fields are still as read. A write by another program to any other field in
    the meantime survives (and shows as foreign next time, its hash no longer matching);
    one to a field we change fails the condition, and the chunk is read again.
    Creations, deletions, recreations and items without meta are whole Puts."""
    was, new = w.was, w.state
    if (not was.state.exists or was.state.deleted or new.deleted
            or was.stored_version is None):
        return _put_action(table, w.item, was)
    old_raw, new_hashes = was.raw_fields, w.item["_h"]["M"]
    names: dict[str, str] = {"#v": "_v"}
    values: dict[str, Any] = {":v": {"N": str(was.stored_version)}}
    sets: list[str] = []
    removes: list[str] = []
    conditions = ["#v = :v"]
    for i, name in enumerate(sorted(set(old_raw) | set(new.fields))):
        before = was.state.fields.get(name, _MISSING)
        if name in new.fields and before is not _MISSING and \
                new_hashes[name]["S"] == field_hash(before):
            continue  # unchanged: not written, not conditioned
        ph = f"#f{i}"
        names[ph] = name
        if name in old_raw:
            conditions.append(f"{ph} = :o{i}")
            values[f":o{i}"] = old_raw[name]
        else:
            conditions.append(f"attribute_not_exists({ph})")
        if name in new.fields:
            sets.append(f"{ph} = :n{i}")
            values[f":n{i}"] = w.item[name]
        else:
            removes.append(ph)
    for j, meta in enumerate(_META_WRITTEN):
        names[f"#m{j}"] = meta
        if meta in w.item:
            sets.append(f"#m{j} = :m{j}")
            values[f":m{j}"] = w.item[meta]
        else:
            removes.append(f"#m{j}")
    update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    condition = " AND ".join(conditions)
    if max(len(update), len(condition)) > _MAX_EXPRESSION_CHARS:
        return _put_action(table, w.item, was)
    return {"Update": {"TableName": table, "Key": {"pk": w.item["pk"], "sk": w.item["sk"]},
                       "UpdateExpression": update, "ConditionExpression": condition,
                       "ExpressionAttributeNames": names,
                       "ExpressionAttributeValues": values}}


_MISSING = object()


def _put_action(table: str, item: Item, was: StoredRecord) -> dict[str, Any]:
    action: dict[str, Any] = {"TableName": table, "Item": item}
    if not was.state.exists:
        action["ConditionExpression"] = "attribute_not_exists(pk)"
    elif was.stored_version is None:
        action["ConditionExpression"] = "attribute_exists(pk) AND attribute_not_exists(#v)"
        action["ExpressionAttributeNames"] = {"#v": "_v"}
    else:
        action["ConditionExpression"] = "#v = :v"
        action["ExpressionAttributeNames"] = {"#v": "_v"}
        action["ExpressionAttributeValues"] = {":v": {"N": str(was.stored_version)}}
    return {"Put": action}


def _client_update(table: str, client_id: str, user: str, last: int, new_last: int
                   ) -> dict[str, Any]:
    return {
        "TableName": table, "Key": client_key(client_id),
        "UpdateExpression": "SET lmid = :new",
        "ConditionExpression": "lmid = :last AND #o = :user",
        "ExpressionAttributeNames": {"#o": "owner"},
        "ExpressionAttributeValues": {":new": {"N": str(new_last)}, ":last": {"N": str(last)},
                                      ":user": {"S": user}},
    }


def _commit(ctx: ServerContext, user: str, client_id: str, last: int, new_last: int,
            writes: list[_Write]) -> bool:
    """Write the chunk; False if a record changed since it was read. Raises _Raced if
    another request of this client got there first."""
    update = _client_update(ctx.tables.clients, client_id, user, last, new_last)
    client: Any = ctx.dynamodb
    births = _mark_births(ctx, writes)
    try:
        if not writes:
            with_retries(lambda: client.update_item(**update))
            return True
        actions = [_write_action(ctx.tables.items, w) for w in writes]
        actions.append({"Update": update})
        with_retries(lambda: client.transact_write_items(TransactItems=actions))
        return True
    except ClientError as e:
        code = error_code(e)
        if code == "ConditionalCheckFailedException":
            raise _Raced from None
        if code != "TransactionCanceledException":
            raise
        reasons = cancellation_codes(e)
        if reasons and reasons[-1] == "ConditionalCheckFailed":
            raise _Raced from None
        if "ConditionalCheckFailed" in reasons:
            return False
        raise
    finally:
        for done in births:
            done.result()  # written before the answer names the new versions


def _own_failed_attempt(born_by: str, client_id: str, mutation_id: int) -> bool:
    """Whether a birth mark (with nothing logged) came from an attempt of this client's
    unprocessed mutations whose transaction failed: its writer is this client at this
    mutation or a later one (an acknowledged earlier life has ids below the pending ones)."""
    writer, _, wid = born_by.rpartition(":")
    return writer == client_id and wid.isdigit() and int(wid) >= mutation_id


def _mark_births(ctx: ServerContext, writes: list[_Write]) -> list[Future[None]]:
    """Write the birth marks of the records these writes create from nothing, alongside the
    transaction (server/changelog.birth_key). A mark whose transaction then fails names its
    writer: that mutation's retry is no re-creation; another's just starts at a fresh
    version."""
    now = time.time()
    puts = [{"PutRequest": {"Item": birth_item(w.item["pk"]["S"], w.sk, w.state.hlc,
                                               w.item["_w"]["S"], now)}}
            for w in writes
            if w.state.exists and not w.was.state.exists and not w.was.earlier_life]
    request = contextvars.copy_context()  # the request's DynamoDB trouble budget
    return [ctx.pools.readers.submit(request.copy().run, batch_write_all, ctx.dynamodb,
                            {ctx.tables.feed: puts[i:i + MAX_BATCH_WRITE_ITEMS]})
            for i in range(0, len(puts), MAX_BATCH_WRITE_ITEMS)]
