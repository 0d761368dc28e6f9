"""Several real server processes (`python -m server`) on one DynamoDB Local: pokes across
processes, and the stream lease taken over when the process working it dies."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest

from server.dynamo_local import DynamoDBLocal
from server.tables import TableNames
from tests.server.feed_support import Store, entries_summary
from tests.server.test_events import Events
from tests.support import server_process as support_server_process
from tests.support import wait_until

pytestmark = pytest.mark.dynamodb

FAST = {"PYSYNC_FEED_POLL_S": "0.02", "PYSYNC_EVENTS_POLL_S": "0.05", "PYSYNC_LEASE_S": "1",
        "PYSYNC_HEARTBEAT_S": "1"}


@contextmanager
def server_process(local: DynamoDBLocal, prefix: str, *, feed: bool) -> Iterator[tuple[str, Any]]:
    with support_server_process(local.endpoint, prefix, feed=feed, env=FAST) as started:
        yield started


def auth(url: str, user: str) -> dict[str, str]:
    token = httpx.post(f"{url}/v1/dev/token", json={"user": user}).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def test_a_page_on_one_process_is_poked_for_a_change_appended_by_another(
        dynamodb_local: DynamoDBLocal) -> None:
    prefix = f"mp{uuid.uuid4().hex[:8]}_"
    with ExitStack() as stack:
        writer_url, _ = stack.enter_context(server_process(dynamodb_local, prefix, feed=True))
        reader_url, _ = stack.enter_context(server_process(dynamodb_local, prefix, feed=False))
        store = Store.create(dynamodb_local, table_prefix=prefix)
        headers = auth(writer_url, "erin")  # a token of one process works on the other
        ticket = httpx.post(f"{writer_url}/v1/events/ticket", headers=headers).json()["ticket"]
        with httpx.Client(base_url=reader_url, timeout=10) as http:
            first = http.get("/v1/pull", params={"client_id": "erin-1"}, headers=headers).json()
            with http.stream("GET", "/v1/events", params={"ticket": ticket}) as r:
                assert r.status_code == 200  # the ticket was issued by the other process
                events = Events(r)
                assert events.next_poke() == '{"head": 0}'
                store.put("u#erin", "todos", "t1", title="appended by the other process")
                assert events.next_poke() == '{"head": 1}'
            out = http.get("/v1/pull", params={"client_id": "erin-1", "cursor": first["cursor"]},
                           headers=headers).json()
        assert [c["value"] for c in out["changes"]] == [{"title": "appended by the other process"}]


def _lease_owner_pid(store: Store) -> int | None:
    out = store.ctx.dynamodb.scan(TableName=store.ctx.tables.feed)["Items"]
    owners = [i["owner"]["S"] for i in out if i["pk"]["S"].startswith("lease#") and "owner" in i]
    return int(owners[0].split(":")[1]) if owners else None


def test_the_other_process_takes_over_the_stream_when_the_first_dies(
        dynamodb_local: DynamoDBLocal) -> None:
    prefix = f"mp{uuid.uuid4().hex[:8]}_"
    with ExitStack() as stack:
        one = stack.enter_context(server_process(dynamodb_local, prefix, feed=True))
        two = stack.enter_context(server_process(dynamodb_local, prefix, feed=True))
        store = Store.create(dynamodb_local, table_prefix=prefix)
        assert store.ctx.tables == TableNames.with_prefix(prefix)
        store.put("u#finn", "todos", "t1", _v=1)
        wait_until(lambda: len(store.log("u#finn")) == 1)
        owner = wait_until(lambda: _lease_owner_pid(store))
        (dead_url, dead), (alive_url, _) = (one, two) if one[1].pid == owner else (two, one)
        dead.send_signal(signal.SIGKILL)  # no clean shutdown: the lease must expire
        dead.wait()
        store.put("u#finn", "todos", "t2", _v=1)
        store.put("u#finn", "todos", "t1", _v=2)
        wait_until(lambda: len(store.log("u#finn")) == 3, timeout=30)
        assert _lease_owner_pid(store) != owner
        assert entries_summary(store.log("u#finn")) == [
            (1, "todos#t1", 1, False), (2, "todos#t2", 1, False), (3, "todos#t1", 2, False)]
        headers = auth(alive_url, "finn")
        out = httpx.get(f"{alive_url}/v1/pull", params={"client_id": "finn-1"},
                        headers=headers).json()
        assert sorted((c["key"], c["version"]) for c in out["changes"]) == \
            [("t1", 2), ("t2", 1)]
        assert dead_url != alive_url
