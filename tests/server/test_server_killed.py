"""A real server process killed (SIGKILL) right after DynamoDB committed a push, before it could
answer: the client's retry of the same request, served by another process, is `duplicate`,
and every mutation is in DynamoDB exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest

from server.dynamo_local import DynamoDBLocal, free_port, local_client, terminate
from server.paths import ROOT
from server.tables import TableNames
from tests.support import SHARED_SECRET, answers_health, server_process, wait_until

pytestmark = pytest.mark.dynamodb

# The server as `python -m server` runs it, plus one hook: the moment DynamoDB answers a
# TransactWriteItems (a push's commit), the process kills itself with SIGKILL.
DYING_SERVER = """
import os, signal, sys
import uvicorn
from server.app import create_app
from server.config import Settings

app = create_app(Settings.from_env(dev=True, dynamodb_endpoint=sys.argv[1]))
def die(**_):
    os.kill(os.getpid(), signal.SIGKILL)
app.state.ctx.dynamodb.meta.events.register("after-call.dynamodb.TransactWriteItems", die)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def wait_until_up(url: str, proc: subprocess.Popen[Any]) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("the dying server exited before it started")
        return answers_health(url)

    wait_until(up, timeout=60, interval=0.1, message="the dying server did not start")


def test_a_push_committed_by_a_killed_server_is_duplicate_on_retry_and_stored_once(
        dynamodb_local: DynamoDBLocal) -> None:
    prefix = f"kill{uuid.uuid4().hex[:8]}_"
    env = {**os.environ, "PYSYNC_JWT_SECRET": SHARED_SECRET, "PYSYNC_TABLE_PREFIX": prefix,
           "PYSYNC_FEED": "0"}
    port = free_port()
    dying = subprocess.Popen([sys.executable, "-c", DYING_SERVER, dynamodb_local.endpoint,
                              str(port)], cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, dying)
        token = httpx.post(f"{url}/v1/dev/token", json={"user": "kim"}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        body = {"protocol": 1, "client_id": "kim-laptop", "mutations": [
            {"id": i, "collection": "notes", "key": f"n{i}", "op": "put",
             "value": {"text": f"note {i}"}, "base_version": None, "hlc": None}
            for i in (1, 2, 3)]}
        with pytest.raises(httpx.TransportError):  # no answer: the process is gone
            httpx.post(f"{url}/v1/push", json=body, headers=headers, timeout=30)
        assert dying.wait(timeout=30) == -9
    finally:
        terminate(dying)
    names = TableNames.with_prefix(prefix)
    db = local_client(dynamodb_local.endpoint)

    def stored() -> list[tuple[str, str, str]]:
        items = db.query(TableName=names.items, ConsistentRead=True,
                         KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "u#kim"}})["Items"]
        return sorted((i["sk"]["S"], i["_v"]["N"], i["_w"]["S"]) for i in items)

    committed = [(f"notes#n{i}", "1", f"kim-laptop:{i}") for i in (1, 2, 3)]
    assert stored() == committed  # DynamoDB had committed before the kill
    with server_process(dynamodb_local.endpoint, prefix, feed=False) as (other, _):
        retry = httpx.post(f"{other}/v1/push", json=body, headers=headers, timeout=30)
        assert retry.status_code == 200, retry.text
        answer = retry.json()
        assert answer["last_mutation_id"] == 3
        # each duplicate carries the record as it is now (docs/api.md)
        assert [(r["id"], r["status"], r["server"]["version"], r["server"]["value"])
                for r in answer["results"]] == [
            (i, "duplicate", 1, {"text": f"note {i}"}) for i in (1, 2, 3)]
        assert stored() == committed  # nothing applied twice
        body["mutations"] = [{"id": 4, "collection": "notes", "key": "n1", "op": "patch",
                              "value": {"text": "edited"}, "base_version": 1, "hlc": None}]
        nxt = httpx.post(f"{other}/v1/push", json=body, headers=headers, timeout=30).json()
        assert nxt["results"] == [{"id": 4, "status": "applied", "version": 2}]
