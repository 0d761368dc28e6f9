"""deploy/template.yaml: valid for CloudFormation (cfn-lint, SAM included), and in step with
the code it deploys: the tables the server creates, and IAM that allows every DynamoDB call
the server and the feed Lambda make (and nothing that lets them create or drop tables)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from botocore import xform_name
from cfnlint.api import lint_file
from cfnlint.decode import decode

from server.__main__ import parser
from server.paths import ROOT
from server.tables import ALL_TABLES

TEMPLATE = ROOT / "deploy" / "template.yaml"
SERVER = ROOT / "server"
TABLE_RESOURCES = {"items": "ItemsTable", "clients": "ClientsTable", "log": "LogTable",
                   "feed": "FeedTable", "scopes": "ScopesTable"}
# Modules the server tasks never run in this deployment: the change feed and its leases (the
# Lambda function does that work, PYSYNC_FEED=0), the embedded DynamoDB Local, the handler.
NOT_IN_SERVER_TASKS = {"feed.py", "leases.py", "ingest.py", "dynamo_local.py",
                       "lambda_handler.py"}
# Operations only the set-up path makes (PYSYNC_CREATE_TABLES=1, the default outside AWS).
TABLE_SETUP = {"CreateTable", "UpdateTimeToLive"}
# What a TransactWriteItems needs: the permission of each kind of action inside it.
TRANSACTION_PARTS = {"PutItem", "UpdateItem", "ConditionCheckItem"}


@cache
def template() -> dict[str, Any]:
    decoded, matches = decode(str(TEMPLATE))
    assert decoded is not None, matches
    return dict(decoded)


@cache
def dynamodb_operations() -> dict[str, str]:
    """boto3 method name -> DynamoDB API name, for every operation of the service."""
    model = boto3.client("dynamodb", region_name="us-east-1").meta.service_model
    return {xform_name(name): name for name in model.operation_names}


def operations_called(path: Path) -> set[str]:
    """The DynamoDB operations a module's code calls (paginators and waiters included)."""
    text = path.read_text()
    ops = dynamodb_operations()
    called = {ops[m] for m in re.findall(r"\.(\w+)\(", text) if m in ops}
    called |= {ops[m] for m in re.findall(r"get_paginator\(\s*[\"'](\w+)[\"']", text)}
    if "get_waiter(" in text:
        called.add("DescribeTable")
    return called


def allowed_actions(statements: list[dict[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"]
        for action in [listed] if isinstance(listed, str) else listed:
            service, _, name = action.partition(":")
            assert "*" not in name, f"wildcard action {action}: least privilege names each one"
            if service == "dynamodb":
                actions.add(name)
    return actions


def needed(operations: set[str]) -> set[str]:
    out = set(operations)
    if "TransactWriteItems" in out:
        out = (out - {"TransactWriteItems"}) | TRANSACTION_PARTS
    return out


def resources() -> dict[str, Any]:
    return dict(template()["Resources"])


def test_the_template_passes_cfn_lint() -> None:
    matches = lint_file(TEMPLATE)
    assert [str(m) for m in matches] == []


def test_the_template_declares_each_table_as_the_server_creates_it() -> None:
    for spec in ALL_TABLES:
        props = resources()[TABLE_RESOURCES[spec.suffix]]["Properties"]
        assert props["TableName"] == {"Fn::Sub": f"${{TablePrefix}}{spec.suffix}"}
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                      {"AttributeName": "sk", "KeyType": "RANGE"}]
        assert props["AttributeDefinitions"] == [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": spec.sort_key_type}]
        stream = props.get("StreamSpecification")
        assert stream == ({"StreamViewType": "NEW_AND_OLD_IMAGES"} if spec.stream else None)
        ttl = {"AttributeName": spec.ttl_attribute, "Enabled": True}
        assert props.get("TimeToLiveSpecification") == (ttl if spec.ttl_attribute else None)


def test_the_server_role_allows_every_dynamodb_call_of_the_request_path() -> None:
    called: set[str] = set()
    for path in SERVER.glob("*.py"):
        if path.name not in NOT_IN_SERVER_TASKS:
            called |= operations_called(path)
    role = resources()["ServerTaskRole"]["Properties"]["Policies"]
    allowed = allowed_actions([s for p in role for s in p["PolicyDocument"]["Statement"]])
    assert needed(called) - TABLE_SETUP <= allowed, sorted(needed(called) - TABLE_SETUP - allowed)
    assert not allowed & {"CreateTable", "DeleteTable", "UpdateTable", "Scan"}


def test_the_feed_function_may_make_every_call_its_modules_make() -> None:
    called: set[str] = set()
    for name in ("ingest.py", "changelog.py", "changes.py", "records.py"):
        called |= operations_called(SERVER / name)
    policies = resources()["FeedFunction"]["Properties"]["Policies"]
    allowed = allowed_actions([s for p in policies for s in p["Statement"]])
    assert needed(called) <= allowed, sorted(needed(called) - allowed)
    assert not allowed & {"CreateTable", "DeleteTable", "UpdateTable", "Scan", "DeleteItem"}


def test_the_feed_mapping_reports_partial_batches_and_parks_failures() -> None:
    stream = resources()["FeedFunction"]["Properties"]["Events"]["ItemsStream"]["Properties"]
    assert stream["Stream"] == {"Fn::GetAtt": ["ItemsTable", "StreamArn"]}
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["BisectBatchOnFunctionError"] is True
    assert stream["ParallelizationFactor"] == 1  # one batch per shard: the log keeps item order
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["FeedFailures", "Arn"]}
    handler = resources()["FeedFunction"]["Properties"]["Handler"]
    assert handler == "server.lambda_handler.handler"


def test_the_server_image_runs_options_the_server_accepts() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)[-1])
    assert cmd[:3] == ["python", "-m", "server"]
    args = parser().parse_args(cmd[3:])
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    for source in re.findall(r"^COPY (?!--)(\S+)", dockerfile, re.MULTILINE):
        assert (ROOT / source).exists(), source
