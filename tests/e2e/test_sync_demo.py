"""The demo app syncing for real: signed in with a name, its todos reach DynamoDB, and a
record written into DynamoDB by another program shows up in the list."""

from __future__ import annotations

import json
import uuid

from playwright.sync_api import Browser, expect

from tests.e2e.conftest import BOOT_TIMEOUT_MS, SyncServer


def test_the_demo_signed_in_pushes_its_todos_and_shows_outside_writes(
        browser: Browser, sync_server: SyncServer) -> None:
    user = f"demo{uuid.uuid4().hex[:8]}"
    context = browser.new_context()
    try:
        # As if the user had typed the name and pressed Sync (which stores it and reloads).
        context.add_init_script(f"localStorage.setItem('pysync-demo-user', {json.dumps(user)})")
        page = context.new_page()
        page.goto(f"{sync_server.url}/")
        page.wait_for_selector("body[data-ready=true]", timeout=BOOT_TIMEOUT_MS)
        page.set_default_timeout(30_000)
        page.fill("#title", "Buy milk")
        page.press("#title", "Enter")
        # The item is listed at once, marked pending; the mark goes when the push is acknowledged.
        # (Waiting on the status lines alone raced: they said "synced" before the write.)
        todo = page.locator("li", has_text="Buy milk")
        expect(todo).to_have_count(1)
        expect(todo.locator(".pending")).to_have_count(0)
        expect(page.locator("#badge")).to_have_text("Synced")
        expect(page.locator("#user")).to_have_value(user)
        expect(page.locator("#status")).to_have_text("all changes saved")
        items = sync_server.dynamodb.query(
            TableName=sync_server.tables.items, ConsistentRead=True,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"u#{user}"}})["Items"]
        assert [i["title"]["S"] for i in items] == ["Buy milk"]

        sync_server.dynamodb.put_item(TableName=sync_server.tables.items, Item={
            "pk": {"S": f"u#{user}"}, "sk": {"S": "todos#from-backend"},
            "title": {"S": "Added by a backend job"}, "done": {"BOOL": False},
            "created": {"N": "0"}})
        expect(page.locator("li .title")).to_have_text(["Added by a backend job", "Buy milk"])
    finally:
        context.close()
