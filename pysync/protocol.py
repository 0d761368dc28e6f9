"""Wire protocol v1: the messages of /v1/push and /v1/pull, shared by client and server.

Parsing is strict: a message that does not have the documented shape raises ProtocolError
with a machine-readable code. The rule (docs/api.md): a problem with the envelope (not JSON,
wrong protocol, bad client_id, a mutation without a usable id, ids not consecutive) makes the
whole request a 400; a problem inside one mutation that has a usable id (unknown op, bad key,
bad value...) makes that mutation `rejected`, so the queue never sticks, and the mutations
after it are still processed in order.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pysync.errors import InvalidValue, ProtocolError
from pysync.hlc import ClockError, Stamp
from pysync.schema import COLLECTION_NAME, SCOPE_ID
from pysync.values import Record, check_key, check_record, from_json, to_json

PROTOCOL_VERSION = 1
MAX_MUTATIONS_PER_PUSH = 500
# Opaque to the server, chosen by the client (a UUID in practice). Ends in \Z, not $: a "$"
# also matches before a final newline.
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")
# Integers longer than this are parsed as Decimal: int() of a huge digit string is slow (and
# refused past 4300 digits), and no valid value has more than 38 significant digits anyway.
_MAX_INT_CHARS = 40
# Mutation ids and versions are counters: anything above a signed 64-bit integer is an attack.
MAX_COUNTER = 2**63 - 1
# Error messages quote inputs (a field name can be 64 KB): never echo more than this.
MAX_MESSAGE_CHARS = 300

Op = Literal["put", "patch", "delete"]
OPS: tuple[Op, ...] = ("put", "patch", "delete")
Status = Literal["applied", "conflict", "rejected", "duplicate"]
# The rejection of a mutation into a scope the user may not write (design.md section 10);
# the client reports its writes into a scope it was removed from the same way.
FORBIDDEN = "forbidden"
STATUSES: tuple[Status, ...] = ("applied", "conflict", "rejected", "duplicate")

_PUSH_FIELDS = frozenset({"protocol", "client_id", "mutations"})
_MUTATION_FIELDS = frozenset({"id", "collection", "key", "op", "value", "base_version", "hlc",
                              "scope"})
# DynamoDB's attribute-value type descriptors, with the JSON shape each one holds.
_DYNAMODB_TYPES: dict[str, type | tuple[type, ...]] = {
    "S": str, "N": str, "B": str, "BOOL": bool, "NULL": bool, "M": dict, "L": list,
    "SS": list, "NS": list, "BS": list,
}


def _show(value: object, limit: int = 40) -> str:
    """A short repr for error messages: never echo a huge or unprintable input back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 3] + "..."


# --- JSON text: strict parsing, exact numbers --------------------------------------------

def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {_show(dup)}")
    return obj


def _parse_int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _MAX_INT_CHARS else Decimal(text)


def float_if_exact(text: str) -> float | Decimal:
    """A JSON fraction as a float when the float holds exactly the number written (its
    shortest repr is the same number, e.g. 0.1 or 2.5e-3), else as a Decimal (a 30-digit
    fraction): the client's `parse_float`, so ordinary numbers stay floats for the app and
    no digit is ever lost."""
    f = float(text)
    if math.isfinite(f) and Decimal(repr(f)) == Decimal(text):
        return f
    return Decimal(text)


