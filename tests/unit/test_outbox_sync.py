"""The real store and outbox (pysync.store over the in-memory IndexedDB twin) against a model
of the server's push contract, on CPython.

The client is the real code: `Database` writes, `Outbox.take` / `acknowledge` / `release`,
`apply_server_changes`, crashes and reopens of the twin. The server is a model of the push
contract (docs/api.md) with the `version` strategy, the strictest about base_version: a
mutation whose base_version is not the server's current version is a conflict. (The same
client against the real server and DynamoDB Local: tests/server/test_client_twin.py.)

Random schedules mix local edits, pushes, lost responses, failed sends, crashes, direct
writes by another program and pulls. Invariants: wire ids are consecutive (the model
asserts it); with no other writer there is never a conflict or a rejection (base versions
are right, chained edits included); and after quiescence the local view equals the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import pysync
from pysync.errors import NotFound
from pysync.hlc import HybridClock
from pysync.memdb import MemoryStorage
from pysync.outbox import apply_op
from pysync.protocol import Mutation, MutationResult, PushResponse, ServerRecord
from pysync.replica import Replica
from pysync.schema import Collection, Schema
from pysync.store import Database

KEYS = ["a", "b", "c"]
SCHEMA = Schema(Collection("todos", strategy="version"))


@dataclass
class Server:
    """The push contract in a few lines: exactly-once by wire id, versions, conflicts."""

    items: dict[str, tuple[int, dict[str, Any] | None, str]] = field(default_factory=dict)
    last: int = 0
    statuses: list[str] = field(default_factory=list)
    clock: HybridClock = field(default_factory=lambda: HybridClock("server"))

    def record(self, key: str) -> ServerRecord:
        version, value, hlc = self.items.get(key, (0, None, ""))
        return ServerRecord("todos", key, version, value is None, value, hlc or None)

    def push(self, mutations: tuple[Mutation, ...]) -> PushResponse:
        results = []
        for m in mutations:
            if m.id <= self.last:
                results.append(MutationResult(m.id, "duplicate"))
                continue
            assert m.id == self.last + 1, f"mutation gap: {m.id} after {self.last}"
            self.last = m.id
            version, current, _ = self.items.get(m.key, (0, None, ""))
            if (m.base_version or 0) != version:
                results.append(MutationResult(m.id, "conflict", server=self.record(m.key)))
            elif m.op == "patch" and current is None:
                results.append(MutationResult(m.id, "rejected", error_code="not_found"))
            else:
                self._set(m.key, apply_op(current, m.op, m.value))
                results.append(MutationResult(m.id, "applied", version=version + 1))
        self.statuses += [r.status for r in results]
        return PushResponse(self.last, tuple(results))

    def direct_write(self, key: str, value: dict[str, Any] | None) -> None:
        self._set(key, value)

    def _set(self, key: str, value: dict[str, Any] | None) -> None:
        version = self.items.get(key, (0, None, ""))[0]
        self.items[key] = (version + 1, value, str(self.clock.now()))

    def changes(self) -> list[ServerRecord]:
        return [self.record(k) for k in sorted(self.items)]


@dataclass
class Device:
    """One device: the real Database on a twin storage that may crash."""

    storage: MemoryStorage
    db: Database

    @classmethod
    async def open(cls) -> Device:
        storage = MemoryStorage()
        return cls(storage, await pysync.open_database("todo", SCHEMA, storage=storage))

    async def crash(self) -> None:
        self.storage.crash()
        self.db = await pysync.open_database("todo", SCHEMA, storage=self.storage)

    async def write(self, key: str, op: str, value: dict[str, Any]) -> None:
        todos = self.db.collection("todos")
        if op == "put":
            await todos.put(key, value)
        elif op == "delete":
            await todos.delete(key)
        else:
            with contextlib.suppress(NotFound):  # refused, nothing written
                await todos.patch(key, value)

    async def pull(self, server: Server) -> None:
        await Replica(self.db).apply_server_changes(server.changes())


values = st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 9), min_size=1)
actions = st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from(KEYS),
              st.sampled_from(["put", "patch", "delete"]), values),
    st.tuples(st.sampled_from(["push", "push_lost", "send_failed", "push_crash"]),
              st.integers(1, 3)),
    st.tuples(st.just("pull")),
    st.tuples(st.just("crash")),
    st.tuples(st.just("direct"), st.sampled_from(KEYS), st.one_of(st.none(), values)),
), max_size=40)


async def run(schedule: list[tuple[Any, ...]]) -> tuple[Device, Server]:
    device, server = await Device.open(), Server()
    for action in schedule:
        kind = action[0]
        outbox = Replica(device.db)
        if kind == "write":
            await device.write(action[1], action[2], action[3])
        elif kind == "push":
            request = await outbox.take(action[1])
            await outbox.acknowledge(server.push(request.mutations))
        elif kind == "push_lost":  # applied, but the response never came: the client
            server.push((await outbox.take(action[1])).mutations)  # releases, as after
            await outbox.release()  # any failed send
        elif kind == "send_failed":  # the request never reached the server
            await outbox.take(action[1])
            await outbox.release()
        elif kind == "push_crash":  # applied, then the device died before the response
            server.push((await outbox.take(action[1])).mutations)
            await device.crash()
        elif kind == "crash":
            await device.crash()
        elif kind == "pull":
            await device.pull(server)
        else:
            server.direct_write(action[1], action[2])
    for _ in range(20):  # quiescence: push and pull until nothing is left
        if not await device.db.pending_count():
            break
        request = await Replica(device.db).take(500)
        await Replica(device.db).acknowledge(server.push(request.mutations))
        await device.pull(server)
    assert not await device.db.pending_count(), "the outbox never drained"
    await device.pull(server)
    return device, server


@settings(max_examples=300, deadline=None)
@given(actions)
def test_after_quiescence_the_local_view_equals_the_server(schedule: list[tuple[Any, ...]]
                                                           ) -> None:
    async def main() -> None:
        device, server = await run(schedule)
        docs = {d.key: d for d in await device.db.collection("todos").query()}
        for key in KEYS:
            version, value, _ = server.items.get(key, (0, None, ""))
            assert await device.db.collection("todos").get(key) == value, key
            if value is not None:
                assert (docs[key].version, docs[key].pending) == (version, False), key

    asyncio.run(main())


@settings(max_examples=300, deadline=None)
@given(actions.map(lambda s: [a for a in s if a[0] != "direct"]))
def test_with_no_other_writer_no_mutation_is_ever_a_conflict_or_rejected(
        schedule: list[tuple[Any, ...]]) -> None:
    _, server = asyncio.run(run(schedule))
    assert set(server.statuses) <= {"applied", "duplicate"}
