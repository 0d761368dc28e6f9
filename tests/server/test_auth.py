"""Auth over HTTP: the dev issuer, bearer tokens, OIDC/JWKS (real app over ASGI).

The JWKS tests serve a locally generated RSA key's JWKS from a real HTTP server on loopback.
No DynamoDB is needed: authentication happens before any table is touched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.app import create_app
from server.auth import DEV_ISSUER, authenticate
from server.config import Settings
from server.dynamo_local import free_port

pytestmark = pytest.mark.anyio
SECRET = "s" * 40
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST"
NOWHERE = "http://127.0.0.1:9"  # no DynamoDB call happens in these tests


async def whoami(request: Request) -> Response:
    principal = await authenticate(request)
    return JSONResponse({"user": principal.user, "scope": principal.scope})


def make_app(**settings: Any) -> Starlette:
    app = create_app(Settings(dynamodb_endpoint=NOWHERE, **settings))
    # A probe route that only authenticates, as every authenticated route does first.
    app.router.routes.insert(0, Route("/v1/whoami", whoami))
    return app


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


@pytest.fixture
async def dev() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(dev=True, jwt_secret=SECRET)) as c:
        yield c


def dev_claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "alice", "iss": DEV_ISSUER, "aud": "pysync", "iat": now, "exp": now + 60}
    claims.update(over)
    return claims


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT built by hand: PyJWT rightly refuses to produce these attack tokens itself."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


async def assert_401(client: httpx.AsyncClient, headers: dict[str, str], code: str) -> None:
    r = await client.get("/v1/whoami", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == code
    assert r.headers["www-authenticate"].startswith("Bearer")


# --- dev issuer ---

async def test_dev_token_route_issues_a_token_for_the_users_own_scope(
        dev: httpx.AsyncClient) -> None:
    r = await dev.post("/v1/dev/token", json={"user": "alice"})
    assert r.status_code == 200
    me = await dev.get("/v1/whoami", headers=bearer(r.json()["token"]))
    assert me.json() == {"user": "alice", "scope": "u#alice"}


async def test_dev_token_route_does_not_exist_outside_dev_mode() -> None:
    async with client_for(make_app(dev=False)) as c:
        r = await c.post("/v1/dev/token", json={"user": "alice"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("body", [{"user": ""}, {"user": 7}, {"user": "a", "admin": True},
                                  {"user": "x" * 300}, {"user": "a\nb"}, ["alice"]])
async def test_dev_token_route_refuses_a_bad_user(dev: httpx.AsyncClient, body: Any) -> None:
    r = await dev.post("/v1/dev/token", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"


async def test_dev_tokens_from_one_process_are_accepted_by_another_with_the_same_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYSYNC_JWT_SECRET", SECRET)
    one = create_app(Settings.from_env(dev=True, dynamodb_endpoint=NOWHERE))
    other = create_app(Settings.from_env(dev=True, dynamodb_endpoint=NOWHERE))
    other.router.routes.insert(0, Route("/v1/whoami", whoami))
    async with client_for(one) as a, client_for(other) as b:
        token = (await a.post("/v1/dev/token", json={"user": "bob"})).json()["token"]
        assert (await b.get("/v1/whoami", headers=bearer(token))).json()["scope"] == "u#bob"


async def test_dev_tokens_are_refused_when_the_server_is_not_in_dev_mode() -> None:
    token = jwt.encode(dev_claims(), SECRET, algorithm="HS256")
    async with client_for(make_app(dev=False, jwt_secret=SECRET)) as c:
        await assert_401(c, bearer(token), "invalid_token")


# --- bearer tokens ---

async def test_a_request_without_a_token_is_401(dev: httpx.AsyncClient) -> None:
    await assert_401(dev, {}, "missing_token")


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer ", "Bearer a b",
                                    "Bearer not-a-jwt", "Token abc.def.ghi"])
async def test_a_malformed_authorization_header_is_401(dev: httpx.AsyncClient,
                                                       header: str) -> None:
    await assert_401(dev, {"Authorization": header}, "invalid_token")


async def test_an_expired_token_is_401_token_expired(dev: httpx.AsyncClient) -> None:
    token = jwt.encode(dev_claims(iat=1_000_000, exp=1_000_060), SECRET, algorithm="HS256")
    await assert_401(dev, bearer(token), "token_expired")


async def test_a_token_for_another_audience_is_401(dev: httpx.AsyncClient) -> None:
    token = jwt.encode(dev_claims(aud="another-app"), SECRET, algorithm="HS256")
    await assert_401(dev, bearer(token), "invalid_token")


async def test_a_token_with_a_wrong_signature_is_401(dev: httpx.AsyncClient) -> None:
    token = jwt.encode(dev_claims(), "w" * 40, algorithm="HS256")
    await assert_401(dev, bearer(token), "invalid_token")


async def test_a_token_with_alg_none_is_401(dev: httpx.AsyncClient) -> None:
    token = hand_made_token({"alg": "none", "typ": "JWT"}, dev_claims(), None)
    await assert_401(dev, bearer(token), "invalid_token")


async def test_a_token_without_a_subject_is_401(dev: httpx.AsyncClient) -> None:
    claims = dev_claims()
    del claims["sub"]
    await assert_401(dev, bearer(jwt.encode(claims, SECRET, algorithm="HS256")), "invalid_token")


async def test_a_token_without_an_expiry_is_401(dev: httpx.AsyncClient) -> None:
    claims = dev_claims()
    del claims["exp"]
    await assert_401(dev, bearer(jwt.encode(claims, SECRET, algorithm="HS256")), "invalid_token")


# --- OIDC / JWKS ---

class JWKS:
    """A JWKS endpoint on loopback serving one locally generated RSA key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig",
                                          "alg": "RS256"}]}).encode()
        self.hits = 0
        self.url = ""

    def token(self, key: rsa.RSAPrivateKey | None = None, **over: Any) -> str:
        now = int(time.time())
        claims = {"sub": "carol-sub", "iss": ISSUER, "aud": "pysync", "iat": now,
                  "exp": now + 60, "token_use": "id"}
        claims.update(over)
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": "k1"})

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def jwks() -> Iterator[JWKS]:
    keys = JWKS()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            keys.hits += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(keys.body)))
            self.end_headers()
            self.wfile.write(keys.body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    keys.url = f"http://127.0.0.1:{httpd.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield keys
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
async def oidc(jwks: JWKS) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(jwks_url=jwks.url, jwt_issuer=ISSUER)) as c:
        yield c


