"""GET /v1/events (SSE) and GET /v1/pull over a real socket, with the feed thread running."""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from pysync.errors import ProtocolError
from pysync.protocol import PushRequest
from server.app import create_app
from server.auth import Principal
from server.clients import client_key
from server.config import Settings
from server.dynamo_local import DynamoDBLocal
from server.events import issue_ticket
from tests.server.feed_support import Store, entries_summary, running
from tests.support import serve, server_process, wait_until

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


# ---- pokes at once: a push nudges the feed and chases the head ---------------------------
# Each server here polls so rarely (an hour) that only the nudge or the chase can bring the
# poke within the tests' bounded wait.

NEVER_S = 3600.0


def poke_within(events: Events, seconds: float) -> str:
    """The next poke's data; AssertionError if none came within `seconds` (the stream's
    heartbeats keep each read short)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        name, data = events.next()
        if name == "poke":
            return data
    raise AssertionError(f"no poke within {seconds:g} s")


def put(mid: int, key: str, title: str) -> dict[str, Any]:
    return {"id": mid, "collection": "todos", "key": key, "op": "put",
            "value": {"title": title}, "base_version": None, "hlc": None}


def test_a_push_pokes_a_page_of_the_same_process_without_waiting_for_the_feeds_poll(
        dynamodb_local: DynamoDBLocal) -> None:
    quiet = Store.create(dynamodb_local, feed_enabled=True, feed_poll_s=NEVER_S,
                         events_poll_s=NEVER_S, shard_refresh_s=NEVER_S, heartbeat_s=0.3)
    with serve(create_app(quiet.ctx.settings)) as url, \
            httpx.Client(base_url=url, timeout=10) as http:
        auth = token(http, "fay")
        with http.stream("GET", "/v1/events", params={"ticket": ticket(http, "fay")}) as r:
            events = Events(r)
            assert poke_within(events, 20) == '{"head": 0}'
            r2 = http.post("/v1/push", headers=auth, json={
                "protocol": 1, "client_id": "fay-1", "mutations": [put(1, "t1", "now")]})
            assert r2.status_code == 200, r2.text
            assert poke_within(events, 20) == '{"head": 1}'


def lease_owners(store: Store) -> set[str]:
    items = store.ctx.dynamodb.scan(TableName=store.ctx.tables.feed)["Items"]
    return {i["owner"]["S"] for i in items if i["pk"]["S"].startswith("lease#") and "owner" in i}


def test_a_nudge_makes_an_idle_feed_read_the_stream_at_once(
        dynamodb_local: DynamoDBLocal) -> None:
    store = Store.create(dynamodb_local)
    with running(store.feed(poll_s=NEVER_S, shard_refresh_s=NEVER_S)) as feed:
        # Its first pass is over (it took the lease, then found the stream empty): from
        # now on it would not read again for an hour unless nudged.
        wait_until(lambda: feed.owner in lease_owners(store), timeout=20)
        time.sleep(0.5)
        store.put("u#gil", "todos", "t1", title="written", _v=1)
        feed.nudge()
        wait_until(lambda: store.log("u#gil"), timeout=20,
                   message="the nudged feed did not log the write")
    assert entries_summary(store.log("u#gil")) == [(1, "todos#t1", 1, False)]


def test_pushes_that_nudge_the_feed_are_logged_once_each_in_order_without_a_gap(
        dynamodb_local: DynamoDBLocal) -> None:
    busy = Store.create(dynamodb_local, feed_enabled=True, feed_poll_s=NEVER_S,
                        events_poll_s=NEVER_S, shard_refresh_s=NEVER_S)
    pushes = 30
    with serve(create_app(busy.ctx.settings)) as url, \
            httpx.Client(base_url=url, timeout=30) as http:
        auth = token(http, "hal")

        def push(n: int) -> None:
            # Two clients, each its own sequence; three records written over and over.
            cid, mid = f"hal-{n % 2}", n // 2 + 1
            r = http.post("/v1/push", headers=auth, json={
                "protocol": 1, "client_id": cid,
                "mutations": [put(mid, f"t{n % 3}", f"write {n}")]})
            assert r.status_code == 200, r.text

        for n in range(0, pushes, 2):  # the two clients' pushes overlap
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(push, (n, n + 1)))
        wait_until(lambda: len(busy.log("u#hal")) >= pushes, timeout=30,
                   message="the nudged feed did not log every push")
    entries = entries_summary(busy.log("u#hal"))
    assert [position for position, *_ in entries] == list(range(1, pushes + 1))
    for key in ("todos#t0", "todos#t1", "todos#t2"):
        versions = [v for _, k, v, _ in entries if k == key]
        assert versions == list(range(1, len(versions) + 1)), (key, versions)


@contextmanager
def page_process_without_feed(local: DynamoDBLocal) -> Iterator[httpx.Client]:
    """A client of a server process with no feed, next to one whose feed logs every push.
    No datagrams between the two (as with the feed on Lambda), and the page's process polls
    the heads once an hour: only its chase can poke in time."""
    prefix = f"ev{uuid.uuid4().hex[:8]}_"
    fast_feed = {"PYSYNC_FEED_POLL_S": "0.02", "PYSYNC_LEASE_S": "2", "PYSYNC_PEER_HOST": ""}
    chasing = {"PYSYNC_EVENTS_POLL_S": str(NEVER_S), "PYSYNC_EVENTS_CHASE_WINDOW_S": "60",
               "PYSYNC_HEARTBEAT_S": "0.3", "PYSYNC_PEER_HOST": ""}
    with server_process(local.endpoint, prefix, feed=True, env=fast_feed), \
            server_process(local.endpoint, prefix, feed=False, env=chasing) as (url, _), \
            httpx.Client(base_url=url, timeout=10) as http:
        yield http


def test_a_push_through_a_process_without_the_feed_pokes_its_page_once_another_logs_it(
        dynamodb_local: DynamoDBLocal) -> None:
    with page_process_without_feed(dynamodb_local) as http:
        auth = token(http, "ida")
        with http.stream("GET", "/v1/events", params={"ticket": ticket(http, "ida")}) as r:
            events = Events(r)
            assert poke_within(events, 20) == '{"head": 0}'
            r2 = http.post("/v1/push", headers=auth, json={
                "protocol": 1, "client_id": "ida-1", "mutations": [put(1, "t1", "there")]})
            assert r2.status_code == 200, r2.text
            assert poke_within(events, 30) == '{"head": 1}'



def test_a_push_into_a_shared_scope_chases_that_scope_for_its_page(
        dynamodb_local: DynamoDBLocal) -> None:
    # Only the chase of the scope the push wrote to can poke in time.
    with page_process_without_feed(dynamodb_local) as http:
        scope = scope_owned_by(http, "jo")
        with http.stream("GET", "/v1/events", params={"ticket": ticket(http, "jo")}) as r:
            events = Events(r)
            assert poke_within(events, 20) == '{"head": 0}'
            assert poke_within(events, 20) == json.dumps({"scope": scope, "head": 0})
            mutation = {**put(1, "t1", "shared"), "scope": scope}
            r2 = http.post("/v1/push", headers=token(http, "jo"), json={
                "protocol": 1, "client_id": "jo-1", "mutations": [mutation]})
            assert r2.status_code == 200, r2.text
            assert poke_within(events, 30) == json.dumps({"scope": scope, "head": 1})


# ---- pokes across processes: datagrams between the processes of one store ----------------

QUIET_PAGE = {"PYSYNC_EVENTS_POLL_S": str(NEVER_S), "PYSYNC_HEARTBEAT_S": "0.3"}


def wait_for_peers(store: Store, count: int) -> None:
    """Wait until `count` processes have their peer entries. A process reads the others'
    entries when it starts (then every 10 s): the last one started knows all of them."""
    def entries() -> int:
        items = store.ctx.dynamodb.query(
            TableName=store.ctx.tables.feed, KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "peer"}})["Items"]
        return len(items)
    wait_until(lambda: entries() >= count, timeout=30, message="the peers did not register")


def test_a_page_is_poked_by_a_datagram_when_another_process_appends_to_its_scope(
        dynamodb_local: DynamoDBLocal) -> None:
    prefix = f"ev{uuid.uuid4().hex[:8]}_"
    # The page's process polls the heads once an hour and takes no push: only the feed
    # process's datagram (then one read of the head) can poke it in time. It starts first,
    # so that the feed process, started second, knows it.
    with server_process(dynamodb_local.endpoint, prefix, feed=False,
                        env=QUIET_PAGE) as (url, _q), \
            server_process(dynamodb_local.endpoint, prefix, feed=True,
                           env={"PYSYNC_FEED_POLL_S": "0.02"}), \
            httpx.Client(base_url=url, timeout=10) as http:
        store = Store.create(dynamodb_local, table_prefix=prefix)
        wait_for_peers(store, 2)
        with http.stream("GET", "/v1/events", params={"ticket": ticket(http, "joy")}) as r:
            events = Events(r)
            assert poke_within(events, 20) == '{"head": 0}'
            store.put("u#joy", "todos", "t1", title="logged by the other process", _v=1)
            assert poke_within(events, 30) == '{"head": 1}'


def test_a_push_through_one_process_nudges_the_feed_of_another(
        dynamodb_local: DynamoDBLocal) -> None:
    prefix = f"ev{uuid.uuid4().hex[:8]}_"
    # The feed's process polls the stream once an hour: only the pushing process's datagram
    # can make it read the push in time. Its page is there (no chase needed).
    idle_feed = {"PYSYNC_FEED_POLL_S": str(NEVER_S), **QUIET_PAGE}
    with server_process(dynamodb_local.endpoint, prefix, feed=True,
                        env=idle_feed) as (feed_url, _p), \
            server_process(dynamodb_local.endpoint, prefix, feed=False) as (push_url, _q), \
            httpx.Client(base_url=feed_url, timeout=10) as http:
        store = Store.create(dynamodb_local, table_prefix=prefix)
        wait_for_peers(store, 2)  # the pushing process started second: it knows the other
        auth = token(http, "kit")  # (tokens of one process are good on the other)
        with http.stream("GET", "/v1/events", params={"ticket": ticket(http, "kit")}) as r:
            events = Events(r)
            assert poke_within(events, 20) == '{"head": 0}'
            r2 = http.post(f"{push_url}/v1/push", headers=auth, json={
                "protocol": 1, "client_id": "kit-1", "mutations": [put(1, "t1", "pushed")]})
            assert r2.status_code == 200, r2.text
            assert poke_within(events, 30) == '{"head": 1}'


@pytest.mark.parametrize("overrides", [{"peer_host": "localhost"}, {"peer_host": "10.0.0"},
                                       {"feed_chase_s": 0.0}, {"events_chase_s": -1.0}])
def test_settings_refuse_a_peer_host_that_is_no_ip_address_and_a_chase_interval_not_above_0(
        overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"peer_host|chase"):
        Settings(**overrides)


def test_settings_accept_no_peers() -> None:
    assert Settings(peer_host="").peer_host == ""
    assert Settings.from_env().peer_host == "127.0.0.1"


def test_a_datagram_is_only_a_hint_a_forged_head_is_never_poked(
        dynamodb_local: DynamoDBLocal, caplog: pytest.LogCaptureFixture) -> None:
    hinted = Store.create(dynamodb_local, feed_enabled=True, events_poll_s=NEVER_S,
                          heartbeat_s=0.3)
    with serve(create_app(hinted.ctx.settings)) as url, \
            httpx.Client(base_url=url, timeout=10) as http, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        [entry] = hinted.ctx.dynamodb.query(
            TableName=hinted.ctx.tables.feed, KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "peer"}})["Items"]
        host, port = entry["sk"]["S"].split("|")[1].rsplit(":", 1)
        with http.stream("GET", "/v1/events", params={"ticket": ticket(http, "lee")}) as r:
            events = Events(r)
            assert poke_within(events, 20) == '{"head": 0}'
            forged = {"s": hinted.ctx.tables.feed, "h": {"u#lee": 99}}
            for message in (forged, "[" * 5000, b"\xff"):
                data = message if isinstance(message, bytes) else json.dumps(message).encode() \
                    if isinstance(message, dict) else message.encode()
                udp.sendto(data, (host, int(port)))
            hinted.put("u#lee", "todos", "t1", title="real", _v=1)
            assert poke_within(events, 20) == '{"head": 1}'  # read from the log, never 99
    # Nor did a datagram that is not JSON, or nested too deep to parse, fail in the loop.
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], caplog.text


def test_without_datagrams_a_page_is_still_poked_by_its_poll_for_another_process_append(
        dynamodb_local: DynamoDBLocal) -> None:
    # The fallback when datagrams are off or lost: the regular poll of the heads.
    prefix = f"ev{uuid.uuid4().hex[:8]}_"
    no_peers = {"PYSYNC_PEER_HOST": "", "PYSYNC_HEARTBEAT_S": "0.3",
                "PYSYNC_FEED_POLL_S": "0.02", "PYSYNC_EVENTS_POLL_S": "0.1"}
    with server_process(dynamodb_local.endpoint, prefix, feed=False, env=no_peers) as (url, _q), \
            server_process(dynamodb_local.endpoint, prefix, feed=True, env=no_peers), \
            httpx.Client(base_url=url, timeout=10) as http:
        store = Store.create(dynamodb_local, table_prefix=prefix)
        with http.stream("GET", "/v1/events", params={"ticket": ticket(http, "max")}) as r:
            events = Events(r)
            assert poke_within(events, 20) == '{"head": 0}'
            store.put("u#max", "todos", "t1", title="logged by the other process", _v=1)
            assert poke_within(events, 30) == '{"head": 1}'


def scope_owned_by(http: httpx.Client, user: str) -> str:
    auth = token(http, user)
    http.get("/v1/scopes", headers=auth).raise_for_status()  # signed in
    r = http.post("/v1/scopes", json={"title": "shared"}, headers=auth)
    assert r.status_code == 201, r.text
    scope: str = r.json()["scope"]
    return scope


def owner_and_signed_in_user(http: httpx.Client) -> tuple[str, str, str]:
    """(owner, another user who signed in, the owner's new scope)."""
    owner, member = f"own-{uuid.uuid4().hex[:6]}", f"mem-{uuid.uuid4().hex[:6]}"
    scope = scope_owned_by(http, owner)
    http.get("/v1/scopes", headers=token(http, member)).raise_for_status()
    return owner, member, scope


def share(http: httpx.Client, owner: str, scope: str, member: str, role: str) -> None:
    http.put(f"/v1/scopes/{scope}/members/{member}", json={"role": role},
             headers=token(http, owner)).raise_for_status()


def test_a_member_is_poked_when_a_shared_scope_moves(store: Store, http: httpx.Client
                                                     ) -> None:
    owner, member, scope = owner_and_signed_in_user(http)
    share(http, owner, scope, member, "viewer")
    with http.stream("GET", "/v1/events", params={"ticket": ticket(http, member)}) as r:
        events = Events(r)
        assert events.next_poke() == '{"head": 0}'
        assert events.next_poke() == json.dumps({"scope": scope, "head": 0})
        store.put(f"s#{scope}", "todos", "t1", title="by a backend job")
        assert poke_within(events, 20) == json.dumps({"scope": scope, "head": 1})


def test_a_scope_joined_while_connected_pokes_at_the_next_heartbeat(http: httpx.Client
                                                                    ) -> None:
    owner, member, scope = owner_and_signed_in_user(http)
    with http.stream("GET", "/v1/events", params={"ticket": ticket(http, member)}) as r:
        events = Events(r)
        assert events.next_poke() == '{"head": 0}'
        share(http, owner, scope, member, "editor")
        assert poke_within(events, 20) == json.dumps({"scope": scope, "head": 0})


@contextmanager
def removed_while_listening(http: httpx.Client) -> Iterator[tuple[Events, str, str]]:
    """A member's events stream, open (its opening pokes read) when the owner removes the
    member: (the stream's events, the scope, the member)."""
    owner, member, scope = owner_and_signed_in_user(http)
    share(http, owner, scope, member, "editor")
    with http.stream("GET", "/v1/events", params={"ticket": ticket(http, member)}) as r:
        events = Events(r)
        events.next_poke()
        events.next_poke()
        http.delete(f"/v1/scopes/{scope}/members/{member}",
                    headers=token(http, owner)).raise_for_status()
        yield events, scope, member


def test_a_removed_member_is_poked_once_so_the_page_pulls_its_revocation(
        http: httpx.Client) -> None:
    with removed_while_listening(http) as (events, scope, _):
        assert poke_within(events, 20) == json.dumps({"scope": scope, "head": 0})


def test_a_removed_member_is_no_longer_poked_for_the_scope(store: Store, http: httpx.Client
                                                           ) -> None:
    with removed_while_listening(http) as (events, scope, member):
        poke_within(events, 20)  # the last one, at the heartbeat that reads the memberships
        for _ in range(3):
            assert events.next() == ("comment", "heartbeat")
        store.put(f"s#{scope}", "todos", "t1", title="not for the removed member")
        store.put(f"u#{member}", "todos", "t1", title="for the member")
        assert poke_within(events, 20) == '{"head": 1}'
