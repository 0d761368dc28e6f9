"""One seeded history: devices, the network between them and the server, faults, the driver.

Everything a history does is drawn from one `random.Random(seed)`: how many users and
devices, each device's clock skew and client id, the operations, the faults and their order.
The driver is one coroutine that runs one step at a time and, after each step, waits until
every SyncClient is idle again, so at most one round talks to the server at any moment and
the server sees the requests in the same order on every replay. The change feed does not
run in a thread: the driver runs its passes (`drain`) at its own steps.

What a replay does not reproduce exactly (outside the seed): DynamoDB Local's timing (when a
write shows in its stream; the driver drains the feed to the stream's tip, so the log's
content is the same, its internal timing is not), the server's own wall clock (its HLC, the
stamps it gives when it clamps a stamp or the feed stamps another program's write, the
cursors' times), and the order of stream shards. Device clocks are virtual: the history's
start (real time) plus simulated milliseconds the driver advances plus the device's skew, so
the stamps of device writes differ between replays only by that start.

Faults (network ones are drawn per request while faults are on):
- drop_request       the request never reaches the server (the client sees a connect error)
- drop_response      the server handled it (committed), the response is lost
- duplicate          the request reaches the server twice; the client gets the second answer
- delay              a push is held in the network (the client times out) and delivered to the
                     server later, after other requests: rounds reach the server reordered
- crash_in_round     the device's storage crashes during a request, before or after the
                     server handled it; the objects are dropped and the database reopened
- crash              the same between rounds
- offline/online     the device's network goes away / comes back
- server_restart     a new app (new ServerContext, puller, feed object) on the same tables
- external_*         another program's boto3 put/update/delete on the items table
- epoch_bump         the store epoch moves (server/changelog.bump_epoch): every cursor resets
- retention_passed   the server's pull clock jumps past the log retention: cursors reset
- skew               each device's clock is off by one of SKEWS_S (beyond the 60 s clamp too)

Shared scopes (docs/sharing.md): in some histories of 2-3 users, one or two users each own a
shared scope (its id drawn from the seed). The `scope` steps go through the devices' real
SyncClient calls, over the same faulty network: the owner creates the scope (again: an
idempotent retry), shares it with another user as editor or viewer, changes a member's role,
removes a member; a member leaves; now and then someone who may not tries (a member sharing,
the owner leaving: refused, nothing changes). Writes go to the personal scope or to a shared
one, the user's or not (viewers and non-members try, removed members' devices hold pending
writes); another program writes into shared scopes too. The memberships' history is what the
server answered (recorded where the network hands the answer over, before any fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from types import SimpleNamespace
from typing import Any
from unittest import mock

import httpx

import pysync
from pysync.client import SyncClient, dev_token_provider
from pysync.conflicts import ConflictEvent
from pysync.engine import Backoff
from pysync.errors import NotFound, SyncError
from pysync.hlc import MAX_CLOCK_SKEW_MS, Stamp
from pysync.memdb import MemoryStorage
from pysync.replica import Replica
from pysync.rows import RecordRow
from pysync.schema import Collection, Schema, local_name, split_local_name
from pysync.store import Database
from server.app import create_app
from server.changelog import bump_epoch
from server.codec import record_value
from server.context import ServerContext
from server.dynamo_local import DynamoDBLocal
from server.items import record_fields, split_sort_key
from server.pull import Puller
from tests.server.feed_support import Store, drain
from tests.sim.model import (
    END,
    ExternalWrite,
    Final,
    FinalItem,
    History,
    LocalWrite,
    LogEntry,
    Outcome,
    Sent,
    Verdict,
    judge,
    norm,
)

SCHEMA = Schema(Collection("notes"), Collection("docs", strategy="lww"),
                Collection("accounts", strategy="version"))
STRATEGIES = {c.name: c.strategy for c in SCHEMA}
KEYS = ("a", "b", "c")  # few keys: devices contend for the same records
FIELDS = ("x", "y", "z")
SKEWS_S = (-300, -120, -30, -5, 0, 0, 0, 5, 30, 55, 120, 300)  # s; > 60: clamped
BASE_URL = "http://sim.invalid"
# Rounds are driven: a failed round is retried when the driver says so (sync_now, online),
# never after a timer that would race the driver.
NO_TIMED_RETRY = Backoff(base_s=3600.0, cap_s=3600.0)

# Per-request fault probabilities while faults are on.
NETWORK_FAULTS = (("drop_request", 0.05), ("drop_response", 0.05), ("duplicate", 0.05),
                  ("delay", 0.04), ("crash_in_round", 0.025))
# Step kinds and weights.
STEPS = (("write", 50), ("sync", 18), ("toggle_network", 6), ("feed", 8), ("crash", 2),
         ("server_restart", 1.5), ("external", 6), ("epoch_bump", 1), ("retention_passed", 1),
         ("deliver_delayed", 3), ("scope", 10))
SHARED_SCOPES = (0, 1, 1, 2)  # how many shared scopes a history of 2-3 users has (drawn)
SHARED_WRITES = 0.45  # the share of writes into a shared scope, when the history has some
SCOPE_ACTIONS = (("create", 0.5), ("share", 4), ("unshare", 2.5), ("leave", 1.5),
                 ("refused", 0.5))


@dataclass
class Device:
    name: str
    user: str
    storage: MemoryStorage
    skew_ms: int
    world: World
    client_id: str = ""
    db: Database | None = None
    client: SyncClient | None = None
    http: httpx.AsyncClient | None = None
    crashed: bool = False

    def clock(self) -> int:
        return self.world.start_ms + self.world.sim_ms + self.skew_ms

    @property
    def online(self) -> bool:
        return self.storage.local_platform.online()


class Network(httpx.AsyncBaseTransport):
    """The network between one device and the server app, with the seeded faults."""

    def __init__(self, world: World, device: Device | None) -> None:
        self.world = world
        self.device = device

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        w, d = self.world, self.device
        path = request.url.path
        body = await request.aread()
        if path.startswith("/v1/events"):
            # Pokes would start rounds behind the driver's back: the driver syncs instead.
            raise httpx.ConnectError("no event stream in the simulation", request=request)
        if d is not None and not d.online:
            # An offline device's app call (share, unshare) fails as in a browser; its
            # SyncClient sends nothing while offline.
            raise httpx.ConnectError("the device is offline", request=request)
        if path == "/v1/push":
            w.saw_push(d, body)
        fault = w.draw_fault(path) if d is not None else None
        if fault is None:
            return w.delivered(d, path, await w.forward(request, body, d))
        assert d is not None
        w.note(f"    fault {fault} on {d.name} {request.method} {path}")
        w.history.faults[fault] += 1
        if fault == "drop_request":
            raise httpx.ConnectError("dropped before the server", request=request)
        if fault == "drop_response":
            await w.forward(request, body, d)
            raise httpx.ReadError("dropped after the server answered", request=request)
        if fault == "duplicate":
            await w.forward(request, body, d)
            return w.delivered(d, path, await w.forward(request, body, d))
        if fault == "delay":
            w.delayed.append((request, body))
            raise httpx.ReadTimeout("held in the network", request=request)
        # crash_in_round: before the server handled it, or after
        if w.rng.random() < 0.5:
            await w.forward(request, body, d)
        d.storage.crash()
        d.crashed = True
        raise httpx.ReadError("the device died mid-request", request=request)


class Recording:
    """What every world records: its history's lines and one order of events (`seq`), which
    the server's thread (the browser tier's verdicts) and the driver's share."""

    history: History
    verbose: bool
    seq: int
    _seq_lock = threading.Lock()

    def note(self, line: str) -> None:
        self.history.lines.append(line)
        if self.verbose:
            print(line, flush=True)

    def next_seq(self) -> int:
        with self._seq_lock:
            self.seq += 1
            return self.seq


