"""Every route of the app (listed from app.routes, so a new route is swept automatically)
against the bad-input catalogue and against DynamoDB trouble: nothing answers 500, every 503
carries Retry-After, every /v1 error has the documented JSON shape with a code that
docs/api.md lists.

States: DynamoDB healthy; unreachable (a private DynamoDB Local killed: its loopback port is
closed); paused (SIGSTOP'd); throttling and transaction conflicts (STUBS: botocore hooks on
the server's client, since DynamoDB Local produces neither).
"""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from server.dynamo_local import DynamoDBLocal
from tests.server.api_support import Api, client_id, mutation, push_body, running_api
from tests.server.fault_support import (
    CLIENT_TIMEOUT_S,
    conflict_hook,
    hooked,
    killed,
    paused,
    throttling_hook,
)

pytestmark = pytest.mark.dynamodb

UVICORN_REFUSAL = b"Invalid HTTP request received."
API_DOC = Path(__file__).parents[2] / "docs" / "api.md"
USER = "sweeper"


@pytest.fixture(scope="module")
def api(local: DynamoDBLocal) -> Iterator[Api]:
    # No rate limit: the sweep sends hundreds of requests as one user.
    with running_api(local, rate_limit_per_s=0, max_body_bytes=64 * 1024) as a:
        a.http.timeout = httpx.Timeout(CLIENT_TIMEOUT_S)
        yield a


SHARED = "sweep-scope-01"  # a scope the sweeping user owns, with FRIEND as a member
FRIEND = "sweep-friend"


