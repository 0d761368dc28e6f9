"""Conflicts, progress and "synced" as the app sees them (issue 10), with the real SyncClient,
store and outbox on CPython over the in-memory IndexedDB twin, against the real server
(uvicorn on a real socket, the change feed running, DynamoDB Local).

Two devices are two MemoryStorages; two tabs of one device are two databases (and clients)
on one MemoryStorage: they share its IndexedDB, BroadcastChannel and Web Locks. A device's
edits are kept from the server with `client.pause()` while the other device's edit lands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import pysync
from pysync import ConflictEvent, SyncError
from pysync.client import SyncClient, SyncStatus, dev_token_provider
from pysync.memdb import MemoryStorage
from pysync.schema import Collection, Resolver, Schema
from pysync.store import Database
from tests.server.feed_support import Store
from tests.server.test_client_twin import SCHEMA, eventually, new_user

pytestmark = pytest.mark.dynamodb



def schema_with(resolve: Resolver | None) -> Schema:
    """The server's schema (SCHEMA), with `resolve` on the `version` collection: a resolver
    lives only in the client (the server ignores it)."""
    return Schema(Collection("todos"), Collection("accounts", strategy="version",
                                                  resolve=resolve),
                  Collection("docs", strategy="lww"))


class Device:
    def __init__(self, db: Database, client: SyncClient) -> None:
        self.db = db
        self.client = client
        self.events: list[ConflictEvent] = []
        self.statuses: list[SyncStatus] = []


@asynccontextmanager
async def device(url: str, user: str, storage: MemoryStorage | None = None,
                 schema: Schema = SCHEMA, **options: Any) -> AsyncIterator[Device]:
    """A database of `user` on `storage` (a new device by default) and a started client
    that records its conflict events and statuses."""
    db = await pysync.open_database(f"app:{user}", schema, storage=storage or MemoryStorage())
    box: list[Device] = []
    client = SyncClient(db, url, dev_token_provider(url, user),
                        on_conflict=lambda e: box[0].events.append(e),
                        on_status=lambda s: box[0].statuses.append(s), **options)
    box.append(Device(db, client))
    await client.start()
    try:
        yield box[0]
    finally:
        await client.stop()
        db.close()


def number(item: dict[str, Any] | None, name: str) -> int | None:
    return None if item is None or name not in item else int(item[name]["N"])


async def shared(a: Device, b: Device, collection: str, key: str,
                 value: dict[str, Any]) -> None:
    """`value` written on `a`, until both devices hold it."""
    await a.db.collection(collection).put(key, value)
    await a.client.synced(timeout=30)

    async def both() -> bool:
        return await b.db.collection(collection).get(key) == value

    await eventually(both, b.client)


async def concurrent(a: Device, b: Device, collection: str, key: str,
                     edit_a: dict[str, Any], edit_b: dict[str, Any], *,
                     b_patches: bool = True) -> None:
    """`a` edits offline (paused), then `b` edits and syncs, then `a` syncs: `b`'s edit
    reaches the server first, `a`'s has the older stamp."""
    a.client.pause()
    await a.db.collection(collection).patch(key, edit_a)
    await asyncio.sleep(0.01)  # b's stamp after a's (the HLC's wall clock moves on)
    if b_patches:
        await b.db.collection(collection).patch(key, edit_b)
    else:
        await b.db.collection(collection).put(key, edit_b)
    await b.client.synced(timeout=30)
    a.client.resume()
    await a.client.synced(timeout=30)


# ---- version: the resolver -------------------------------------------------------------------