@dataclass
class World(Recording):
    seed: int
    local: DynamoDBLocal
    steps: int
    rng: random.Random = field(init=False)
    history: History = field(init=False)
    store: Store = field(init=False)
    devices: list[Device] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    start_ms: int = 0
    sim_ms: int = 0
    seq: int = 0
    faults_on: bool = True
    pull_offset_s: float = 0.0  # how far the pull clock has jumped (retention_passed)
    delayed: list[tuple[httpx.Request, bytes]] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)  # the shared scopes' ids
    owner_of: dict[str, str] = field(default_factory=dict)  # shared scope id -> its creator
    verbose: bool = False
    tolerate: frozenset[str] = frozenset()  # known defects counted apart (tests/sim/known.py)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.history = History(self.seed, dict(STRATEGIES))

    # ---- bookkeeping --------------------------------------------------------------------

    def user_of(self, client_id: str) -> str:
        return next(d.user for d in self.devices if d.client_id == client_id)

    def saw_push(self, device: Device | None, body: bytes) -> None:
        client_id = json.loads(body)["client_id"]
        record_sent(self.history, body, self.user_of(client_id))

    def delivered(self, d: Device | None, path: str, response: httpx.Response
                  ) -> httpx.Response:
        """A response that reaches the device: remember the deletes its pulls brought."""
        if d is not None and path == "/v1/pull" and response.status_code == 200:
            for c in json.loads(response.content).get("changes", []):
                if c.get("deleted"):
                    pk = f"s#{c['scope']}" if c.get("scope") else f"u#{d.user}"
                    self.history.pulled_deletes.add((d.name, pk, c["collection"], c["key"]))
        return response

    def membership_answered(self, device: Device, request: httpx.Request, body: bytes,
                            content: bytes) -> None:
        """The server changed a membership (a 2xx answer to a member route): record it,
        whether or not the answer then reaches the device."""
        parts = request.url.path.split("/")  # ['', 'v1', 'scopes', id, 'members', user]
        change: tuple[str, str, str | None]
        if request.method == "POST" and len(parts) == 3:
            change = (json.loads(content)["scope"], device.user, "owner")
        elif request.method == "PUT" and len(parts) == 6:
            change = (parts[3], parts[5], json.loads(body)["role"])
        elif request.method == "DELETE" and len(parts) == 6:
            change = (parts[3], parts[5], None)
        else:
            return
        self.history.memberships.append((self.next_seq(), f"s#{change[0]}", *change[1:]))

    def draw_fault(self, path: str) -> str | None:
        if not self.faults_on or path == "/v1/dev/token":
            return None
        x = self.rng.random()
        for name, p in NETWORK_FAULTS:
            if x < p:
                if name == "delay" and path != "/v1/push":
                    return None
                return name
            x -= p
        return None

    async def forward(self, request: httpx.Request, body: bytes,
                      device: Device | None = None) -> httpx.Response:
        """Hand the request to the current server app; record every push verdict."""
        copy = httpx.Request(request.method, request.url, headers=request.headers,
                             content=body)
        response = await self.asgi.handle_async_request(copy)
        content = await response.aread()
        if request.url.path == "/v1/push" and response.status_code == 200:
            record_verdicts(self.history, self.next_seq, body, content)
        elif request.url.path.startswith("/v1/scopes") and device is not None \
                and 200 <= response.status_code < 300:
            self.membership_answered(device, request, body, content)
        elif request.url.path == "/v1/pull" and response.status_code == 200 \
                and device is not None and json.loads(content).get("reset"):
            self.note(f"    {device.name}: the pull answers reset")
            self.history.resets[device.name] += 1
        elif response.status_code >= 500:
            self.note(f"    server answered {response.status_code}: {content[:300]!r}")
            self.history.faults["server_5xx"] += 1
        # `content` is decoded already (aread undoes a gzipped pull answer): the headers
        # that described the encoded body go, or the device's httpx would decode it again.
        headers = [(k, v) for k, v in response.headers.items()
                   if k.lower() not in ("content-encoding", "content-length")]
        return httpx.Response(response.status_code, headers=headers, content=content,
                              request=request)

    # ---- the server ---------------------------------------------------------------------

    def start_server(self) -> None:
        self.app = create_app(self.store.ctx.settings)
        ctx: ServerContext = self.app.state.ctx
        # The pull's clock is the driver's (retention_passed moves it).
        ctx.puller = Puller(ctx.dynamodb, ctx.tables, ctx.settings.log_retention_s,
                            clock=lambda: time.time() + self.pull_offset_s)
        self.asgi = httpx.ASGITransport(app=self.app)
        self.feed = self.store.feed()

    def feed_pass(self) -> None:
        """Feed passes until two in a row, 30 ms apart, handle nothing (a write shows in
        DynamoDB Local's stream ~10 ms after it returns). Much cheaper than `drain`, which
        reads the whole stream to be sure; the quiesce ends with a `drain`."""
        quiet = 0
        while quiet < 2:
            if self.feed.step():
                quiet = 0
            else:
                quiet += 1
                time.sleep(0.03)

    def restart_server(self) -> None:
        self.feed.stop()  # releases its leases, so the new feed takes over at once
        # What the lifespan's close does to the old app's pools (its feed runs here instead).
        self.app.state.ctx.pools.shutdown()
        self.start_server()

    # ---- devices ------------------------------------------------------------------------

    async def open_device(self, d: Device) -> None:
        if not d.client_id:
            d.client_id = uuid.UUID(int=self.rng.getrandbits(128)).hex
        # The client id is derived from the seed (it breaks HLC ties): the store draws it
        # from uuid4 the first time a database is opened on a storage.
        fixed = SimpleNamespace(uuid4=lambda: uuid.UUID(hex=d.client_id))
        # The devices' schema is the server's with a resolver on the `version` collection:
        # the server ignores it.
        schema = Schema(*(Collection(c.name, strategy=c.strategy, resolve=resolve_by_fields)
                          if c.strategy == "version" else c for c in SCHEMA))
        with mock.patch("pysync.layout.uuid", fixed):
            d.db = await pysync.open_database(f"sim:{d.user}", schema, clock=d.clock,
                                              storage=d.storage)
        assert d.db.client_id == d.client_id
        d.http = httpx.AsyncClient(transport=Network(self, d))
        token_http = httpx.AsyncClient(transport=Network(self, None))
        d.client = SyncClient(d.db, BASE_URL, dev_token_provider(BASE_URL, d.user, token_http),
                              http=d.http, backoff=NO_TIMED_RETRY,
                              on_conflict=lambda event: self.resolved(d, event))
        d.crashed = False
        await d.client.start()
        await self.settle()

    async def close_device(self, d: Device) -> None:
        if d.client is not None:
            await d.client.stop()
        if d.http is not None:
            await d.http.aclose()
        if d.db is not None:
            with contextlib.suppress(Exception):
                d.db.close()
        d.client = d.db = d.http = None

    async def reopen(self, d: Device) -> None:
        await self.close_device(d)
        await self.open_device(d)

    async def settle(self) -> None:
        """Wait until no SyncClient has a round running or about to run."""
        quiet = 0
        while quiet < 20:
            await asyncio.sleep(0)
            if any(d.client is not None and d.client.status.syncing for d in self.devices):
                quiet = 0
                await asyncio.sleep(0.001)
            else:
                quiet += 1
        for d in self.devices:
            if d.crashed:
                self.note(f"    {d.name} reopens after the crash")
                await self.reopen(d)

    async def sync(self, d: Device) -> None:
        assert d.client is not None
        try:
            await d.client.sync_now()
        except SyncError as e:
            self.note(f"    {d.name} sync failed: {e.code}")
        await self.settle()

    # ---- steps --------------------------------------------------------------------------

    def draw_scope(self, d: Device) -> str | None:
        """The shared scope a write goes to (None: the personal scope): mostly one the
        user is a member of as far as the server has answered, sometimes any."""
        if not self.shared or self.rng.random() >= SHARED_WRITES:
            return None
        mine = [s for s in self.shared if self.history.role_at(f"s#{s}", d.user, END)]
        return self.rng.choice(mine if mine and self.rng.random() < 0.75 else self.shared)

    async def write(self, d: Device) -> None:
        assert d.db is not None
        c, key, op, value = draw_write(self.rng)
        sid = self.draw_scope(d)
        coll = d.db.collection(c, scope=sid)
        row = next((r for r in d.storage.rows(d.db.name, "records")
                    if r["k"] == [local_name(c, sid), key]), None)
        before = RecordRow.from_row(row) if row is not None else None
        if op == "patch" and (before is None or before.value is None) \
                and self.rng.random() < 0.8:
            op = "put"  # mostly write what can be written; some patches of nothing stay
        where = f"{c}/{key}" if sid is None else f"{c}@{sid}/{key} (as " \
            f"{self.history.role_at(f's#{sid}', d.user, END)})"
        self.note(f"{d.name}: {op} {where} {json.dumps(value) if value else ''}")
        try:
            if op == "put":
                assert value is not None
                await coll.put(key, value)
            elif op == "patch":
                assert value is not None
                await coll.patch(key, value)
            else:
                await coll.delete(key)
        except NotFound:
            self.note("    refused: no such record")
            self.history.ops["patch_refused"] += 1
            return
        writer = next(r for r in d.storage.rows(d.db.name, "meta") if r["k"] == "writer")
        # A delete that sends nothing: of a record this device holds no copy of (never
        # had, or already deleted here: "deleting a record that does not exist does
        # nothing"), or of one the server never had (its pending put is simply dropped).
        local_only = op == "delete" and (before is None or before.value is None or (
            before.version is None and before.server_value is None and before.in_flight == 0))
        self.history.ops[op] += 1
        if sid is not None:
            self.history.ops["shared_write"] += 1
        self.history.local.append(LocalWrite(self.next_seq(), d.name, d.client_id, d.user, c,
                                             key, op, value, writer["v"]["clock"],
                                             local_only, "" if sid is None else f"s#{sid}"))
        await self.settle()  # an online device pushes at once

    def resolved(self, d: Device, event: ConflictEvent) -> None:
        """A resolver's result stored (the event fires right after): a write of the
        device's, accounted as a local write with the stamp the store gave it (the writer
        clock now); local only when nothing is sent (the result is the server's copy)."""
        self.history.ops[f"conflict_{event.kind}"] += 1
        scope = "" if event.scope is None else f"s#{event.scope}"
        if event.kind == "rejected" and event.error == "forbidden":
            self.note(f"    {d.name}: {event.collection}/{event.key} in {scope or 'personal'} "
                      f"rejected, forbidden")
            self.history.forbidden.append((self.next_seq(), d.name, scope or f"u#{d.user}",
                                           event.collection, event.key))
            return
        if event.kind != "conflict" or event.error is not None or d.db is None:
            return
        writer = next(r for r in d.storage.rows(d.db.name, "meta") if r["k"] == "writer")
        same = event.result == event.server
        op = "delete" if event.result is None else "put"
        self.note(f"    {d.name} resolved {event.collection}/{event.key}: local "
                  f"{json.dumps(event.local)} server {json.dumps(event.server)} -> "
                  f"{json.dumps(event.result)}")
        self.history.local.append(LocalWrite(self.next_seq(), d.name, d.client_id, d.user,
                                             event.collection, event.key, op, event.result,
                                             writer["v"]["clock"], same, scope))

    def external(self) -> None:
        external_write(self.rng, self.store, [f"u#{u}" for u in self.users]
                       + [f"s#{s}" for s in self.shared], self.history, self.next_seq,
                       self.note)

    async def scope_step(self) -> None:
        """One membership action through a device's SyncClient (docs/sharing.md)."""
        rng, h = self.rng, self.history
        action = rng.choices([a for a, _ in SCOPE_ACTIONS], [wt for _, wt in SCOPE_ACTIONS])[0]
        sid = rng.choice(self.shared)
        owner = self.owner_of[sid]
        others = [u for u in self.users if u != owner]
        # mostly remove (or have leave) a member, now and then someone who is not one
        members = [u for u in others if h.role_at(f"s#{sid}", u, END)]
        leaving = members if members and rng.random() < 0.8 else others
        if action == "create":
            await self.manage(self.device_of(owner), action, sid, "create_scope",
                              f"list {sid}", scope_id=sid)
        elif action == "share":
            user, role = rng.choice(others), rng.choice(("editor", "viewer"))
            await self.manage(self.device_of(owner), action, sid, "share", sid, user, role)
        elif action == "unshare":
            user = rng.choice(leaving)
            await self.manage(self.device_of(owner), action, sid, "unshare", sid, user)
        elif action == "leave":
            user = rng.choice(leaving)
            await self.manage(self.device_of(user), action, sid, "unshare", sid, user)
        elif rng.random() < 0.5:
            # a member (or not) raising itself to owner: refused (403, or 404 to a stranger)
            user = rng.choice(others)
            await self.manage(self.device_of(user), action, sid, "share", sid, user, "owner")
        else:
            # the owner leaving: the last owner, refused (409 last_owner)
            await self.manage(self.device_of(owner), action, sid, "unshare", sid, owner)
        h.ops[f"scope_{action}"] += 1

    def device_of(self, user: str) -> Device:
        return self.rng.choice([d for d in self.devices if d.user == user])

    async def manage(self, d: Device, action: str, sid: str, call: str, *args: Any,
                     **kwargs: Any) -> None:
        assert d.client is not None
        self.note(f"{d.name}: {action}: {call}{args[1:] if call != 'create_scope' else ''} "
                  f"on {sid}")
        try:
            await getattr(d.client, call)(*args, **kwargs)
        except SyncError as e:
            # Refused by the server, or the network lost it (the server may have made the
            # change anyway: the memberships' history is its answers, not this one).
            self.note(f"    {e.code}")
            self.history.ops[f"scope_{e.code}"] += 1
        await self.settle()

    async def deliver_delayed(self) -> None:
        if self.delayed:
            request, body = self.delayed.pop(0)
            self.note("network: a held push reaches the server now")
            await self.forward(request, body)

    async def step(self, i: int) -> None:
        self.sim_ms += self.rng.randint(1, 40)
        steps = STEPS if self.shared else tuple(s for s in STEPS if s[0] != "scope")
        kind = self.rng.choices([s for s, _ in steps], [wt for _, wt in steps])[0]
        d = self.rng.choice(self.devices)
        self.history.ops[kind] += 1
        if kind == "write":
            await self.write(d)
        elif kind == "sync":
            self.note(f"{d.name}: sync")
            await self.sync(d)
        elif kind == "toggle_network":
            self.note(f"{d.name}: goes {'offline' if d.online else 'online'}")
            d.storage.local_platform.set_online(not d.online)
            await self.settle()
        elif kind == "feed":
            self.note("feed: drain")
            self.feed_pass()
        elif kind == "crash":
            self.note(f"{d.name}: crash")
            self.history.faults["crash"] += 1
            d.storage.crash()
            await self.reopen(d)
        elif kind == "server_restart":
            self.note("server: restart")
            self.history.faults["server_restart"] += 1
            self.restart_server()
        elif kind == "external":
            self.history.faults["external_write"] += 1
            self.external()
        elif kind == "epoch_bump":
            self.note("server: the store epoch moves")
            self.history.faults["epoch_bump"] += 1
            bump_epoch(self.store.ctx.dynamodb, self.store.ctx.tables)
        elif kind == "retention_passed":
            self.note("server: the pull clock passes the log retention")
            self.history.faults["retention_passed"] += 1
            self.pull_offset_s += self.store.ctx.settings.log_retention_s + 1
        elif kind == "deliver_delayed":
            await self.deliver_delayed()
        elif kind == "scope":
            await self.scope_step()

    # ---- a whole history ----------------------------------------------------------------

    async def run(self) -> Outcome:
        rng = self.rng
        n_users = rng.randint(1, 3)
        n_devices = rng.randint(max(2, n_users), 5)
        self.users = [f"u{i}" for i in range(n_users)]
        owners = self.users + [rng.choice(self.users) for _ in range(n_devices - n_users)]
        self.start_ms = time.time_ns() // 1_000_000
        for i, user in enumerate(owners):
            skew = rng.choice(SKEWS_S) * 1000
            self.devices.append(Device(f"d{i}", user, MemoryStorage(), skew, self))
        self.note(f"seed {self.seed}: {n_users} users, {n_devices} devices "
                  + ", ".join(f"{d.name}={d.user}(skew {d.skew_ms // 1000:+d}s)"
                              for d in self.devices))
        for i in range(rng.choice(SHARED_SCOPES) if n_users > 1 else 0):
            sid = f"shared-{i}-{self.seed}"
            self.shared.append(sid)
            self.owner_of[sid] = rng.choice(self.users)
        self.history.shared = self.shared
        if self.shared:
            self.note("shared scopes: " + ", ".join(f"{s} (owner {o})"
                                                    for s, o in self.owner_of.items()))
        self.start_server()
        for d in self.devices:
            await self.open_device(d)
        for sid, owner in self.owner_of.items():
            # Created and shared once at the start (through the faulty network too); the
            # `scope` steps change the memberships later.
            await self.manage(self.device_of(owner), "create", sid, "create_scope",
                              f"list {sid}", scope_id=sid)
            others = [u for u in self.users if u != owner]
            await self.manage(self.device_of(owner), "share", sid, "share", sid,
                              rng.choice(others), rng.choice(("editor", "viewer")))
        for i in range(self.steps):
            await self.step(i)
        await self.quiesce()
        final = await self.collect()
        return judge(self.history, final, self.tolerate)

    async def quiesce(self) -> None:
        """No more faults: every device online, held pushes delivered, sync until the
        outboxes are empty and a feed drain brings nothing new."""
        self.note("-- quiesce")
        self.faults_on = False
        while self.delayed:
            await self.deliver_delayed()
        for d in self.devices:
            d.storage.local_platform.set_online(True)
        await self.settle()
        for _ in range(10):
            self.feed_pass()
            for d in self.devices:
                await self.sync(d)
            pending = [await d.db.pending_count() for d in self.devices if d.db is not None]
            if not any(pending):
                break
        drain(self.feed, self.store)
        for d in self.devices:
            await self.sync(d)

    async def collect(self) -> Final:
        views: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {}
        pending: dict[str, int] = {}
        stuck: dict[str, set[tuple[str, str, str]]] = {}
        held: dict[str, set[str]] = {}
        for d in self.devices:
            assert d.db is not None
            views[d.name] = (d.user, await view(d.db, d.user, self.shared))
            pending[d.name] = await d.db.pending_count()
            for e in await Replica(d.db).outbox_entries():  # what is stuck, for the replay's reader
                stuck.setdefault(d.name, set()).add((scope_of(e.collection, d.user),
                                                     split_local_name(e.collection)[0], e.key))
                row = next((r for r in d.storage.rows(d.db.name, "records")
                            if r["k"] == [e.collection, e.key]), None)
                self.note(f"    {d.name} still holds {e} over the row {row}")
            # Every scope the device keeps any row of (a record, a tombstone, a pending one)
            held[d.name] = {scope_of(r["k"][0], d.user)
                            for r in d.storage.rows(d.db.name, "records")}
        fresh: dict[str, dict[str, dict[str, Any]]] = {}
        for user in self.users:
            d = Device(f"fresh-{user}", user, MemoryStorage(), 0, self)
            self.devices.append(d)
            await self.open_device(d)
            await self.sync(d)
            assert d.db is not None
            fresh[user] = await view(d.db, user, self.shared)
            await self.close_device(d)
            self.devices.remove(d)
        return server_final(self.store, self.users, self.shared, views, fresh, pending, stuck,
                            held)

    async def close(self) -> None:
        for d in self.devices:
            with contextlib.suppress(Exception):
                await self.close_device(d)
        with contextlib.suppress(Exception):
            self.feed.stop()
        self.app.state.ctx.pools.shutdown()


