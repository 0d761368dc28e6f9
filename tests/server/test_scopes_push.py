"""Pushing into shared scopes over HTTP (design.md section 10), against the real server and
DynamoDB Local: members who may write land their records in the scope's partition, everyone
else's mutations are `rejected` with `forbidden` while their neighbours apply, and the
exactly-once bookkeeping spans scopes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from server.changelog import ChangeLog
from server.dynamo_local import DynamoDBLocal
from tests.server.api_support import Api, client_id, mutation, push_body, running_api
from tests.server.scope_support import User, owned_scope, signed_in
from tests.support import wait_until


@pytest.fixture(scope="module")
def api(dynamodb_local: DynamoDBLocal) -> Iterator[Api]:
    with running_api(dynamodb_local, feed_enabled=True) as a:
        yield a


def push(user: User, cid: str, *mutations: dict[str, Any]) -> dict[str, Any]:
    r = user.api.push(user.token, push_body(cid, *mutations))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def statuses(body: dict[str, Any]) -> list[str]:
    return [r["status"] for r in body["results"]]


def titles(api: Api, pk: str) -> dict[str, str]:
    return {item["sk"]["S"]: item["title"]["S"] for item in api.items(pk)}


def shared_with(api: Api, role: str) -> tuple[User, User, str]:
    """An owner, a member with `role`, and their scope's id."""
    owner, member = signed_in(api), signed_in(api)
    scope = owned_scope(owner)
    assert owner.share(scope, member.name, role).status_code == 200
    return owner, member, scope


@pytest.mark.parametrize("role", ["owner", "editor"])
def test_a_member_who_may_write_lands_its_record_in_the_scope(api: Api, role: str) -> None:
    _, member, scope = shared_with(api, role)
    body = push(member, client_id(), mutation(1, "milk", scope=scope,
                                              value={"title": "Milk"}))
    assert statuses(body) == ["applied"]
    assert titles(api, f"s#{scope}") == {"todos#milk": "Milk"}
    assert titles(api, f"u#{member.name}") == {}


def test_a_viewers_write_is_rejected_forbidden_and_its_neighbours_apply(api: Api) -> None:
    _, viewer, scope = shared_with(api, "viewer")
    body = push(viewer, client_id(),
                mutation(1, "a", value={"title": "mine"}),
                mutation(2, "b", scope=scope, value={"title": "not allowed"}),
                mutation(3, "c", value={"title": "mine too"}))
    assert statuses(body) == ["applied", "rejected", "applied"]
    assert body["results"][1]["error"]["code"] == "forbidden"
    assert body["last_mutation_id"] == 3
    assert titles(api, f"s#{scope}") == {}
    assert titles(api, f"u#{viewer.name}") == {"todos#a": "mine", "todos#c": "mine too"}


def test_a_write_into_a_scope_of_which_the_user_is_not_a_member_is_forbidden(api: Api
                                                                              ) -> None:
    owner, stranger = signed_in(api), signed_in(api)
    scope = owned_scope(owner)
    body = push(stranger, client_id(), mutation(1, "x", scope=scope))
    assert statuses(body) == ["rejected"]
    assert body["results"][0]["error"]["code"] == "forbidden"
    assert titles(api, f"s#{scope}") == {}


def test_a_write_into_a_scope_that_does_not_exist_is_forbidden(api: Api) -> None:
    user = signed_in(api)
    body = push(user, client_id(), mutation(1, "x", scope="no-such-scope-anywhere"))
    assert statuses(body) == ["rejected"]
    assert body["results"][0]["error"]["code"] == "forbidden"


@pytest.mark.parametrize("bad", ["short", 12345678, "has space!", ""])
def test_a_malformed_scope_field_rejects_that_mutation_only(api: Api, bad: object) -> None:
    user = signed_in(api)
    body = push(user, client_id(), mutation(1, "x", scope=bad), mutation(2, "y"))
    assert statuses(body) == ["rejected", "applied"]
    assert body["results"][0]["error"]["code"] == "invalid_mutation"


def test_a_removed_member_can_no_longer_write(api: Api) -> None:
    owner, editor, scope = shared_with(api, "editor")
    cid = client_id()
    assert statuses(push(editor, cid, mutation(1, "a", scope=scope))) == ["applied"]
    assert owner.unshare(scope, editor.name).status_code == 204
    body = push(editor, cid, mutation(2, "b", scope=scope))
    assert statuses(body) == ["rejected"]
    assert sorted(titles(api, f"s#{scope}")) == ["todos#a"]


