"""What the app hears of local edits that did not survive as written, and how a `version`
collection's resolver decides. Pure logic (a resolver may be a coroutine, awaited here); the
sync client (pysync.client) does the I/O around it. docs/sync-client.md, "Conflicts".

- `version` conflict: the server refused the edit (its base_version was not the record's
  version). The collection's `resolve(local, server, base)` decides what to push next, based
  on the server's version; without one (or if it raises) the server's copy is kept. Kind
  "conflict".
- `lww` / `merge`: the server refused the edit because a newer stamp had already won (every
  field, for merge): kind "overwritten". A `merge` edit the server applied but where some
  fields had a newer stamp already: the pull that brings the record at the version the edit
  produced shows those fields with another value; kind "overwritten" too (`MergeWatch`).
- A mutation the server rejected (e.g. a patch of a record deleted meanwhile): kind
  "rejected", `error` its code.
"""

from __future__ import annotations

import copy
import inspect
import logging
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal

from pysync.errors import InvalidValue
from pysync.outbox import dump_value, load_value
from pysync.protocol import ServerRecord
from pysync.schema import Resolver, Strategy, local_name, split_local_name
from pysync.values import Record, check_record

log = logging.getLogger("pysync.client")

Kind = Literal["conflict", "overwritten", "rejected"]


@dataclass(frozen=True)
class ConflictEvent:
    """A local edit that did not survive as written (SyncClient's `on_conflict`).

    `local`: the record as the edit wrote it; `server`: the server's copy it met (None:
    absent or deleted, and for a rejection, which carries no copy); `result`: what the
    record is now on the server or about to be (a resolver's result, pushed next), None for
    deleted (and for a rejection); `error`: a rejection's code, or the resolver's exception
    ("TypeName: message") when it raised and the server's copy was kept; `scope`: the
    record's shared scope, None for the personal scope.

    Inside the sync client `collection` may be a local name (schema.local_name) until
    `public()` splits it.
    """

    collection: str
    key: str
    strategy: Strategy
    kind: Kind
    local: Record | None
    server: Record | None
    result: Record | None
    error: str | None = None
    scope: str | None = None

    def public(self) -> ConflictEvent:
        """The event as the app sees it: the collection's name and the scope apart."""
        collection, scope = split_local_name(self.collection)
        return self if scope is None else replace(self, collection=collection, scope=scope)

    def to_message(self) -> dict[str, Any]:
        """The event as JSON data for the other tabs (values as stored JSON text)."""
        return {"c": self.collection, "k": self.key, "s": self.strategy, "kind": self.kind,
                "l": _text(self.local), "sv": _text(self.server), "r": _text(self.result),
                "e": self.error, "sc": self.scope}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> ConflictEvent:
        return cls(data["c"], data["k"], data["s"], data["kind"], _value(data["l"]),
                   _value(data["sv"]), _value(data["r"]), data["e"], data.get("sc"))


def _text(value: Record | None) -> str | None:
    return None if value is None else dump_value(value)


def _value(text: str | None) -> Record | None:
    return None if text is None else load_value(text)


async def decide(resolve: Resolver | None, local: Record | None, server: Record | None,
                 base: Record | None) -> tuple[Record | None, str | None]:
    """What a `version` conflict resolves to: (the value to push, None to delete; error).

    Without a resolver the server's copy is kept. The resolver gets copies (it may change
    them); a coroutine is awaited. If it raises, or returns something that is not a record
    (a dict pysync can store) or None, the server's copy is kept and the error is returned.
    """
    if resolve is None:
        return server, None
    try:
        out = resolve(copy.deepcopy(local), copy.deepcopy(server), copy.deepcopy(base))
        if inspect.isawaitable(out):
            out = await out
        if out is not None:
            check_record(out)
    except InvalidValue as e:
        return server, f"InvalidValue: the resolver's result: {e}"
    except Exception as e:
        log.warning("a conflict resolver failed; the server's copy is kept", exc_info=True)
        return server, f"{type(e).__name__}: {e}"
    return out, None


@dataclass(frozen=True)
class _Watched:
    version: int
    fields: Record  # what the edit set
    local: Record | None


class MergeWatch:
    """`merge` edits the server applied, until the pull brings the version they produced:
    if some of their fields have another value there, a newer stamp already held them and
    the edit was overwritten. In memory (a reload forgets what it watched: at worst a partial
    overwrite goes unreported)."""

    def __init__(self) -> None:
        self._watched: dict[tuple[str, str], _Watched] = {}

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, collection: str, key: str, version: int, fields: Record,
              local: Record | None) -> None:
        """Watch an applied edit; `collection` is the local name (schema.local_name)."""
        self._watched[(collection, key)] = _Watched(version, dict(fields), local)

    def forget(self) -> None:
        self._watched.clear()

    def check(self, change: ServerRecord) -> ConflictEvent | None:
        """The event if `change` shows a watched edit overwritten; a change at or past the
        watched version ends the watch (a later one: the edit's own version was not seen,
        e.g. a snapshot, so nothing can be said)."""
        record = (local_name(change.collection, change.scope), change.key)
        w = self._watched.get(record)
        if w is None or change.version < w.version:
            return None
        del self._watched[record]
        if change.version > w.version or change.deleted or change.value is None:
            return None
        value = change.value
        lost = [f for f, v in w.fields.items() if f not in value or not _same(value[f], v)]
        if not lost:
            return None
        return ConflictEvent(change.collection, change.key, "merge", "overwritten", w.local,
                             value, value, scope=change.scope)


def _same(a: Any, b: Any) -> bool:
    """Equal as data: numbers by value whatever their type (a float stored here and the
    Decimal or int the wire brings back for it compare equal)."""
    return bool(_normal(a) == _normal(b))


def same_record(a: Record | None, b: Record | None) -> bool:
    """Two records (None: absent) equal as data (see _same)."""
    return _same(a, b)


def _normal(value: Any) -> Any:
    if isinstance(value, bool):
        return ("bool", value)  # JSON's true is not 1 (Python's True == 1)
    if value is None or isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (int, float, Decimal)):
        try:
            return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except ArithmeticError:
            return value
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return value
