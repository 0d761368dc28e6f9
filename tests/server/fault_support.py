"""DynamoDB trouble for the server tests: a private DynamoDB Local to pause, kill and restart,
and stubs for the faults a real DynamoDB Local cannot produce (throttling, transaction
conflicts, unprocessed keys), injected with botocore event hooks on the app's own client.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import ClientError

from server.dynamo_local import DynamoDBLocal
from server.retry import STORE_TROUBLE_BOUND_S
from tests.server.api_support import Api

# httpx's timeout in fault tests: well above the documented bound, so a request that hangs
# (the defect) fails the test instead of passing slowly, and a noisy machine does not.
CLIENT_TIMEOUT_S = STORE_TROUBLE_BOUND_S + 15


@contextmanager
def private_dynamodb_local() -> Iterator[DynamoDBLocal]:
    """A DynamoDB Local of the caller's own (others share the session's), to pause and kill,
    persisting in a temporary directory so it can be restarted on its data. Our own
    directory, not pytest's tmp_path: pytest deletes old basetemp directories, including
    another concurrent session's, under a running test."""
    with tempfile.TemporaryDirectory(prefix="pysync-dynamodb-") as data_dir, \
            DynamoDBLocal(data_dir=Path(data_dir)) as local:
        yield local


@contextmanager
def paused(local: DynamoDBLocal) -> Iterator[None]:
    """DynamoDB Local SIGSTOP'd for the block (SIGCONT'd whatever happens)."""
    local.pause()
    try:
        yield
    finally:
        local.resume()


@contextmanager
def killed(local: DynamoDBLocal) -> Iterator[None]:
    """DynamoDB Local SIGKILL'd for the block, then started again on its port and data dir:
    its loopback port is closed meanwhile, so DynamoDB is unreachable."""
    local.kill()
    try:
        yield
    finally:
        local.start()


Hook = Callable[..., Any]


def client_error(operation: str, code: str, reasons: list[str] | None = None) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": "injected by the test"}}
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": r} for r in reasons]
    return ClientError(response, operation)  # type: ignore[arg-type]


def throttling_hook(operation_name: str = "", **_: Any) -> None:
    """STUB (DynamoDB Local never throttles): every call is throttled."""
    raise client_error(operation_name, "ThrottlingException")


def conflict_hook(operation_name: str = "", **_: Any) -> None:
    """STUB (DynamoDB Local serialises transactions, so it never reports a conflict): a
    transaction is cancelled for TransactionConflict, any other call conflicts with one."""
    if operation_name == "TransactWriteItems":
        raise client_error(operation_name, "TransactionCanceledException",
                           ["TransactionConflict"])
    raise client_error(operation_name, "TransactionConflictException")


def unprocessed_keys_hook(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
    """STUB for BatchGetItem: DynamoDB keeps every key unprocessed (partial throttling).
    A `before-call` handler that returns (http response, parsed) replaces the call; `params`
    is the serialized request, its body the JSON DynamoDB would get."""
    asked = json.loads(params["body"])["RequestItems"]
    return httpx.Response(200), {"Responses": {}, "UnprocessedKeys": asked}


@contextmanager
def hooked(api: Api, event: str, hook: Hook) -> Iterator[None]:
    """`hook` registered on the server's own DynamoDB client for the block."""
    events = api.ctx.dynamodb.meta.events
    events.register(event, hook)
    try:
        yield
    finally:
        events.unregister(event, hook)


def raising(fault: Exception) -> Hook:
    """A hook that raises `fault` (e.g. a client_error), for `times` to limit."""
    def hook(**_: Any) -> None:
        raise fault
    return hook


def times(n: int, hook: Hook) -> Hook:
    """`hook` for the first `n` calls only; the count is in .calls."""
    calls = [0]

    def limited(**kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= n:
            return hook(**kwargs)
        return None

    limited.calls = calls  # type: ignore[attr-defined]
    return limited


def assert_store_unavailable(r: httpx.Response) -> None:
    """503 store_unavailable with a Retry-After of whole seconds, at least 1."""
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.json()["error"]["code"] == "store_unavailable", r.text
    assert r.headers["retry-after"].isdigit()
    assert int(r.headers["retry-after"]) >= 1
