"""The embedded DynamoDB Local: start, stop, persistence with a data dir, idempotent tables."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pysync.errors import SchemaError
from server.__main__ import load_schema, parser, settings_from
from server.assets import ensure_pysync_wheel
from server.dynamo_local import DynamoDBLocal, local_client
from server.tables import TablesMissing, ensure_tables
from tests.server.conftest import TEST_SCHEMA
from tests.support import wait_until

pytestmark = pytest.mark.dynamodb


@pytest.fixture(scope="module", autouse=True)
def browser_wheel() -> None:
    """The set-up's step: the servers this module starts serve the wheel, never build it."""
    ensure_pysync_wheel()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_data_survives_a_restart_with_a_data_dir_and_stop_ends_the_process(
        tmp_path: Path) -> None:
    with DynamoDBLocal(data_dir=tmp_path) as first:
        client = local_client(first.endpoint)
        names = ensure_tables(client, "demo_")
        client.put_item(TableName=names.items, Item={"pk": {"S": "u#a"}, "sk": {"S": "n#1"},
                                                     "title": {"S": "kept"}})
        port = first.port
    assert not port_open(port)
    with DynamoDBLocal(data_dir=tmp_path) as second:
        client = local_client(second.endpoint)
        assert ensure_tables(client, "demo_") == names  # tables exist: nothing to create
        item = client.get_item(TableName=names.items,
                               Key={"pk": {"S": "u#a"}, "sk": {"S": "n#1"}})["Item"]
        assert item["title"] == {"S": "kept"}


def test_a_relative_data_dir_is_taken_from_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # as `make demo` passes data/dynamodb from the project root
    with DynamoDBLocal(data_dir=Path("data/dynamodb")) as local:
        ensure_tables(local_client(local.endpoint), "demo_")
    assert any((tmp_path / "data" / "dynamodb").iterdir())


def test_table_creation_is_idempotent_and_sets_streams_and_ttl(
        dynamodb_local: DynamoDBLocal) -> None:
    client = local_client(dynamodb_local.endpoint)
    prefix = f"idem{uuid.uuid4().hex[:8]}_"
    names = ensure_tables(client, prefix)
    assert ensure_tables(client, prefix) == names
    items = client.describe_table(TableName=names.items)["Table"]
    assert items["StreamSpecification"] == {"StreamEnabled": True,
                                            "StreamViewType": "NEW_AND_OLD_IMAGES"}
    ttl = client.describe_time_to_live(TableName=names.items)["TimeToLiveDescription"]
    assert ttl.get("AttributeName") == "_ttl"
    listed = set(client.list_tables(ExclusiveStartTableName=prefix[:-1])["TableNames"])
    assert {names.items, names.clients, names.log, names.feed} <= listed


def test_schema_option_loads_module_attr() -> None:
    assert load_schema("tests.server.conftest:TEST_SCHEMA") is TEST_SCHEMA
    args = parser().parse_args(["--schema", "tests.server.conftest:TEST_SCHEMA",
                                "--table-prefix", "x_"])
    settings = settings_from(args, "http://127.0.0.1:1")
    assert settings.schema is TEST_SCHEMA
    assert settings.table_prefix == "x_"


@pytest.mark.parametrize("spec", ["no_such_module:X", "tests.server.conftest:nothing",
                                  "tests.server.conftest:pytest"])
def test_a_bad_schema_option_is_a_schema_error(spec: str) -> None:
    with pytest.raises(SchemaError):
        load_schema(spec)


def test_the_server_exits_with_a_clear_message_on_a_bad_schema() -> None:
    done = subprocess.run([sys.executable, "-m", "server", "--schema", "nope:X"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "cannot import 'nope'" in done.stderr
    assert "Traceback" not in done.stderr


def test_dynamodb_aws_uses_the_standard_aws_environment_and_no_endpoint_override(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from server.db import dynamodb_client

    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    settings = settings_from(parser().parse_args(["--dynamodb", "aws"]), None)
    client = dynamodb_client(settings)  # builds a client; sends nothing
    assert client.meta.region_name == "eu-west-3"
    assert client.meta.endpoint_url == "https://dynamodb.eu-west-3.amazonaws.com"


def test_stopping_the_server_with_sigterm_stops_its_embedded_dynamodb_local() -> None:
    from server.dynamo_local import free_port

    server = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert server.stdout is not None
        line = ""
        for line in server.stdout:  # "DynamoDB Local on http://127.0.0.1:PORT (in memory)"
            if line.startswith("DynamoDB Local on "):
                break
        dynamodb_port = int(line.split(":")[2].split()[0])
        assert port_open(dynamodb_port)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    finally:
        server.kill()
    wait_until(lambda: not port_open(dynamodb_port), timeout=15, interval=0.1,
               message="DynamoDB Local's port is still open")


def test_with_creation_off_missing_tables_are_named_and_none_is_created(
        dynamodb_local: DynamoDBLocal) -> None:
    client = local_client(dynamodb_local.endpoint)
    prefix = f"nocreate{uuid.uuid4().hex[:8]}_"
    with pytest.raises(TablesMissing, match=f"{prefix}items, {prefix}clients"):
        ensure_tables(client, prefix, create=False)
    assert not [t for t in client.list_tables(ExclusiveStartTableName=prefix[:-1])["TableNames"]
                if t.startswith(prefix)]


def test_with_creation_off_existing_tables_are_accepted(dynamodb_local: DynamoDBLocal) -> None:
    client = local_client(dynamodb_local.endpoint)
    prefix = f"made{uuid.uuid4().hex[:8]}_"
    names = ensure_tables(client, prefix)
    assert ensure_tables(client, prefix, create=False) == names


def test_the_server_exits_with_a_clear_message_when_tables_are_missing_and_creation_is_off(
        dynamodb_local: DynamoDBLocal) -> None:
    env = {**os.environ, "PYSYNC_CREATE_TABLES": "0",
           "PYSYNC_TABLE_PREFIX": f"absent{uuid.uuid4().hex[:8]}_"}
    done = subprocess.run([sys.executable, "-m", "server", "--dynamodb", dynamodb_local.endpoint,
                           "--port", "1"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0
    assert "tables missing" in done.stderr
    assert "Traceback" not in done.stderr
