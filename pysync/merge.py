"""Conflict strategies as pure functions: (strategy, record state, edit) -> outcome.

Shared by the server (the authority, which enforces them) and the client. No I/O here.

- merge: field-level last-writer-wins by HLC stamp. Each field keeps the stamp of the write
  that set it (removed fields keep theirs too), so concurrent edits to different fields
  both survive and a stale edit never overwrites a newer one.
- lww: the whole record carries one stamp; an edit applies only if its stamp is newer.
- version: optimistic concurrency; an edit applies only if its base_version is the
  record's current version (a record never written has version 0; null means 0).

Stamps are HLC strings (pysync.hlc), which order correctly as plain strings; "" is older
than every stamp. An edit that loses is a Conflict (the caller returns the server's record).
A patch of a record that does not exist, or is deleted, is Rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pysync.protocol import Op
from pysync.schema import Strategy


@dataclass(frozen=True)
class RecordState:
    """A record as the authority holds it. A deleted record is a tombstone with no fields."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0
    hlc: str = ""  # the newest stamp that touched the record
    stamps: Mapping[str, str] = field(default_factory=dict)  # merge: per-field stamps
    deleted: bool = True  # absent records count as deleted, with version 0
    exists: bool = False  # False: nothing stored (never written, or tombstone expired)


ABSENT = RecordState()


@dataclass(frozen=True)
class Edit:
    """One mutation as a strategy sees it. (pysync.Change is another thing: what a watcher
    receives after a commit.)"""

    op: Op
    value: Mapping[str, Any] | None
    base_version: int | None
    stamp: str




@dataclass(frozen=True)
class Applied:
    state: RecordState


@dataclass(frozen=True)
class Conflict:
    reason: str


@dataclass(frozen=True)
class Rejected:
    code: str
    message: str


Outcome = Applied | Conflict | Rejected


def apply_change(strategy: Strategy, state: RecordState, edit: Edit) -> Outcome:
    """The outcome of `edit` on `state` under `strategy`. Applied carries the new state,
    with version + 1 (or the same state when a delete finds nothing to delete)."""
    if edit.op == "patch" and state.deleted:
        code = "deleted" if state.exists else "not_found"
        return Rejected(code, "cannot patch a record that does not exist: put it instead")
    if edit.op == "delete" and state.deleted:
        return Applied(state)  # already gone: nothing to write
    if strategy == "version":
        return _by_version(state, edit)
    if strategy == "lww":
        return _by_record_stamp(state, edit)
    return _by_field_stamps(state, edit)


def _bump(state: RecordState, **changes: Any) -> RecordState:
    return replace(state, version=state.version + 1, exists=True, **changes)


def _tombstone(state: RecordState, stamp: str) -> RecordState:
    return _bump(state, fields={}, stamps={}, deleted=True, hlc=max(stamp, state.hlc))


def _by_version(state: RecordState, edit: Edit) -> Outcome:
    base = edit.base_version or 0
    if base != state.version:
        return Conflict(f"base_version {base} is not the current version {state.version}")
    stamp = max(edit.stamp, state.hlc)
    if edit.op == "delete":
        return Applied(_tombstone(state, stamp))
    fields = dict(edit.value or {})
    if edit.op == "patch":
        fields = {**state.fields, **fields}
    return Applied(_bump(state, fields=fields, deleted=False, hlc=stamp, stamps={}))


def _by_record_stamp(state: RecordState, edit: Edit) -> Outcome:
    if edit.stamp <= state.hlc:
        return Conflict(f"a newer write ({state.hlc}) already won")
    if edit.op == "delete":
        return Applied(_tombstone(state, edit.stamp))
    fields = dict(edit.value or {})
    if edit.op == "patch":
        fields = {**state.fields, **fields}
    return Applied(_bump(state, fields=fields, deleted=False, hlc=edit.stamp, stamps={}))


def _by_field_stamps(state: RecordState, edit: Edit) -> Outcome:
    s = edit.stamp
    if edit.op == "delete":
        # A delete wins only over everything the record has seen: an edit stamped after the
        # delete means someone still wants the record.
        if s <= state.hlc:
            return Conflict(f"the record was edited after this delete ({state.hlc})")
        return Applied(_tombstone(state, s))
    value = edit.value or {}
    if state.deleted:
        # Recreating after a delete: the delete's stamp plays the role of every field's.
        if s <= state.hlc:
            return Conflict(f"the record was deleted after this write ({state.hlc})")
        return Applied(_bump(state, fields=dict(value), stamps=dict.fromkeys(value, s),
                             deleted=False, hlc=s))
    fields = dict(state.fields)
    stamps = dict(state.stamps)
    won = False
    touched = set(value) | (set(fields) - set(value) if edit.op == "put" else set())
    if not touched and s > state.hlc:
        return Applied(_bump(state, hlc=s))  # an empty put or patch still counts as a write
    for name in touched:
        if s <= stamps.get(name, ""):
            continue
        won = True
        stamps[name] = s  # a removed field keeps its stamp, so a stale edit cannot revive it
        if name in value:
            fields[name] = value[name]
        else:
            del fields[name]
    if not won:
        return Conflict("every field of this write was overwritten by a newer one")
    return Applied(_bump(state, fields=fields, stamps=stamps, deleted=False,
                         hlc=max(s, state.hlc)))
