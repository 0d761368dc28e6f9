"""DynamoDB trouble, route by route, over a real socket: a real DynamoDB Local paused
(SIGSTOP) or killed and restarted on its data dir, and throttling, transaction conflicts and
unprocessed keys stubbed with botocore hooks (DynamoDB Local never produces those; each stub
says so in tests/server/fault_support.py).

Every request that meets DynamoDB trouble answers 503 store_unavailable with Retry-After
within the documented bound (docs/api.md, "DynamoDB trouble"); nothing acknowledged is lost;
the feed thread and the poke poller carry on once DynamoDB is back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ReadTimeoutError

from server.dynamo_local import DynamoDBLocal
from tests.server.api_support import Api, client_id, mutation, push_body, running_api
from tests.server.fault_support import (
    CLIENT_TIMEOUT_S,
    assert_store_unavailable,
    conflict_hook,
    hooked,
    killed,
    paused,
    throttling_hook,
    times,
    unprocessed_keys_hook,
)
from tests.server.feed_support import FAST
from tests.server.test_events import Events
from tests.support import wait_until

pytestmark = pytest.mark.dynamodb

# How long DynamoDB Local may take to put an acknowledged write on disk (measured: see
# test_after_a_kill_and_a_restart_on_its_data_dir_nothing_acknowledged_is_lost).
DYNAMODB_LOCAL_FLUSH_S = 2.0


@pytest.fixture(scope="module")
def api(local: DynamoDBLocal) -> Iterator[Api]:
    with running_api(local, feed_enabled=True, **FAST) as a:
        a.http.timeout = httpx.Timeout(CLIENT_TIMEOUT_S)
        yield a


def user() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


def auth(api: Api, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token(name)}"}


def ticket(api: Api, name: str) -> str:
    r = api.http.post("/v1/events/ticket", headers=auth(api, name))
    assert r.status_code == 200, r.text
    value: str = r.json()["ticket"]
    return value


# Each route that touches DynamoDB, as a request whose DynamoDB work starts once the fault
# is on. `prepare` runs before the fault (it may need DynamoDB), `send` during it.
Prepare = Callable[[Api], Any]
Send = Callable[[Api, Any], httpx.Response]


def _prepare_token(api: Api) -> str:
    return api.token(user())


def _push(api: Api, token: str) -> httpx.Response:
    return api.push(token, push_body(client_id(), mutation(1, "t1")))


def _pull(api: Api, token: str) -> httpx.Response:
    return api.http.get("/v1/pull", params={"client_id": client_id()},
                        headers={"Authorization": f"Bearer {token}"})


def _ticket(api: Api, token: str) -> httpx.Response:
    return api.http.post("/v1/events/ticket", headers={"Authorization": f"Bearer {token}"})


def _events_bearer(api: Api, token: str) -> httpx.Response:
    return api.http.get("/v1/events", headers={"Authorization": f"Bearer {token}"})


def _events_ticket(api: Api, value: str) -> httpx.Response:
    return api.http.get("/v1/events", params={"ticket": value})


ROUTES: dict[str, tuple[Prepare, Send]] = {
    "push": (_prepare_token, _push),
    "pull": (_prepare_token, _pull),
    "events ticket": (_prepare_token, _ticket),
    "events with a bearer token": (_prepare_token, _events_bearer),
    "events with a ticket": (lambda api: ticket(api, user()), _events_ticket),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_request_while_dynamodb_is_paused_answers_503_with_retry_after(
        api: Api, local: DynamoDBLocal, route: str) -> None:
    prepare, send = ROUTES[route]
    arg = prepare(api)
    with paused(local):
        assert_store_unavailable(send(api, arg))


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_request_while_dynamodb_is_down_answers_503_with_retry_after(
        api: Api, local: DynamoDBLocal, route: str) -> None:
    prepare, send = ROUTES[route]
    arg = prepare(api)
    with killed(local):
        assert_store_unavailable(send(api, arg))


STUBS = {"throttling": throttling_hook, "transaction conflict": conflict_hook}


@pytest.mark.parametrize("stub", list(STUBS))
@pytest.mark.parametrize("route", list(ROUTES))
def test_a_request_dynamodb_keeps_throttling_answers_503_with_retry_after(
        api: Api, route: str, stub: str) -> None:
    # STUB: every DynamoDB call of the server's client fails with the injected error.
    prepare, send = ROUTES[route]
    arg = prepare(api)
    with hooked(api, "before-call.dynamodb", STUBS[stub]):
        assert_store_unavailable(send(api, arg))


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_brief_throttling_is_retried_and_the_request_succeeds(api: Api, route: str) -> None:
    # STUB: the first two DynamoDB calls are throttled, then DynamoDB answers again.
    prepare, send = ROUTES[route]
    arg = prepare(api)
    with hooked(api, "before-call.dynamodb", times(2, throttling_hook)):
        if route.startswith("events with"):
            with api.http.stream("GET", "/v1/events", **_events_args(route, arg)) as r:
                assert r.status_code == 200
                assert Events(r).next_poke() == '{"head": 0}'
        else:
            r = send(api, arg)
            assert r.status_code == 200, r.text


def _events_args(route: str, arg: str) -> dict[str, Any]:
    if route == "events with a ticket":
        return {"params": {"ticket": arg}}
    return {"headers": {"Authorization": f"Bearer {arg}"}}


def test_pull_answers_503_when_dynamodb_keeps_keys_unprocessed(api: Api) -> None:
    # STUB: BatchGetItem answers with every key unprocessed, call after call. Before, pull
    # asked again at once, forever.
    token = api.token(user())
    with hooked(api, "before-call.dynamodb.BatchGetItem", unprocessed_keys_hook):
        assert_store_unavailable(_pull(api, token))


def test_pull_asks_again_for_unprocessed_keys_and_answers(api: Api) -> None:
    # STUB: the first two BatchGetItem calls leave every key unprocessed.
    token = api.token(user())
    hook = times(2, unprocessed_keys_hook)
    with hooked(api, "before-call.dynamodb.BatchGetItem", hook):
        r = _pull(api, token)
    assert r.status_code == 200
    assert r.json()["has_more"] is False
    assert hook.calls[0] >= 3  # type: ignore[attr-defined]


def test_a_push_whose_answer_is_lost_after_the_commit_is_applied_once(api: Api) -> None:
    # STUB: the first TransactWriteItems commits in DynamoDB, then its answer is lost as a
    # read timeout would lose it. The retry must not apply the mutation twice.
    def lost_answer(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url=api.ctx.settings.dynamodb_endpoint or "")

    name, cid = user(), client_id()
    token = api.token(name)
    body = push_body(cid, mutation(1, "t1", value={"n": 1}))
    with hooked(api, "after-call.dynamodb.TransactWriteItems", times(1, lost_answer)):
        r = api.push(token, body)
    # The retry found lmid moved: the mutation was processed (by the lost attempt).
    assert r.status_code == 200
    assert r.json()["last_mutation_id"] == 1
    assert [x["status"] for x in r.json()["results"]] in (["applied"], ["duplicate"])
    again = api.push(token, body)
    assert [x["status"] for x in again.json()["results"]] == ["duplicate"]
    items = api.items(f"u#{name}")
    assert [(i["sk"]["S"], i["_v"]["N"], i["n"]["N"]) for i in items] == [("todos#t1", "1", "1")]


def _pulled(api: Api, token: str, cid: str, cursor: str | None = None) -> dict[str, Any]:
    """Every change a pull of `cid` returns from `cursor` (all pages), by key."""
    changes: dict[str, Any] = {}
    while True:
        params = {"client_id": cid, **({"cursor": cursor} if cursor else {})}
        r = api.http.get("/v1/pull", params=params, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert not out.get("reset")
        changes.update({c["key"]: c for c in out["changes"]})
        cursor = out["cursor"]
        if not out["has_more"]:
            return changes


def test_after_a_pause_the_feed_and_the_poller_carry_on(api: Api, local: DynamoDBLocal) -> None:
    name, cid = user(), client_id()
    token = api.token(name)
    first = api.http.get("/v1/pull", params={"client_id": cid},
                         headers={"Authorization": f"Bearer {token}"}).json()
    with api.http.stream("GET", "/v1/events", params={"ticket": ticket(api, name)}) as stream:
        events = Events(stream)
        assert events.next_poke() == '{"head": 0}'
        with paused(local):
            # Long enough for the feed's and the poller's calls to time out meanwhile.
            assert_store_unavailable(_push(api, api.token(user())))
        r = api.push(token, push_body(cid, mutation(1, "after-pause")))
        assert r.status_code == 200
        assert r.json()["results"][0]["status"] == "applied"
        assert events.next_poke() == '{"head": 1}'  # the poller read the new head
    # The feed logged the write: the pull's deltas carry it.
    out = wait_until(lambda: api.http.get(
        "/v1/pull", params={"client_id": cid, "cursor": first["cursor"]},
        headers={"Authorization": f"Bearer {token}"}).json()["changes"])
    assert [c["key"] for c in out] == ["after-pause"]


def test_after_a_kill_and_a_restart_on_its_data_dir_nothing_acknowledged_is_lost(
        api: Api, local: DynamoDBLocal) -> None:
    name, cid = user(), client_id()
    token = api.token(name)
    acked = api.push(token, push_body(cid, *(mutation(i, f"k{i}") for i in range(1, 21))))
    assert acked.status_code == 200
    assert acked.json()["last_mutation_id"] == 20
    # DynamoDB Local (not DynamoDB) answers a write before it is on disk: killed right after
    # the answer, it lost the whole transaction in 4 of 8 tries; 2 s later, in 0 of 8.
    time.sleep(DYNAMODB_LOCAL_FLUSH_S)
    with killed(local):
        during = api.push(token, push_body(cid, mutation(21, "k21")))
        assert_store_unavailable(during)
    # Read back with boto3: every acknowledged record survived the crash.
    got = sorted(i["sk"]["S"] for i in api.items(f"u#{name}"))
    assert got == sorted(f"todos#k{i}" for i in range(1, 21))
    # The client retries what got 503; sync carries on, and the feed brings it to pulls.
    again = api.push(token, push_body(cid, mutation(21, "k21")))
    assert again.status_code == 200
    assert again.json()["results"][0]["status"] == "applied"
    assert sorted(_pulled(api, token, cid)) == sorted(f"k{i}" for i in range(1, 22))

