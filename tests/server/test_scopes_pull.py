"""Pulling over shared scopes with one cursor (design.md section 10), over HTTP against the
real server, its change feed and DynamoDB Local: every change names its scope, a scope joined
later arrives as a snapshot, a scope left is named in `revoked` once, `scopes=` narrows the
pull, and nothing of a scope reaches a user who is not in it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from server.dynamo_local import DynamoDBLocal
from server.pull import Puller
from tests.server.api_support import Api, client_id, mutation, push_body, running_api
from tests.server.scope_support import User, owned_scope, signed_in
from tests.support import wait_until


@pytest.fixture(scope="module")
def api(dynamodb_local: DynamoDBLocal) -> Iterator[Api]:
    with running_api(dynamodb_local, feed_enabled=True) as a:
        yield a


class Device:
    """One device of a user pulling: its client id, cursor and what it holds."""

    def __init__(self, user: User, scopes: str | None = None) -> None:
        self.user, self.scopes = user, scopes
        self.client_id = client_id()
        self.cursor: str | None = None
        self.held: dict[tuple[str | None, str], dict[str, Any]] = {}
        self.revoked: list[str] = []

    def page(self, limit: int = 500) -> dict[str, Any]:
        params = {"client_id": self.client_id, "limit": str(limit)}
        if self.cursor:
            params["cursor"] = self.cursor
        if self.scopes is not None:
            params["scopes"] = self.scopes
        r = self.user.call("GET", "/v1/pull", params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert not body.get("reset"), body
        for c in body["changes"]:
            assert "scope" in c
            self.held[(c["scope"], c["key"])] = c
        self.revoked += body.get("revoked", [])
        self.cursor = body["cursor"]
        return body

    def pull(self, limit: int = 500) -> None:
        while self.page(limit)["has_more"]:
            pass

    def titles(self) -> dict[tuple[str | None, str], str]:
        return {k: c["value"]["title"] for k, c in self.held.items() if not c["deleted"]}


def write(user: User, scope: str | None, *keys: str) -> None:
    r = user.api.push(user.token, push_body(client_id(), *(
        mutation(i, k, scope=scope, value={"title": f"{k} in {scope or 'personal'}"})
        for i, k in enumerate(keys, 1))))
    assert r.status_code == 200, r.text
    assert {x["status"] for x in r.json()["results"]} == {"applied"}


def logged(api: Api, pk: str, count: int) -> None:
    """Wait until the feed has logged `count` changes of `pk`."""
    puller = Puller(api.ctx.dynamodb, api.ctx.tables, 3600)
    wait_until(lambda: puller.changelog.heads([pk])[pk] >= count,
               message=f"the feed did not log {count} changes of {pk}")


def shared_list(api: Api, *keys: str) -> tuple[User, str]:
    owner = signed_in(api)
    scope = owned_scope(owner)
    write(owner, scope, *keys)
    return owner, scope


def test_a_first_pull_brings_every_scope_each_change_naming_its_scope(api: Api) -> None:
    owner, scope = shared_list(api, "bread", "milk")
    write(owner, None, "diary")
    device = Device(owner)
    device.pull()
    assert device.titles() == {(None, "diary"): "diary in personal",
                               (scope, "bread"): f"bread in {scope}",
                               (scope, "milk"): f"milk in {scope}"}


def test_a_shared_scopes_later_changes_arrive_as_deltas(api: Api) -> None:
    owner, scope = shared_list(api, "bread")
    editor = signed_in(api)
    owner.share(scope, editor.name, "editor")
    device = Device(owner)
    device.pull()
    write(editor, scope, "eggs")
    logged(api, f"s#{scope}", 2)
    device.pull()
    assert device.titles()[(scope, "eggs")] == f"eggs in {scope}"


def test_a_scope_joined_later_arrives_as_a_snapshot(api: Api) -> None:
    owner, scope = shared_list(api, "bread", "milk")
    logged(api, f"s#{scope}", 2)
    member = signed_in(api)
    device = Device(member)
    device.pull()
    assert device.titles() == {}
    owner.share(scope, member.name, "viewer")
    device.pull()
    assert set(device.titles()) == {(scope, "bread"), (scope, "milk")}


def test_a_removed_members_next_pull_names_the_scope_in_revoked_once(api: Api) -> None:
    owner, scope = shared_list(api, "bread")
    member = signed_in(api)
    owner.share(scope, member.name, "editor")
    device = Device(member)
    device.pull()
    assert (scope, "bread") in device.titles()
    owner.unshare(scope, member.name)
    device.pull()
    device.pull()
    assert device.revoked == [scope]


def test_a_removed_member_receives_nothing_more_of_the_scope(api: Api) -> None:
    owner, scope = shared_list(api, "bread")
    member = signed_in(api)
    owner.share(scope, member.name, "editor")
    device = Device(member)
    device.pull()
    owner.unshare(scope, member.name)
    write(owner, scope, "secret")
    logged(api, f"s#{scope}", 2)
    device.pull()
    assert (scope, "secret") not in device.held


def test_a_user_who_is_not_a_member_never_receives_a_scopes_records(api: Api) -> None:
    _, scope = shared_list(api, "bread")
    stranger = Device(signed_in(api))
    stranger.pull()
    assert [k for k in stranger.held if k[0] == scope] == []


def test_scopes_personal_leaves_shared_scopes_out_and_keeps_their_turn(api: Api) -> None:
    owner, scope = shared_list(api, "bread")
    write(owner, None, "diary")
    device = Device(owner, scopes="personal")
    device.pull()
    assert device.titles() == {(None, "diary"): "diary in personal"}
    device.scopes = None
    device.pull()
    assert set(device.titles()) == {(None, "diary"), (scope, "bread")}


def test_a_small_limit_pages_through_every_scope_once(api: Api) -> None:
    owner, scope = shared_list(api, *(f"s{i}" for i in range(7)))
    other = owned_scope(owner)
    write(owner, other, *(f"o{i}" for i in range(5)))
    write(owner, None, *(f"p{i}" for i in range(4)))
    # (logged first: a change logged after a snapshot began comes again as a delta)
    for pk, count in ((f"s#{scope}", 7), (f"s#{other}", 5), (f"u#{owner.name}", 4)):
        logged(api, pk, count)
    device = Device(owner)
    seen: list[tuple[str | None, str]] = []
    while True:
        body = device.page(limit=3)
        seen += [(c["scope"], c["key"]) for c in body["changes"]]
        assert len(body["changes"]) <= 3
        if not body["has_more"]:
            break
    assert sorted(seen, key=str) == sorted(
        [(None, f"p{i}") for i in range(4)] + [(scope, f"s{i}") for i in range(7)]
        + [(other, f"o{i}") for i in range(5)], key=str)


def test_a_version_1_cursor_continues_as_the_personal_scope(api: Api) -> None:
    owner = signed_in(api)
    write(owner, None, "a")
    logged(api, f"u#{owner.name}", 1)
    cid = client_id()
    old = Puller(api.ctx.dynamodb, api.ctx.tables, 3600).pull(f"u#{owner.name}", None, 100)
    device = Device(owner)
    device.client_id, device.cursor = cid, old["cursor"]
    write(owner, None, "b")
    logged(api, f"u#{owner.name}", 2)
    device.pull()
    assert set(device.titles()) == {(None, "b")}


@pytest.mark.parametrize("bad", ["", "personal,", "short", "personal,has space!",
                                 ",".join(f"scope-{uuid.uuid4().hex}" for _ in range(201))])
def test_a_bad_scopes_parameter_is_400(api: Api, bad: str) -> None:
    user = signed_in(api)
    r = user.call("GET", "/v1/pull", params={"client_id": client_id(), "scopes": bad})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"


def test_another_users_cursor_resets(api: Api) -> None:
    alice, bob = signed_in(api), signed_in(api)
    write(alice, None, "a")
    theirs = Device(alice)
    theirs.pull()
    assert theirs.cursor is not None
    r = bob.call("GET", "/v1/pull", params={"client_id": client_id(), "cursor": theirs.cursor})
    assert r.status_code == 200
    assert r.json() == {"reset": True}


def test_a_scope_left_before_the_device_ever_pulled_it_is_named_in_revoked_once(
        api: Api) -> None:
    # Found by the seeded simulation (seed 13 when shared scopes came to it): a member's
    # device wrote into the scope, and its push's answers gave it those records, but it had
    # not pulled since joining. Removed, its cursor never named the scope, so no pull told
    # it: the device kept the scope's records for good.
    owner, scope = shared_list(api, "bread")
    member = signed_in(api)
    device = Device(member)
    device.pull()
    owner.share(scope, member.name, "editor")
    write(member, scope, "mine")
    assert owner.unshare(scope, member.name).status_code == 204
    device.pull()
    device.pull()
    assert device.revoked == [scope]


def test_a_scope_left_and_joined_again_is_served_again(api: Api) -> None:
    owner, scope = shared_list(api, "bread")
    member = signed_in(api)
    device = Device(member)
    device.pull()
    owner.share(scope, member.name, "editor")
    owner.unshare(scope, member.name)
    device.pull()
    owner.share(scope, member.name, "viewer")
    device.pull()
    assert device.revoked == [scope]
    assert device.titles() == {(scope, "bread"): f"bread in {scope}"}
