"""GET /v1/events (SSE) and GET /v1/pull over a real socket, with the feed thread running."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pysync.errors import ProtocolError
from pysync.protocol import PushRequest
from server.app import create_app
from server.auth import Principal
from server.clients import client_key
from server.events import issue_ticket
from tests.server.feed_support import Store
from tests.support import serve

pytestmark = pytest.mark.dynamodb


@pytest.fixture(scope="module")
def store(dynamodb_local: Any) -> Store:
    return Store.create(dynamodb_local, feed_enabled=True, heartbeat_s=0.3)


@pytest.fixture(scope="module")
def base_url(store: Store) -> Iterator[str]:
    with serve(create_app(store.ctx.settings)) as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0)) as client:
        yield client


def token(http: httpx.Client, user: str) -> dict[str, str]:
    t = http.post("/v1/dev/token", json={"user": user}).json()["token"]
    return {"Authorization": f"Bearer {t}"}


def ticket(http: httpx.Client, user: str) -> str:
    r = http.post("/v1/events/ticket", headers=token(http, user))
    assert r.status_code == 200
    assert r.json()["expires_in"] > 0
    value: str = r.json()["ticket"]
    return value


class Events:
    """Reads an SSE response event by event."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next(self) -> tuple[str, str]:
        """(event name or "comment", data) of the next event or comment."""
        name, data = "", ""
        for line in self.lines:
            if line.startswith(":"):
                return "comment", line[1:].strip()
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif line == "" and name:
                return name, data
        raise EOFError("the stream ended")

    def next_poke(self) -> str:
        while True:
            name, data = self.next()
            if name == "poke":
                return data


def test_a_connection_starts_with_a_poke(http: httpx.Client) -> None:
    with http.stream("GET", "/v1/events", params={"ticket": ticket(http, "ann")}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert Events(r).next_poke() == '{"head": 0}'


def test_a_ticket_works_once(http: httpx.Client) -> None:
    t = ticket(http, "ann")
    with http.stream("GET", "/v1/events", params={"ticket": t}) as r:
        assert r.status_code == 200
    again = http.get("/v1/events", params={"ticket": t})
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "invalid_ticket"


def test_an_expired_ticket_is_refused(store: Store, http: httpx.Client) -> None:
    t = issue_ticket(store.ctx.dynamodb, store.ctx.tables, Principal.for_user("ann"), -1.0)
    r = http.get("/v1/events", params={"ticket": t})
    assert r.status_code == 401
    assert "expired" in r.json()["error"]["message"]


def test_events_need_a_ticket_or_a_bearer_token(http: httpx.Client) -> None:
    assert http.get("/v1/events").status_code == 401
    assert http.get("/v1/events", params={"ticket": "made-up"}).status_code == 401
    assert http.get("/v1/events", params={"token": "x"}).status_code == 400
    with http.stream("GET", "/v1/events", headers=token(http, "ann")) as r:
        assert r.status_code == 200  # fetch-streaming clients may send the header instead


def test_the_stream_sends_heartbeats(http: httpx.Client) -> None:
    with http.stream("GET", "/v1/events", params={"ticket": ticket(http, "ann")}) as r:
        events = Events(r)
        events.next_poke()
        assert events.next() == ("comment", "heartbeat")


def test_a_direct_write_pokes_its_scope_and_the_pull_returns_it(store: Store,
                                                                 http: httpx.Client) -> None:
    auth = token(http, "carol")
    first = http.get("/v1/pull", params={"client_id": "carol-1"}, headers=auth).json()
    assert first["changes"] == []
    assert first["has_more"] is False
    with http.stream("GET", "/v1/events", params={"ticket": ticket(http, "carol")}) as r:
        events = Events(r)
        assert events.next_poke() == '{"head": 0}'
        store.put("u#dave", "todos", "t1", title="someone else's")
        store.put("u#carol", "todos", "t1", title="from a backend job")
        assert events.next_poke() == '{"head": 1}'  # carol's log, not dave's
    out = http.get("/v1/pull", params={"client_id": "carol-1", "cursor": first["cursor"]},
                   headers=auth).json()
    assert [(c["key"], c["value"], c["version"]) for c in out["changes"]] == \
        [("t1", {"title": "from a backend job"}, 1)]
    assert out["last_mutation_id"] == 0


def test_pull_refuses_bad_parameters(http: httpx.Client) -> None:
    auth = token(http, "ann")
    for params in ({}, {"client_id": ""}, {"client_id": "c", "limit": "0"},
                   {"client_id": "c", "limit": "1001"}, {"client_id": "c", "limit": "x"},
                   {"client_id": "c", "cursor": "%%%"}, {"client_id": "c", "extra": "1"}):
        r = http.get("/v1/pull", params=params, headers=auth)
        assert r.status_code == 400, params
        assert r.json()["error"]["code"] in ("invalid_request", "invalid_cursor")


@pytest.mark.parametrize("limit", ["\u00b2", "\u0661", "1" * 5000, "0" * 5000 + "1", "+5", " 5",
                                   "5.0", "-1", "1e3", ""])
def test_pull_refuses_a_limit_that_is_not_plain_ascii_digits_in_range(
        http: httpx.Client, limit: str) -> None:
    r = http.get("/v1/pull", params={"client_id": "c", "limit": limit},
                 headers=token(http, "ann"))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("client_id", ["dev ice", "caf\u00e9", "a/b", "a#b", "x" * 129, "tab\t",
                                       "\u00b2", "trailing-newline\n"])
def test_pull_refuses_a_client_id_push_refuses_and_binds_nothing(
        store: Store, http: httpx.Client, client_id: str) -> None:
    with pytest.raises(ProtocolError):  # push's rule
        PushRequest.from_json({"protocol": 1, "client_id": client_id, "mutations": []})
    r = http.get("/v1/pull", params={"client_id": client_id}, headers=token(http, "ann"))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    assert "Item" not in store.ctx.dynamodb.get_item(
        TableName=store.ctx.tables.clients, Key=client_key(client_id), ConsistentRead=True)


def test_pull_accepts_a_client_id_push_accepts(http: httpx.Client) -> None:
    cid = "A-z_0.9:" + "x" * 120
    PushRequest.from_json({"protocol": 1, "client_id": cid, "mutations": []})
    r = http.get("/v1/pull", params={"client_id": cid, "limit": "1000"},
                 headers=token(http, "ann"))
    assert r.status_code == 200, r.text


def test_pull_of_another_users_client_id_is_forbidden(http: httpx.Client) -> None:
    http.get("/v1/pull", params={"client_id": "ann-device"}, headers=token(http, "ann"))
    r = http.get("/v1/pull", params={"client_id": "ann-device"}, headers=token(http, "mallory"))
    assert r.status_code == 403


def test_pull_needs_a_token(http: httpx.Client) -> None:
    assert http.get("/v1/pull", params={"client_id": "c"}).status_code == 401
