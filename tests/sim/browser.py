"""The browser tier of the seeded simulation: the same histories and the same accounting
(tests/sim/model.py) with 3 real Chromium contexts on the real IndexedDB.

Each device is a Chromium context (its own profile: its own IndexedDB and Web Locks) with one
page on test.html running pysync under Pyodide: a real Database + SyncClient, unchanged, with
its real triggers (writes, the events stream's pokes, online events, backoff timers). The
server is the real app over real HTTP (uvicorn) with its change feed thread, on fresh tables
of DynamoDB Local per history. The driver is this process (Playwright's sync API): it runs
one step at a time and sees every push through a Playwright route on the context, which
forwards it (`route.fetch`), records the request and the server's verdicts, and answers.

Steps (weights in STEPS): a write (put/patch/delete over the sim's three collections, three
keys), `sync_now()`, an offline toggle (`context.set_offline`), a write by another program
(boto3 on the items table), a page reload at any moment, and a page closed mid-push:
- close_before_server  the push is held in the route (never reaches the server) and the page
                       is closed: after the local commit, before the server.
- close_after_server   the route lets the push reach the server (committed, verdicts
                       recorded), and the page is closed before the response reaches it.
After a reload or close the page boots again and reopens the same database; the client
pushes its outbox again (same mutation ids: the server answers `duplicate` for what it has).
Network faults drawn per push while faults are on (PUSH_FAULTS): drop_request (aborted before
the server), drop_response (aborted after the server committed); the client retries on its
own backoff timer or at the next trigger.

Quiesce: every context online, then until the outboxes are empty: wait for the server's feed
to have checkpointed everything in the stream, `sync_now()` on every device; at last a fresh
database per user syncs from nothing (a snapshot), and the items table and the log are read
with boto3. `tests.sim.model.judge` gives the verdict.

Replay: `python -m tests.sim --browser --seed N` runs seed N again. Everything the driver
decides (users, steps, writes, which fault, external writes) comes from `random.Random(seed)`,
the per-push faults from a second generator of the seed, so a replay runs the same steps;
what the pages do meanwhile (when a poke or a backoff timer starts a round, which push a fault
lands on) is the browser's timing, not the seed's.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.app import create_app
from server.assets import ensure_pysync_wheel
from server.dynamo_local import DynamoDBLocal, free_port
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, open_test_pages, run_py
from tests.server.feed_support import Store, drain
from tests.sim.model import Final, History, LocalWrite, Outcome, judge
from tests.sim.world import (
    FIELDS,
    SCHEMA,
    STRATEGIES,
    Recording,
    draw_value,
    draw_write,
    drop_tables,
    external_write,
    record_sent,
    record_verdicts,
    server_final,
)
from tests.support import serve

DEVICES = 3
FAST_STEPS = 12  # per history in `make test`
LONG_STEPS = 40  # per history in the long tier
STEPS = (("write", 50), ("sync", 14), ("toggle_network", 8), ("external", 6), ("reload", 3),
         ("close_mid_push", 4))
PUSH_FAULTS = (("drop_request", 0.05), ("drop_response", 0.05))
CAUGHT_WAIT_S = 30.0  # how long a close_mid_push waits for its push to reach the route
SYNC_TIMEOUT_S = 60  # a sync_now() that has not returned by then is reported, not awaited

# Run once in every page boot: the helpers the driver calls.
PAGE_SETUP = f"STRATEGIES = {STRATEGIES!r}\nSYNC_TIMEOUT = {SYNC_TIMEOUT_S}\n" + """
import asyncio
import pysync, js
from pysync import Collection, Schema, idb
from pysync.client import SyncClient, dev_token_provider
from pysync.errors import NotFound, SyncError
from pysync.rows import RecordRow
from pysync.layout import RECORDS, WRITER
from pysync.replica import Replica
base = js.location.origin
SCHEMA = Schema(*[Collection(n, strategy=s) for n, s in STRATEGIES.items()])

def locked(f):
    async def call(*args, **kwargs):
        async with step_lock:
            return await f(*args, **kwargs)
    return call