async def test_a_jwks_signed_token_is_accepted_with_the_scope_of_its_subject(
        oidc: httpx.AsyncClient, jwks: JWKS) -> None:
    r = await oidc.get("/v1/whoami", headers=bearer(jwks.token()))
    assert r.json() == {"user": "carol-sub", "scope": "u#carol-sub"}


async def test_the_jwks_is_fetched_once_and_cached(oidc: httpx.AsyncClient, jwks: JWKS) -> None:
    before = jwks.hits
    for _ in range(3):
        assert (await oidc.get("/v1/whoami", headers=bearer(jwks.token()))).status_code == 200
    assert jwks.hits - before <= 1


async def test_a_token_signed_by_another_key_with_the_same_kid_is_401(
        oidc: httpx.AsyncClient, jwks: JWKS) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await assert_401(oidc, bearer(jwks.token(key=impostor)), "invalid_token")


async def test_a_jwks_token_from_another_issuer_is_401(oidc: httpx.AsyncClient,
                                                       jwks: JWKS) -> None:
    await assert_401(oidc, bearer(jwks.token(iss="https://evil.example")), "invalid_token")


async def test_an_expired_jwks_token_is_401(oidc: httpx.AsyncClient, jwks: JWKS) -> None:
    await assert_401(oidc, bearer(jwks.token(iat=1_000_000, exp=1_000_060)), "token_expired")


async def test_hmac_signed_with_the_public_key_is_refused(oidc: httpx.AsyncClient,
                                                         jwks: JWKS) -> None:
    # The HS/RS confusion attack: HS256 "signed" with the (public) RSA key as HMAC secret.
    claims = {"sub": "mallory", "iss": ISSUER, "aud": "pysync", "exp": int(time.time()) + 60}
    token = hand_made_token({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims,
                            jwks.public_pem())
    await assert_401(oidc, bearer(token), "invalid_token")


async def test_hmac_signed_with_the_public_key_is_refused_in_dev_mode_too(jwks: JWKS) -> None:
    claims = {"sub": "mallory", "iss": DEV_ISSUER, "aud": "pysync", "exp": int(time.time()) + 60}
    token = hand_made_token({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims,
                            jwks.public_pem())
    async with client_for(make_app(dev=True, jwks_url=jwks.url, jwt_issuer=ISSUER)) as c:
        await assert_401(c, bearer(token), "invalid_token")


async def test_an_unreachable_jwks_is_503_with_retry_after(jwks: JWKS) -> None:
    dead = f"http://127.0.0.1:{free_port()}/jwks.json"
    async with client_for(make_app(jwks_url=dead, jwt_issuer=ISSUER)) as c:
        r = await c.get("/v1/whoami", headers=bearer(jwks.token()))
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "auth_unavailable"
    assert int(r.headers["retry-after"]) >= 1


# --- settings that would open a hole are refused at start ---

@pytest.mark.parametrize(("settings", "reason"), [
    ({"jwt_algorithms": ("HS256",)}, "jwt_algorithms must be asymmetric"),
    ({"jwt_algorithms": ("none",)}, "jwt_algorithms must be asymmetric"),
    ({"jwt_algorithms": ()}, "jwt_algorithms must be asymmetric"),
    ({"jwt_secret": "short"}, "jwt_secret must be at least"),
    ({"cors_origins": ("*",), "cors_allow_credentials": True},
     "cannot be combined with credentials"),
])
def test_unsafe_auth_settings_are_refused(settings: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Settings(**settings)