def loads(data: bytes | str, *, parse_float: Callable[[str], Any] = Decimal) -> Any:
    """Parse JSON strictly; ProtocolError("malformed_json") for anything that is not I-JSON.

    Refused: invalid UTF-8, NaN/Infinity, duplicate keys (which one would win is up to the
    parser), nesting deep enough to exhaust the parser. Fractions become Decimal (exact) by
    default, so a number is stored exactly as sent; the client passes `float_if_exact`.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_float=parse_float,
                          parse_int=_parse_int, parse_constant=_refuse_constant,
                          object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise ProtocolError("malformed_json", "the body is not valid UTF-8") from None
    except RecursionError:
        raise ProtocolError("malformed_json", "the JSON is nested too deeply") from None
    except (ValueError, ArithmeticError) as e:  # JSONDecodeError is a ValueError
        raise ProtocolError("malformed_json", f"invalid JSON: {e}") from None


def decimal_text(value: Decimal) -> str:
    """A finite Decimal as exact JSON number text ("1E+2" style exponents are valid JSON)."""
    if not value.is_finite():
        raise ValueError(f"{value} cannot be written as JSON")
    return str(value)


def dumps(data: Any, *, default: Callable[[object], Any] | None = None,
          number: Callable[[Decimal], str] = decimal_text, sort_keys: bool = False) -> str:
    """JSON text with every Decimal written exactly (json.dumps would refuse them, and going
    through float would round them).

    Decimals are swapped for unique placeholder strings, the C encoder does the rest, and the
    placeholders are replaced by the exact digits (`number(d)`). If the placeholder tag
    happened to occur in the data, a fresh tag is drawn, so the result never depends on luck.
    The tag is drawn at the first Decimal: data without one costs one plain json.dumps (the
    store dumps every record it writes). `default` converts other types (e.g. bytes to their
    wrapper), as json.dumps's does.
    """
    while True:
        text = _dumps_with_tags(data, default, number, sort_keys)
        if text is not None:
            return text


def _dumps_with_tags(data: Any, other: Callable[[object], Any] | None,
                     number: Callable[[Decimal], str], sort_keys: bool) -> str | None:
    numbers: list[str] = []
    tags: list[str] = []

    def default(value: object) -> Any:
        if isinstance(value, Decimal):
            if not tags:
                tags.append("\x00" + secrets.token_hex(8))
            numbers.append(number(value))
            return f"{tags[0]}{len(numbers) - 1}"
        if other is not None:
            return other(value)
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(data, default=default, allow_nan=False, ensure_ascii=False,
                      separators=(",", ":"), sort_keys=sort_keys)
    if not numbers:
        return text
    escaped = json.dumps(tags[0])[1:-1]
    if text.count(escaped) != len(numbers):
        return None
    return re.sub('"' + re.escape(escaped) + r'(\d+)"', lambda m: numbers[int(m.group(1))],
                  text)


# --- messages ------------------------------------------------------------------------------

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
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNTER:
        raise ProtocolError(code, f"field {name!r} must be null or an integer in 0..2**63-1")
    return value


def _mutation_id(obj: object) -> int | None:
    """The mutation's id if it has a usable one (an integer >= 1), else None."""
    if not isinstance(obj, dict):
        return None
    mid = obj.get("id")
    if isinstance(mid, int) and not isinstance(mid, bool) and 1 <= mid <= MAX_COUNTER:
        return mid
    return None


def _refuse_typed_json(value: object) -> None:
    """Refuse a record that is one DynamoDB attribute value, e.g. {"S": "x"} or {"M": {...}}.

    That shape is what a client sends when it marshals with DynamoDB's type descriptors by
    mistake; storing it would give a record with one field "S". Only the whole record is
    checked: a field whose value is a map with a key "S" is ordinary data.
    """
    if isinstance(value, dict) and len(value) == 1:
        ((name, inner),) = value.items()
        kind = _DYNAMODB_TYPES.get(name)
        if kind is not None and isinstance(inner, kind):
            raise InvalidValue(
                f"the value looks like DynamoDB typed JSON ({{{name!r}: ...}}): "
                "send plain JSON; a one-field record named after a DynamoDB type is refused"
            )


# --- server answers, as the client reads them -----------------------------------------------
# An answer that does not have the documented shape is refused whole: nothing of it is applied,
# and the client reports ProtocolError("invalid_response") and retries later. Unknown fields
# are ignored, so a newer server may add some.

INVALID_RESPONSE = "invalid_response"


