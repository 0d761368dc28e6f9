"""The schema that the client library and the server share: collections, strategies, indexes.

Declared once in a Python module that both import, e.g.

    SCHEMA = Schema(
        Collection("todos", strategy="merge", indexes=(Index("by_done", "done"),)),
        Collection("accounts", strategy="version"),
    )
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pysync.errors import SchemaError

Strategy = Literal["merge", "lww", "version"]
# A `version` collection's conflict resolver: resolve(local, server, base) -> the value to
# push (None: delete), or a coroutine of it (docs/sync-client.md, "Conflicts").
Resolver = Callable[[Any, Any, Any], "Any | Awaitable[Any]"]
STRATEGIES: tuple[Strategy, ...] = ("merge", "lww", "version")

# Collection names go into DynamoDB sort keys as "<collection>#<key>": never a "#".
COLLECTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
INDEX_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
FIELD_NAME = re.compile(r"^[^_][^.]*$")
# A shared scope's id (design.md section 10); on the wire the personal scope is null.
SCOPE_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# Locally a shared scope's records live under "<collection>@<scope>" (neither a collection
# name nor a scope id has an "@"), so the store keeps scopes apart with no other change: its
# keys, indexes and outbox entries all start with that name. The personal scope's name is the
# collection's own.
SCOPE_MARK = "@"


def local_name(collection: str, scope: str | None) -> str:
    """The name the local store keeps a scope's records of `collection` under."""
    return collection if scope is None else f"{collection}{SCOPE_MARK}{scope}"


def split_local_name(name: str) -> tuple[str, str | None]:
    """(collection, scope) of a local name; scope None for the personal scope."""
    collection, mark, scope = name.partition(SCOPE_MARK)
    return (collection, scope) if mark else (collection, None)


@dataclass(frozen=True)
class Index:
    """A secondary index on one field, or on several (a compound index), of a collection."""

    name: str
    fields: tuple[str, ...]
    unique: bool = False

    def __init__(self, name: str, *fields: str, unique: bool = False) -> None:
        if not INDEX_NAME.match(name):
            raise SchemaError(f"index name {name!r} must be an identifier")
        if not fields:
            raise SchemaError(f"index {name!r} names no field")
        for f in fields:
            if not FIELD_NAME.match(f):
                raise SchemaError(f"index {name!r}: field {f!r} is reserved or has a '.'")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fields", tuple(fields))
        object.__setattr__(self, "unique", unique)


@dataclass(frozen=True)
class Collection:
    """A collection. `resolve`: a `version` collection's conflict resolver, called by the sync
    client as resolve(local, server, base) (docs/sync-client.md); the server ignores it."""

    name: str
    strategy: Strategy = "merge"
    indexes: tuple[Index, ...] = ()
    resolve: Resolver | None = field(default=None, compare=False, repr=False)
    # The shared scope whose records this declaration stands for locally (in_scope); a
    # schema declares collections without one.
    scope: str | None = None

    def __post_init__(self) -> None:
        if not COLLECTION_NAME.match(self.name):
            raise SchemaError(
                f"collection name {self.name!r}: letters, digits, '_' and '-', "
                "starting with a letter, at most 64"
            )
        if self.strategy not in STRATEGIES:
            raise SchemaError(f"collection {self.name!r}: unknown strategy {self.strategy!r}")
        if self.resolve is not None and self.strategy != "version":
            raise SchemaError(f"collection {self.name!r}: only a 'version' collection has a "
                              "resolver (merge and lww decide by stamp)")
        if self.resolve is not None and not callable(self.resolve):
            raise SchemaError(f"collection {self.name!r}: resolve must be callable")
        names = [i.name for i in self.indexes]
        if len(set(names)) != len(names):
            raise SchemaError(f"collection {self.name!r}: duplicate index names")
        if self.scope is not None and not SCOPE_ID.fullmatch(self.scope):
            raise SchemaError(f"scope {self.scope!r} is no scope id ([A-Za-z0-9_-]{{8,64}})")

    @property
    def local_name(self) -> str:
        """The name the local store keeps this collection's records under (local_name())."""
        return local_name(self.name, self.scope)

    def in_scope(self, scope: str | None) -> Collection:
        """This collection's declaration for the records of `scope` (None: personal)."""
        return self if scope == self.scope else replace(self, scope=scope)

    def index(self, name: str) -> Index:
        for i in self.indexes:
            if i.name == name:
                return i
        raise SchemaError(f"collection {self.name!r} has no index {name!r}")


@dataclass(frozen=True)
class Schema:
    collections: tuple[Collection, ...] = field(default_factory=tuple)

    def __init__(self, *collections: Collection) -> None:
        names = [c.name for c in collections]
        if len(set(names)) != len(names):
            raise SchemaError("duplicate collection names")
        if any(c.scope is not None for c in collections):
            raise SchemaError("a schema declares collections without a scope; a scope is "
                              "chosen per use: db.collection(name, scope=...)")
        object.__setattr__(self, "collections", tuple(collections))

    def __iter__(self) -> Iterator[Collection]:
        return iter(self.collections)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.collections)

    def get(self, name: str) -> Collection:
        for c in self.collections:
            if c.name == name:
                return c
        raise SchemaError(f"unknown collection {name!r}")
