"""The outbox: pending local mutations, in order, coalesced per record. Pure logic, no I/O.

Each entry has a local order key (`order`, from meta's next_order) and, once taken for
sending, a wire id (`wire_id`, from meta's next_mutation_id). Wire ids are assigned when an
entry is first taken, not when it is written, because coalescing removes entries and the
server wants consecutive ids (409 mutation_gap otherwise).

Coalescing rules: a new local edit merges into the record's pending entry if there is one
that has never been taken for sending; otherwise it becomes a new entry.

    pending  + new     -> result
    put      + put     -> put (new value)
    put      + patch   -> put (value with the patch applied)
    put      + delete  -> nothing, if the server has never seen the record; else delete
    patch    + put     -> put (new value)
    patch    + patch   -> patch (both patches' fields, the later value winning)
    patch    + delete  -> delete
    delete   + put     -> put (new value)
    delete   + patch   -> refused before this point (NotFound: the record is deleted)
    delete   + delete  -> delete (unchanged)

A merged entry keeps the pending entry's order key, base_version and base record and takes
the new edit's HLC stamp. An entry with a wire id is never merged into: the server may
already have it.

An entry of a `version` collection also keeps its base record (`base`): the record as it was
when the local edit began, which a conflict resolver receives (docs/sync-client.md).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Required, TypedDict

from pysync.errors import NotFound
from pysync.protocol import Mutation, Op, dumps
from pysync.schema import split_local_name
from pysync.values import BYTES_TAG, Record, from_json


def _bytes_wrapper(o: object) -> Any:
    if isinstance(o, bytes):
        return {BYTES_TAG: base64.b64encode(o).decode("ascii")}
    raise TypeError(f"{type(o).__name__} is not storable")


def _stored_decimal(d: Decimal) -> str:
    """A Decimal as stored JSON text: integral ones as plain integers (as to_json makes them),
    others as `<digits>E<exponent>` with a capital E, a form Python never writes for a float
    (its repr uses "e"), so load_value knows to give back a Decimal."""
    if d == d.to_integral_value():
        return str(int(d))
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)  # finite: check_record refuses NaN and Infinity
    return f"{'-' if sign else ''}{''.join(map(str, digits))}E{exponent}"


def _stored_fraction(text: str) -> float | Decimal:
    return Decimal(text) if "E" in text else float(text)


def dump_value(value: Record) -> str:
    """A validated value as the JSON text stored in IndexedDB (bytes as {"$bytes": b64}).

    Stored as text, not as a JS object: it crosses the bridge inside one JSON batch without
    a second parse, integers beyond 2**53 keep every digit, and a Decimal keeps every digit
    and comes back a Decimal (a float comes back the same float).
    """
    return dumps(value, default=_bytes_wrapper, number=_stored_decimal)


def load_value(text: str) -> Record:
    # No capital E anywhere, so no stored Decimal: the C parser's own floats (faster).
    data = json.loads(text, parse_float=_stored_fraction) if "E" in text else json.loads(text)
    return from_json(data)  # type: ignore[no-any-return]


class StoredOutboxRow(TypedDict, total=False):
    """A row of the `outbox` store: an Entry as stored (docs/local-store.md tables it)."""

    o: Required[int]  # the order key (meta writer.next_order): the store's key path
    r: Required[list[str]]  # [collection, key]: the `record` index
    op: Required[Op]
    v: Required[str | None]  # put: the value, patch: its fields, as JSON text; delete: None
    b: Required[int | None]  # base_version
    h: Required[str]  # the HLC stamp of the edit
    ch: Required[bool]  # chained: its base_version is set when taken
    q: int  # = o while not yet taken for sending: the `pending` index
    m: int  # the wire id, once taken: the unique `wire` index
    f: bool  # in flight: sent, not yet acknowledged
    # A `version` collection's entry: the record when the edit began, as JSON text (None:
    # absent). Absent from entries stored before it existed: the base is then unknown.
    bs: str | None


@dataclass(frozen=True)
class Entry:
    order: int
    collection: str
    key: str
    op: Op
    value: Record | None  # put: the whole value; patch: the fields it sets; delete: None
    base_version: int | None
    hlc: str
    # Written while an earlier entry of the same record was in flight: its base_version is
    # the version that entry produces, known only once it is acknowledged (set at take).
    chained: bool = False
    wire_id: int | None = None
    in_flight: bool = False
    # The record as it was when the local edit began (a `version` collection's conflict
    # resolver gets it); meaningful only if `base_known` (None: the record was absent).
    base: Record | None = None
    base_known: bool = False

    def to_mutation(self) -> Mutation:
        if self.wire_id is None:
            raise ValueError("an entry gets its wire id when it is taken for sending")
        # A shared scope's entries are stored under the local name (schema.local_name).
        collection, scope = split_local_name(self.collection)
        return Mutation(self.wire_id, collection, self.key, self.op, self.value,
                        self.base_version, self.hlc, scope)

    def to_row(self, text: str | None = None) -> StoredOutboxRow:
        """The stored form; `text` is the value already dumped, if the caller has it."""
        row: StoredOutboxRow = {
            "o": self.order, "r": [self.collection, self.key], "op": self.op,
            "v": text if text is not None else
            None if self.value is None else dump_value(self.value),
            "b": self.base_version, "h": self.hlc, "ch": self.chained,
        }
        if self.wire_id is None:
            row["q"] = self.order  # the `pending` index: entries not yet taken, in order
        else:
            row["m"] = self.wire_id  # the `wire` index
            row["f"] = self.in_flight
        if self.base_known:
            row["bs"] = None if self.base is None else dump_value(self.base)
        return row

    @classmethod
    def from_row(cls, row: StoredOutboxRow) -> Entry:
        v = row.get("v")
        base = row.get("bs")
        return cls(row["o"], row["r"][0], row["r"][1], row["op"],
                   None if v is None else load_value(v), row.get("b"), row["h"],
                   bool(row.get("ch")), row.get("m"), bool(row.get("f")),
                   None if base is None else load_value(base), "bs" in row)

    def local_result(self, confirmed: Record | None) -> Record | None:
        """The record as this edit writes it: over its base if known, else over
        `confirmed` (a patch over nothing: its own fields)."""
        over = self.base if self.base_known else confirmed
        if self.op == "patch" and over is None:
            return dict(self.value or {})
        return apply_op(over, self.op, self.value)


def coalesce(pending: Entry, op: Op, value: Record | None, hlc: str,
             server_knows: bool) -> Entry | None:
    """Merge a new edit into a pending entry; None means the two cancel out."""
    if pending.wire_id is not None:
        raise ValueError("never merge into an entry that was taken for sending")
    if op == "put":
        return replace(pending, op="put", value=value, hlc=hlc)
    if op == "patch":
        if pending.op == "delete" or pending.value is None or value is None:
            raise NotFound(f"{pending.collection}/{pending.key} is deleted: patch refused")
        return replace(pending, value={**pending.value, **value}, hlc=hlc)
    if pending.op == "delete":
        return pending
    if not server_knows:
        return None
    return replace(pending, op="delete", value=None, hlc=hlc)


def apply_op(current: Record | None, op: Op, value: Record | None) -> Record | None:
    """A record after one mutation; None is deleted. Patch sets top-level fields."""
    if op == "delete":
        return None
    if value is None:
        raise ValueError(f"a {op} carries a value")
    if op == "put":
        return dict(value)
    if current is None:
        raise NotFound("patch of a deleted record")
    return {**current, **value}


def rebase(confirmed: Record | None, entries: list[Entry]) -> Record | None:
    """The visible record: the confirmed copy with the still-pending entries replayed in order.

    A patch over a record that the server has deleted meanwhile is dropped from the view (the
    server will reject it, which removes it from the outbox too).
    """
    current = confirmed
    for e in sorted(entries, key=lambda e: e.order):
        if e.op == "patch" and current is None:
            continue
        current = apply_op(current, e.op, e.value)
    return current


@dataclass(frozen=True)
class Taken:
    """What `take` decided: the batch to send, the entries to rewrite, the next wire id."""

    batch: list[Entry]
    updated: list[Entry]
    next_mutation_id: int


def take(in_flight: list[Entry], pending: list[Entry], next_mutation_id: int, limit: int,
         versions: dict[tuple[str, str], int | None]) -> Taken:
    """Choose the next batch: unacknowledged entries first (same ids, same content), then
    pending entries in order, each given the next wire id.

    A record with an unacknowledged entry keeps its pending entry back until that
    acknowledgement, so that a chained entry's base_version is the version it produced.
    `versions` holds each record's confirmed version, the base of chained entries; a chained
    entry whose record is not in it (version unknown until the next pull) waits too.
    """
    batch = sorted(in_flight, key=lambda e: e.wire_id or 0)
    updated = [replace(e, in_flight=True) for e in batch if not e.in_flight]
    busy = {(e.collection, e.key) for e in batch}
    for e in sorted(pending, key=lambda e: e.order):
        if len(batch) >= limit:
            break
        record = (e.collection, e.key)
        if record in busy or (e.chained and record not in versions):
            continue
        base = versions[record] if e.chained else e.base_version
        e = replace(e, wire_id=next_mutation_id, in_flight=True, base_version=base,
                    chained=False)
        next_mutation_id += 1
        busy.add(record)
        batch.append(e)
        updated.append(e)
    return Taken(batch, updated, next_mutation_id)
