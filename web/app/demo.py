# The demo todo app: app code in Python, on pysync's local store. Run by index.html after boot.
# Without a name it keeps todos on this device only; with one (a dev token from the server
# in dev mode) it syncs them with every device signed in with the same name.
# Pyodide runs this file with runPythonAsync, where top-level await is allowed:
# mypy: disable-error-code="top-level-await"
import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import js
from pyodide.ffi import create_proxy

import pysync
from pysync import Collection, Index, Schema
from pysync.client import SyncClient, SyncStatus, dev_token_provider

SCHEMA = Schema(Collection("todos", indexes=(Index("by_created", "created"),)))
document = js.document
status = document.getElementById("status")
title_input = document.getElementById("title")
add_button = document.getElementById("add-button")
user_input = document.getElementById("user")
account_button = document.getElementById("account-button")
sync_line = document.getElementById("sync")
USER_KEY = "pysync-demo-user"
shown_pending: int | None = None
todo_list = document.getElementById("list")
_tasks: set[asyncio.Future[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    task.add_done_callback(report_failure)


def report_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        status.textContent = f"error: {task.exception()}"
        status.classList.add("error")


def todo_item(doc: pysync.Doc) -> Any:
    li = document.createElement("li")
    li.dataset.key = doc.key
    if doc.value.get("done"):
        li.classList.add("done")
    box = document.createElement("input")
    box.type = "checkbox"
    box.checked = bool(doc.value.get("done"))
    box.className = "toggle"
    box.setAttribute("aria-label", "done")
    text = document.createElement("span")
    text.className = "title"
    text.textContent = doc.value.get("title", "")
    li.append(box, text)
    if doc.pending:
        mark = document.createElement("span")
        mark.className = "pending"
        mark.title = "saved on this device, not yet synced"
        mark.textContent = "local"
        li.append(mark)
    delete = document.createElement("button")
    delete.className = "delete"
    delete.type = "button"
    delete.title = "delete"
    delete.textContent = "✕"
    li.append(delete)
    return li


async def render() -> None:
    docs = await todos.query("by_created")
    todo_list.replaceChildren(*[todo_item(d) for d in docs])
    left = sum(1 for d in docs if not d.value.get("done"))
    document.getElementById("count").textContent = f"{left} of {len(docs)} left"
    waiting = await db.pending_count()
    status.textContent = (f"{waiting} change(s) saved locally, waiting to sync" if waiting
                          else "all changes saved")


async def add(title: str) -> None:
    title = title.strip()
    if not title:
        return
    await todos.put(uuid.uuid4().hex, {"title": title, "done": False,
                                       "created": js.Date.now()})


def on_submit(event: Any) -> None:
    event.preventDefault()
    title = title_input.value
    title_input.value = ""
    spawn(add(title))


def on_list_event(event: Any) -> None:
    target = event.target
    li = target.closest("li")
    if li is None:
        return
    key = li.dataset.key
    if event.type == "change" and target.classList.contains("toggle"):
        spawn(todos.patch(key, {"done": bool(target.checked)}))
    elif event.type == "click" and target.classList.contains("delete"):
        spawn(todos.delete(key))


def on_account(event: Any) -> None:
    # One local database per user: switching user reloads the page with the other database.
    event.preventDefault()
    if user:
        js.localStorage.removeItem(USER_KEY)
    elif user_input.value.strip():
        js.localStorage.setItem(USER_KEY, user_input.value.strip())
    js.location.reload()


def show_sync(s: SyncStatus) -> None:
    # An acknowledgement changes no value (so no watch callback) but ends "local" marks.
    global shown_pending
    if s.pending != shown_pending:
        shown_pending = s.pending
        spawn(render())
    if s.last_error:
        text = f"sync problem ({s.last_error}); retrying"
    elif not s.online:
        text = "offline: changes will sync when the network is back"
    elif not s.leader:
        text = "another tab of this browser is syncing"
    elif s.syncing:
        text = "syncing…"
    else:
        text = f"synced as {user}"
    sync_line.textContent = text
    sync_line.classList.toggle("error", bool(s.last_error))


def show_network(_event: Any = None) -> None:
    document.getElementById("network").textContent = \
        "online" if js.navigator.onLine else "offline: still works, changes stay local"


user = js.localStorage.getItem(USER_KEY) or None
js.performance.mark("pysync:database open")  # boot's breakdown (tests/bench/boot_bench.py)
db = await pysync.open_database(f"pysync-demo:{user}" if user else "pysync-demo", SCHEMA)
todos = db.collection("todos")
# Local writes, other tabs and (later) the server all come through watch.
db.watch(lambda changes: spawn(render()))
_listeners = [create_proxy(f) for f in (on_submit, on_list_event, show_network, on_account)]
document.getElementById("add").addEventListener("submit", _listeners[0])
document.getElementById("account").addEventListener("submit", _listeners[3])
todo_list.addEventListener("change", _listeners[1])
todo_list.addEventListener("click", _listeners[1])
js.window.addEventListener("online", _listeners[2])
js.window.addEventListener("offline", _listeners[2])
show_network()
js.performance.mark("pysync:first render")
await render()
if user:
    user_input.value = user
    user_input.readOnly = True
    account_button.textContent = "Sign out"
    base = js.location.origin
    sync = SyncClient(db, base, dev_token_provider(base, user), on_status=show_sync)
    await sync.start()
    show_sync(sync.status)
user_input.disabled = False
account_button.disabled = False
title_input.disabled = False
add_button.disabled = False
title_input.focus()
document.body.dataset.ready = "true"
