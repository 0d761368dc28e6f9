# The demo todo app, in Python on pysync: several lists; add, edit in place, complete, delete
# and reorder todos (buttons, or Alt+Up / Alt+Down); filters; a sync badge, a first sync's
# progress bar, a conflicts panel and a "work offline" switch. Run by index.html after boot.
# Without a name it keeps todos on this device only; with one (a dev token from the server in
# dev mode) it syncs them with every device signed in with the same name.
#
# The file has two parts: pure helpers (order keys, conflict texts), which
# tests/e2e/test_demo_order.py also runs on CPython, and below the marker line the app,
# which needs the browser. Pyodide runs it with runPythonAsync (top-level await allowed):
# mypy: disable-error-code="top-level-await"
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any

import pysync
from pysync import Collection, ConflictEvent, Index, Schema

# Both collections are `merge` (the default strategy): concurrent edits of different fields
# of one todo (a title here, "done" or a move there) all survive, and an edit that loses a
# field to a newer edit from another device is reported by on_conflict as "overwritten",
# which the conflicts panel lists on the device whose edit lost.
#
# A todo: {"title", "done", "list": the list's key, "position": an order key, "created"}.
# A list: {"title", "created"}. The list "inbox" exists without a record until renamed
# (so two fresh devices never race to create it); a todo with no list is shown there.
# A list is its own records, so a shared list can later be a shared scope holding them.
SCHEMA = Schema(
    Collection("lists", indexes=(Index("by_created", "created"),)),
    Collection("todos", indexes=(Index("by_list", "list", "position"),)),
)
INBOX = "inbox"

# --- Order keys -------------------------------------------------------------------------
# A todo's `position` is a fractional index: a string that sorts between its neighbours'
# (David Greenspan's scheme, as in the `fractional-indexing` package: a variable-length
# integer part, head letter a-z / A-Z giving its length, then a fraction in base 62, in
# ASCII order so Python, IndexedDB and DynamoDB all compare them the same way). Why:
# - a move writes one field of one todo, never its neighbours' positions (a renumbering
#   would rewrite many todos, and two devices renumbering at once would interleave);
# - two devices moving different todos at once both keep their moves (different records);
#   moving the same todo, the newer move wins (merge, by stamp), the todo is in one place;
# - two devices inserting at the same spot may pick the same key: ties sort by record key
#   (the index ends with it) on every device alike, and the next move there gives new keys
#   to the tied todos too (plan_move), so order stays a total order everywhere.
# Keys grow by about one character per five moves into the same gap, slowly enough here.
DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SMALLEST_INTEGER = "A" + DIGITS[0] * 26


def _integer_length(head: str) -> int:
    if "a" <= head <= "z":
        return ord(head) - ord("a") + 2
    if "A" <= head <= "Z":
        return ord("Z") - ord(head) + 2
    raise ValueError(f"invalid order key head {head!r}")


def is_order_key(key: object) -> bool:
    """A well-formed order key (anything else, e.g. written by another program, is fixed
    by the next move near it)."""
    if not isinstance(key, str) or not key or key == SMALLEST_INTEGER:
        return False
    try:
        n = _integer_length(key[0])
    except ValueError:
        return False
    return (len(key) >= n and all(c in DIGITS for c in key[1:])
            and not key[n:].endswith(DIGITS[0]))