def resolve_by_fields(local: dict[str, Any] | None, server: dict[str, Any] | None,
                      base: dict[str, Any] | None) -> dict[str, Any] | None:
    """The devices' resolver of a `version` conflict (deterministic): the local edit's
    changes against its base, over the server's copy; a local delete wins, and so does a
    local edit over a server delete."""
    if local is None or server is None:
        return local
    base = base or {}
    result = {**server, **{f: v for f, v in local.items() if f not in base or base[f] != v}}
    for f in base:
        if f not in local:
            result.pop(f, None)
    return result


def draw_write(rng: random.Random) -> tuple[str, str, str, dict[str, Any] | None]:
    """A device's next write: collection, key, op and value (None for a delete)."""
    c = rng.choice(list(STRATEGIES))
    key = rng.choice(KEYS)
    op = rng.choices(("put", "patch", "delete"), (5, 4, 2))[0]
    value: dict[str, Any] | None = None
    if op == "put":
        value = {f: draw_value(rng) for f in rng.sample(FIELDS, rng.randint(1, 3))}
    elif op == "patch":
        value = {f: draw_value(rng) for f in rng.sample(FIELDS, rng.randint(1, 2))}
    return c, key, op, value


def draw_value(rng: random.Random) -> Any:
    return rng.choice((rng.randint(0, 99), f"s{rng.randint(0, 9)}", rng.random() < 0.5))


