"""Slow clients (slowloris) over a real socket, against a real uvicorn started with the
configuration `python -m server` uses (server.__main__.uvicorn_config): a client trickling its
body or its headers, or sending nothing, cannot hold a connection open.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from server.__main__ import uvicorn_config
from server.app import create_app
from server.config import Settings
from server.dynamo_local import DynamoDBLocal, free_port
from tests.server.api_support import SECRET, unique_prefix
from tests.support import serve

pytestmark = pytest.mark.dynamodb

BODY_TIMEOUT_S = 1.0
HEADER_TIMEOUT_S = 1.0
TRICKLE_EVERY_S = 0.25  # one byte each time: 4 bytes/s
# Bounded wait for the server to answer or close: far above the timeouts, far below forever.
GIVE_UP_S = 20.0


@pytest.fixture(scope="module")
def server(dynamodb_local: DynamoDBLocal) -> Iterator[tuple[str, int]]:
    settings = Settings(dev=True, dynamodb_endpoint=dynamodb_local.endpoint,
                        table_prefix=unique_prefix(), jwt_secret=SECRET,
                        body_timeout_s=BODY_TIMEOUT_S, header_timeout_s=HEADER_TIMEOUT_S)
    port, app = free_port(), create_app(settings)
    config = uvicorn_config(app, "127.0.0.1", port, settings.header_timeout_s,
                            log_level="warning")
    with serve(app, config=config):
        yield "127.0.0.1", port


@pytest.fixture(scope="module")
def token(server: tuple[str, int]) -> str:
    host, port = server
    r = httpx.post(f"http://{host}:{port}/v1/dev/token", json={"user": "slow"})
    value: str = r.json()["token"]
    return value


def trickle(server: tuple[str, int], head: bytes, rest: bytes) -> tuple[bytes, bool]:
    """Send `head` at once, then `rest` one byte every TRICKLE_EVERY_S, reading meanwhile.
    Returns what the server sent and whether it closed the connection (within GIVE_UP_S)."""
    received = b""
    with socket.create_connection(server) as sock:
        sock.settimeout(TRICKLE_EVERY_S)
        if head:
            sock.sendall(head)
        sent = 0
        deadline = time.monotonic() + GIVE_UP_S
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    return received, True
                received += chunk
            except TimeoutError:
                pass
            except ConnectionResetError:
                return received, True
            if sent < len(rest):
                try:
                    sock.send(rest[sent:sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return received, True
                sent += 1
    return received, False


def push_head(token: str, length: int, path: str = "/v1/push") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def test_a_body_sent_one_byte_at_a_time_is_answered_408_and_the_connection_closed(
        server: tuple[str, int], token: str) -> None:
    body = b'{"protocol": 1, "client_id": "slow", "mutations": []}'.ljust(1000)
    received, closed = trickle(server, push_head(token, len(body)), body)
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b'"code":"request_timeout"' in received
    assert b"connection: close" in received.lower()
    assert closed


def test_a_body_trickled_to_a_route_that_reads_none_closes_after_the_answer(
        server: tuple[str, int], token: str) -> None:
    # The ticket route ignores any body: it answers at once, and must not then keep
    # reading (and discarding) a body that never ends.
    received, closed = trickle(server, push_head(token, 1000, "/v1/events/ticket"), b"x" * 1000)
    assert received.startswith(b"HTTP/1.1 200 "), received[:200]
    assert b"connection: close" in received.lower()
    assert closed


def test_an_early_refusal_of_a_trickled_body_closes_the_connection(
        server: tuple[str, int]) -> None:
    received, closed = trickle(server, push_head("not-a-token", 1000), b"x" * 1000)
    assert received.startswith(b"HTTP/1.1 401 "), received[:200]
    assert closed


def test_headers_sent_one_byte_at_a_time_close_the_connection(server: tuple[str, int]) -> None:
    head = b"GET /v1/health HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    received, closed = trickle(server, b"", head)
    assert closed
    assert received == b""


def test_a_connection_that_never_sends_a_request_is_closed(server: tuple[str, int]) -> None:
    received, closed = trickle(server, b"", b"")
    assert closed
    assert received == b""


def test_a_keep_alive_connection_still_serves_request_after_request(
        server: tuple[str, int]) -> None:
    request = b"GET /v1/health HTTP/1.1\r\nHost: test\r\n\r\n"
    with socket.create_connection(server) as sock:
        sock.settimeout(GIVE_UP_S)
        for _ in range(3):
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b'{"ok":true}'):
                chunk = sock.recv(65536)
                assert chunk, f"closed after {answer!r}"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ")
            time.sleep(HEADER_TIMEOUT_S / 10)  # idle a little, well within the next deadline