@pytest.fixture(scope="module")
def token(api: Api) -> str:
    token = api.token(USER)
    for user in (USER, FRIEND):  # signed in: a scope can be shared with them
        api.http.get("/v1/scopes", headers={"Authorization": f"Bearer {api.token(user)}"}
                     ).raise_for_status()
    api.http.post("/v1/scopes", json={"id": SHARED},
                  headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    return token


def endpoints(api: Api) -> list[tuple[str, str]]:
    """(method, path) of every route of the app; a mount (static files) as a file in it."""
    out: list[tuple[str, str]] = []
    for route in api.app.routes:
        if isinstance(route, Route):
            out += [(m, route.path) for m in sorted((route.methods or {"GET"}) - {"HEAD"})]
        elif isinstance(route, Mount):
            out.append(("GET", f"{route.path}/index.html"))
        else:
            raise AssertionError(f"the sweep does not know how to call {route!r}")
    return out


# ---- one well-formed request per route (a new route must be added here) ------------------

Request = dict[str, Any]


def _good_push(token: str) -> Request:
    return {"content": json.dumps(push_body(client_id(), mutation(1, "t1"))).encode(),
            "headers": {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}}


GOOD: dict[tuple[str, str], Callable[[str], Request]] = {
    ("GET", "/v1/health"): lambda t: {},
    ("POST", "/v1/push"): _good_push,
    ("POST", "/v1/dev/token"): lambda t: {"json": {"user": "someone"}},
    ("GET", "/v1/pull"): lambda t: {"params": {"client_id": client_id()},
                                    "headers": {"Authorization": f"Bearer {t}"}},
    ("POST", "/v1/events/ticket"): lambda t: {"headers": {"Authorization": f"Bearer {t}"}},
    ("GET", "/v1/events"): lambda t: {"headers": {"Authorization": f"Bearer {t}"}},
    ("POST", "/v1/scopes"): lambda t: {"json": {"title": "swept"},
                                       "headers": {"Authorization": f"Bearer {t}"}},
    ("GET", "/v1/scopes"): lambda t: {"headers": {"Authorization": f"Bearer {t}"}},
    ("GET", "/v1/scopes/{scope}/members"): lambda t: {
        "path": f"/v1/scopes/{SHARED}/members", "headers": {"Authorization": f"Bearer {t}"}},
    ("PUT", "/v1/scopes/{scope}/members/{user:path}"): lambda t: {
        "path": f"/v1/scopes/{SHARED}/members/{FRIEND}", "json": {"role": "editor"},
        "headers": {"Authorization": f"Bearer {t}"}},
    ("DELETE", "/v1/scopes/{scope}/members/{user:path}"): lambda t: {
        "path": f"/v1/scopes/{SHARED}/members/{FRIEND}",
        "headers": {"Authorization": f"Bearer {t}"}},
    ("GET", "/wheels/manifest.json"): lambda t: {},
    ("GET", "/build.json"): lambda t: {},
    ("GET", "/build/{version}/site-packages.bin"): lambda t: {},  # another build's: a 404
    ("GET", "/sw.js"): lambda t: {},
    ("GET", "/pyodide/index.html"): lambda t: {},
    ("GET", "/wheels/index.html"): lambda t: {},
    ("GET", "/index.html"): lambda t: {},
}


# ---- the bad-input catalogue, applied to every route ---------------------------------------

def _forged_cursor() -> str:
    raw = json.dumps({"v": 1, "id": "x", "sc": "y", "t": 10**400, "p": 10**300})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def bad_inputs(token: str) -> dict[str, Request]:
    auth = {"Authorization": f"Bearer {token}"}
    as_json = {**auth, "Content-Type": "application/json"}
    return {
        "no auth": {},
        "garbage bearer": {"headers": {"Authorization": "Bearer garbage"}},
        "basic auth": {"headers": {"Authorization": "Basic dXNlcjpwYXNz"}},
        "huge token": {"headers": {"Authorization": "Bearer " + "a" * 8000}},
        "alg none token": {"headers": {"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."}},
        "bad JSON": {"headers": as_json, "content": b'{"protocol": 1,'},
        "JSON list": {"headers": as_json, "content": b"[]"},
        "JSON string": {"headers": as_json, "content": b'"x"'},
        "wrong types": {"headers": as_json, "content": json.dumps(
            {"protocol": "1", "client_id": 7, "mutations": {"a": 1}, "user": None}).encode()},
        "invalid UTF-8": {"headers": as_json, "content": b'{"user": "\xc3\x28"}'},
        "NaN": {"headers": as_json, "content": b'{"user": NaN}'},
        "deep nesting": {"headers": as_json, "content": b"[" * 100_000 + b"]" * 100_000},
        "huge body": {"headers": as_json, "content": b'{"x": "' + b"a" * 3_000_000 + b'"}'},
        # (httpx refuses to send these: they go over a raw socket)
        "content-length not a number": {"raw_headers": {**as_json, "Content-Length": "abc"}},
        "content-length superscript": {"raw_headers": {**as_json, "Content-Length": "\u00b2"}},
        "content-length 5000 digits": {"raw_headers": {**as_json,
                                                       "Content-Length": "9" * 5000}},
        "text/plain body": {"headers": {**auth, "Content-Type": "text/plain"},
                            "content": b"hello"},
        "latin-1 body": {"headers": {**auth, "Content-Type": "application/json; charset=latin-1"},
                         "content": b"{}"},
        "unknown parameter": {"headers": auth, "params": {"nope": "1", "client_id": "c"}},
        "repeated parameter": {"headers": auth, "params": [("client_id", "a"),
                                                           ("client_id", "b")]},
        "limit superscript": {"headers": auth, "params": {"client_id": "c", "limit": "\u00b2"}},
        "limit 5000 digits": {"headers": auth, "params": {"client_id": "c", "limit": "9" * 5000}},
        "client_id push refuses": {"headers": auth, "params": {"client_id": "dev ice"}},
        "client_id lone surrogate": {"headers": auth, "url_suffix": "?client_id=%ED%A0%80"},
        "invalid percent-encoding": {"headers": auth, "url_suffix": "?client_id=%ff%fe"},
        "forged cursor": {"headers": auth, "params": {"client_id": "c",
                                                      "cursor": _forged_cursor()}},
        "huge cursor": {"headers": auth, "params": {"client_id": "c", "cursor": "A" * 20_000}},
        "huge ticket": {"params": {"ticket": "t" * 5000}},
        "ticket and token": {"headers": auth, "params": {"ticket": "x", "token": "y"}},
        "path traversal": {"url_suffix": "/../../../etc/passwd"},
        "encoded traversal": {"url_suffix": "/%2e%2e/%2e%2e/etc/passwd"},
    }


def documented_codes() -> set[str]:
    """Every error code docs/api.md names in backquotes."""
    return set(re.findall(r"`([a-z_]+)`", API_DOC.read_text()))


def send_raw(api: Api, method: str, path: str, headers: dict[str, str]
             ) -> tuple[int, dict[str, str], bytes]:
    """A request with headers httpx would refuse to send, over a raw socket; `{}` as body."""
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    url = httpx.URL(api.url)
    with socket.create_connection((url.host, url.port or 80), timeout=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(head.encode("utf-8") + b"{}")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b"text/event-stream" in answer.lower():
                break  # a stream never ends
    top, _, body = answer.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), fields, body


def check(api: Api, method: str, path: str, request: Request) -> str | None:
    """None if the answer keeps the promise, else what is wrong with it."""
    args = dict(request)
    # A route with path parameters is called at its template ("{scope}": a bad id) unless
    # the request names a real path.
    url = args.pop("path", path) + args.pop("url_suffix", "")
    if "raw_headers" in args:
        status, headers, body = send_raw(api, method, url, args["raw_headers"])
    else:
        with api.http.stream(method, url, **args) as r:
            streaming = r.headers.get("content-type", "").startswith("text/event-stream")
            body = b"" if streaming else r.read()
            status, headers = r.status_code, dict(r.headers)
            url = r.request.url.path  # as sent: httpx resolves ".."
    if status >= 500 and status != 503:
        return f"{status} {body[:200]!r}"
    if status in (429, 503) and not headers.get("retry-after", "").isdigit():
        return f"{status} without Retry-After"
    if status == 400 and body == UVICORN_REFUSAL:
        return None  # malformed HTTP: refused by uvicorn (h11) before the app (docs/api.md)
    if status >= 400 and url.startswith("/v1/"):
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return f"{status} without a JSON error: {body[:200]!r}"
        if code not in documented_codes():
            return f"{status} {code!r} is not in docs/api.md"
    return None


def sweep(api: Api, requests: dict[str, Request]) -> list[str]:
    failures = []
    for method, path in endpoints(api):
        for name, request in requests.items():
            problem = check(api, method, path, request)
            if problem:
                failures.append(f"{method} {path} [{name}]: {problem}")
    return failures


def sweep_good(api: Api, token: str) -> list[str]:
    failures = []
    for (method, path), build in GOOD.items():
        problem = check(api, method, path, build(token))
        if problem:
            failures.append(f"{method} {path}: {problem}")
    return failures


def test_every_route_has_a_well_formed_request_in_the_sweep(api: Api) -> None:
    assert set(endpoints(api)) == set(GOOD)


def test_no_route_answers_500_to_the_bad_input_catalogue(api: Api, token: str) -> None:
    assert sweep(api, bad_inputs(token)) == []


FAULTS: dict[str, Callable[[Api, DynamoDBLocal], AbstractContextManager[Any]]] = {
    "unreachable": lambda api, local: killed(local),
    "paused": lambda api, local: paused(local),
    "throttling": lambda api, local: hooked(api, "before-call.dynamodb", throttling_hook),
    "transaction conflicts": lambda api, local: hooked(api, "before-call.dynamodb",
                                                       conflict_hook),
    "healthy": lambda api, local: nullcontext(),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_no_route_answers_500_while_dynamodb_is_in_trouble(
        api: Api, local: DynamoDBLocal, token: str, fault: str) -> None:
    with FAULTS[fault](api, local):
        assert sweep_good(api, token) == []


@pytest.mark.parametrize("fault", ["unreachable", "throttling"])
def test_no_route_answers_500_to_bad_input_while_dynamodb_is_in_trouble(
        api: Api, local: DynamoDBLocal, token: str, fault: str) -> None:
    with FAULTS[fault](api, local):
        assert sweep(api, bad_inputs(token)) == []