def external_write(rng: random.Random, store: Store, scopes: list[str], history: History,
                   next_seq: Callable[[], int], note: Callable[[str], None]) -> None:
    """Another program's boto3 put/update/delete of one field on the items table, in one of
    `scopes` (DynamoDB pks: `u#<user>`, `s#<id>`)."""
    scope = rng.choice(scopes)
    c, key = rng.choice(list(STRATEGIES)), rng.choice(KEYS)
    kind = rng.choice(("put", "update", "delete"))
    f = rng.choice(FIELDS)
    v = rng.randint(100, 199)  # outside the devices' range: visibly another program
    if kind == "put":
        store.put(scope, c, key, **{f: v})
    elif kind == "update":
        store.update(scope, c, key, **{f: v})
    else:
        store.delete(scope, c, key)
    note(f"other program: {kind} {scope} {c}/{key} {f}={v if kind != 'delete' else ''}")
    history.external.append(ExternalWrite(next_seq(), scope, c, key, kind,
                                          f if kind == "update" else None))


def record_sent(history: History, body: bytes, user: str) -> None:
    """Every mutation of a push request body, the first time it goes over the wire."""
    request = json.loads(body)
    client_id = request["client_id"]
    now_ms = time.time_ns() // 1_000_000
    for m in request["mutations"]:
        key = (client_id, int(m["id"]))
        if key in history.sent:
            continue
        clamped = Stamp.parse(m["hlc"]).wall_ms > now_ms + MAX_CLOCK_SKEW_MS
        history.sent[key] = Sent(client_id, user, int(m["id"]), m["collection"], m["key"],
                                 m["op"], m.get("value"), m.get("base_version"), m["hlc"],
                                 clamped, f"s#{m['scope']}" if m.get("scope") else f"u#{user}")


