"""pysync.protocol: strict JSON text, exact numbers, push envelope vs per-mutation rejection."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pysync.errors import ProtocolError
from pysync.protocol import (
    MAX_MUTATIONS_PER_PUSH,
    EventsTicket,
    Mutation,
    MutationResult,
    PullResponse,
    PushRequest,
    PushResponse,
    ServerRecord,
    dumps,
    float_if_exact,
    loads,
)

HLC = "000001700000000:000000:node1"


def _mut(mid: int, **over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"id": mid, "collection": "todos", "key": f"k{mid}", "op": "put",
                         "value": {"title": "x"}, "base_version": None, "hlc": HLC}
    m.update(over)
    return m


def _push(*mutations: dict[str, Any], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"protocol": 1, "client_id": "c-1", "mutations": list(mutations)}
    body.update(over)
    return body


def _code(fn: Any, *args: Any) -> str:
    with pytest.raises(ProtocolError) as info:
        fn(*args)
    return info.value.code


# --- JSON text ---

@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_dumps_then_loads_keeps_every_decimal_exactly(d: Decimal) -> None:
    back = loads(dumps({"n": d}))["n"]
    # Integral text comes back as int; anything else as the very same Decimal digits.
    assert str(back) == str(d) if isinstance(back, Decimal) else back == d


def test_dumps_writes_38_digit_decimals_without_rounding() -> None:
    d = Decimal("0.12345678901234567890123456789012345678")
    assert dumps([d]) == "[0.12345678901234567890123456789012345678]"


def test_dumps_is_not_fooled_by_strings_that_look_like_its_placeholders() -> None:
    data = {"s": "\x00abc0", "n": Decimal("1.5")}
    assert loads(dumps(data)) == data


def test_dumps_refuses_non_finite_decimals() -> None:
    with pytest.raises(ValueError, match="cannot be written as JSON"):
        dumps({"n": Decimal("NaN")})


def test_loads_parses_fractions_as_decimal() -> None:
    assert loads(b'{"x": 0.1}') == {"x": Decimal("0.1")}


def test_loads_parses_very_long_integers_as_decimal_without_int_conversion() -> None:
    assert loads(b"[" + b"9" * 10_000 + b"]") == [Decimal("9" * 10_000)]


@pytest.mark.parametrize("body", [
    b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": 1, "a": 2}',
    b'\xff\xfe{}', b'{"a": "\xc3"}', b"{", b"", b"[" * 100_000 + b"]" * 100_000,
])
def test_loads_refuses_what_is_not_strict_json(body: bytes) -> None:
    assert _code(loads, body) == "malformed_json"


# --- push envelope: whole-request errors ---

@pytest.mark.parametrize(("body", "code"), [
    ([], "invalid_request"),
    (_push(protocol=2), "unsupported_protocol"),
    (_push(protocol=True), "unsupported_protocol"),
    ({"client_id": "c", "mutations": []}, "unsupported_protocol"),
    (_push(client_id=None), "invalid_request"),
    ({"protocol": 1, "mutations": []}, "invalid_request"),
    (_push(client_id="a b"), "invalid_request"),
    (_push(client_id="x" * 129), "invalid_request"),
    (_push(client_id="c-1\n"), "invalid_request"),
    (_push(scope="u#bob"), "invalid_request"),
    (_push(mutations={}), "invalid_request"),
    (_push(_mut(1), {"collection": "todos"}), "invalid_request"),
    (_push(_mut(0)), "invalid_request"),
    (_push(_mut(True)), "invalid_request"),
    (_push(_mut(1), _mut(3)), "invalid_request"),
    (_push(_mut(2), _mut(1)), "invalid_request"),
    (_push(_mut(2**63)), "invalid_request"),
])
def test_envelope_problems_refuse_the_whole_request(body: object, code: str) -> None:
    assert _code(PushRequest.from_json, body) == code


def test_too_many_mutations_is_its_own_code() -> None:
    body = _push(*(_mut(i) for i in range(1, MAX_MUTATIONS_PER_PUSH + 2)))
    assert _code(PushRequest.from_json, body) == "too_many_mutations"


def test_an_empty_push_is_valid() -> None:
    assert PushRequest.from_json(_push()).mutations == ()


# --- one mutation: rejected in place, the others kept in order ---

@pytest.mark.parametrize(("mutation", "code"), [
    (_mut(5, op="merge"), "invalid_mutation"),
    (_mut(5, collection="a#b"), "invalid_mutation"),
    (_mut(5, collection=""), "invalid_mutation"),
    (_mut(5, hlc="yesterday"), "invalid_mutation"),
    (_mut(5, hlc=12), "invalid_mutation"),
    (_mut(5, base_version=-1), "invalid_mutation"),
    (_mut(5, base_version="3"), "invalid_mutation"),
    (_mut(5, base_version=2**63), "invalid_mutation"),
    (_mut(5, scope="u#bob"), "invalid_mutation"),
    (_mut(5, key=""), "invalid_value"),
    (_mut(5, key=None), "invalid_value"),
    (_mut(5, key="k" * 2000), "invalid_value"),
    (_mut(5, value={"_v": 9}), "invalid_value"),
    (_mut(5, value={"pk": "u#bob"}), "invalid_value"),
    (_mut(5, value={"x": "\ud800"}), "invalid_value"),
    (_mut(5, value={"x": Decimal("1." + "2" * 40)}), "invalid_value"),
    (_mut(5, value={"S": "x"}), "invalid_value"),
    (_mut(5, value={"M": {"title": {"S": "x"}}}), "invalid_value"),
    (_mut(5, value=[1, 2]), "invalid_value"),
    (_mut(5, value=None), "invalid_value"),
    (_mut(5, op="delete", value={"a": 1}), "invalid_value"),
])
def test_a_bad_mutation_is_rejected_in_place(mutation: dict[str, Any], code: str) -> None:
    parsed = PushRequest.from_json(_push(_mut(4), mutation, _mut(6)))
    assert [m.id for m in parsed.mutations] == [4, 5, 6]
    assert parsed.mutations[0].rejection is None
    assert parsed.mutations[2].rejection is None
    rejection = parsed.mutations[1].rejection
    assert rejection is not None
    assert rejection.code == code


def test_a_field_holding_a_map_with_a_type_descriptor_key_is_ordinary_data() -> None:
    m = Mutation.from_json(_mut(1, value={"size": {"S": "small"}, "N": "5"}))
    assert m.value == {"size": {"S": "small"}, "N": "5"}


@pytest.mark.parametrize("mutation", [_mut(1, op="x" * 100_000),
                                      _mut(1, value={"f" * 70_000: 1}),
                                      _mut(1, value={"_" + "f" * 70_000: 1})])
def test_rejection_messages_do_not_echo_huge_input(mutation: dict[str, Any]) -> None:
    rejection = PushRequest.from_json(_push(mutation)).mutations[0].rejection
    assert rejection is not None
    assert len(rejection.message) <= 300


def test_a_push_request_survives_its_own_wire_form() -> None:
    body = _push(_mut(1), _mut(2, op="patch", value={"done": True}, base_version=1),
                 _mut(3, op="delete", value=None, base_version=2, hlc=None))
    parsed = PushRequest.from_json(loads(dumps(body)))
    assert PushRequest.from_json(loads(dumps(parsed.to_json()))) == parsed


def test_a_push_response_with_a_conflict_survives_its_wire_form() -> None:
    server = ServerRecord("todos", "t9", 5, False, {"price": Decimal("12.3456789012345678901")})
    response = PushResponse(43, (MutationResult(41, "applied", 1),
                                 MutationResult(42, "conflict", server=server),
                                 MutationResult(43, "rejected", error_code="invalid_value",
                                                error_message="bad")))
    text = dumps(response.to_json())
    assert "12.3456789012345678901" in text
    assert PushResponse.from_json(loads(text)) == response


# --- server answers, as the client parses them: every field's type is checked ---

def _record(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"collection": "todos", "key": "t1", "version": 2, "deleted": False,
                         "value": {"title": "x"}, "hlc": HLC}
    r.update(over)
    return r


def _pull(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"changes": [_record()], "cursor": "c1", "has_more": False,
                         "last_mutation_id": 3}
    p.update(over)
    return p


def _result(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"id": 1, "status": "applied", "version": 1}
    r.update(over)
    return r


def _without(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != name}


@pytest.mark.parametrize("body", [
    None, [], "x", 3,
    _without(_pull(), "changes"), _pull(changes={}), _pull(changes=[None]),
    _pull(cursor=7), _without(_pull(), "cursor"), _pull(has_more="no"),
    _pull(last_mutation_id="3"), _pull(last_mutation_id=-1), _pull(last_mutation_id=True),
    _pull(last_mutation_id=2**63), _pull(reset="yes"),
    _pull(changes=[_record(collection=1)]), _pull(changes=[_without(_record(), "key")]),
    _pull(changes=[_record(version="2")]), _pull(changes=[_record(version=1.5)]),
    _pull(changes=[_record(deleted=0)]), _pull(changes=[_record(value=[1])]),
    _pull(changes=[_record(value={"b": {"$bytes": "not base64!"}})]),
    _pull(changes=[_record(hlc=5)]),
    _pull(remaining=-1), _pull(remaining="3"), _pull(remaining=1.5), _pull(remaining=True),
])
def test_a_malformed_pull_answer_is_a_protocol_error(body: object) -> None:
    assert _code(PullResponse.from_json, body) == "invalid_response"


@pytest.mark.parametrize("body", [
    None, {"results": []}, {"last_mutation_id": 1}, {"last_mutation_id": 1, "results": {}},
    {"last_mutation_id": 1, "results": [_result(id=0)]},
    {"last_mutation_id": 1, "results": [_result(id="1")]},
    {"last_mutation_id": 1, "results": [_result(status="done")]},
    {"last_mutation_id": 1, "results": [_result(version=[1])]},
    {"last_mutation_id": 1, "results": [_result(status="conflict", server="t9")]},
    {"last_mutation_id": 1, "results": [_result(status="conflict", server=_record(key=9))]},
    {"last_mutation_id": 1, "results": [_result(status="rejected", error="bad")]},
    {"last_mutation_id": 1, "results": [_result(status="rejected", error={"message": "m"})]},
])
def test_a_malformed_push_answer_is_a_protocol_error(body: object) -> None:
    assert _code(PushResponse.from_json, body) == "invalid_response"


@pytest.mark.parametrize("body", [None, {}, {"ticket": None}, {"ticket": 5}, {"ticket": ""},
                                  ["t"]])
def test_a_malformed_events_ticket_is_a_protocol_error(body: object) -> None:
    assert _code(EventsTicket.from_json, body) == "invalid_response"


def test_well_formed_answers_parse_and_unknown_fields_are_ignored() -> None:
    page = PullResponse.from_json(_pull(changes=[_record(extra=1), _record(
        key="t2", deleted=True, value=None, hlc=None)], newer_field=True))
    assert [(c.key, c.deleted, c.value) for c in page.changes] == \
        [("t1", False, {"title": "x"}), ("t2", True, None)]
    assert PullResponse.from_json({"reset": True}).reset
    assert page.remaining is None  # an older server does not send it
    assert PullResponse.from_json(_pull(remaining=42)).remaining == 42
    assert EventsTicket.from_json({"ticket": "abc"}).ticket == "abc"


@pytest.mark.parametrize(("text", "expected"), [
    ("0.1", 0.1), ("2.5e-3", 0.0025), ("1E+300", 1e300), ("3.0", 3.0),
    ("0.123456789012345678901234567890", Decimal("0.123456789012345678901234567890")),
    ("12345678901234567.5", Decimal("12345678901234567.5")),
    ("1E-400", Decimal("1E-400")),
])
def test_float_if_exact_keeps_floats_that_hold_the_digits_and_decimals_otherwise(
        text: str, expected: object) -> None:
    value = float_if_exact(text)
    assert value == expected
    assert type(value) is type(expected)
