"""HTTP plumbing of the API: strict request bodies, exact JSON responses, error answers.

Every error a client can cause is answered {"error": {"code": ..., "message": ...}} with the
status of its code; a bug is logged and answered a generic 500 without any detail.

Slow clients: a request body must arrive within Settings.body_timeout_s (408
request_timeout), and a response given before the request's body was read to its end (an
early 401, a route that takes no body) closes the connection, so a client trickling a body
cannot hold a connection open (docs/api.md, "Slow clients").
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pysync.errors import ProtocolError
from pysync.protocol import dumps, loads
from server.context import context_of
from server.errors import ServerError
from server.retry import request_budget

log = logging.getLogger("pysync.server")

JSON_MEDIA_TYPE = "application/json"
# A JSON answer at least this long is gzipped for a client that accepts it (a pull page:
# records' JSON shrinks 5-20x). Level 1: most of the gain for a fraction of level 6's CPU.
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 1

# Status of each whole-request error code (ProtocolError.code); unlisted codes are 400.
STATUS_OF_CODE: dict[str, int] = {
    "malformed_json": 400,
    "invalid_request": 400,
    "unsupported_protocol": 400,
    "not_found": 404,
    "request_timeout": 408,
    "body_too_large": 413,
    "too_many_mutations": 413,
    "unsupported_media_type": 415,
}


class JSONBody(Response):
    """A JSON response whose Decimals are written exactly (never through a binary float)."""

    media_type = JSON_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


def accepts_gzip(request: Request) -> bool:
    """Whether the request's Accept-Encoding takes gzip (`gzip` or `*`, q not 0)."""
    for part in request.headers.get("accept-encoding", "").split(","):
        name, *params = part.split(";")
        if name.strip().lower() not in ("gzip", "*"):
            continue
        q = next((v for k, _, v in (p.partition("=") for p in params)
                  if k.strip().lower() == "q"), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            continue
    return False


def json_answer(content: Any, gzip_ok: bool) -> tuple[bytes, dict[str, str]]:
    """JSON data as an answer's body (exact Decimals, as JSONBody), gzipped when `gzip_ok`
    and long enough; with the headers that go with it. CPU work: run it off the event loop
    for a big answer."""
    body = dumps(content).encode("utf-8")
    headers = {"Vary": "Accept-Encoding"}
    if gzip_ok and len(body) >= GZIP_MIN_BYTES:
        body = gzip.compress(body, GZIP_LEVEL, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return body, headers


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    return JSONBody({"error": {"code": code, "message": message, **extra}}, status,
                    headers=dict(headers or {}))


def retry_after(seconds: float) -> dict[str, str]:
    # Retry-After is whole seconds; rounding down would invite a retry that fails again.
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def require_json(request: Request) -> None:
    """415 unless the body is declared application/json (charset utf-8 at most)."""
    media_type, _, params = request.headers.get("content-type", "").partition(";")
    if media_type.strip().lower() != JSON_MEDIA_TYPE:
        raise ProtocolError("unsupported_media_type", "the body must be application/json")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset" and value.strip('" ').lower() not in ("utf-8", "utf8"):
            raise ProtocolError("unsupported_media_type", "the body must be UTF-8")


# A Content-Length longer than this is not a number we need to parse (and int() of 5,000
# digits is refused by Python's int-conversion limit anyway).
MAX_CONTENT_LENGTH_DIGITS = 18


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it exceeds `limit` bytes, and with 408 if it
    has not arrived within the app's `body_timeout_s`.

    A declared Content-Length over the limit is refused before reading anything; the stream
    is counted as it arrives too, since a chunked body declares no length.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise ProtocolError("invalid_request", "Content-Length is not a number")
        if len(declared) > MAX_CONTENT_LENGTH_DIGITS or int(declared) > limit:
            raise ProtocolError("body_too_large", f"the body is larger than {limit} bytes")
    timeout = context_of(request).settings.body_timeout_s
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ProtocolError("body_too_large",
                                        f"the body is larger than {limit} bytes")
                chunks.append(chunk)
    except ClientDisconnect:
        raise ProtocolError("invalid_request", "the client went away mid-body") from None
    except TimeoutError:
        raise ProtocolError("request_timeout",
                            f"the body did not arrive within {timeout:g} s") from None
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """415 / 413 / 400 checks, then the body parsed strictly (pysync.protocol.loads)."""
    require_json(request)
    return loads(await read_body(request, limit))


# Exception -> response. Each handler answers one documented error; nothing leaks a trace.

async def _protocol_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    return error_response(STATUS_OF_CODE.get(exc.code, 400), exc.code, exc.message)


async def _server_error(request: Request, exc: Exception) -> Response:
    """Every server/errors.py error: the answer it names (status, code, headers, fields)."""
    assert isinstance(exc, ServerError)
    headers = exc.headers()
    if exc.retry_after is not None:
        headers.update(retry_after(exc.retry_after))
    return error_response(exc.status, exc.code, exc.answer_message, headers, **exc.extra())


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/v1/"):
        return PlainTextResponse(exc.detail, exc.status_code, headers=exc.headers)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, exc.detail, exc.headers)


def _declares_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


class CatchBugs:
    """The outermost part of every request (CORS aside):

    - a bug is logged once and answered a generic 500 without any detail. A pure ASGI
      middleware rather than an `Exception` handler, because Starlette re-raises after calling
      such a handler: uvicorn then logs the error a second time and drops the keep-alive
      connection under the client's next request;
    - the request gets its DynamoDB trouble budget (server/retry.py), shared by every call it
      makes, so DynamoDB trouble is answered 503 within the documented bound;
    - a response that starts before the request's body was received to its end says
      `Connection: close`: otherwise the server would keep reading (and discarding) a body
      the client may trickle forever, the connection never becoming idle.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        body_done = not _declares_body(scope)

        async def tracking_receive() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done:
                    headers = [(k, v) for k, v in message.get("headers", [])
                               if k.lower() != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            with request_budget():
                await self.app(scope, tracking_receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # too late for a clean answer: let the server close the connection
                raise
            response = error_response(500, "internal_error", "internal server error")
            await response(scope, tracking_receive, tracking_send)


Handler = Callable[[Request, Exception], Any]


def exception_handlers() -> dict[Any, Handler]:
    """Starlette exception_handlers for the whole app (other helpers' routes included)."""
    return {
        ProtocolError: _protocol_error,
        ServerError: _server_error,
        HTTPException: _http_exception,
    }