def record_verdicts(history: History, next_seq: Callable[[], int], body: bytes,
                    content: bytes) -> None:
    """The server's verdicts in a 200 push response (whether or not the device gets it)."""
    client_id = json.loads(body)["client_id"]
    for r in json.loads(content)["results"]:
        history.verdicts.append(Verdict(next_seq(), client_id, int(r["id"]), r["status"],
                                        r.get("version"), (r.get("error") or {}).get("code")))


def scope_of(name: str, user: str) -> str:
    """The scope (DynamoDB pk) of a record the device keeps under local name `name`."""
    scope = split_local_name(name)[1]
    return f"u#{user}" if scope is None else f"s#{scope}"


async def view(db: Database, user: str, shared: list[str]) -> dict[str, dict[str, Any]]:
    """The device's live records of its personal scope and of each shared scope of the
    history (member or not), by scope pk."""
    out: dict[str, dict[str, Any]] = {}
    for sid in [None, *shared]:
        records: dict[str, Any] = {}
        for c in SCHEMA:
            for doc in await db.collection(c.name, scope=sid).query():
                records[f"{c.name}/{doc.key}"] = doc.value
        out[f"u#{user}" if sid is None else f"s#{sid}"] = records
    return out


def read_items(store: Store, scope: str) -> dict[tuple[str, str], FinalItem]:
    ctx = store.ctx
    pages = ctx.dynamodb.get_paginator("query").paginate(
        TableName=ctx.tables.items, ConsistentRead=True, KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": scope}})
    out: dict[tuple[str, str], FinalItem] = {}
    for page in pages:
        for item in page["Items"]:
            c, k = split_sort_key(item["sk"]["S"])
            fields_ = {n: norm(record_value(v)) for n, v in record_fields(item).items()}
            out[(c, k)] = FinalItem(
                fields_, bool(item.get("_del", {}).get("BOOL")),
                int(item.get("_v", {}).get("N", "0")), item.get("_hlc", {}).get("S", ""),
                {n: v["S"] for n, v in item.get("_fh", {}).get("M", {}).items()},
                item.get("_w", {}).get("S", ""))
    return out


def log_entry(e: dict[str, Any]) -> LogEntry:
    c, k = split_sort_key(e["k"]["S"])
    return LogEntry(c, k, int(e["v"]["N"]), bool(e["d"]["BOOL"]),
                    e.get("h", {}).get("S", ""), e.get("w", {}).get("S", ""))


def read_members(store: Store, user: str) -> set[str]:
    """The scopes `user` belongs to as the scopes table says (its personal one included)."""
    ctx = store.ctx
    pages = ctx.dynamodb.get_paginator("query").paginate(
        TableName=ctx.tables.scopes, ConsistentRead=True,
        KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
        ExpressionAttributeValues={":p": {"S": f"u#{user}"}, ":s": {"S": "s#"}})
    return {f"u#{user}"} | {item["sk"]["S"] for page in pages for item in page["Items"]}


def server_final(store: Store, users: list[str], shared: list[str], views: dict[str, Any],
                 fresh: dict[str, Any], pending: dict[str, int], stuck: dict[str, Any],
                 held: dict[str, set[str]]) -> Final:
    """The quiesced end of a history: what the devices showed, with the server's items and
    log of each scope and each user's memberships read with boto3."""
    scopes = [f"u#{user}" for user in users] + [f"s#{sid}" for sid in shared]
    items = {scope: read_items(store, scope) for scope in scopes}
    log = {scope: [log_entry(e) for e in store.log(scope)] for scope in scopes}
    members = {user: read_members(store, user) for user in users}
    return Final(items, log, views, fresh, pending, stuck, members, held)


def drop_tables(store: Store) -> None:
    tables = store.ctx.tables
    for f in fields(tables):
        with contextlib.suppress(Exception):
            store.ctx.dynamodb.delete_table(TableName=getattr(tables, f.name))


def run_history(seed: int, local: DynamoDBLocal, steps: int = 30, verbose: bool = False,
                tolerate: frozenset[str] = frozenset()) -> tuple[History, Outcome]:
    """Run the history of `seed` on fresh tables of `local`; its record and the verdict.
    `tolerate`: known defects (tests/sim/known.py) counted apart instead of failing."""
    world = World(seed, local, steps, verbose=verbose, tolerate=tolerate)
    world.store = Store.create(local, feed_enabled=False, schema=SCHEMA, rate_limit_per_s=0)

    async def main() -> Outcome:
        try:
            return await world.run()
        finally:
            await world.close()

    try:
        outcome = asyncio.run(main())
    finally:
        drop_tables(world.store)
    return world.history, outcome


def summary(history: History, outcome: Outcome) -> str:
    c = outcome.counts
    return (f"seed {history.seed}: {'ok' if outcome.ok else 'FAILED'} "
            f"writes={sum(history.ops[k] for k in ('put', 'patch', 'delete'))} "
            f"mutations={len(history.sent)} faults={sum(history.faults.values())} "
            f"divergent={c['divergent']} lost={c['lost']} duplicated={c['duplicated']} "
            f"resurrected={c['resurrected']} unverifiable={c['unverifiable']}"
            + (f" shared={len(history.shared)}" if history.shared else "")
            + "".join(f" {k}={c[k]}" for k in ("unauthorized", "forbidden") if c[k])
            + "".join(f" {k}={n}" for k, n in sorted(c.items()) if k.startswith("known:")))


def totals(runs: list[tuple[History, Outcome]]) -> dict[str, Any]:
    faults: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for h, o in runs:
        faults.update(h.faults)
        ops.update(h.ops)
        counts.update(o.counts)
    shared = {(h.seed, k) for h, _ in runs for k, m in h.sent.items()
              if m.scope.startswith("s#")}
    return {"histories": len(runs), "failed": sum(not o.ok for _, o in runs),
            "mutations": sum(len(h.sent) for h, _ in runs),
            "verdicts": Counter(v.status for h, _ in runs for v in h.verdicts),
            "shared_scope_histories": sum(bool(h.shared) for h, _ in runs),
            "shared_scopes": sum(len(h.shared) for h, _ in runs),
            "shared_mutations": len(shared),
            "shared_verdicts": Counter(
                v.status + (f"/{v.error}" if v.error else "") for h, _ in runs
                for v in h.verdicts if (h.seed, (v.client_id, v.id)) in shared),
            "membership_changes": Counter(
                "removed" if r is None else r for h, _ in runs for _, _, _, r in h.memberships),
            "forbidden_events": sum(len(h.forbidden) for h, _ in runs),
            "faults": faults, "ops": ops, "counts": counts}

