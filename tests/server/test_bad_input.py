"""The bad-input catalogue: each hostile or broken push gets its documented answer, and
neither the victim's data (read back from DynamoDB with boto3) nor the attacker's own scope
holds anything partial.

Whole-request problems are a 4xx and write nothing; a bad mutation that has a usable id is
`rejected` in place while the mutations around it are still applied in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from pysync.protocol import dumps
from server.dynamo_local import DynamoDBLocal
from tests.server.api_support import Api, client_id, mutation, push_body, running_api

pytestmark = pytest.mark.dynamodb
MAX_BODY = 600_000
MAX_MUTATIONS = 50
VICTIM = "bob"
_users = itertools.count()


@dataclass
class Victim:
    token: str
    client_id: str
    items: list[dict[str, Any]]


@pytest.fixture(scope="module")
def api(dynamodb_local: DynamoDBLocal) -> Iterator[Api]:
    with running_api(dynamodb_local, max_body_bytes=MAX_BODY,
                     max_mutations=MAX_MUTATIONS) as a:
        yield a


@pytest.fixture(scope="module")
def victim(api: Api) -> Victim:
    token, cid = api.token(VICTIM), client_id()
    r = api.push(token, push_body(cid, mutation(1, "t1", value={"title": "bob's", "n": 1}),
                                  mutation(2, "t2", value={"title": "private"})))
    assert r.status_code == 200, r.text
    return Victim(token, cid, api.items(f"u#{VICTIM}"))


def attacker(api: Api) -> tuple[str, str]:
    """A fresh attacking user (so its scope starts empty) and its token."""
    user = f"mallory{next(_users)}"
    return user, api.token(user)


def assert_victim_unchanged(api: Api, victim: Victim) -> None:
    assert api.items(f"u#{VICTIM}") == victim.items


def raw(body: dict[str, Any], replace: dict[str, str]) -> bytes:
    """Exact JSON text of `body` with some placeholder strings swapped for raw JSON text."""
    text = dumps(body)
    for placeholder, json_text in replace.items():
        text = text.replace(f'"{placeholder}"', json_text)
    return text.encode()


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# --- whole-request errors: a status, an error code, nothing written anywhere ---

def _cid() -> str:
    return client_id()


WHOLE: list[tuple[str, Callable[[], bytes], dict[str, str], int, str]] = [
    ("not json", lambda: b'{"protocol": 1,', {}, 400, "malformed_json"),
    ("NaN", lambda: raw(push_body(_cid(), mutation(1, value={"x": "@N"})), {"@N": "NaN"}),
     {}, 400, "malformed_json"),
    ("Infinity", lambda: raw(push_body(_cid(), mutation(1, value={"x": "@I"})),
                             {"@I": "-Infinity"}), {}, 400, "malformed_json"),
    ("duplicate client_id key", lambda: dumps(push_body(_cid())).replace(
        '"client_id"', '"client_id":"bob-device","client_id"').encode(), {}, 400,
     "malformed_json"),
    ("duplicate key in a value", lambda: raw(push_body(_cid(), mutation(1, value={"v": "@D"})),
                                             {"@D": '{"a": 1, "a": 2}'}), {}, 400,
     "malformed_json"),
    ("invalid utf-8", lambda: b'{"protocol": 1, "client_id": "\xc3\x28", "mutations": []}', {},
     400, "malformed_json"),
    ("parser-exhausting nesting", lambda: raw(push_body(_cid(), mutation(1, value={"x": "@X"})),
                                              {"@X": "[" * 50_000 + "]" * 50_000}),
     {}, 400, "malformed_json"),
    ("body is a list", lambda: b"[]", {}, 400, "invalid_request"),
    ("protocol 2", lambda: dumps(push_body(_cid(), protocol=2)).encode(), {}, 400,
     "unsupported_protocol"),
    ("protocol missing", lambda: dumps({"client_id": _cid(), "mutations": []}).encode(), {},
     400, "unsupported_protocol"),
    ("client_id missing", lambda: dumps({"protocol": 1, "mutations": []}).encode(), {}, 400,
     "invalid_request"),
    ("client_id not a string", lambda: dumps(push_body(_cid(), client_id=42)).encode(), {},
     400, "invalid_request"),
    ("client_id with a path", lambda: dumps(push_body("../bob")).encode(), {}, 400,
     "invalid_request"),
    ("scope in the body", lambda: dumps(push_body(_cid(), mutation(1), scope="u#bob")).encode(),
     {}, 400, "invalid_request"),
    ("user in the body", lambda: dumps(push_body(_cid(), mutation(1), user="bob")).encode(),
     {}, 400, "invalid_request"),
    ("mutations not a list", lambda: dumps(push_body(_cid(), mutations={"1": {}})).encode(),
     {}, 400, "invalid_request"),
    ("mutation without id", lambda: dumps(push_body(_cid(), mutation(1), {"op": "put"})).encode(),
     {}, 400, "invalid_request"),
    ("id beyond 64 bits", lambda: dumps(push_body(_cid(), mutation(2**63))).encode(), {}, 400,
     "invalid_request"),
    ("ids not consecutive", lambda: dumps(push_body(_cid(), mutation(1), mutation(3))).encode(),
     {}, 400, "invalid_request"),
    ("too many mutations", lambda: dumps(push_body(_cid(), *(
        mutation(i, f"k{i}") for i in range(1, MAX_MUTATIONS + 2)))).encode(), {}, 413,
     "too_many_mutations"),
    ("body over the limit", lambda: dumps(push_body(_cid(), mutation(
        1, value={"x": "a" * MAX_BODY}))).encode(), {}, 413, "body_too_large"),
    ("wrong content type", lambda: dumps(push_body(_cid(), mutation(1))).encode(),
     {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ("form content type", lambda: b"protocol=1", {
        "Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ("latin-1 charset", lambda: dumps(push_body(_cid(), mutation(1))).encode(),
     {"Content-Type": "application/json; charset=latin-1"}, 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(("body", "headers", "status", "code"),
                         [case[1:] for case in WHOLE], ids=[case[0] for case in WHOLE])
def test_a_bad_request_is_refused_whole_and_writes_nothing(
        api: Api, victim: Victim, body: Callable[[], bytes], headers: dict[str, str],
        status: int, code: str) -> None:
    user, token = attacker(api)
    r = api.push(token, body(), headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    assert api.items(f"u#{user}") == []
    assert_victim_unchanged(api, victim)


def test_an_oversized_chunked_body_without_content_length_is_413(api: Api,
                                                                 victim: Victim) -> None:
    user, token = attacker(api)
    chunk = b" " * 65_536

    def stream() -> Iterator[bytes]:
        yield dumps(push_body(client_id(), mutation(1))).encode()
        for _ in range(MAX_BODY // len(chunk) + 2):
            yield chunk

    r = api.push(token, stream())
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"
    assert api.items(f"u#{user}") == []
    assert_victim_unchanged(api, victim)


def test_the_victims_client_id_is_403_for_another_user(api: Api, victim: Victim) -> None:
    user, token = attacker(api)
    r = api.push(token, push_body(victim.client_id, mutation(3, "t1", value={"title": "pwned"})))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert api.items(f"u#{user}") == []
    assert_victim_unchanged(api, victim)


def test_a_forged_token_for_the_victim_is_401(api: Api, victim: Victim) -> None:
    import jwt

    forged = jwt.encode({"sub": VICTIM, "aud": "pysync", "iss": "pysync-dev", "exp": 2**33},
                        "guessed-secret-" + "g" * 32, algorithm="HS256")
    r = api.push(forged, push_body(victim.client_id, mutation(3, "t1", value={"x": 1})))
    assert r.status_code == 401
    assert_victim_unchanged(api, victim)


# --- one bad mutation: rejected in place, its neighbours applied in order ---

REJECTED: list[tuple[str, dict[str, Any], dict[str, str], str]] = [
    ("unknown op", {"op": "upsert"}, {}, "invalid_mutation"),
    ("bad collection name", {"collection": "todos#x"}, {}, "invalid_mutation"),
    ("scope field in a mutation", {"scope": "u#bob"}, {}, "invalid_mutation"),
    ("malformed hlc", {"hlc": "9" * 40}, {}, "invalid_mutation"),
    ("negative base_version", {"base_version": -1}, {}, "invalid_mutation"),
    ("empty key", {"key": ""}, {}, "invalid_value"),
    ("key over the sort key limit", {"key": "k" * 1000}, {}, "invalid_value"),
    ("reserved _v field", {"value": {"_v": 999}}, {}, "invalid_value"),
    ("reserved _del field", {"value": {"title": "x", "_del": True}}, {}, "invalid_value"),
    ("pk field reaching another scope", {"value": {"pk": "u#bob", "title": "x"}}, {},
     "invalid_value"),
    ("sk field", {"value": {"sk": "todos#t1"}}, {}, "invalid_value"),
    ("empty field name", {"value": {"": 1}}, {}, "invalid_value"),
    ("empty nested map key", {"value": {"m": {"": 1}}}, {}, "invalid_value"),
    ("field name over 64 KB", {"value": {"f" * 70_000: 1}}, {}, "invalid_value"),
    ("base_version beyond 64 bits", {"base_version": 2**64}, {}, "invalid_mutation"),
    ("lone surrogate", {"value": {"x": "@S"}}, {"@S": '"a\\ud800"'}, "invalid_value"),
    ("lone surrogate in a field name", {"value": {"x": "@S"}}, {"@S": '{"\\udc00": 1}'},
     "invalid_value"),
    # A top-level one used to be quoted raw in the message: the response then failed to
    # render (500) after the rejection was committed, and the retry only got `duplicate`.
    ("lone surrogate as a top-level field name", {"value": "@S"}, {"@S": '{"\\udc00": 1}'},
     "invalid_value"),
    ("nested deeper than 32", {"value": {"x": nested(40)}}, {}, "invalid_value"),
    # DynamoDB would store it in the item, but not inside the change log's `f` map: the feed
    # then failed on it for ever (issue 7, a).
    ("nested 32 levels (a field holding 31 lists)", {"value": {"x": nested(31)}}, {},
     "invalid_value"),
    ("39 significant digits", {"value": {"x": Decimal("1." + "3" * 38)}}, {}, "invalid_value"),
    ("huge integer", {"value": {"x": "@H"}}, {"@H": "9" * 5000}, "invalid_value"),
    ("number out of range", {"value": {"x": Decimal("1e200")}}, {}, "invalid_value"),
    # DynamoDB itself takes 38 digits down to 1e-167, but boto3 writes no digit below 1e-165.
    ("38 digits down to 1e-167", {"value": {"x": Decimal("1." + "2" * 37 + "e-130")}}, {},
     "invalid_value"),
    ("item over 400 KB", {"value": {"x": "a" * 410_000}}, {}, "invalid_value"),
    ("DynamoDB typed JSON record", {"value": {"S": "x"}}, {}, "invalid_value"),
    ("DynamoDB typed JSON map record", {"value": {"M": {"title": {"S": "x"}}}}, {},
     "invalid_value"),
    ("value is a list", {"value": [1, 2]}, {}, "invalid_value"),
    ("put without value", {"value": None}, {}, "invalid_value"),
    ("delete with a value", {"op": "delete", "value": {"a": 1}}, {}, "invalid_value"),
    ("bytes wrapper with extra keys", {"value": {"b": {"$bytes": "AA==", "x": 1}}}, {},
     "invalid_value"),
    ("bad base64", {"value": {"b": {"$bytes": "!!"}}}, {}, "invalid_value"),
]


@pytest.mark.parametrize(("override", "replace", "code"), [c[1:] for c in REJECTED],
                         ids=[c[0] for c in REJECTED])
def test_a_bad_mutation_is_rejected_and_its_neighbours_still_apply(
        api: Api, victim: Victim, override: dict[str, Any], replace: dict[str, str],
        code: str) -> None:
    user, token = attacker(api)
    bad = mutation(2, **{"key": "bad", **override})
    body = raw(push_body(client_id(), mutation(1, "before"), bad, mutation(3, "after")), replace)
    r = api.push(token, body)
    assert r.status_code == 200, r.text
    assert r.json()["last_mutation_id"] == 3
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["applied", "rejected", "applied"]
    assert results[1]["error"]["code"] == code
    assert 0 < len(results[1]["error"]["message"]) <= 300  # never echoes a huge input
    assert sorted(i["sk"]["S"] for i in api.items(f"u#{user}")) == ["todos#after",
                                                                    "todos#before"]
    assert_victim_unchanged(api, victim)


# --- crafted but legitimate: stored as data in the attacker's own scope, nowhere else ---

CONTAINED: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("key with a path to the victim's scope", {"key": "../u#bob"}, "todos#../u#bob",
     {"title": {"S": "t1"}}),
    ("key with a separator", {"key": "x#y"}, "todos#x#y", {"title": {"S": "t1"}}),
    ("key naming the victim's sort key", {"key": "u#bob"}, "todos#u#bob",
     {"title": {"S": "t1"}}),
    ("expression placeholder field names", {"value": {"#a": 1, ":v": "x", "a.b": True}},
     "todos#k", {"#a": {"N": "1"}, ":v": {"S": "x"}, "a.b": {"BOOL": True}}),
    ("a field holding a map with a type descriptor key", {"value": {"size": {"S": "small"}}},
     "todos#k", {"size": {"M": {"S": {"S": "small"}}}}),
    ("nested key attribute names", {"value": {"m": {"pk": "u#bob", "_v": 1}}}, "todos#k",
     {"m": {"M": {"pk": {"S": "u#bob"}, "_v": {"N": "1"}}}}),
]


@pytest.mark.parametrize(("override", "sk", "fields"), [c[1:] for c in CONTAINED],
                         ids=[c[0] for c in CONTAINED])
def test_crafted_keys_and_field_names_stay_data_in_the_callers_scope(
        api: Api, victim: Victim, override: dict[str, Any], sk: str,
        fields: dict[str, Any]) -> None:
    user, token = attacker(api)
    r = api.push(token, push_body(client_id(), mutation(1, **override)))
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["status"] == "applied", r.text
    (item,) = api.items(f"u#{user}")
    assert item["sk"] == {"S": sk}
    assert {k: v for k, v in item.items() if k in fields} == fields
    assert_victim_unchanged(api, victim)


# --- numbers DynamoDB stores in a normal form: stored, never a 500 ---

NUMBERS: list[tuple[str, str, dict[str, Any]]] = [
    # (the JSON text of field `x`, what DynamoDB holds for it afterwards)
    ("zero with a huge exponent in a map", '{"m": 0e200}', {"M": {"m": {"N": "0"}}}),
    ("negative zero with exponent 127 in a map", '{"m": -0E+127}', {"M": {"m": {"N": "0"}}}),
    ("zero with exponent 300 in a list", "[0e300]", {"L": [{"N": "0"}]}),
    ("zero with a tiny exponent", "0E-200", {"N": "0"}),
    ("an integer written out as 51 digits", "1" + "0" * 50, {"N": "1" + "0" * 50}),
    ("one with 40 trailing zeros", "1." + "0" * 40, {"N": "1"}),
]


@pytest.mark.parametrize(("json_text", "stored"), [c[1:] for c in NUMBERS],
                         ids=[c[0] for c in NUMBERS])
def test_a_number_in_a_normal_form_is_stored_as_dynamodb_holds_it(
        api: Api, victim: Victim, json_text: str, stored: dict[str, Any]) -> None:
    user, token = attacker(api)
    body = raw(push_body(client_id(), mutation(1, value={"x": "@X"})), {"@X": json_text})
    r = api.push(token, body)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["status"] == "applied"
    (item,) = api.items(f"u#{user}")
    assert item["x"] == stored
    assert_victim_unchanged(api, victim)
