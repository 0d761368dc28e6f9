"""POST /v1/push over a real socket, on the real DynamoDB Local: statuses and their effects."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pysync.protocol import dumps
from server.dynamo_local import DynamoDBLocal
from tests.server.api_support import Api, client_id, mutation, push_body, running_api

pytestmark = pytest.mark.dynamodb


@pytest.fixture(scope="module")
def api(dynamodb_local: DynamoDBLocal) -> Iterator[Api]:
    with running_api(dynamodb_local) as a:
        yield a


def statuses(response: Any) -> list[str]:
    return [r["status"] for r in response.json()["results"]]


def test_a_push_is_applied_and_answered_with_each_mutations_result(api: Api) -> None:
    alice, cid = api.token("alice-ok"), client_id()
    r = api.push(alice, push_body(
        cid, mutation(1, "t1", value={"title": "Milk", "done": False}),
        mutation(2, "t1", op="patch", value={"done": True}, base_version=1),
        mutation(3, "t2"), mutation(4, "t2", op="delete", value=None, base_version=1)))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["last_mutation_id"] == 4
    assert statuses(r) == ["applied"] * 4
    items = {i["sk"]["S"]: i for i in api.items("u#alice-ok")}
    assert items["todos#t1"]["title"] == {"S": "Milk"}
    assert items["todos#t1"]["done"] == {
        "BOOL": True}


def test_a_retried_push_answers_duplicate_and_writes_nothing_again(api: Api) -> None:
    alice, cid = api.token("alice-retry"), client_id()
    body = push_body(cid, mutation(1, "t1"), mutation(2, "t1", op="patch",
                                                      value={"n": 1}, base_version=1))
    first = api.push(alice, body)
    before = api.items("u#alice-retry")
    again = api.push(alice, body)
    assert statuses(first) == ["applied", "applied"]
    assert again.status_code == 200
    assert statuses(again) == ["duplicate", "duplicate"]
    assert again.json()["last_mutation_id"] == 2
    assert api.items("u#alice-retry") == before


def test_an_empty_push_answers_the_clients_last_mutation_id(api: Api) -> None:
    alice, cid = api.token("alice-empty"), client_id()
    api.push(alice, push_body(cid, mutation(1), mutation(2)))
    r = api.push(alice, push_body(cid))
    assert r.status_code == 200
    assert r.json() == {"last_mutation_id": 2, "results": []}


def test_a_gap_in_mutation_ids_is_409_with_the_expected_id_and_nothing_applied(api: Api) -> None:
    alice, cid = api.token("alice-gap"), client_id()
    api.push(alice, push_body(cid, mutation(1, "a")))
    r = api.push(alice, push_body(cid, mutation(3, "b"), mutation(4, "c")))
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "mutation_gap"
    assert r.json()["error"]["expected"] == 2
    assert [i["sk"]["S"] for i in api.items("u#alice-gap")] == ["todos#a"]


def test_another_users_client_id_is_403_and_writes_nothing(api: Api) -> None:
    bob, mallory, cid = api.token("bob-403"), api.token("mallory-403"), client_id()
    api.push(bob, push_body(cid, mutation(1, "mine", value={"secret": 1})))
    bob_before = api.items("u#bob-403")
    r = api.push(mallory, push_body(cid, mutation(2, "mine", value={"secret": 0})))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert api.items("u#bob-403") == bob_before
    assert api.items("u#mallory-403") == []


def test_a_push_without_a_token_is_401_and_writes_nothing(api: Api) -> None:
    r = api.push(None, push_body(client_id(), mutation(1, "x")))
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "missing_token"


def test_numbers_are_stored_and_answered_exactly(api: Api) -> None:
    alice, cid = api.token("alice-num"), client_id()
    exact = "3.1415926535897932384626433832795028841"[:39]  # 38 significant digits
    body = push_body(cid, mutation(1, "pi", collection="notes", value={"pi": Decimal(exact)}),
                     mutation(2, "pi", collection="notes", value={"pi": 3}, base_version=7))
    r = api.push(alice, body)
    assert statuses(r) == ["applied", "conflict"]
    assert (api.items("u#alice-num")[0]["pi"]) == {"N": exact}
    assert f'"pi":{exact}' in r.text  # the conflict's server record, not rounded


def throttle(**kwargs: Any) -> None:
    # DynamoDB Local never throttles: the fault is injected with a botocore event hook.
    raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                 "Message": "injected"}}, kwargs["model"].name)


def test_a_throttled_store_is_503_with_retry_after_and_the_retry_applies_once(api: Api) -> None:
    alice, cid = api.token("alice-503"), client_id()
    body = push_body(cid, mutation(1, "t1"))
    events = api.ctx.dynamodb.meta.events
    events.register("before-call.dynamodb", throttle, unique_id="test-throttle")
    try:
        r = api.push(alice, body)
    finally:
        events.unregister("before-call.dynamodb", unique_id="test-throttle")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "store_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    retry = api.push(alice, body)
    assert statuses(retry) in (["applied"], ["duplicate"])
    assert len(api.items("u#alice-503")) == 1


def test_a_bug_is_a_generic_500_without_details(api: Api) -> None:
    # A fault no real part produces on demand: a non-AWS exception inside the store call.
    def explode(**kwargs: Any) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    alice = api.token("alice-500")
    events = api.ctx.dynamodb.meta.events
    events.register("before-call.dynamodb", explode, unique_id="test-explode")
    try:
        r = api.push(alice, push_body(client_id(), mutation(1, "t1")))
    finally:
        events.unregister("before-call.dynamodb", unique_id="test-explode")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert "secret" not in r.text
    assert "Traceback" not in r.text


def test_a_chunked_push_without_content_length_is_applied(api: Api) -> None:
    alice, cid = api.token("alice-chunked"), client_id()
    text = dumps(push_body(cid, mutation(1, "t1"))).encode()
    r = api.push(alice, iter([text[:10], text[10:]]))
    assert r.status_code == 200
    assert statuses(r) == ["applied"]


def test_an_unknown_api_route_is_a_json_404(api: Api) -> None:
    r = api.http.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
