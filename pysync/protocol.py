"""Wire protocol v1: the messages of /v1/push and /v1/pull, shared by client and server.

Parsing is strict: a message that does not have the documented shape raises ProtocolError
with a machine-readable code, so the server can answer 400 (whole request) or `rejected`
(one mutation) without guessing. See docs/protocol.md for the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pysync.errors import InvalidValue, ProtocolError
from pysync.schema import COLLECTION_NAME
from pysync.values import Record, check_key, check_record, from_json, to_json

PROTOCOL_VERSION = 1
MAX_MUTATIONS_PER_PUSH = 500

Op = Literal["put", "patch", "delete"]
OPS: tuple[Op, ...] = ("put", "patch", "delete")
Status = Literal["applied", "conflict", "rejected", "duplicate"]


def _require(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], code: str) -> Any:
    if name not in obj:
        raise ProtocolError(code, f"missing field {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(code, f"field {name!r} has the wrong type")
    return value


def _optional_int(obj: dict[str, Any], name: str, code: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(code, f"field {name!r} must be null or a non-negative integer")
    return value


@dataclass(frozen=True)
class Mutation:
    id: int
    collection: str
    key: str
    op: Op
    value: Record | None = None
    base_version: int | None = None
    hlc: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> Mutation:
        """Parse one mutation; ProtocolError("invalid_mutation" | "invalid_value", ...)."""
        if not isinstance(obj, dict):
            raise ProtocolError("invalid_mutation", "a mutation must be an object")
        mid = _require(obj, "id", int, "invalid_mutation")
        if mid < 1:
            raise ProtocolError("invalid_mutation", "mutation ids start at 1")
        collection = _require(obj, "collection", str, "invalid_mutation")
        if not COLLECTION_NAME.match(collection):
            raise ProtocolError("invalid_mutation", f"bad collection name {collection!r}")
        op = _require(obj, "op", str, "invalid_mutation")
        if op not in OPS:
            raise ProtocolError("invalid_mutation", f"unknown op {op!r}")
        hlc = obj.get("hlc")
        if hlc is not None and not isinstance(hlc, str):
            raise ProtocolError("invalid_mutation", "field 'hlc' must be null or a string")
        base_version = _optional_int(obj, "base_version", "invalid_mutation")
        try:
            key = check_key(obj.get("key"))
            value: Record | None = None
            if op == "delete":
                if obj.get("value") is not None:
                    raise InvalidValue("a delete carries no value")
            else:
                value = check_record(from_json(obj.get("value")))
        except InvalidValue as e:
            raise ProtocolError("invalid_value", str(e)) from None
        return cls(mid, collection, key, op, value, base_version, hlc)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "collection": self.collection, "key": self.key, "op": self.op,
            "base_version": self.base_version, "hlc": self.hlc,
        }
        if self.op != "delete":
            out["value"] = to_json(self.value)
        return out


@dataclass(frozen=True)
class PushRequest:
    client_id: str
    mutations: tuple[Mutation, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "client_id": self.client_id,
            "mutations": [m.to_json() for m in self.mutations],
        }


@dataclass(frozen=True)
class ServerRecord:
    """The server's copy of a record, as returned with a conflict or in a pull."""

    collection: str
    key: str
    version: int
    deleted: bool
    value: Record | None
    hlc: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection, "key": self.key, "version": self.version,
            "deleted": self.deleted, "value": to_json(self.value) if self.value is not None
            else None, "hlc": self.hlc,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ServerRecord:
        value = obj.get("value")
        return cls(obj["collection"], obj["key"], int(obj["version"]), bool(obj["deleted"]),
                   from_json(value) if value is not None else None, obj.get("hlc"))


@dataclass(frozen=True)
class MutationResult:
    id: int
    status: Status
    version: int | None = None
    server: ServerRecord | None = None
    error_code: str | None = None
    error_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.version is not None:
            out["version"] = self.version
        if self.server is not None:
            out["server"] = self.server.to_json()
        if self.error_code is not None:
            out["error"] = {"code": self.error_code, "message": self.error_message or ""}
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> MutationResult:
        err = obj.get("error") or {}
        server = obj.get("server")
        return cls(obj["id"], obj["status"], obj.get("version"),
                   ServerRecord.from_json(server) if server else None,
                   err.get("code"), err.get("message"))


@dataclass(frozen=True)
class PushResponse:
    last_mutation_id: int
    results: tuple[MutationResult, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"last_mutation_id": self.last_mutation_id,
                "results": [r.to_json() for r in self.results]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PushResponse:
        return cls(obj["last_mutation_id"],
                   tuple(MutationResult.from_json(r) for r in obj["results"]))


@dataclass(frozen=True)
class PullResponse:
    changes: tuple[ServerRecord, ...]
    cursor: str | None
    has_more: bool
    last_mutation_id: int
    reset: bool = False

    def to_json(self) -> dict[str, Any]:
        if self.reset:
            return {"reset": True}
        return {"changes": [c.to_json() for c in self.changes], "cursor": self.cursor,
                "has_more": self.has_more, "last_mutation_id": self.last_mutation_id}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PullResponse:
        if obj.get("reset"):
            return cls((), None, False, 0, reset=True)
        return cls(tuple(ServerRecord.from_json(c) for c in obj["changes"]), obj["cursor"],
                   bool(obj["has_more"]), int(obj["last_mutation_id"]))
