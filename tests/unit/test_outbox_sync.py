"""The outbox and record rows against a simulated server, on CPython.

The server uses the `version` strategy (the strictest about base_version): a mutation whose
base_version is not the server's current version is a conflict. The client mirrors what
pysync.store does in its transactions, with the same pure functions. Random schedules mix
local edits, pushes, lost responses, failed sends, direct writes by another program and
pulls. Invariants: wire ids are consecutive (the server asserts it); with no other writer
there is never a conflict or a rejection (base versions are right, chained edits included);
and after quiescence the local view equals the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pysync.outbox import Entry, apply_op, take
from pysync.protocol import Mutation, MutationResult, PushResponse, ServerRecord
from pysync.rows import RecordRow, acknowledged, local_write, server_change

KEYS = ["a", "b", "c"]


@dataclass
class Server:
    items: dict[str, tuple[int, dict | None]] = field(default_factory=dict)
    last: int = 0
    statuses: list[str] = field(default_factory=list)

    def record(self, key: str) -> ServerRecord:
        version, value = self.items.get(key, (0, None))
        return ServerRecord("todos", key, version, value is None, value, f"s{version}")

    def push(self, mutations: list[Mutation]) -> PushResponse:
        results = []
        for m in mutations:
            if m.id <= self.last:
                results.append(MutationResult(m.id, "duplicate"))
                continue
            assert m.id == self.last + 1, f"mutation gap: {m.id} after {self.last}"
            self.last = m.id
            version, current = self.items.get(m.key, (0, None))
            if (m.base_version or 0) != version:
                results.append(MutationResult(m.id, "conflict", server=self.record(m.key)))
            elif m.op == "patch" and current is None:
                results.append(MutationResult(m.id, "rejected", error_code="not_found"))
            else:
                self.items[m.key] = (version + 1, apply_op(current, m.op, m.value))
                results.append(MutationResult(m.id, "applied", version=version + 1))
        self.statuses += [r.status for r in results]
        return PushResponse(self.last, tuple(results))

    def direct_write(self, key: str, value: dict | None) -> None:
        version, _ = self.items.get(key, (0, None))
        self.items[key] = (version + 1, value)


@dataclass
class Client:
    rows: dict[str, RecordRow] = field(default_factory=dict)
    outbox: dict[int, Entry] = field(default_factory=dict)
    next_order: int = 1
    next_id: int = 1
    clock: int = 0

    def write(self, key: str, op: str, value: dict | None) -> None:
        row = self.rows.get(key)
        if op == "patch" and (row is None or row.value is None):
            return  # NotFound: refused, nothing written
        self.clock += 1
        out = local_write(row, "todos", key, op, value, f"h{self.clock:06d}",  # type: ignore[arg-type]
                          self.next_order)
        self.next_order += out.used_order
        self._set(key, out.row)
        if out.put_entry is not None:
            self.outbox[out.put_entry.order] = out.put_entry
        if out.drop_entry is not None:
            del self.outbox[out.drop_entry]

    def _set(self, key: str, row: RecordRow | None) -> None:
        if row is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = row

    def take(self, limit: int) -> list[Mutation]:
        in_flight = [e for e in self.outbox.values() if e.wire_id is not None]
        pending = [e for e in self.outbox.values() if e.wire_id is None]
        versions = {("todos", k): r.version for k, r in self.rows.items() if not r.stale}
        taken = take(in_flight, pending, self.next_id, limit, versions)
        self.next_id = taken.next_mutation_id
        for e in taken.updated:
            self.outbox[e.order] = e
            row = self.rows[e.key]
            if row.pending is not None and row.pending.order == e.order:
                self.rows[e.key] = replace(row, pending=None)
        return [e.to_mutation() for e in taken.batch]

    def acknowledge(self, response: PushResponse) -> None:
        results = {r.id: r for r in response.results}
        done = sorted((e for e in self.outbox.values()
                       if e.wire_id is not None and e.wire_id <= response.last_mutation_id),
                      key=lambda e: e.wire_id or 0)
        for e in done:
            del self.outbox[e.order]
            row = self.rows.get(e.key)
            if row is None:
                continue
            later = [p] if (p := row.pending_entry()) else []
            result = results.get(e.wire_id or 0) or MutationResult(e.wire_id or 0, "duplicate")
            self._set(e.key, acknowledged(row, e, result, later))
        self.next_id = max(self.next_id, response.last_mutation_id + 1)

    def pull(self, server: Server) -> None:
        for key in server.items:
            entries = [e for e in self.outbox.values() if e.key == key]
            self._set(key, server_change(self.rows.get(key), server.record(key), entries))

    def view(self, key: str) -> dict | None:
        row = self.rows.get(key)
        return row.value if row else None


values = st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 9), min_size=1)
actions = st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from(KEYS),
              st.sampled_from(["put", "patch", "delete"]), values),
    st.tuples(st.sampled_from(["push", "push_lost", "send_failed"]), st.integers(1, 3)),
    st.tuples(st.just("pull")),
    st.tuples(st.just("direct"), st.sampled_from(KEYS), st.one_of(st.none(), values)),
), max_size=40)


def run(schedule: list[tuple]) -> tuple[Client, Server]:
    client, server = Client(), Server()
    for action in schedule:
        kind = action[0]
        if kind == "write":
            _, key, op, value = action
            client.write(key, op, None if op == "delete" else value)
        elif kind == "push":
            client.acknowledge(server.push(client.take(action[1])))
        elif kind == "push_lost":
            server.push(client.take(action[1]))  # applied, but the response never came
        elif kind == "send_failed":
            client.take(action[1])  # the request never reached the server
        elif kind == "pull":
            client.pull(server)
        else:
            server.direct_write(action[1], action[2])
    for _ in range(20):  # quiescence: push and pull until nothing is left
        if not client.outbox:
            break
        client.acknowledge(server.push(client.take(500)))
        client.pull(server)
    assert not client.outbox, "the outbox never drained"
    client.pull(server)
    return client, server


@settings(max_examples=300, deadline=None)
@given(actions)
def test_after_quiescence_the_local_view_equals_the_server(schedule: list[tuple]) -> None:
    client, server = run(schedule)
    for key in KEYS:
        assert client.view(key) == server.items.get(key, (0, None))[1], key
        row = client.rows.get(key)
        assert row is None or (row.entries == 0 and row.pending is None)


@settings(max_examples=300, deadline=None)
@given(actions.map(lambda s: [a for a in s if a[0] != "direct"]))
def test_with_no_other_writer_no_mutation_is_ever_a_conflict_or_rejected(
        schedule: list[tuple]) -> None:
    _, server = run(schedule)
    assert set(server.statuses) <= {"applied", "duplicate"}