def test_runs_across_scopes_in_one_push_apply_in_id_order(api: Api) -> None:
    _, editor, scope = shared_with(api, "editor")
    body = push(editor, client_id(),
                mutation(1, "p1", value={"title": "personal 1"}),
                mutation(2, "s1", scope=scope, value={"title": "shared 1"}),
                mutation(3, "s1", scope=scope, op="patch", base_version=1,
                         value={"title": "shared 1, edited"}),
                mutation(4, "p1", op="patch", base_version=1, value={"title": "personal 2"}))
    assert statuses(body) == ["applied"] * 4
    assert [r["version"] for r in body["results"]] == [1, 1, 2, 2]
    assert body["last_mutation_id"] == 4
    assert titles(api, f"s#{scope}") == {"todos#s1": "shared 1, edited"}
    assert titles(api, f"u#{editor.name}") == {"todos#p1": "personal 2"}


def test_a_retry_of_a_push_across_scopes_applies_nothing_again(api: Api) -> None:
    _, editor, scope = shared_with(api, "editor")
    cid = client_id()
    mutations = [mutation(1, "p", value={"title": "personal"}),
                 mutation(2, "s", scope=scope, value={"title": "shared"})]
    first = push(editor, cid, *mutations)
    again = push(editor, cid, *mutations)
    assert statuses(first) == ["applied", "applied"]
    assert statuses(again) == ["duplicate", "duplicate"]
    assert [r["server"]["version"] for r in again["results"]] == [1, 1]
    assert [item["_v"]["N"] for item in api.items(f"s#{scope}")] == ["1"]


def test_two_members_edit_the_same_shared_record(api: Api) -> None:
    owner, editor, scope = shared_with(api, "editor")
    assert statuses(push(owner, client_id(), mutation(1, "t", scope=scope,
                                                      value={"title": "from the owner"}))) \
        == ["applied"]
    body = push(editor, client_id(), mutation(1, "t", scope=scope, op="patch", base_version=1,
                                              value={"title": "from the editor"}))
    assert statuses(body) == ["applied"]
    assert titles(api, f"s#{scope}") == {"todos#t": "from the editor"}


def logged_keys(api: Api, pk: str) -> list[str]:
    log = ChangeLog(api.ctx.dynamodb, api.ctx.tables, retention_s=3600)
    return [entry["k"]["S"] for entry in log.read(pk, 0, log.heads([pk])[pk], 100)]


def test_the_feed_logs_a_shared_scopes_changes_in_that_scopes_log(api: Api) -> None:
    _, editor, scope = shared_with(api, "editor")
    push(editor, client_id(), mutation(1, "pushed", scope=scope))
    # another program's write into the scope's partition, as boto3 makes it
    api.ctx.dynamodb.put_item(TableName=api.ctx.tables.items, Item={
        "pk": {"S": f"s#{scope}"}, "sk": {"S": "todos#outside"}, "title": {"S": "by boto3"}})
    wait_until(lambda: sorted(logged_keys(api, f"s#{scope}")) == ["todos#outside", "todos#pushed"],
               message="the scope's log did not get both changes")
    assert logged_keys(api, f"u#{editor.name}") == []


@pytest.mark.parametrize("role", ["viewer", None])
def test_a_retry_of_a_forbidden_mutation_is_answered_forbidden_again(
        api: Api, role: str | None) -> None:
    # A bare `duplicate` reads as "applied, version unknown" to the client, which then
    # keeps a write the server refused; the record itself is not the caller's to read.
    if role is None:
        owner, user = signed_in(api), signed_in(api)
        scope = owned_scope(owner)
    else:
        _, user, scope = shared_with(api, role)
    cid = client_id()
    mutations = [mutation(1, "mine", value={"title": "mine"}),
                 mutation(2, "x", scope=scope, value={"title": "not allowed"})]
    first = push(user, cid, *mutations)
    again = push(user, cid, *mutations)
    assert statuses(first) == ["applied", "rejected"]
    assert statuses(again) == ["duplicate", "rejected"]
    assert again["results"][1]["error"]["code"] == "forbidden"
    assert "server" not in again["results"][1]
    assert titles(api, f"s#{scope}") == {}


def test_a_retry_of_a_write_applied_before_its_writer_was_removed_is_answered_forbidden(
        api: Api) -> None:
    # The device's scope is being dropped (the pull names it revoked), its entries with it;
    # a removed member is answered as it would be for a new write, and never sent the
    # record of a scope it may no longer read.
    owner, editor, scope = shared_with(api, "editor")
    cid = client_id()
    body = [mutation(1, "a", scope=scope, value={"title": "written"})]
    assert statuses(push(editor, cid, *body)) == ["applied"]
    assert owner.unshare(scope, editor.name).status_code == 204
    again = push(editor, cid, *body)
    assert statuses(again) == ["rejected"]
    assert "server" not in again["results"][0]
    assert titles(api, f"s#{scope}") == {"todos#a": "written"}