async def sim_open(name, user):
    global db, client, step_lock
    db = await pysync.open_database(name, SCHEMA)
    # The driver's write step reads the row it writes over, writes, and reads the stamp the
    # write got, with no pull, take or acknowledgement of the client in between (they would
    # change what the step observes, not what it does): the test's observation only.
    step_lock = asyncio.Lock()
    client = SyncClient(db, base, dev_token_provider(base, user))
    replica = client._replica
    for method in ("apply_server_changes", "begin_resync", "take", "acknowledge", "release"):
        setattr(replica, method, locked(getattr(replica, method)))
    await client.start()
    return db.client_id

async def sim_write(c, key, op, value, coin):
    async with step_lock:
        tx = db._session.tx([RECORDS], "readonly")
        box = []
        tx.read([idb.get(RECORDS, [c, key])], box.append)
        await tx.done()
        row = box[0][0]
        before = RecordRow.from_row(row) if row is not None else None
        if op == "patch" and (before is None or before.value is None) and coin < 0.8:
            op = "put"  # mostly write what can be written; some patches of nothing stay
            value = value or {}
        try:
            if op == "put":
                await db[c].put(key, value)
            elif op == "patch":
                await db[c].patch(key, value)
            else:
                await db[c].delete(key)
        except NotFound:
            return ["refused", op, None, False]
        stamp = (await Replica(db).get_meta(WRITER))["clock"]
    # A delete that sends nothing (tests/sim/world.py World.write says when).
    local_only = op == "delete" and (before is None or before.value is None or (
        before.version is None and before.server_value is None and before.in_flight == 0))
    return ["ok", op, stamp, local_only]

async def sim_sync(c=None):
    try:
        await asyncio.wait_for((c or client).sync_now(), SYNC_TIMEOUT)
    except SyncError as e:
        return e.code
    except TimeoutError:
        return "timeout"
    return None

async def sim_view(d):
    out = {}
    for c in SCHEMA:
        for doc in await d[c.name].query():
            out[f"{c.name}/{doc.key}"] = doc.value
    return out

async def sim_state():
    entries = await Replica(db).outbox_entries()
    return [await sim_view(db), len(entries), [[e.collection, e.key] for e in entries]]

async def sim_fresh(name, user):
    fresh = await pysync.open_database(name, SCHEMA)
    c = SyncClient(fresh, base, dev_token_provider(base, user))
    await c.start()
    error = await sim_sync(c)
    out = await sim_view(fresh)
    await c.stop()
    fresh.close()
    return [out, error]

async def sim_close():
    if "client" in globals():
        await client.stop()
        db.close()