def test_the_resolver_gets_local_server_and_base_and_its_result_reaches_both_devices(
        twin_url: str, twin_store: Store) -> None:
    user = new_user()
    calls: list[tuple[Any, Any, Any]] = []

    def add_both(local: Any, server: Any, base: Any) -> dict[str, Any]:
        calls.append((local, server, base))
        return {**server, "balance": server["balance"] + local["balance"] - base["balance"]}

    async def main() -> None:
        schema = schema_with(add_both)
        async with device(twin_url, user, schema=schema) as a, \
                device(twin_url, user, schema=schema) as b:
            await shared(a, b, "accounts", "acc", {"balance": 10, "owner": "ann"})
            await concurrent(a, b, "accounts", "acc", {"balance": 15}, {"balance": 12})
            assert calls == [({"balance": 15, "owner": "ann"}, {"balance": 12, "owner": "ann"},
                              {"balance": 10, "owner": "ann"})]
            item = twin_store.item(f"u#{user}", "accounts", "acc")
            assert number(item, "balance") == 17  # in DynamoDB when synced() returns

            async def converged() -> bool:
                return await b.db.collection("accounts").get("acc") == \
                    {"balance": 17, "owner": "ann"}

            await eventually(converged, b.client)
            assert await a.db.collection("accounts").get("acc") == \
                {"balance": 17, "owner": "ann"}
            assert [(e.kind, e.strategy, e.local, e.server, e.result, e.error)
                    for e in a.events] == [
                ("conflict", "version", {"balance": 15, "owner": "ann"},
                 {"balance": 12, "owner": "ann"}, {"balance": 17, "owner": "ann"}, None)]
            assert b.events == []

    asyncio.run(main())


def test_a_coroutine_resolver_is_awaited_and_none_deletes(twin_url: str, twin_store: Store) -> None:
    user = new_user()

    async def drop(local: Any, server: Any, base: Any) -> None:
        await asyncio.sleep(0)
        return None

    async def main() -> None:
        schema = schema_with(drop)
        async with device(twin_url, user, schema=schema) as a, \
                device(twin_url, user, schema=schema) as b:
            await shared(a, b, "accounts", "acc", {"balance": 10})
            await concurrent(a, b, "accounts", "acc", {"balance": 15}, {"balance": 12})
            item = twin_store.item(f"u#{user}", "accounts", "acc")
            assert item is not None
            assert item.get("_del", {}).get("BOOL") is True
            assert await a.db.collection("accounts").get("acc") is None
            assert [(e.kind, e.result) for e in a.events] == [("conflict", None)]

    asyncio.run(main())


def test_a_raising_resolver_keeps_the_server_copy_and_reports_it(twin_url: str,
                                                                  twin_store: Store) -> None:
    user = new_user()

    def broken(local: Any, server: Any, base: Any) -> dict[str, Any]:
        raise ValueError("cannot decide")

    async def main() -> None:
        schema = schema_with(broken)
        async with device(twin_url, user, schema=schema) as a, \
                device(twin_url, user, schema=schema) as b:
            await shared(a, b, "accounts", "acc", {"balance": 10})
            await concurrent(a, b, "accounts", "acc", {"balance": 15}, {"balance": 12})
            assert await a.db.collection("accounts").get("acc") == {"balance": 12}
            assert await a.db.pending_count() == 0
            assert number(twin_store.item(f"u#{user}", "accounts", "acc"), "balance") == 12
            assert [(e.kind, e.local, e.server, e.result, e.error) for e in a.events] == [
                ("conflict", {"balance": 15}, {"balance": 12}, {"balance": 12},
                 "ValueError: cannot decide")]

    asyncio.run(main())