def _midpoint(a: str, b: str | None) -> str:
    """A fraction strictly between fractions a < b (b None: 1); no trailing zero."""
    if b is not None:
        n = 0
        while n < len(b) and (a[n] if n < len(a) else DIGITS[0]) == b[n]:
            n += 1
        if n > 0:
            return b[:n] + _midpoint(a[n:], b[n:])
    digit_a = DIGITS.index(a[0]) if a else 0
    digit_b = DIGITS.index(b[0]) if b is not None else len(DIGITS)
    if digit_b - digit_a > 1:
        return DIGITS[(digit_a + digit_b + 1) // 2]
    if b is not None and len(b) > 1:
        return b[:1]
    return DIGITS[digit_a] + _midpoint(a[1:], None)


def _step_integer(x: str, up: bool) -> str | None:
    """The next (or previous) integer part, None past the last (first) one."""
    head, digits = x[0], list(x[1:])
    edge, wrap = (DIGITS[-1], DIGITS[0]) if up else (DIGITS[0], DIGITS[-1])
    for i in reversed(range(len(digits))):
        if digits[i] != edge:
            digits[i] = DIGITS[DIGITS.index(digits[i]) + (1 if up else -1)]
            return head + "".join(digits)
        digits[i] = wrap
    # Every digit carried: the integer part gets one digit longer (or shorter).
    if up:
        if head == "Z":
            return "a" + DIGITS[0]
        if head == "z":
            return None
        head = chr(ord(head) + 1)
        return head + "".join([*digits, DIGITS[0]] if head > "a" else digits[:-1])
    if head == "a":
        return "Z" + DIGITS[-1]
    if head == "A":
        return None
    head = chr(ord(head) - 1)
    return head + "".join([*digits, DIGITS[-1]] if head < "Z" else digits[:-1])


def key_between(a: str | None, b: str | None) -> str:
    """An order key strictly between a and b (None: the start, the end); a < b."""
    for k in (a, b):
        if k is not None and not is_order_key(k):
            raise ValueError(f"not an order key: {k!r}")
    if a is not None and b is not None and a >= b:
        raise ValueError(f"{a!r} is not before {b!r}")
    if a is None:
        if b is None:
            return "a" + DIGITS[0]
        int_b = b[:_integer_length(b[0])]
        if int_b == SMALLEST_INTEGER:
            return int_b + _midpoint("", b[len(int_b):])
        if int_b < b:
            return int_b
        below = _step_integer(int_b, up=False)
        if below is None:
            raise ValueError("no order key before the smallest")
        return below
    int_a = a[:_integer_length(a[0])]
    frac_a = a[len(int_a):]
    if b is None:
        above = _step_integer(int_a, up=True)
        return int_a + _midpoint(frac_a, None) if above is None else above
    int_b = b[:_integer_length(b[0])]
    if int_a == int_b:
        return int_a + _midpoint(frac_a, b[len(int_b):])
    above = _step_integer(int_a, up=True)
    if above is not None and above < b:
        return above
    return int_a + _midpoint(frac_a, None)


def keys_between(a: str | None, b: str | None, n: int) -> list[str]:
    """n increasing order keys strictly between a and b."""
    if n <= 0:
        return []
    if b is None:  # one after another: the integer part counts up, keys stay short
        out: list[str] = []
        for _ in range(n):
            a = key_between(a, None)
            out.append(a)
        return out
    if a is None:
        out = []
        for _ in range(n):
            b = key_between(None, b)
            out.append(b)
        return out[::-1]
    middle = key_between(a, b)
    half = n // 2
    return [*keys_between(a, middle, half), middle, *keys_between(middle, b, n - half - 1)]


def plan_move(order: Sequence[tuple[str, object]], key: str, index: int) -> dict[str, str]:
    """The positions to write so that `key` comes at `index` of `order` (the list's
    (key, position) pairs as shown, `key` among them): normally only the moved todo's.
    A neighbour whose position is not above the one before it (a tie from two devices, a
    missing or foreign value) gets a new one in the same write."""
    rest = [(k, p) for k, p in order if k != key]
    target = [*rest[:index], (key, None), *rest[index:]]
    writes: dict[str, str] = {}
    run: list[str] = []  # todos waiting for keys, after the last kept position
    last: str | None = None
    for k, p in target:
        if k != key and is_order_key(p) and (last is None or str(p) > last):
            writes.update(zip(run, keys_between(last, str(p), len(run)), strict=True))
            run, last = [], str(p)
        else:
            run.append(k)
    writes.update(zip(run, keys_between(last, None, len(run)), strict=True))
    return writes


def position_after(positions: Sequence[object]) -> str:
    """An order key after every well-formed one of `positions`: a new todo goes last."""
    valid = [str(p) for p in positions if is_order_key(p)]
    return key_between(max(valid) if valid else None, None)


# --- Conflict texts ---------------------------------------------------------------------


def _quote(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "done" if value else "not done"
    return f"“{value}”"


FIELD_NAMES = {"title": "title", "done": "done", "position": "place in the list",
               "list": "list"}


def describe_conflict(event: ConflictEvent) -> tuple[str, str]:
    """(what was lost, how it was decided) for the conflicts panel, in plain words."""
    record = event.result or event.server or event.local or {}
    thing = "list" if event.collection == "lists" else "todo"
    what = f"{thing.capitalize()} {_quote(record.get('title', event.key))}"
    if event.kind == "rejected":
        return what, (f"the server refused this device's change ({event.error}); "
                      "it was undone here")
    local, result = event.local or {}, event.result or {}
    lost = [f for f in local if local.get(f) != result.get(f)]
    if event.kind == "conflict":
        how = "resolved" if event.error is None else f"the server's copy kept ({event.error})"
        return what, f"edited on two devices at once: {how}"
    if not lost:
        return what, "this device's edit was overwritten by a newer edit from another device"
    changes = "; ".join(
        f"{FIELD_NAMES.get(f, f)}: yours {_quote(local.get(f))}, kept {_quote(result.get(f))}"
        for f in sorted(lost))
    return what, f"overwritten by a newer edit from another device ({changes})"


# --- the app: browser only (tests/e2e/test_demo_order.py reads the file up to this line) ---
import httpx  # noqa: E402 (the app part, see above)
import js  # noqa: E402
from pyodide.ffi import create_proxy  # noqa: E402

from pysync.client import SyncClient, SyncStatus, dev_token_provider  # noqa: E402
from pysync.errors import PysyncError  # noqa: E402
from pysync.protocol import MAX_MUTATIONS_PER_PUSH, PROTOCOL_VERSION  # noqa: E402
from pysync.sharing import Role  # noqa: E402
from pysync.transport import FetchTransport  # noqa: E402

document = js.document
USER_KEY = "pysync-demo-user"
LIST_KEY = "pysync-demo-list"  # + the database name: the list shown last
SCOPES_KEY = "pysync-demo-scopes"  # + the database name: the shared lists last seen
# A shared list is a shared scope (docs/sharing.md) holding the list's records: its id here
# is "@" + the scope id; in the scope, its todos' "list" is the scope id and its record in
# "lists" has the scope id as key. So sharing, roles and revocation are the server's rules.
SHARED = "@"
PAGE = 200  # todos drawn at once ("Show more" adds as many again)
SAMPLE_COUNT = 5000
SCOPES_EVERY_MS = 3000
ROLES = {"owner": "owner", "editor": "can edit", "viewer": "can view"}
SHARE_ROLES: dict[str, Role] = {"editor": "editor", "viewer": "viewer"}  # the form's choices


def scope_of(list_id: str) -> str | None:
    return list_id[len(SHARED):] if list_id.startswith(SHARED) else None


def list_field(list_id: str) -> str:
    """The value of a todo's "list" field for the list `list_id`."""
    return scope_of(list_id) or list_id


def by_id(name: str) -> Any:
    return document.getElementById(name)


def make(tag: str, text: str | None = None, cls: str | None = None, **attrs: str) -> Any:
    node = document.createElement(tag)
    if text is not None:
        node.textContent = text
    if cls:
        node.className = cls
    for name, value in attrs.items():
        node.setAttribute(name.replace("_", "-"), value)
    return node


_tasks: set[asyncio.Future[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    task.add_done_callback(report_failure)


def say(text: str) -> None:
    by_id("status").textContent = text


def report_failure(task: asyncio.Future[Any]) -> None:
    # In its own line (role=alert), which redraws leave alone, and in the console.
    if not task.cancelled() and task.exception() is not None:
        by_id("error").textContent = f"error: {task.exception()!r}"
        js.console.error(f"demo: {task.exception()!r}")


class App:
    """The page's state and its drawing. Every change, local, from another tab or from the
    server, comes through the database's watch and redraws (at most one redraw at a time)."""

    def __init__(self, db: pysync.Database, user: str | None) -> None:
        self.db, self.user = db, user
        self.lists = db.collection("lists")
        self.client: SyncClient | None = None
        self.list_key = js.localStorage.getItem(f"{LIST_KEY}:{db.name}") or INBOX
        self.filter = "all"
        self.shown = PAGE
        self.editing: str | None = None  # the todo whose title is being edited
        self.edit_drawn = False  # its field is drawn
        self.writing = asyncio.Lock()
        self.titles: dict[str, str] = {}
        self.conflicts: list[ConflictEvent] = []
        self.focus_next: str | None = None  # data-focus of what to focus after a redraw
        self._drawing = False
        self._again = False
        self._shown_pending: int | None = None
        # The shared lists: scope -> {"title", "role"}, from client.scopes(), kept in
        # localStorage so that they show offline too; the members of the one shown.
        self.scopes: dict[str, dict[str, str]] = json.loads(
            js.localStorage.getItem(f"{SCOPES_KEY}:{db.name}") or "{}")
        self.members: dict[str, list[tuple[str, str]]] = {}
        self._scopes_synced_at: int | None = None
        self._scopes_asked_at = 0.0
        self._scopes_wanted = False
        self._refreshing = False

    def todos_of(self, list_id: str) -> pysync.LocalCollection:
        return self.db.collection("todos", scope=scope_of(list_id))

    @property
    def todos(self) -> pysync.LocalCollection:
        """The todos of the list shown."""
        return self.todos_of(self.list_key)

    def role(self, list_id: str) -> str:
        scope = scope_of(list_id)
        return "owner" if scope is None else self.scopes.get(scope, {}).get("role", "viewer")

    # --- drawing ------------------------------------------------------------------------

    def redraw(self) -> None:
        if self._drawing:
            self._again = True
            return
        self._drawing = True
        spawn(self._draw_loop())

    async def _draw_loop(self) -> None:
        try:
            while True:
                self._again = False
                await self.draw()
                if not self._again:
                    return
        finally:
            self._drawing = False

    async def draw(self) -> None:
        lists = await self.list_records()
        if self.list_key not in lists:
            self.list_key = INBOX
        key = self.list_key  # (a click may switch lists meanwhile: that redraws again)
        counts = {k: await self.todos_of(k).count("by_list", equals=(list_field(k),))
                  for k in lists}
        counts[INBOX] += await self.todos_of(INBOX).count("by_list", upper=("",),
                                                          upper_open=True)
        self.draw_lists(lists, counts, key)
        name = by_id("list-name")
        if document.activeElement != name:
            name.value = lists[key]
        read_only = self.role(key) == "viewer"
        name.readOnly = read_only
        by_id("delete-list").hidden = key == INBOX or scope_of(key) is not None
        for field in ("title", "add-button"):
            by_id(field).disabled = read_only
        by_id("title").placeholder = ("You can view this list, not change it" if read_only
                                      else "What needs doing?")
        self.draw_sharing(key, lists[key])
        docs = await self.list_todos(key)
        self.titles = {d.key: str(d.value.get("title", "")) for d in docs}
        left = sum(1 for d in docs if not d.value.get("done"))
        by_id("count").textContent = f"{left} of {len(docs)} left"
        shown = [d for d in docs if self.passes(d)]
        # Never under the user's typing: drawn as the edit starts, then when it ends.
        if self.editing is None or not self.edit_drawn:
            self.draw_todos(shown[:self.shown])
            self.edit_drawn = True
        more = by_id("show-more")
        more.hidden = len(shown) <= self.shown
        more.textContent = f"Show more ({len(shown) - self.shown:,} hidden)"
        empty = by_id("empty")
        empty.hidden = bool(shown)
        empty.textContent = ("Nothing here yet: add a todo above." if not docs else
                             f"No {self.filter} todos in this list.")
        waiting = await self.db.pending_count()
        say(f"{waiting} change(s) saved locally, waiting to sync" if waiting
            else "all changes saved")
        self.draw_conflicts()

    async def list_records(self) -> dict[str, str]:
        """list id -> title: the inbox, the personal lists in creation order, then the
        shared ones (a shared list's own record holds its title once renamed)."""
        found = {d.key: str(d.value.get("title") or "Untitled")
                 for d in await self.lists.query("by_created")}
        shared = {}
        for scope, info in self.scopes.items():
            record = await self.db.collection("lists", scope=scope).get(scope)
            shared[SHARED + scope] = str((record or {}).get("title") or info["title"])
        return {INBOX: found.pop(INBOX, "Inbox"), **found,
                **dict(sorted(shared.items(), key=lambda kv: kv[1].lower()))}

    def draw_lists(self, lists: dict[str, str], counts: dict[str, int], current: str) -> None:
        items = []
        for key, title in lists.items():
            button = make("button", None, "list-link", type="button", data_list=key,
                          data_focus=f"list:{key}")
            button.append(make("span", title, "list-title"))
            if scope_of(key) is not None:
                button.append(make("span", "shared", "list-shared"))
            button.append(
                          make("span", f"{counts.get(key, 0):,}", "list-count",
                               aria_label=f"{counts.get(key, 0)} todos"))
            if key == current:
                button.setAttribute("aria-current", "true")
            li = make("li")
            li.append(button)
            items.append(li)
        self.keep_focus(by_id("lists"), items)

    def todo_item(self, doc: pysync.Doc, read_only: bool = False) -> Any:
        key, title = doc.key, str(doc.value.get("title", ""))
        li = make("li", None, "todo", data_key=key)
        done = bool(doc.value.get("done"))
        li.classList.toggle("done", done)
        box = make("input", None, "toggle", type="checkbox", id=f"done-{key}",
                   data_focus=f"{key}:toggle")
        box.checked = done
        box.disabled = read_only
        label = make("label", f"Done: {title}", "visually-hidden")
        label.htmlFor = f"done-{key}"
        li.append(box, label)
        if key == self.editing:
            edit = make("input", None, "edit", type="text", aria_label=f"Edit title of {title}",
                        data_focus=f"{key}:edit", autocomplete="off", maxlength="500")
            edit.value = title
            li.append(edit)
        else:
            li.append(make("span", title, "title"))
        if doc.pending:
            li.append(make("span", "local", "pending",
                           title="saved on this device, not yet on the server"))
        for role, text, tip in () if read_only else (
                ("edit-button", "✎", f"Edit {title}"), ("up", "↑", f"Move {title} up"),
                ("down", "↓", f"Move {title} down"), ("delete", "✕", f"Delete {title}")):
            li.append(make("button", text, f"icon {role}", type="button", aria_label=tip,
                           title=tip, data_focus=f"{key}:{role}"))
        return li

    def draw_todos(self, docs: list[pysync.Doc]) -> None:
        read_only = self.role(self.list_key) == "viewer"
        self.keep_focus(by_id("list"), [self.todo_item(d, read_only) for d in docs])

    def draw_sharing(self, key: str, title: str) -> None:
        """Who can see the list: only you (a personal list, with a button to share it), or
        the shared list's members, with their roles (owners add, change and remove them)."""
        by_id("sharing").hidden = self.client is None
        scope = scope_of(key)
        state = by_id("sharing-state")
        by_id("share-list").hidden = scope is not None or key == INBOX
        by_id("share-form").hidden = scope is None or self.role(key) != "owner"
        members = by_id("members")
        members.hidden = scope is None
        if scope is None:
            state.textContent = ("Only you can see your Inbox." if key == INBOX else
                                 "Only you can see this list.")
            return
        known = self.members.get(scope)
        state.textContent = (f"A shared list (you: {ROLES[self.role(key)]})." if known is None
                             else "A shared list. Who can see it:")
        items = []
        for user, role in known or []:
            li = make("li", None, "member")
            li.append(make("span", user, "member-name"), make("span", ROLES[role], "role"))
            if self.role(key) == "owner" and user != self.user:
                li.append(make("button", "Remove", "secondary small remove-member",
                               type="button", aria_label=f"Remove {user} from {title}",
                               data_user=user, data_focus=f"member:{user}"))
            elif user == self.user and role != "owner":
                li.append(make("button", "Leave", "secondary small remove-member",
                               type="button", aria_label=f"Leave {title}",
                               data_user=user, data_focus=f"member:{user}"))
            items.append(li)
        self.keep_focus(members, items)

    def keep_focus(self, parent: Any, children: list[Any]) -> None:
        """Replace `parent`'s children, keeping keyboard focus on the same control (a
        redraw must not throw a keyboard user back to the top of the page)."""
        # (JS null comes to Python as a false JsNull, not None: tested by truth.)
        active = document.activeElement
        wanted = self.focus_next
        if wanted is None and active and parent.contains(active):
            wanted = active.getAttribute("data-focus") or None
        parent.replaceChildren(*children)
        if wanted is not None:
            target = parent.querySelector(f'[data-focus="{js.CSS.escape(wanted)}"]')
            if target:
                self.focus_next = None
                target.focus()
                if target.classList.contains("edit"):
                    target.select()

    def draw_conflicts(self) -> None:
        items = []
        for event in reversed(self.conflicts):  # the newest first
            what, how = describe_conflict(event)
            li = make("li", None, f"conflict {event.kind}")
            li.append(make("strong", what), make("span", how, "how"))
            items.append(li)
        by_id("conflict-list").replaceChildren(*items)
        by_id("conflict-count").textContent = str(len(self.conflicts))
        by_id("conflicts-empty").hidden = bool(self.conflicts)
        by_id("clear-conflicts").hidden = not self.conflicts
        by_id("conflicts").classList.toggle("has-conflicts", bool(self.conflicts))

    # --- todos --------------------------------------------------------------------------

    async def list_todos(self, key: str) -> list[pysync.Doc]:
        """The list's todos in order (the inbox's first: those written without a list)."""
        todos = self.todos_of(key)
        docs = await todos.query("by_list", equals=(list_field(key),))
        if key == INBOX:
            docs = await todos.query("by_list", upper=("",), upper_open=True) + docs
        return docs

    def passes(self, doc: pysync.Doc) -> bool:
        return self.filter == "all" or bool(doc.value.get("done")) == (self.filter == "done")

    async def add(self, title: str) -> None:
        title = title.strip()
        if not title:
            return
        # One add or move at a time, each planned from the database as it is then (not from
        # the last drawing): todos typed quickly one after another each go last.
        async with self.writing:
            last = await self.todos.query("by_list", equals=(list_field(self.list_key),),
                                          reverse=True, limit=20)
            await self.todos.put(uuid.uuid4().hex, {
                "title": title, "done": False, "list": list_field(self.list_key),
                "position": position_after([d.value.get("position") for d in last]),
                "created": int(js.Date.now())})

    async def move(self, key: str, step: int) -> None:
        """Move a todo up (-1) or down (+1) past the next todo shown (the filter's)."""
        async with self.writing:
            docs = await self.list_todos(self.list_key)
            shown = [d.key for d in docs if self.passes(d)]
            if key not in shown or not 0 <= shown.index(key) + step < len(shown):
                return
            order = [(d.key, d.value.get("position")) for d in docs]
            rest = [k for k, _ in order if k != key]
            # Up: just before the todo shown above; down: just after the one shown below.
            index = rest.index(shown[shown.index(key) + step]) + (1 if step > 0 else 0)
            for todo_key, position in plan_move(order, key, index).items():
                await self.todos.patch(todo_key, {"position": position})

    async def save_title(self, key: str, text: str) -> None:
        self.editing = None
        text = text.strip()
        if text and text != self.titles.get(key):
            await self.todos.patch(key, {"title": text})
        self.focus_next = f"{key}:edit-button"
        self.redraw()

    async def delete(self, key: str) -> None:
        shown = [li.dataset.key for li in by_id("list").querySelectorAll("li.todo")]
        at = shown.index(key)
        rest = shown[:at] + shown[at + 1:]
        # Focus goes to the next todo (or the one before), else to the new-todo field.
        self.focus_next = f"{rest[min(at, len(rest) - 1)]}:delete" if rest else None
        await self.todos.delete(key)
        if not rest:
            by_id("title").focus()

    # --- lists --------------------------------------------------------------------------

    def show_list(self, key: str) -> None:
        self.list_key, self.shown, self.editing = key, PAGE, None
        js.localStorage.setItem(f"{LIST_KEY}:{self.db.name}", key)
        by_id("share-status").textContent = ""
        self.redraw()
        if scope_of(key) is not None:
            spawn(self.refresh_scopes())  # its members

    async def add_list(self, title: str) -> None:
        title = title.strip()
        if not title:
            return
        key = uuid.uuid4().hex
        await self.lists.put(key, {"title": title, "created": int(js.Date.now())})
        self.show_list(key)
        by_id("title").focus()

    async def rename_list(self, title: str) -> None:
        title = title.strip()
        if not title or self.role(self.list_key) == "viewer":
            self.redraw()
            return
        scope = scope_of(self.list_key)
        lists = self.db.collection("lists", scope=scope)
        key = scope or self.list_key
        if await lists.get(key) is None:  # the inbox or a shared list, never renamed
            await lists.put(key, {"title": title, "created": int(js.Date.now())})
        else:
            await lists.patch(key, {"title": title})

    # --- sharing ------------------------------------------------------------------------

    def save_scopes(self) -> None:
        js.localStorage.setItem(f"{SCOPES_KEY}:{self.db.name}", json.dumps(self.scopes))

    def want_scopes(self) -> None:
        """Ask for the shared lists again after a sync round (a list shared with this user
        arrives as a scope; a revoked one goes, and the client drops its records): at most
        every SCOPES_EVERY_MS, rounds being as frequent as writes."""
        self._scopes_wanted = True
        if not self._refreshing:
            self._refreshing = True
            spawn(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        try:
            while self._scopes_wanted:
                wait = self._scopes_asked_at + SCOPES_EVERY_MS - float(js.Date.now())
                if wait > 0:
                    await asyncio.sleep(wait / 1000)
                self._scopes_wanted = False
                self._scopes_asked_at = float(js.Date.now())
                await self.refresh_scopes()
        finally:
            self._refreshing = False

    async def refresh_scopes(self) -> None:
        """The user's shared lists and the members of the one shown, from the server."""
        if self.client is None:
            return
        try:
            infos = await self.client.scopes()
            self.scopes = {i.scope: {"title": i.title or "Shared list", "role": i.role}
                           for i in infos}
            self.save_scopes()
            scope = scope_of(self.list_key)
            if scope in self.scopes:
                self.members[scope] = [(m.user, m.role)
                                       for m in await self.client.members(scope)]
        except PysyncError as e:  # offline, paused: the lists last seen stay
            js.console.info(f"demo: shared lists not refreshed: {e}")
        self.redraw()

    def share_failed(self, e: PysyncError) -> None:
        code = getattr(e, "code", "")
        by_id("share-status").textContent = {
            "unknown_user": "No one of that name has signed in to this server yet.",
            "offline": "Sharing needs the network.", "paused": "Sharing needs the network: "
            "turn Work offline off.", "forbidden": "Only the list's owners can do that.",
            "last_owner": "A list keeps at least one owner.",
        }.get(code, f"Sharing failed: {e}")

    async def share_current(self) -> None:
        """Make the list shown a shared list: a new shared scope gets its todos (moved: the
        personal copies are deleted), which its members' devices then sync."""
        assert self.client is not None
        key = self.list_key
        title = (await self.list_records())[key]
        try:
            scope = await self.client.create_scope(title)
        except PysyncError as e:
            self.share_failed(e)
            return
        docs = await self.list_todos(key)
        await self.db.collection("lists", scope=scope).put(
            scope, {"title": title, "created": int(js.Date.now())})
        await self.db.collection("todos", scope=scope).put_many(
            {d.key: {**d.value, "list": scope} for d in docs})
        await self.todos_of(key).delete_many([d.key for d in docs])
        await self.lists.delete(key)
        await self.refresh_scopes()  # (after any older answer: it lacks the new scope)
        self.focus_next = None
        self.show_list(SHARED + scope)
        by_id("share-status").textContent = "Shared: now add who may see it."
        by_id("share-form").hidden = False  # (drawn so by the redraw too: an owner's list)
        by_id("share-user").focus()

    async def share_with(self, user: str, role: str) -> None:
        scope = scope_of(self.list_key)
        user = user.strip()
        if self.client is None or scope is None or not user or role not in SHARE_ROLES:
            return
        try:
            await self.client.share(scope, user, SHARE_ROLES[role])
            by_id("share-status").textContent = f"{user} {ROLES[role]} this list now."
            by_id("share-user").value = ""
        except PysyncError as e:
            self.share_failed(e)
        await self.refresh_scopes()

    async def remove_member(self, user: str) -> None:
        scope = scope_of(self.list_key)
        if self.client is None or scope is None:
            return
        try:
            await self.client.unshare(scope, user)
            by_id("share-status").textContent = (
                "You left the list." if user == self.user
                else f"{user} can no longer see this list.")
        except PysyncError as e:
            self.share_failed(e)
            return
        await self.refresh_scopes()
        if user == self.user:  # the next pull drops the list's records from this device
            self.focus_next = f"list:{INBOX}"
            self.show_list(INBOX)
            by_id("share-status").textContent = "You left the list."
        else:
            by_id("share-user").focus()

    async def delete_list(self) -> None:
        key = self.list_key
        docs = await self.todos.query("by_list", equals=(key,))
        await self.todos.delete_many([d.key for d in docs])
        await self.lists.delete(key)
        say(f"deleted the list and its {len(docs)} todo(s)")
        self.focus_next = f"list:{INBOX}"
        self.show_list(INBOX)

    # --- sync ---------------------------------------------------------------------------

    def on_conflict(self, event: ConflictEvent) -> None:
        self.conflicts.append(event)
        what, how = describe_conflict(event)
        by_id("conflict-alert").textContent = f"Conflict: {what}: {how}"
        self.draw_conflicts()

    def show_sync(self, s: SyncStatus) -> None:
        if s.last_synced_at != self._scopes_synced_at:  # a round reached the head
            self._scopes_synced_at = s.last_synced_at
            self.want_scopes()
        # An acknowledgement changes no value (no watch callback) but ends "local" marks.
        if s.pending != self._shown_pending:
            self._shown_pending = s.pending
            self.redraw()
        if s.paused or not s.online:
            state, text = "offline", "Offline"
        elif s.last_error:
            state, text = "problem", "Problem"
        elif s.syncing or s.progress is not None or s.pending:
            state, text = "syncing", "Syncing"
        else:
            state, text = "synced", "Synced"
        badge = by_id("badge")
        badge.dataset.state = state
        badge.textContent = text
        badge.title = s.last_error or s.events_error or ""
        detail = [f"{s.pending} waiting" if s.pending else "nothing waiting"]
        if s.paused:
            detail.append("working offline")
        elif s.last_error:
            detail.append(f"{s.last_error}; retrying")
        elif not s.leader:
            detail.append("another tab of this browser syncs")
        if s.last_synced_at:
            when = js.Date.new(s.last_synced_at).toLocaleTimeString()
            detail.append(f"last synced {when}")
        by_id("sync").textContent = " · ".join(detail)
        box, bar = by_id("progress"), by_id("sync-progress")
        box.hidden = s.progress is None
        if s.progress is not None:
            received, total = s.progress
            bar.max, bar.value = max(total, 1), received
            by_id("progress-text").textContent = f"Downloading {received:,} of {total:,}"

    async def add_samples(self) -> None:
        """5,000 todos in a new list, written on the server as another device would (the
        push API, with its own client id), so that they arrive here, and in any fresh
        window, through a pull: a first sync of a big account, with its progress bar."""
        assert self.user is not None
        button, done = by_id("sample-button"), by_id("sample-status")
        button.disabled = True
        try:
            base = js.location.origin
            token = await dev_token_provider(base, self.user)()
            list_key = f"sample-{uuid.uuid4().hex[:8]}"
            now = int(js.Date.now())
            mutations: list[dict[str, Any]] = [{
                "collection": "lists", "key": list_key, "op": "put",
                "value": {"title": f"{SAMPLE_COUNT:,} sample todos", "created": now}}]
            for i, position in enumerate(keys_between(None, None, SAMPLE_COUNT)):
                mutations.append({
                    "collection": "todos", "key": f"{list_key}-{i:05}", "op": "put",
                    "value": {"title": f"Sample todo {i + 1}", "done": i % 3 == 0,
                              "list": list_key, "position": position, "created": now}})
            client_id = f"samples-{uuid.uuid4().hex}"
            async with httpx.AsyncClient(transport=FetchTransport()) as http:
                for start in range(0, len(mutations), MAX_MUTATIONS_PER_PUSH):
                    chunk = mutations[start:start + MAX_MUTATIONS_PER_PUSH]
                    done.textContent = (f"Writing them on the server: {start:,} of "
                                        f"{len(mutations):,}")
                    r = await http.post(f"{base}/v1/push", timeout=60, json={
                        "protocol": PROTOCOL_VERSION, "client_id": client_id,
                        "mutations": [{**m, "id": start + i + 1, "base_version": None,
                                       "hlc": None} for i, m in enumerate(chunk)]},
                        headers={"Authorization": f"Bearer {token}"})
                    if r.status_code != 200:
                        raise RuntimeError(f"push: HTTP {r.status_code} {r.text[:200]}")
            done.textContent = (f"{SAMPLE_COUNT:,} sample todos written on the server; "
                                "they arrive by sync")
        finally:
            button.disabled = False


# --- events -----------------------------------------------------------------------------


def on_list_event(event: Any) -> None:
    target = event.target
    li = target.closest("li.todo")
    if not li:
        return
    key = li.dataset.key
    cls = target.classList
    if event.type == "change" and cls.contains("toggle"):
        spawn(app.todos.patch(key, {"done": bool(target.checked)}))
    elif event.type == "click" and cls.contains("delete"):
        spawn(app.delete(key))
    elif event.type == "click" and (cls.contains("up") or cls.contains("down")):
        spawn(app.move(key, -1 if cls.contains("up") else 1))
    elif (event.type == "click" and cls.contains("edit-button")) or \
            (event.type == "dblclick" and cls.contains("title")):
        start_edit(key)
    elif event.type == "keydown":
        on_todo_key(event, key)
    elif event.type == "focusout" and cls.contains("edit") and app.editing == key:
        spawn(app.save_title(key, target.value))


def start_edit(key: str) -> None:
    app.focus_next = f"{key}:edit"
    app.editing, app.edit_drawn = key, False
    app.redraw()


def on_todo_key(event: Any, key: str) -> None:
    target = event.target
    if target.classList.contains("edit"):
        if event.key == "Enter":
            event.preventDefault()
            spawn(app.save_title(key, target.value))
        elif event.key == "Escape":
            event.preventDefault()
            app.editing = None
            app.focus_next = f"{key}:edit-button"
            app.redraw()
        return
    if event.altKey and event.key in ("ArrowUp", "ArrowDown"):
        event.preventDefault()
        spawn(app.move(key, -1 if event.key == "ArrowUp" else 1))
    elif event.key == "F2" or (event.key == "Enter" and target.classList.contains("title")):
        event.preventDefault()
        start_edit(key)


def on_add(event: Any) -> None:
    event.preventDefault()
    title = by_id("title")
    text, title.value = title.value, ""
    spawn(app.add(text))


def on_new_list(event: Any) -> None:
    event.preventDefault()
    field = by_id("new-list-name")
    text, field.value = field.value, ""
    spawn(app.add_list(text))


def on_lists_click(event: Any) -> None:
    button = event.target.closest("button.list-link")
    if button:
        app.show_list(button.dataset.list)


def on_rename(event: Any) -> None:
    event.preventDefault()
    spawn(app.rename_list(by_id("list-name").value))


def on_filter(event: Any) -> None:
    button = event.target.closest("button[data-filter]")
    if not button:
        return
    app.filter, app.shown = button.dataset.filter, PAGE
    for b in by_id("filters").querySelectorAll("button[data-filter]"):
        b.setAttribute("aria-pressed", "true" if b == button else "false")
    app.redraw()


def on_share_list(event: Any) -> None:
    spawn(app.share_current())


def on_share_form(event: Any) -> None:
    event.preventDefault()
    spawn(app.share_with(by_id("share-user").value, by_id("share-role").value))


def on_members_click(event: Any) -> None:
    button = event.target.closest("button.remove-member")
    if button:
        spawn(app.remove_member(button.dataset.user))


def on_show_more(event: Any) -> None:
    app.shown += PAGE
    app.redraw()


def on_account(event: Any) -> None:
    # One local database per user: switching user reloads the page with the other database.
    event.preventDefault()
    if app.user:
        js.localStorage.removeItem(USER_KEY)
    elif by_id("user").value.strip():
        js.localStorage.setItem(USER_KEY, by_id("user").value.strip())
    js.location.reload()


def on_work_offline(event: Any) -> None:
    if app.client is None:
        return
    if event.target.checked:
        app.client.pause()
    else:
        app.client.resume()


def on_clear_conflicts(event: Any) -> None:
    app.conflicts.clear()
    by_id("conflict-alert").textContent = ""
    app.draw_conflicts()
    by_id("conflicts-heading").focus()


def show_network(_event: Any = None) -> None:
    by_id("network").textContent = \
        "online" if js.navigator.onLine else "offline: still works, changes stay local"


user = js.localStorage.getItem(USER_KEY) or None
js.performance.mark("pysync:database open")  # boot's breakdown (tests/bench/boot_bench.py)
db = await pysync.open_database(f"pysync-demo:{user}" if user else "pysync-demo", SCHEMA)
app = App(db, user)
db.watch(lambda changes: app.redraw())
_handlers = {
    ("add", "submit"): on_add, ("new-list", "submit"): on_new_list,
    ("lists", "click"): on_lists_click, ("rename-list", "submit"): on_rename,
    ("filters", "click"): on_filter, ("show-more", "click"): on_show_more,
    ("account", "submit"): on_account, ("work-offline", "change"): on_work_offline,
    ("clear-conflicts", "click"): on_clear_conflicts,
    ("share-list", "click"): on_share_list, ("share-form", "submit"): on_share_form,
    ("members", "click"): on_members_click,
    ("delete-list", "click"): lambda e: spawn(app.delete_list()),
    ("sample-button", "click"): lambda e: spawn(app.add_samples()),
    **{("list", kind): on_list_event for kind in ("change", "click", "dblclick", "keydown",
                                                  "focusout")},
}
_proxies = []
for (element, kind), handler in _handlers.items():
    proxy = create_proxy(handler)
    _proxies.append(proxy)
    by_id(element).addEventListener(kind, proxy)
_proxies += [create_proxy(show_network)]
js.window.addEventListener("online", _proxies[-1])
js.window.addEventListener("offline", _proxies[-1])
show_network()
js.performance.mark("pysync:first render")
await app.draw()
if user:
    by_id("user").value = user
    by_id("user").readOnly = True
    by_id("account-button").textContent = "Sign out"
    base = js.location.origin
    app.client = SyncClient(db, base, dev_token_provider(base, user),
                            on_status=app.show_sync, on_conflict=app.on_conflict)
    await app.client.start()
    app.show_sync(app.client.status)
    app.redraw()  # the sharing section, now that there is a client
    # Only a dev-mode server gives the dev tokens this page signs in with.
    by_id("dev-tools").hidden = False
    by_id("work-offline").disabled = False
for name in ("user", "account-button", "title", "add-button", "new-list-name",
             "new-list-button", "list-name"):
    by_id(name).disabled = False
by_id("title").focus()
document.body.dataset.ready = "true"
