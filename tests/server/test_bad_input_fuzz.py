"""Random pushes never get a 500: whatever the body holds, the answer is a documented 4xx or
a 200 whose every result has a documented status (Hypothesis, real server, DynamoDB Local)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysync.protocol import dumps
from server.dynamo_local import DynamoDBLocal
from tests.server.api_support import Api, client_id, running_api

pytestmark = pytest.mark.dynamodb

_text = st.text(max_size=12) | st.sampled_from(
    ["", "_v", "pk", "sk", "$bytes", "#a", ":v", "a.b", "S", "M", "../u#bob", "\x00", "\ud800"])
_scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**45), max_value=10**45)
            | st.decimals(allow_nan=False, allow_infinity=False) | _text)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_text, inner, max_size=3), max_leaves=12)
_mutation_fields = st.fixed_dictionaries({
    "collection": st.sampled_from(["todos", "notes", "nope", "", "a#b"]) | _text,
    "key": _text | st.integers(),
    "op": st.sampled_from(["put", "patch", "delete", "merge", ""]),
}, optional={
    "value": _json, "base_version": st.none() | st.integers(min_value=-2, max_value=2**64),
    "hlc": st.none() | _text | st.just("000001700000000:000000:x"),
    "extra": _json,
})


@pytest.fixture(scope="module")
def fuzz_api(dynamodb_local: DynamoDBLocal) -> Iterator[tuple[Api, str]]:
    with running_api(dynamodb_local) as api:
        yield api, api.token("fuzzer")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_mutation_fields, max_size=4))
def test_random_mutations_never_get_a_500(fuzz_api: tuple[Api, str],
                                          fields: list[dict[str, Any]]) -> None:
    api, token = fuzz_api
    body = {"protocol": 1, "client_id": client_id(),
            "mutations": [{"id": i + 1, **f} for i, f in enumerate(fields)]}
    r = api.push(token, dumps(body).encode("utf-8", "surrogatepass"))
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        results = r.json()["results"]
        assert [x["id"] for x in results] == list(range(1, len(fields) + 1))
        assert {x["status"] for x in results} <= {"applied", "conflict", "rejected"}
