"""The feed Lambda's code as `sam build` packages it (`make build-FeedFunction`), run in a
separate Python on a real stream event from DynamoDB Local: it handles the event, appends to
the log, and needs none of the web stack (Lambda's runtime brings boto3 and nothing else)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.dynamo_local import DynamoDBLocal
from server.paths import ROOT
from tests.server.feed_support import Store, entries_summary
from tests.server.test_lambda import lambda_event
from tests.support import wait_until

pytestmark = pytest.mark.dynamodb

RUN_HANDLER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from server.lambda_handler import handler
result = handler(json.load(open(sys.argv[2])), None)
web = sorted(m for m in ("starlette", "uvicorn", "jwt", "httpx") if m in sys.modules)
print(json.dumps({"result": result, "web_modules": web,
                  "from": sys.modules["server"].__file__}))
"""


def test_the_packaged_feed_function_logs_a_stream_event_without_the_web_stack(
        dynamodb_local: DynamoDBLocal, tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    subprocess.run(["make", "-s", "build-FeedFunction", f"ARTIFACTS_DIR={artifact}"],
                   cwd=ROOT, check=True)
    assert sorted(p.name for p in artifact.iterdir()) == ["pysync", "server"]
    store = Store.create(dynamodb_local)
    store.put("u#dora", "todos", "t1", title="from the stream", _v=1)
    records = wait_until(lambda: store.stream_records())
    event = tmp_path / "event.json"
    event.write_text(json.dumps(lambda_event(store, records)))
    settings = store.ctx.settings
    env = {"PATH": os.environ["PATH"], "PYSYNC_TABLE_PREFIX": settings.table_prefix,
           "PYSYNC_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
           "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-I", "-c", RUN_HANDLER, str(artifact), str(event)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["result"] == {"batchItemFailures": []}
    assert report["web_modules"] == []
    assert Path(report["from"]).is_relative_to(artifact)
    assert entries_summary(store.log("u#dora")) == [(1, "todos#t1", 1, False)]