def test_without_a_resolver_the_server_copy_is_kept_and_reported(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        async with device(twin_url, user) as a, device(twin_url, user) as b:
            await shared(a, b, "accounts", "acc", {"balance": 10})
            await concurrent(a, b, "accounts", "acc", {"balance": 15}, {"balance": 12})
            assert await a.db.collection("accounts").get("acc") == {"balance": 12}
            assert [(e.kind, e.result, e.error) for e in a.events] == \
                [("conflict", {"balance": 12}, None)]

    asyncio.run(main())


def test_a_resolution_goes_before_a_later_edit_of_the_record(
        twin_url: str, twin_store: Store) -> None:
    user = new_user()

    def keep_local(local: Any, server: Any, base: Any) -> Any:
        return local

    async def main() -> None:
        schema = schema_with(keep_local)
        async with device(twin_url, user, schema=schema) as a, \
                device(twin_url, user, schema=schema) as b:
            await shared(a, b, "accounts", "acc", {"balance": 10, "note": ""})
            a.client.pause()
            await a.db.collection("accounts").patch("acc", {"balance": 15})
            await b.db.collection("accounts").patch("acc", {"balance": 12})
            await b.client.synced(timeout=30)
            # Sent, refused; meanwhile another edit of the record waits in the outbox.
            a.client.resume()
            await a.client.synced(timeout=30)
            await a.db.collection("accounts").patch("acc", {"note": "later"})
            await a.client.synced(timeout=30)
            item = twin_store.item(f"u#{user}", "accounts", "acc")
            assert (number(item, "balance"), item and item["note"]["S"]) == (15, "later")

    asyncio.run(main())


# ---- merge, lww, rejected ---------------------------------------------------------------------

def test_an_lww_edit_that_lost_to_a_newer_stamp_is_reported_once(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        async with device(twin_url, user) as a, device(twin_url, user) as b:
            await shared(a, b, "docs", "d1", {"body": "first"})
            await concurrent(a, b, "docs", "d1", {"body": "from a"}, {"body": "from b"},
                             b_patches=False)
            assert await a.db.collection("docs").get("d1") == {"body": "from b"}
            await a.client.sync_now()
            assert [(e.kind, e.strategy, e.local, e.server, e.result) for e in a.events] == [
                ("overwritten", "lww", {"body": "from a"}, {"body": "from b"},
                 {"body": "from b"})]
            assert b.events == []

    asyncio.run(main())


def test_a_merge_edit_whose_every_field_lost_is_reported_once(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        async with device(twin_url, user) as a, device(twin_url, user) as b:
            await shared(a, b, "todos", "t1", {"title": "Milk", "done": False})
            await concurrent(a, b, "todos", "t1", {"title": "Oat milk"}, {"title": "Soy milk"})
            await a.client.sync_now()
            assert [(e.kind, e.strategy, e.local, e.result) for e in a.events] == [
                ("overwritten", "merge", {"title": "Oat milk", "done": False},
                 {"title": "Soy milk", "done": False})]
            assert b.events == []

    asyncio.run(main())


def test_a_merge_field_overwritten_by_a_newer_stamp_is_reported_when_the_rest_applied(
        twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        async with device(twin_url, user) as a, device(twin_url, user) as b:
            await shared(a, b, "todos", "t1", {"title": "Milk", "done": False})
            await concurrent(a, b, "todos", "t1", {"title": "Oat milk", "done": True},
                             {"title": "Soy milk"})

            async def reported() -> bool:
                return bool(a.events)

            await eventually(reported, a.client)  # the pull that brings a's version
            assert await a.db.collection("todos").get("t1") == \
                {"title": "Soy milk", "done": True}
            await eventually(lambda: _settled(a), a.client)
            assert [(e.kind, e.strategy, e.local, e.result) for e in a.events] == [
                ("overwritten", "merge", {"title": "Oat milk", "done": True},
                 {"title": "Soy milk", "done": True})]

    asyncio.run(main())


async def _settled(d: Device) -> bool:
    return await d.db.pending_count() == 0


def test_a_rejected_mutation_is_reported_with_its_code(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        async with device(twin_url, user) as a, device(twin_url, user) as b:
            await shared(a, b, "todos", "t1", {"title": "Milk"})
            a.client.pause()
            await a.db.collection("todos").patch("t1", {"done": True})
            await b.db.collection("todos").delete("t1")
            await b.client.synced(timeout=30)
            a.client.resume()
            await a.client.synced(timeout=30)
            assert [(e.kind, e.strategy, e.local, e.error) for e in a.events] == [
                ("rejected", "merge", {"title": "Milk", "done": True}, "deleted")]

    asyncio.run(main())


def test_every_tab_of_the_database_gets_the_events(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        storage = MemoryStorage()
        async with device(twin_url, user, storage) as a, device(twin_url, user, storage) as tab2, \
                device(twin_url, user) as b:
            assert a.client.status.leader
            assert not tab2.client.status.leader
            await shared(a, b, "docs", "d1", {"body": "first"})
            await concurrent(a, b, "docs", "d1", {"body": "from a"}, {"body": "from b"},
                             b_patches=False)

            async def forwarded() -> bool:
                await asyncio.sleep(0)
                return bool(tab2.events)

            await eventually(forwarded)
            assert tab2.events == a.events
            assert len(a.events) == 1

    asyncio.run(main())


# ---- progress, synced(), sync_now(), pause() ---------------------------------------------------

def test_progress_counts_up_to_the_total_during_a_first_sync(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        async with device(twin_url, user) as a:
            await a.db.collection("todos").put_many({f"t{i:02}": {"n": i} for i in range(30)})
            await a.client.synced(timeout=30)
        before = int(time.time() * 1000)
        async with device(twin_url, user, pull_limit=7) as fresh:
            await fresh.client.synced(timeout=30)
            progress = [s.progress for s in fresh.statuses if s.progress is not None]
            received = [p[0] for p in progress]
            assert received == sorted(received)
            assert progress[-1] == (30, 30)
            assert progress[0][1] == 30
            assert fresh.client.status.progress is None
            assert (fresh.client.status.last_synced_at or 0) >= before
            assert len(await fresh.db.collection("todos").query()) == 30

    asyncio.run(main())


def test_synced_in_a_tab_that_does_not_sync_returns_once_dynamodb_holds_its_write(
        twin_url: str, twin_store: Store) -> None:
    user = new_user()

    async def main() -> None:
        storage = MemoryStorage()
        async with device(twin_url, user, storage) as leader, \
                device(twin_url, user, storage) as tab2:
            assert leader.client.status.leader
            assert not tab2.client.status.leader
            await tab2.db.collection("accounts").put("acc", {"balance": 3})
            await tab2.client.synced(timeout=30)
            assert number(twin_store.item(f"u#{user}", "accounts", "acc"), "balance") == 3

    asyncio.run(main())


def test_sync_now_in_a_tab_that_does_not_sync_waits_for_the_leaders_round(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        storage = MemoryStorage()
        async with device(twin_url, user, storage) as leader, \
                device(twin_url, user, storage) as tab2:
            await leader.client.synced(timeout=30)
            before = int(time.time() * 1000)
            await tab2.client.sync_now()
            assert (leader.client.status.last_synced_at or 0) >= before
            # The tab that syncs shares how it goes: this tab saw that round end.
            assert (tab2.client.status.last_synced_at or 0) >= before

    asyncio.run(main())


def test_synced_raises_sync_error_on_timeout(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        async with device(twin_url, user) as a:
            a.client.pause()
            await a.db.collection("todos").put("t1", {"title": "waits"})
            with pytest.raises(SyncError) as e:
                await a.client.synced(timeout=0.5)
            assert e.value.code == "timeout"

    asyncio.run(main())


def test_pause_makes_no_request_and_resume_pushes_what_waited(
        twin_url: str, twin_store: Store) -> None:
    user = new_user()
    requests: list[str] = []

    async def count(request: httpx.Request) -> None:
        requests.append(f"{request.method} {request.url.path}")

    async def main() -> None:
        async with httpx.AsyncClient(event_hooks={"request": [count]}) as http, \
                device(twin_url, user, http=http) as a:
            await a.client.synced(timeout=30)
            a.client.pause()
            assert a.client.status.paused
            seen = len(requests)
            await a.db.collection("todos").put("t1", {"title": "offline"})
            with pytest.raises(SyncError) as e:
                await a.client.sync_now()
            assert e.value.code == "paused"
            await asyncio.sleep(1.0)  # a bounded look for requests that must not come
            assert requests[seen:] == []
            assert await a.db.pending_count() == 1
            a.client.resume()
            await a.client.synced(timeout=30)
            assert "POST /v1/push" in requests[seen:]
            assert twin_store.item(f"u#{user}", "todos", "t1") is not None

    asyncio.run(main())


def test_a_tab_closed_while_the_resolver_runs_asks_it_again_after_the_reopen(
        twin_url: str, twin_store: Store) -> None:
    user = new_user()
    calls: list[tuple[Any, Any, Any]] = []
    storage = MemoryStorage()

    def add_both(local: Any, server: Any, base: Any) -> dict[str, Any]:
        calls.append((local, server, base))
        if len(calls) == 1:
            storage.crash()  # the tab closes while the resolver runs: nothing is stored
        return {"balance": server["balance"] + local["balance"] - base["balance"]}

    async def main() -> None:
        schema = schema_with(add_both)
        async with device(twin_url, user, schema=schema) as b:
            async with device(twin_url, user, storage, schema=schema) as a:
                await shared(a, b, "accounts", "acc", {"balance": 10})
                a.client.pause()
                await a.db.collection("accounts").patch("acc", {"balance": 15})
                await b.db.collection("accounts").patch("acc", {"balance": 12})
                await b.client.synced(timeout=30)
                a.client.resume()

                async def asked() -> bool:
                    await asyncio.sleep(0.05)
                    return bool(calls)

                await eventually(asked)
            async with device(twin_url, user, storage, schema=schema) as reopened:
                await reopened.client.synced(timeout=30)
                assert number(twin_store.item(f"u#{user}", "accounts", "acc"), "balance") == 17
                assert calls == [({"balance": 15}, {"balance": 12}, {"balance": 10})] * 2
                assert [(e.kind, e.result) for e in reopened.events] == \
                    [("conflict", {"balance": 17})]

    asyncio.run(main())


def test_synced_raises_when_the_client_stops_meanwhile(twin_url: str) -> None:
    user = new_user()

    async def main() -> None:
        async with device(twin_url, user) as a:
            a.client.pause()
            await a.db.collection("todos").put("t1", {"title": "waits"})
            waiting = asyncio.ensure_future(a.client.synced(timeout=30))
            await asyncio.sleep(0.1)
            await a.client.stop()
            with pytest.raises(SyncError) as e:
                await waiting
            assert e.value.code == "stopped"

    asyncio.run(main())


class LoseFirstPushAnswer(httpx.AsyncBaseTransport):
    """Fault injection (the real network cannot lose an answer on cue): the first push whose
    answer has a result of `status` reaches the real server, which commits it, and its
    answer is lost; the client's retry is answered `duplicate`."""

    def __init__(self, status: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.status = status
        self.lost = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == "/v1/push" and not self.lost:
            body = await response.aread()
            if f'"status":"{self.status}"' in body.decode():
                self.lost = True
                raise httpx.ReadError("the answer was lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_conflict_whose_answer_was_lost_is_resolved_after_the_duplicate_answer(
        twin_url: str, twin_store: Store) -> None:
    user = new_user()
    calls: list[tuple[Any, Any, Any]] = []

    def add_both(local: Any, server: Any, base: Any) -> dict[str, Any]:
        calls.append((local, server, base))
        return {"balance": server["balance"] + local["balance"] - base["balance"]}

    async def main() -> None:
        schema = schema_with(add_both)
        fault = LoseFirstPushAnswer("conflict")
        async with httpx.AsyncClient(transport=fault) as http, \
                device(twin_url, user, schema=schema, http=http) as a, \
                device(twin_url, user, schema=schema) as b:
            await shared(a, b, "accounts", "acc", {"balance": 10})
            await concurrent(a, b, "accounts", "acc", {"balance": 15}, {"balance": 12})
            assert fault.lost
            assert calls == [({"balance": 15}, {"balance": 12}, {"balance": 10})]
            assert number(twin_store.item(f"u#{user}", "accounts", "acc"), "balance") == 17
            assert [(e.kind, e.result) for e in a.events] == [("conflict", {"balance": 17})]

    asyncio.run(main())


def test_an_applied_write_whose_answer_was_lost_is_no_conflict(
        twin_url: str, twin_store: Store) -> None:
    user = new_user()

    async def main() -> None:
        fault = LoseFirstPushAnswer("applied")
        async with httpx.AsyncClient(transport=fault) as http, \
                device(twin_url, user, http=http) as a:
            await a.db.collection("accounts").put("acc", {"balance": 1.5, "n": 2})
            await a.client.synced(timeout=30)
            await a.db.collection("accounts").patch("acc", {"balance": 2.25})
            await a.client.synced(timeout=30)
            assert fault.lost
            assert number(twin_store.item(f"u#{user}", "accounts", "acc"), "n") == 2
            assert a.events == []

    asyncio.run(main())