None
"""


@dataclass
class Slot:
    """One Chromium context (a device's profile) and its page; lives across histories."""

    context: BrowserContext
    page: Page
    device: Device | None = None


@dataclass
class Device:
    """One device of one history, on a slot."""

    name: str
    user: str
    slot: Slot
    db_name: str
    client_id: str = ""
    online: bool = True
    fault: str | None = None  # the fault for this device's next push (close_mid_push)
    caught: bool = False  # the route has applied `fault`


class Nowhere:
    """A loopback port that accepts connections and never answers: where a push goes that
    must stay in flight until its page is closed."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, name="nowhere", daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.socket.accept()[0])

    def close(self) -> None:
        self.socket.close()
        for s in self.held:
            s.close()


class Lab:
    """The browser side of a run: 3 contexts with a booted page each, reused by every
    history (a history uses databases of its own), and one server port, so the pages keep
    their origin while each history gets its own server on fresh tables."""

    def __init__(self, browser: Browser, local: DynamoDBLocal) -> None:
        ensure_pysync_wheel()
        self.browser = browser
        self.local = local
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.world: BrowserWorld | None = None
        self.slots: list[Slot] = []
        self.nowhere = Nowhere()

    def ensure_pages(self) -> None:
        """Boot the pages (the first history does it, with its server up)."""
        if self.slots:
            return
        contexts = [self.browser.new_context() for _ in range(DEVICES)]
        pages = open_test_pages(contexts, self.url)
        for context, page in zip(contexts, pages, strict=True):
            slot = Slot(context, page)
            context.route("**/v1/push", self.push_handler(slot))
            run_py(page, PAGE_SETUP)
            self.slots.append(slot)

    def reboot(self, slot: Slot, close: bool) -> None:
        """A closed page's successor, or the page reloaded; booted, with the helpers."""
        if close:
            slot.page.close(run_before_unload=False)
            [slot.page] = open_test_pages([slot.context], self.url)
        else:
            slot.page.reload()
            slot.page.wait_for_function("window.pysyncTest !== undefined", timeout=120_000)
            slot.page.evaluate("window.pysyncTest.ready")
        run_py(slot.page, PAGE_SETUP)

    def push_handler(self, slot: Slot) -> Callable[[Route], None]:
        def handle(route: Route) -> None:
            if self.world is None or slot.device is None:
                route.fallback()
                return
            self.world.on_push(slot.device, route)
        return handle

    def close(self) -> None:
        for slot in self.slots:
            with contextlib.suppress(Exception):
                slot.context.close()
        self.slots.clear()
        self.nowhere.close()


@dataclass
class BrowserWorld(Recording):
    seed: int
    lab: Lab
    steps: int
    verbose: bool = False
    rng: random.Random = field(init=False)
    net_rng: random.Random = field(init=False)
    history: History = field(init=False)
    store: Store = field(init=False)
    feed: Any = None
    devices: list[Device] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    seq: int = 0
    faults_on: bool = True
    tolerate: frozenset[str] = frozenset()
    # The server's thread records verdicts while the driver's records writes.
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        # Per-push faults land on whichever push comes: their own generator, so the steps
        # the seed draws do not depend on how many pushes the pages made.
        self.net_rng = random.Random(f"push-faults-{self.seed}")
        self.history = History(self.seed, dict(STRATEGIES))


    def user_of(self, client_id: str) -> str:
        return next((d.user for d in self.devices if d.client_id == client_id), "?")

    def served_push(self, status: int, body: bytes, content: bytes) -> None:
        """A push the server handled (ServerSide, in the server's thread): its verdicts,
        whether the page gets the answer or not."""
        client_id = json.loads(body)["client_id"]
        with self.lock:
            record_sent(self.history, body, self.user_of(client_id))
            if status == 200:
                record_verdicts(self.history, self.next_seq, body, content)
                answers = [f"{r['id']}:{r['status']}" + (f"@{r['version']}" if
                                                          r.get("version") else "")
                           for r in json.loads(content)["results"]]
                self.note(f"    server: push {client_id[:8]} answered {answers}")
            else:
                self.note(f"    server answered {status}: {content[:300]!r}")
                if status >= 500:
                    self.history.faults["server_5xx"] += 1

    # ---- the network: every push through the context's route ---------------------------

    def on_push(self, d: Device, route: Route) -> None:
        body = route.request.post_data_buffer or b""
        with self.lock:
            record_sent(self.history, body, d.user)
        self.note(f"    {d.name} pushes " + str([
            f"{m['id']}:{m['op']} {m['collection']}/{m['key']} base {m.get('base_version')}"
            for m in json.loads(body)["mutations"]]))
        fault = d.fault
        if fault is not None:
            d.fault = None
        elif self.faults_on:
            fault = self.draw_push_fault()
        if fault is not None:
            self.note(f"    fault {fault} on {d.name}'s push")
            self.history.faults[fault] += 1
        if fault == "close_before_server":
            # In flight to nowhere until the driver closes the page. (A route left unhandled
            # is no hold: when the page closes, Chromium lets the request go on to the
            # server.)
            route.continue_(url=self.lab.nowhere.url + "/v1/push")
            d.caught = True
            return
        if fault == "drop_request":
            route.abort("connectionreset")
            return
        response = route.fetch(timeout=60_000)  # its verdicts: ServerSide records them
        if fault == "close_after_server":
            route.continue_(url=self.lab.nowhere.url + "/v1/push")  # committed; no answer
            d.caught = True
            return
        if fault == "drop_response":
            route.abort("connectionreset")
            return
        route.fulfill(response=response)

    def draw_push_fault(self) -> str | None:
        x = self.net_rng.random()
        for name, p in PUSH_FAULTS:
            if x < p:
                return name
            x -= p
        return None

    # ---- devices -------------------------------------------------------------------------

    def open_device(self, d: Device) -> None:
        d.client_id = run_py(d.slot.page, f"await sim_open({d.db_name!r}, {d.user!r})")

    def restart_page(self, d: Device, close: bool) -> None:
        self.lab.reboot(d.slot, close)
        self.open_device(d)
        self.note(f"    {d.name} is back ({'a new page' if close else 'reloaded'})")

    def set_online(self, d: Device, online: bool) -> None:
        d.slot.context.set_offline(not online)
        d.online = online

    def sync(self, d: Device) -> None:
        error = run_py(d.slot.page, "await sim_sync()")
        if error:
            self.note(f"    {d.name} sync failed: {error}")

    # ---- steps ---------------------------------------------------------------------------

    def write(self, d: Device, forced_put: bool = False) -> None:
        c, key, op, value = draw_write(self.rng)
        coin = self.rng.random()
        if forced_put:
            op, value = "put", value or {self.rng.choice(FIELDS): draw_value(self.rng)}
        self.note(f"{d.name}: {op} {c}/{key} {json.dumps(value) if value else ''}")
        status, op, stamp, local_only = run_py(
            d.slot.page, f"await sim_write({c!r}, {key!r}, {op!r}, {value!r}, {coin!r})")
        if status == "refused":
            self.note("    refused: no such record")
            self.history.ops["patch_refused"] += 1
            return
        self.history.ops[op] += 1
        self.history.local.append(LocalWrite(self.next_seq(), d.name, d.client_id, d.user, c,
                                             key, op, value, stamp, local_only))

    def close_mid_push(self, d: Device) -> None:
        when = self.rng.choice(("close_before_server", "close_after_server"))
        self.note(f"{d.name}: the page closes mid-push ({when})")
        if not d.online:
            self.note(f"    {d.name} goes online first")
            self.set_online(d, True)
        d.fault, d.caught = when, False
        self.write(d, forced_put=True)
        deadline = time.monotonic() + CAUGHT_WAIT_S
        while not d.caught and time.monotonic() < deadline:
            d.slot.page.wait_for_timeout(50)  # (lets Playwright run the route handler)
        if not d.caught:
            d.fault = None
            self.note("    no push came: the page closes all the same")
            self.history.faults["close_no_push"] += 1
        self.restart_page(d, close=True)

    def step(self) -> None:
        kind = self.rng.choices([s for s, _ in STEPS], [w for _, w in STEPS])[0]
        d = self.rng.choice(self.devices)
        self.history.ops[kind] += 1
        if kind == "write":
            self.write(d)
        elif kind == "sync":
            self.note(f"{d.name}: sync")
            self.sync(d)
        elif kind == "toggle_network":
            self.note(f"{d.name}: goes {'offline' if d.online else 'online'}")
            self.set_online(d, not d.online)
        elif kind == "external":
            self.history.faults["external_write"] += 1
            external_write(self.rng, self.store, [f"u#{u}" for u in self.users],
                           self.history, self.next_seq, self.note)
        elif kind == "reload":
            self.note(f"{d.name}: reload")
            self.history.faults["reload"] += 1
            if not d.online:  # offline, the page would not load (it has no service worker)
                self.note(f"    {d.name} goes online first")
                self.set_online(d, True)
            self.restart_page(d, close=False)
        elif kind == "close_mid_push":
            self.close_mid_push(d)

    # ---- a whole history -----------------------------------------------------------------

    def run(self) -> Outcome:
        rng = self.rng
        n_users = rng.randint(1, 2)
        self.users = [f"u{i}" for i in range(n_users)]
        owners = self.users + [rng.choice(self.users) for _ in range(DEVICES - n_users)]
        run_id = uuid.uuid4().hex[:8]  # databases of earlier histories stay in the profiles
        self.lab.ensure_pages()
        for i, (user, slot) in enumerate(zip(owners, self.lab.slots, strict=True)):
            d = Device(f"d{i}", user, slot, f"bsim-{self.seed}-{run_id}-d{i}")
            slot.device = d
            self.devices.append(d)
        self.note(f"seed {self.seed} (browser): {n_users} users, {DEVICES} devices "
                  + ", ".join(f"{d.name}={d.user}" for d in self.devices))
        for d in self.devices:
            self.open_device(d)
        for _ in range(self.steps):
            self.step()
        self.quiesce()
        return judge(self.history, self.collect(run_id), self.tolerate)

    def quiesce(self) -> None:
        self.note("-- quiesce")
        self.faults_on = False
        for d in self.devices:
            d.fault = None
            if not d.online:
                self.set_online(d, True)
        for _ in range(10):
            self.drain()
            for d in self.devices:
                self.sync(d)
            if not any(run_py(d.slot.page, "await db.pending_count()") for d in self.devices):
                break
        self.drain()
        for d in self.devices:
            self.sync(d)

    def drain(self) -> None:
        """Until the server's feed thread has checkpointed every record in the stream."""
        page = self.devices[0].slot.page
        drain(self.feed, self.store, timeout=60.0, advance=lambda: page.wait_for_timeout(50))

    def collect(self, run_id: str) -> Final:
        # The browser tier has no shared scopes: each device's records are its user's scope.
        views: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {}
        pending: dict[str, int] = {}
        stuck: dict[str, set[tuple[str, str, str]]] = {}
        for d in self.devices:
            view, count, entries = run_py(d.slot.page, "await sim_state()")
            views[d.name] = (d.user, {f"u#{d.user}": view})
            pending[d.name] = count
            if entries:
                stuck[d.name] = {(f"u#{d.user}", c, k) for c, k in entries}
                self.note(f"    {d.name} still holds outbox entries for {entries}")
        fresh: dict[str, dict[str, dict[str, Any]]] = {}
        page = self.devices[0].slot.page
        for user in self.users:
            name = f"bsim-{self.seed}-{run_id}-fresh-{user}"
            snapshot, error = run_py(page, f"await sim_fresh({name!r}, {user!r})")
            fresh[user] = {f"u#{user}": snapshot}
            if error:
                self.note(f"    the fresh device of {user} failed to sync: {error}")
        return server_final(self.store, self.users, [], views, fresh, pending, stuck, {})

    def close(self) -> None:
        for d in self.devices:
            with contextlib.suppress(Exception):
                if not d.online:
                    self.set_online(d, True)
            with contextlib.suppress(Exception):
                run_py(d.slot.page, "await sim_close()")
            d.slot.device = None


class ServerSide:
    """ASGI middleware around the server app: hands every push the server answered (the
    request body, the status and the response body) to the history being run. Recorded
    where the server answers, as tests/sim/world.py records them in its network, so every
    verdict is seen whatever the page's side of the connection does."""

    def __init__(self, app: ASGIApp, lab: Lab) -> None:
        self.app = app
        self.lab = lab

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/push":
            await self.app(scope, receive, send)
            return
        body: list[bytes] = []
        status: list[int] = []
        content: list[bytes] = []

        async def receive_body() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def send_answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                content.append(message.get("body", b""))
                world = self.lab.world
                if not message.get("more_body") and world is not None:
                    world.served_push(status[0], b"".join(body), b"".join(content))
            await send(message)

        await self.app(scope, receive_body, send_answer)


def run_browser_history(lab: Lab, seed: int, steps: int, verbose: bool = False,
                        tolerate: frozenset[str] = frozenset()) -> tuple[History, Outcome]:
    """Run the browser history of `seed` against its own server on fresh tables.
    `tolerate`: known defects (tests/sim/known.py) counted apart instead of failing."""
    world = BrowserWorld(seed, lab, steps, verbose, tolerate=tolerate)
    world.store = Store.create(lab.local, feed_enabled=True, schema=SCHEMA,
                               rate_limit_per_s=0, feed_poll_s=0.05, events_poll_s=0.1)
    app = create_app(world.store.ctx.settings)
    lab.world = world
    try:
        with serve(ServerSide(app, lab), lab.port):
            world.feed = app.state.ctx.feed
            try:
                outcome = world.run()
            finally:
                world.close()
    finally:
        lab.world = None
        drop_tables(world.store)
    return world.history, outcome


@contextlib.contextmanager
def launched(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, as the e2e tests launch it."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()
