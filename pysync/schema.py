"""The schema that the client library and the server share: collections, strategies, indexes.

Declared once in a Python module that both import, e.g.

    SCHEMA = Schema(
        Collection("todos", strategy="merge", indexes=(Index("by_done", "done"),)),
        Collection("accounts", strategy="version"),
    )
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from pysync.errors import SchemaError

Strategy = Literal["merge", "lww", "version"]
STRATEGIES: tuple[Strategy, ...] = ("merge", "lww", "version")

# Collection names go into DynamoDB sort keys as "<collection>#<key>": never a "#".
COLLECTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
INDEX_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
FIELD_NAME = re.compile(r"^[^_][^.]*$")


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
    name: str
    strategy: Strategy = "merge"
    indexes: tuple[Index, ...] = ()

    def __post_init__(self) -> None:
        if not COLLECTION_NAME.match(self.name):
            raise SchemaError(
                f"collection name {self.name!r}: letters, digits, '_' and '-', "
                "starting with a letter, at most 64"
            )
        if self.strategy not in STRATEGIES:
            raise SchemaError(f"collection {self.name!r}: unknown strategy {self.strategy!r}")
        names = [i.name for i in self.indexes]
        if len(set(names)) != len(names):
            raise SchemaError(f"collection {self.name!r}: duplicate index names")

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