def _answer_object(obj: object, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ProtocolError(INVALID_RESPONSE, f"{what} must be a JSON object, "
                                              f"not {_json_type(obj)}")
    return obj


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _answer_field(obj: dict[str, Any], name: str, kind: type, *,
                  optional: bool = False) -> Any:
    """obj[name] if it has the JSON type `kind` (or is null/absent when `optional`)."""
    value = obj.get(name)
    if value is None:
        if optional:
            return None
        raise ProtocolError(INVALID_RESPONSE, f"the answer lacks field {name!r}")
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ProtocolError(INVALID_RESPONSE,
                            f"field {name!r} is {_json_type(value)}, "
                            f"expected {_json_type(kind())}")
    return value


def _answer_counter(obj: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    """A version or mutation id: an integer in 0..2**63-1."""
    value = _answer_field(obj, name, int, optional=optional)
    if value is not None and not 0 <= value <= MAX_COUNTER:
        raise ProtocolError(INVALID_RESPONSE, f"field {name!r} is out of 0..2**63-1")
    return value


@dataclass(frozen=True)
class Rejection:
    """Why the server refuses one mutation (its `rejected` result's error)."""

    code: str
    message: str


@dataclass(frozen=True)
class Mutation:
    id: int
    collection: str
    key: str
    op: Op
    value: Record | None = None
    base_version: int | None = None
    hlc: str | None = None
    scope: str | None = None  # a shared scope's id; None: the user's personal scope
    # Set by PushRequest.from_json when the mutation has a usable id but is otherwise invalid:
    # only `id` is meaningful then, and the server answers `rejected` with this error while
    # still counting the mutation as processed.
    rejection: Rejection | None = None

    @classmethod
    def from_json(cls, obj: object) -> Mutation:
        """Parse one mutation; ProtocolError("invalid_mutation" | "invalid_value", ...)."""
        if not isinstance(obj, dict):
            raise ProtocolError("invalid_mutation", "a mutation must be an object")
        mid = _require(obj, "id", int, "invalid_mutation")
        if not 1 <= mid <= MAX_COUNTER:
            raise ProtocolError("invalid_mutation", "mutation ids are integers in 1..2**63-1")
        unknown = sorted(set(obj) - _MUTATION_FIELDS)
        if unknown:
            raise ProtocolError("invalid_mutation", f"unknown field {_show(unknown[0])}")
        collection = _require(obj, "collection", str, "invalid_mutation")
        if not COLLECTION_NAME.match(collection):
            raise ProtocolError("invalid_mutation", f"bad collection name {_show(collection)}")
        op = _require(obj, "op", str, "invalid_mutation")
        if op not in OPS:
            raise ProtocolError("invalid_mutation", f"unknown op {_show(op)}")
        hlc = obj.get("hlc")
        if hlc is not None:
            if not isinstance(hlc, str):
                raise ProtocolError("invalid_mutation", "field 'hlc' must be null or a string")
            try:
                Stamp.parse(hlc)
            except ClockError:
                raise ProtocolError("invalid_mutation", f"malformed hlc {_show(hlc)}") from None
        base_version = _optional_int(obj, "base_version", "invalid_mutation")
        scope = _scope_id(obj.get("scope"))
        try:
            key = check_key(obj.get("key"))
            value: Record | None = None
            if op == "delete":
                if obj.get("value") is not None:
                    raise InvalidValue("a delete carries no value")
            else:
                raw = obj.get("value")
                _refuse_typed_json(raw)
                value = check_record(from_json(raw))
        except InvalidValue as e:
            raise ProtocolError("invalid_value", _clip(str(e))) from None
        return cls(mid, collection, key, op, value, base_version, hlc, scope)

    @classmethod
    def rejected(cls, mid: int, code: str, message: str) -> Mutation:
        return cls(mid, "", "", "put", rejection=Rejection(code, message))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "collection": self.collection, "key": self.key, "op": self.op,
            "base_version": self.base_version, "hlc": self.hlc,
        }
        if self.op != "delete":
            out["value"] = to_json(self.value)
        if self.scope is not None:
            out["scope"] = self.scope
        return out


def _scope_id(value: object) -> str | None:
    if value is not None and not (isinstance(value, str) and SCOPE_ID.fullmatch(value)):
        raise ProtocolError("invalid_mutation",
                            "field 'scope' must be null or a scope id ([A-Za-z0-9_-]{8,64})")
    return value


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

    @classmethod
    def from_json(cls, obj: object, max_mutations: int = MAX_MUTATIONS_PER_PUSH) -> PushRequest:
        """Parse a push body. Envelope problems raise ProtocolError (a whole-request 400, or
        413 "too_many_mutations"); a bad mutation with a usable id comes back with
        `rejection` set, in its place."""
        if not isinstance(obj, dict):
            raise ProtocolError("invalid_request", "the body must be a JSON object")
        protocol = obj.get("protocol")
        if type(protocol) is not int or protocol != PROTOCOL_VERSION:
            raise ProtocolError("unsupported_protocol",
                                f"this server speaks protocol {PROTOCOL_VERSION}")
        unknown = sorted(set(obj) - _PUSH_FIELDS)
        if unknown:
            raise ProtocolError("invalid_request", f"unknown field {_show(unknown[0])}")
        client_id = obj.get("client_id")
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
            raise ProtocolError("invalid_request",
                                "client_id must be 1..128 of letters, digits and _ . : -")
        raw = obj.get("mutations")
        if not isinstance(raw, list):
            raise ProtocolError("invalid_request", "mutations must be a list")
        if len(raw) > max_mutations:
            raise ProtocolError("too_many_mutations",
                                f"at most {max_mutations} mutations per push")
        mutations: list[Mutation] = []
        for i, item in enumerate(raw):
            mid = _mutation_id(item)
            if mid is None:
                raise ProtocolError("invalid_request",
                                    f"mutation {i} has no integer id in 1..2**63-1")
            if mutations and mid != mutations[-1].id + 1:
                raise ProtocolError("invalid_request", "mutation ids must be consecutive")
            try:
                mutations.append(Mutation.from_json(item))
            except ProtocolError as e:
                mutations.append(Mutation.rejected(mid, e.code, _clip(e.message)))
        return cls(client_id, tuple(mutations))


@dataclass(frozen=True)
class ServerRecord:
    """The server's copy of a record, as returned with a conflict or in a pull."""

    collection: str
    key: str
    version: int
    deleted: bool
    value: Record | None
    hlc: str | None = None
    scope: str | None = None  # a pull change's shared scope id; None: the personal scope

    def to_json(self) -> dict[str, Any]:
        out = {
            "collection": self.collection, "key": self.key, "version": self.version,
            "deleted": self.deleted, "value": to_json(self.value) if self.value is not None
            else None, "hlc": self.hlc,
        }
        if self.scope is not None:
            out["scope"] = self.scope
        return out

    @classmethod
    def from_json(cls, obj: object) -> ServerRecord:
        """Parse a record of a server answer; ProtocolError("invalid_response") if malformed."""
        obj = _answer_object(obj, "a record")
        value = _answer_field(obj, "value", dict, optional=True)
        try:
            record = from_json(value) if value is not None else None
        except InvalidValue as e:
            raise ProtocolError(INVALID_RESPONSE, _clip(f"a record's value: {e}")) from None
        scope = _answer_field(obj, "scope", str, optional=True)
        if scope is not None and not SCOPE_ID.fullmatch(scope):
            raise ProtocolError(INVALID_RESPONSE, f"a record's scope {_show(scope)} is no id")
        return cls(_answer_field(obj, "collection", str), _answer_field(obj, "key", str),
                   _answer_counter(obj, "version"), _answer_field(obj, "deleted", bool),
                   record, _answer_field(obj, "hlc", str, optional=True), scope)


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
    def from_json(cls, obj: object) -> MutationResult:
        """Parse one push result; ProtocolError("invalid_response") if malformed."""
        obj = _answer_object(obj, "a push result")
        status = _answer_field(obj, "status", str)
        if status not in STATUSES:
            raise ProtocolError(INVALID_RESPONSE, f"unknown push status {_show(status)}")
        server = _answer_field(obj, "server", dict, optional=True)
        error = _answer_field(obj, "error", dict, optional=True)
        code = message = None
        if error is not None:
            code = _answer_field(error, "code", str)
            message = _answer_field(error, "message", str, optional=True)
        mid = _answer_counter(obj, "id")
        if mid < 1:
            raise ProtocolError(INVALID_RESPONSE, "a push result's id must be >= 1")
        return cls(mid, status, _answer_counter(obj, "version", optional=True),
                   ServerRecord.from_json(server) if server is not None else None,
                   code, message)


@dataclass(frozen=True)
class PushResponse:
    last_mutation_id: int
    results: tuple[MutationResult, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"last_mutation_id": self.last_mutation_id,
                "results": [r.to_json() for r in self.results]}

    @classmethod
    def from_json(cls, obj: object) -> PushResponse:
        """Parse a push answer; ProtocolError("invalid_response") if malformed."""
        obj = _answer_object(obj, "a push answer")
        results = _answer_field(obj, "results", list)
        return cls(_answer_counter(obj, "last_mutation_id"),
                   tuple(MutationResult.from_json(r) for r in results))


@dataclass(frozen=True)
class PullResponse:
    changes: tuple[ServerRecord, ...]
    cursor: str | None
    has_more: bool
    last_mutation_id: int
    reset: bool = False
    # The server's estimate of how many changes the pull sequence has still to bring after
    # this page (0 with has_more false); None from a server that does not send it.
    remaining: int | None = None
    # Shared scopes the caller can no longer read (design.md section 10): named once, the
    # client drops their records and pending entries.
    revoked: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.reset:
            return {"reset": True}
        out: dict[str, Any] = {
            # Every change names its scope, null for the personal one (section 10).
            "changes": [{**c.to_json(), "scope": c.scope} for c in self.changes],
            "cursor": self.cursor, "has_more": self.has_more,
            "last_mutation_id": self.last_mutation_id}
        if self.remaining is not None:
            out["remaining"] = self.remaining
        if self.revoked:
            out["revoked"] = list(self.revoked)
        return out

    @classmethod
    def from_json(cls, obj: object) -> PullResponse:
        """Parse a pull answer; ProtocolError("invalid_response") if malformed."""
        obj = _answer_object(obj, "a pull answer")
        if _answer_field(obj, "reset", bool, optional=True):
            return cls((), None, False, 0, reset=True)
        changes = _answer_field(obj, "changes", list)
        revoked = _answer_field(obj, "revoked", list, optional=True) or []
        if not all(isinstance(r, str) and SCOPE_ID.fullmatch(r) for r in revoked):
            raise ProtocolError(INVALID_RESPONSE, "field 'revoked' must list scope ids")
        return cls(tuple(ServerRecord.from_json(c) for c in changes),
                   _answer_field(obj, "cursor", str), _answer_field(obj, "has_more", bool),
                   _answer_counter(obj, "last_mutation_id"),
                   remaining=_answer_counter(obj, "remaining", optional=True),
                   revoked=tuple(revoked))


@dataclass(frozen=True)
class EventsTicket:
    """The answer of POST /v1/events/ticket: a single-use ticket for GET /v1/events."""

    ticket: str

    def to_json(self) -> dict[str, Any]:
        return {"ticket": self.ticket}

    @classmethod
    def from_json(cls, obj: object) -> EventsTicket:
        obj = _answer_object(obj, "an events ticket answer")
        ticket = _answer_field(obj, "ticket", str)
        if not ticket:
            raise ProtocolError(INVALID_RESPONSE, "the events ticket is empty")
        return cls(ticket)
