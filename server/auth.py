"""Who is calling: JWT bearer tokens, from the dev issuer or an OIDC provider's JWKS.

Every route that needs a user calls `await authenticate(request)`, which returns the
Principal or raises AuthError (answered 401 by the app's exception handlers, see
server/http.py). The scope comes from the verified token's `sub`, never from the body.

Two kinds of token are accepted, told apart by the header's `alg` and each verified with its
own pinned algorithm list, so one can never be passed off as the other:
- HS256 tokens of the dev issuer (only when the server runs in dev mode), signed with
  Settings.jwt_secret;
- asymmetric tokens (Settings.jwt_algorithms, RS256 by default) signed by a key published at
  Settings.jwks_url, e.g. an Amazon Cognito user pool.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from server.config import Settings
from server.context import context_of
from server.errors import AuthError, AuthUnavailable

DEV_ISSUER = "pysync-dev"
DEV_ALGORITHM = "HS256"
MAX_USER_CHARS = 256
# Clock skew tolerated between the token issuer and this server.
LEEWAY_S = 5
JWKS_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Principal:
    user: str  # the token's `sub`
    scope: str  # "u#<sub>": the user's private scope

    @classmethod
    def for_user(cls, user: str) -> Principal:
        return cls(user, f"u#{user}")


def check_user(user: object) -> str:
    """A user id (token subject) that is safe to embed in a scope: 1..256 printable chars."""
    if not isinstance(user, str) or not user or len(user) > MAX_USER_CHARS:
        raise AuthError("invalid_token", f"the subject must be 1..{MAX_USER_CHARS} characters")
    if not user.isprintable():
        raise AuthError("invalid_token", "the subject holds unprintable characters")
    try:
        user.encode("utf-8")
    except UnicodeEncodeError:
        raise AuthError("invalid_token", "the subject is not valid UTF-8") from None
    return user


def bearer_token(header: str | None) -> str:
    if not header:
        raise AuthError("missing_token", "an Authorization: Bearer <token> header is required")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token.strip():
        raise AuthError("invalid_token", "the Authorization header must be 'Bearer <token>'")
    return token.strip()


class TokenVerifier:
    """Verifies tokens for one server configuration (and issues dev tokens in dev mode)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._jwks = (
            jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300,
                            timeout=JWKS_TIMEOUT_S)
            if settings.jwks_url else None
        )

    def issue_dev_token(self, user: str, now: float | None = None) -> str:
        if not self.settings.dev:
            raise AuthError("invalid_token", "the dev issuer is disabled")
        check_user(user)
        issued = int(time.time() if now is None else now)
        claims = {"sub": user, "iss": DEV_ISSUER, "aud": self.settings.jwt_audience,
                  "iat": issued, "exp": issued + self.settings.dev_token_ttl_s}
        return jwt.encode(claims, self.settings.jwt_secret, algorithm=DEV_ALGORITHM)

    def _needs_jwks(self, token: str) -> bool:
        return self._algorithm(token) != DEV_ALGORITHM

    def _algorithm(self, token: str) -> str:
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise AuthError("invalid_token", "the token is not a well-formed JWT") from None
        if alg == DEV_ALGORITHM and self.settings.dev:
            return DEV_ALGORITHM
        if isinstance(alg, str) and alg in self.settings.jwt_algorithms and self._jwks:
            return alg
        raise AuthError("invalid_token", f"tokens signed with {alg!r} are not accepted")

    def verify(self, token: str) -> Principal:
        """Check signature, expiry, audience (and issuer); blocking when the JWKS is fetched."""
        alg = self._algorithm(token)
        key: Any
        issuer: str | None
        if alg == DEV_ALGORITHM:
            key, issuer = self.settings.jwt_secret, DEV_ISSUER
        else:
            assert self._jwks is not None
            try:
                key = self._jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError as e:
                raise AuthUnavailable(f"the JWKS could not be fetched: {e}") from None
            except jwt.PyJWTError as e:
                raise AuthError("invalid_token", f"no signing key for this token: {e}") from None
            issuer = self.settings.jwt_issuer
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self.settings.jwt_audience,
                issuer=issuer, leeway=LEEWAY_S, options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "the token has expired") from None
        except jwt.PyJWTError as e:
            raise AuthError("invalid_token", f"the token was refused: {e}") from None
        return Principal.for_user(check_user(claims.get("sub")))

    async def verify_async(self, token: str) -> Principal:
        if self._needs_jwks(token):
            # PyJWKClient fetches the key set with blocking urllib (then caches it).
            return await run_in_threadpool(self.verify, token)
        return self.verify(token)


def verifier_of(request: Request) -> TokenVerifier:
    """The app's one TokenVerifier (it caches JWKS keys), owned by its ServerContext."""
    return context_of(request).verifier


async def authenticate(request: Request) -> Principal:
    """The verified caller of `request`; raises AuthError (401) or AuthUnavailable (503)."""
    token = bearer_token(request.headers.get("authorization"))
    return await verifier_of(request).verify_async(token)


async def sign_in(request: Request) -> Principal:
    """`authenticate`, and the user noted as one who signed in to this server: the users a
    scope can be shared with (server/scopes.py). The routes of a syncing page call this."""
    principal = await authenticate(request)
    scopes = context_of(request).scopes
    if not scopes.noted(principal.user):
        await run_in_threadpool(scopes.note_user, principal.user)
    return principal
