"""The shared-scope routes over HTTP (design.md section 10), against the real server and
DynamoDB Local: the contract, the roles, the last-owner rule, and a bad-input catalogue in
which every refusal is a 4xx and leaves the scopes table as it was."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest

from pysync.schema import SCOPE_ID
from server.dynamo_local import DynamoDBLocal
from tests.server.api_support import Api, running_api
from tests.server.scope_support import owned_scope, scopes_table, signed_in


@pytest.fixture(scope="module")
def api(dynamodb_local: DynamoDBLocal) -> Iterator[Api]:
    with running_api(dynamodb_local) as a:
        yield a


def test_creating_a_scope_answers_201_with_the_caller_as_owner(api: Api) -> None:
    alice = signed_in(api)
    r = alice.create(title="Groceries")
    assert r.status_code == 201
    body = r.json()
    assert body["role"] == "owner"
    assert body["title"] == "Groceries"
    assert SCOPE_ID.fullmatch(body["scope"])


def test_creating_the_same_id_again_by_its_owner_is_200_with_the_same_body(api: Api) -> None:
    alice = signed_in(api)
    scope = f"list-{uuid.uuid4().hex[:12]}"
    first = alice.create(id=scope, title="Trip")
    again = alice.create(id=scope, title="Trip")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json() == {"scope": scope, "role": "owner", "title": "Trip"}


def test_an_id_another_user_took_is_409_scope_exists(api: Api) -> None:
    alice, bob = signed_in(api), signed_in(api)
    scope = f"list-{uuid.uuid4().hex[:12]}"
    assert alice.create(id=scope).status_code == 201
    r = bob.create(id=scope)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "scope_exists"
    assert bob.scopes() == []


def test_my_scopes_lists_each_membership_with_its_role(api: Api) -> None:
    alice, bob = signed_in(api), signed_in(api)
    mine = owned_scope(alice, "Mine")
    theirs = owned_scope(bob, "Theirs")
    assert bob.share(theirs, alice.name, "viewer").status_code == 200
    assert sorted(alice.scopes(), key=lambda s: s["title"]) == [
        {"scope": mine, "role": "owner", "title": "Mine"},
        {"scope": theirs, "role": "viewer", "title": "Theirs"}]


def test_an_owner_adds_a_member_with_a_role(api: Api) -> None:
    alice, bob = signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    r = alice.share(scope, bob.name, "editor")
    assert r.status_code == 200
    assert r.json() == {"user": bob.name, "role": "editor"}
    members = alice.members(scope).json()["members"]
    assert sorted(members, key=lambda m: m["role"]) == [
        {"user": bob.name, "role": "editor"}, {"user": alice.name, "role": "owner"}]
    assert bob.scopes() == [{"scope": scope, "role": "editor", "title": "Groceries"}]


def test_an_owner_changes_a_members_role(api: Api) -> None:
    alice, bob = signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    alice.share(scope, bob.name, "editor")
    assert alice.share(scope, bob.name, "viewer").status_code == 200
    assert bob.scopes()[0]["role"] == "viewer"
    assert {"user": bob.name, "role": "viewer"} in alice.members(scope).json()["members"]


def test_a_non_member_gets_404_for_a_scope_as_for_one_that_does_not_exist(api: Api) -> None:
    alice, mallory = signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    hidden = mallory.members(scope)
    missing = mallory.members(f"nope-{uuid.uuid4().hex[:12]}")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_only_an_owner_manages_members(api: Api, role: str) -> None:
    alice, bob, carol = signed_in(api), signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    alice.share(scope, bob.name, role)
    before = scopes_table(api)
    r = bob.share(scope, carol.name, "viewer")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert scopes_table(api) == before


def test_an_editor_cannot_make_itself_an_owner(api: Api) -> None:
    alice, bob = signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    alice.share(scope, bob.name, "editor")
    before = scopes_table(api)
    assert bob.share(scope, bob.name, "owner").status_code == 403
    assert scopes_table(api) == before
    assert bob.scopes()[0]["role"] == "editor"


def test_sharing_a_scope_you_are_not_in_is_404_and_writes_nothing(api: Api) -> None:
    alice, mallory = signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    before = scopes_table(api)
    r = mallory.share(scope, mallory.name, "owner")
    assert r.status_code == 404
    assert scopes_table(api) == before


def test_sharing_with_a_user_who_never_signed_in_is_404_unknown_user(api: Api) -> None:
    alice = signed_in(api)
    scope = owned_scope(alice)
    before = scopes_table(api)
    r = alice.share(scope, f"nobody-{uuid.uuid4().hex[:8]}", "editor")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_user"
    assert scopes_table(api) == before


def test_demoting_the_last_owner_is_409_last_owner(api: Api) -> None:
    alice = signed_in(api)
    scope = owned_scope(alice)
    before = scopes_table(api)
    r = alice.share(scope, alice.name, "editor")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "last_owner"
    assert scopes_table(api) == before


def test_removing_the_last_owner_is_409_last_owner(api: Api) -> None:
    alice, bob = signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    alice.share(scope, bob.name, "editor")
    before = scopes_table(api)
    r = alice.unshare(scope, alice.name)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "last_owner"
    assert scopes_table(api) == before


def test_a_second_owner_lets_the_first_one_leave(api: Api) -> None:
    alice, bob = signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    alice.share(scope, bob.name, "owner")
    assert alice.unshare(scope, alice.name).status_code == 204
    assert alice.scopes() == []
    assert bob.members(scope).json()["members"] == [{"user": bob.name, "role": "owner"}]


def test_a_member_may_remove_itself(api: Api) -> None:
    alice, bob = signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    alice.share(scope, bob.name, "viewer")
    assert bob.unshare(scope, bob.name).status_code == 204
    assert bob.scopes() == []
    assert bob.members(scope).status_code == 404


def test_an_owner_removes_a_member_who_then_no_longer_sees_the_scope(api: Api) -> None:
    alice, bob = signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    alice.share(scope, bob.name, "editor")
    assert alice.unshare(scope, bob.name).status_code == 204
    assert bob.scopes() == []
    assert alice.members(scope).json()["members"] == [{"user": alice.name, "role": "owner"}]


def test_a_member_cannot_remove_another_member(api: Api) -> None:
    alice, bob, carol = signed_in(api), signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    alice.share(scope, bob.name, "editor")
    alice.share(scope, carol.name, "viewer")
    before = scopes_table(api)
    assert bob.unshare(scope, carol.name).status_code == 403
    assert scopes_table(api) == before


def test_two_owners_demoting_each_other_at_once_leave_an_owner(api: Api) -> None:
    for _ in range(5):
        alice, bob = signed_in(api), signed_in(api)
        scope = owned_scope(alice)
        alice.share(scope, bob.name, "owner")
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda pair, s=scope: pair[0].share(s, pair[1], "editor"),
                                    [(alice, bob.name), (bob, alice.name)]))
        assert sorted(r.status_code for r in answers) in ([200, 409], [200, 403])
        owners = [m for m in alice.members(scope).json()["members"] if m["role"] == "owner"]
        assert len(owners) == 1


def test_a_user_id_with_a_slash_can_be_shared_with(api: Api) -> None:
    alice = signed_in(api)
    odd = signed_in(api, prefix="team/ops")
    scope = owned_scope(alice)
    assert alice.share(scope, odd.name, "viewer").status_code == 200
    assert odd.scopes()[0]["scope"] == scope


BAD_SCOPE_IDS = ["short", "x" * 65, "has space!", "dot.dot.dot", "ünïcode-id"]


@pytest.mark.parametrize("bad_id", BAD_SCOPE_IDS)
def test_creating_a_scope_with_a_bad_id_is_400_and_writes_nothing(api: Api, bad_id: str
                                                                  ) -> None:
    alice = signed_in(api)
    before = scopes_table(api)
    r = alice.create(id=bad_id)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"
    assert scopes_table(api) == before


@pytest.mark.parametrize("bad_id", BAD_SCOPE_IDS[:3])
def test_a_bad_scope_id_in_a_path_is_4xx(api: Api, bad_id: str) -> None:
    alice = signed_in(api)
    r = alice.members(quote(bad_id, safe=""))
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize(("body", "why"), [
    ({"title": 7}, "a title that is not a string"),
    ({"title": "x" * 201}, "a title too long"),
    ({"title": "line\nbreak"}, "an unprintable title"),
    ({"id": 12345678}, "an id that is not a string"),
    ({"owner": "bob"}, "a field the route does not take"),
    ([], "a body that is not an object"),
])
def test_a_bad_create_body_is_400_and_writes_nothing(api: Api, body: Any, why: str) -> None:
    alice = signed_in(api)
    before = scopes_table(api)
    r = alice.call("POST", "/v1/scopes", body)
    assert r.status_code == 400, why
    assert scopes_table(api) == before


@pytest.mark.parametrize("body", [{"role": "admin"}, {"role": None}, {}, {"role": "owner",
                                                                           "extra": 1}, "owner"])
def test_a_bad_role_body_is_400_and_writes_nothing(api: Api, body: Any) -> None:
    alice, bob = signed_in(api), signed_in(api)
    scope = owned_scope(alice)
    before = scopes_table(api)
    r = alice.call("PUT", f"/v1/scopes/{scope}/members/{bob.name}", body)
    assert r.status_code == 400
    assert scopes_table(api) == before


def test_a_body_that_is_not_json_is_400(api: Api) -> None:
    alice = signed_in(api)
    r = alice.call("POST", "/v1/scopes", content=b"{nope",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_a_body_that_is_not_declared_json_is_415(api: Api) -> None:
    alice = signed_in(api)
    r = alice.call("POST", "/v1/scopes", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/scopes"), ("GET", "/v1/scopes"), ("GET", "/v1/scopes/abcdefgh/members"),
    ("PUT", "/v1/scopes/abcdefgh/members/bob"), ("DELETE", "/v1/scopes/abcdefgh/members/bob"),
])
def test_every_scope_route_needs_a_token(api: Api, method: str, path: str) -> None:
    r = api.http.request(method, path, json={})
    assert r.status_code == 401
