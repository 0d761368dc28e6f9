"""The Lambda handler, fed Lambda-shaped events built from real DynamoDB Local stream records."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from botocore.exceptions import ClientError

from server import lambda_handler
from tests.server.feed_support import Store, entries_summary
from tests.support import wait_until

pytestmark = pytest.mark.dynamodb


def _lambda_value(value: Any) -> Any:
    """A boto3-decoded attribute value as Lambda's JSON has it (B as base64 text)."""
    (kind, raw), = value.items()
    if kind == "B":
        return {"B": base64.b64encode(raw).decode()}
    if kind == "M":
        return {"M": {k: _lambda_value(v) for k, v in raw.items()}}
    if kind == "L":
        return {"L": [_lambda_value(v) for v in raw]}
    return value


def lambda_event(store: Store, records: list[dict[str, Any]]) -> dict[str, Any]:
    arn = store.ctx.dynamodb.describe_table(
        TableName=store.ctx.tables.items)["Table"]["LatestStreamArn"]
    out = []
    for r in records:
        body = r["dynamodb"]
        shaped: dict[str, Any] = {
            "ApproximateCreationDateTime": body["ApproximateCreationDateTime"].timestamp(),
            "SequenceNumber": body["SequenceNumber"], "SizeBytes": body["SizeBytes"],
            "StreamViewType": body["StreamViewType"]}
        for image in ("Keys", "NewImage", "OldImage"):
            if image in body:
                shaped[image] = {k: _lambda_value(v) for k, v in body[image].items()}
        out.append({"eventID": r["eventID"], "eventName": r["eventName"], "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                    "dynamodb": shaped, "eventSourceARN": arn})
    return {"Records": out}


@pytest.fixture
def handler(store: Store, monkeypatch: pytest.MonkeyPatch) -> Any:
    s = store.ctx.settings
    monkeypatch.setenv("PYSYNC_DYNAMODB_ENDPOINT", s.dynamodb_endpoint or "")
    monkeypatch.setenv("PYSYNC_TABLE_PREFIX", s.table_prefix)
    monkeypatch.setattr(lambda_handler, "_ingestor", None)
    return lambda_handler.handler


def test_stream_event_is_appended_to_the_log_with_bytes_intact(store: Store,
                                                               handler: Any) -> None:
    store.put("u#a", "files", "f1", data=b"\x00\xffraw", _v=1)
    store.put("u#a", "todos", "t1", title="Milk", _v=1)
    records = wait_until(lambda: len(store.stream_records()) == 2 and store.stream_records())
    assert handler(lambda_event(store, records), None) == {"batchItemFailures": []}
    log = store.log("u#a")
    assert entries_summary(log) == [(1, "files#f1", 1, False), (2, "todos#t1", 1, False)]
    assert log[0]["f"]["M"]["data"] == {"B": b"\x00\xffraw"}


def test_a_write_by_another_program_is_stamped_then_logged_from_the_next_event(
        store: Store, handler: Any) -> None:
    store.put("u#a", "todos", "t1", title="from a script")
    first = wait_until(lambda: store.stream_records())
    handler(lambda_event(store, first), None)
    assert store.log("u#a") == []  # stamped in place; the stamp is the change
    both = wait_until(lambda: len(store.stream_records()) == 2 and store.stream_records())
    handler(lambda_event(store, both[1:]), None)
    assert entries_summary(store.log("u#a")) == [(1, "todos#t1", 1, False)]


def test_a_retried_batch_is_not_logged_twice(store: Store, handler: Any) -> None:
    for i in range(3):
        store.put("u#a", "todos", f"t{i}", n=i, _v=1)
    records = wait_until(lambda: len(store.stream_records()) == 3 and store.stream_records())
    event = lambda_event(store, records)
    handler(event, None)
    handler(event, None)  # Lambda's at-least-once delivery
    assert len(store.log("u#a")) == 3


def test_failed_scope_is_reported_as_a_batch_item_failure(store: Store, handler: Any) -> None:
    store.put("u#a", "todos", "t1", _v=1)
    store.put("u#broken", "todos", "t1", _v=1)
    store.put("u#c", "todos", "t1", _v=1)
    records = wait_until(lambda: len(store.stream_records()) == 3 and store.stream_records())
    handler({"Records": []}, None)  # creates the module's client, to hook a fault into it

    def refuse_broken_scope(params: dict[str, Any], **kwargs: Any) -> None:
        # A fault DynamoDB Local cannot produce (throttling), for one scope only.
        if any(i.get("Put", {}).get("Item", {}).get("pk") == {"S": "u#broken"}
               for i in params["TransactItems"]):
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "x"}},
                              "TransactWriteItems")

    ingestor = lambda_handler._ingestor
    assert ingestor is not None
    ingestor.client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems", refuse_broken_scope)
    result = handler(lambda_event(store, records), None)
    assert result == {"batchItemFailures": [
        {"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]}
    assert len(store.log("u#a")) == 1
    assert len(store.log("u#c")) == 1
    assert store.log("u#broken") == []


def test_an_item_too_deep_for_the_log_is_logged_without_its_fields_and_fails_nothing(
        store: Store, handler: Any) -> None:
    # 31 nested lists: DynamoDB stores them in the item, not inside a log entry's `f` map.
    # Before issue 7 (a) the handler reported it as a failure on every retry.
    deep: Any = 1
    for _ in range(31):
        deep = [deep]
    store.put("u#deep", "todos", "d1", tree=deep, _v=1)
    store.put("u#b", "todos", "t1", title="next", _v=1)
    records = wait_until(lambda: len(store.stream_records()) == 2 and store.stream_records())
    assert handler(lambda_event(store, records), None) == {"batchItemFailures": []}
    [entry] = store.log("u#deep")
    assert entry["x"] == {"BOOL": True}
    assert "f" not in entry  # the pull reads the item
    assert store.log("u#b")[0]["f"] == {"M": {"title": {"S": "next"}}}


def test_a_shared_scopes_changes_are_logged_in_that_scopes_own_log(store: Store,
                                                                  handler: Any) -> None:
    store.put("s#family-list-01", "todos", "t1", title="Bread", _v=1)
    store.put("u#a", "todos", "t1", title="Milk", _v=1)
    records = wait_until(lambda: len(store.stream_records()) == 2 and store.stream_records())
    assert handler(lambda_event(store, records), None) == {"batchItemFailures": []}
    assert entries_summary(store.log("s#family-list-01")) == [(1, "todos#t1", 1, False)]
    assert entries_summary(store.log("u#a")) == [(1, "todos#t1", 1, False)]
