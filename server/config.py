"""Server settings: one frozen dataclass, built from arguments or the environment."""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field

from pysync.protocol import MAX_MUTATIONS_PER_PUSH
from pysync.schema import Schema

# Only asymmetric algorithms may verify OIDC tokens: a symmetric one would let anybody who
# knows the public key (it is public) forge tokens (the HS/RS confusion attack).
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES384", "ES512", "EdDSA"})
MIN_SECRET_BYTES = 32


def _random_secret() -> str:
    return secrets.token_urlsafe(32)


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    # Dev mode enables POST /v1/dev/token. Never in production.
    dev: bool = False
    # None means real AWS DynamoDB, configured by the standard AWS environment.
    dynamodb_endpoint: str | None = None
    region: str = "us-east-1"
    table_prefix: str = "pysync_"
    # Create missing tables at start (off where the tables come from deploy/template.yaml
    # and the server's role may not create them).
    create_tables: bool = True
    schema: Schema = field(default_factory=Schema)
    # Auth (docs/api.md). The dev issuer signs HS256 tokens with jwt_secret; set
    # PYSYNC_JWT_SECRET so several dev server processes accept each other's tokens.
    jwt_secret: str = field(default_factory=_random_secret, repr=False)
    jwt_audience: str = "pysync"
    # OIDC (e.g. Amazon Cognito): tokens signed by a key of jwks_url, with this issuer.
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_algorithms: tuple[str, ...] = ("RS256",)
    dev_token_ttl_s: int = 12 * 3600
    # Request limits of /v1/push.
    max_body_bytes: int = 2 * 1024 * 1024
    max_mutations: int = MAX_MUTATIONS_PER_PUSH
    # A request body must have arrived within this, else 408 request_timeout and the
    # connection is closed: a client trickling its body cannot hold a connection (f).
    body_timeout_s: float = 30.0
    # A request's head (request line and headers) must have arrived within this, counted
    # from the connection's start or the previous response, else the connection is closed
    # (python -m server; see server/__main__.py).
    header_timeout_s: float = 10.0
    # Per-user token bucket, in process: `rate_limit_per_s` requests/s, bursts up to
    # `rate_limit_burst`. 0 disables it.
    rate_limit_per_s: float = 50.0
    rate_limit_burst: int = 100
    # CORS allow-list; empty means same-origin only. "*" never goes with credentials.
    cors_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    # Change feed, pull and events (docs/feed.md). The feed thread runs only when
    # feed_enabled (python -m server: on unless PYSYNC_FEED=0; tests turn it on themselves).
    feed_enabled: bool = False
    # The feed reads every shard every feed_poll_s when idle. A push committed by this
    # process nudges it: it reads at once, then after feed_chase_s, doubling up to
    # feed_poll_s, until the push's record shows up (docs/feed.md, "Latency").
    feed_poll_s: float = 0.25
    feed_chase_s: float = 0.01
    lease_s: float = 10.0
    shard_refresh_s: float = 10.0
    # A cursor older than log_retention_s resets; tombstones outlive it (tombstone_retention_s).
    log_retention_s: float = 7 * 24 * 3600
    tombstone_retention_s: float = 30 * 24 * 3600
    # The poke hub reads the heads of every scope with a connected page every events_poll_s;
    # after a push to a scope with a page connected here, it reads that scope's head after
    # events_chase_s, then 1.5 times longer each time, until the head moves (for a feed
    # working in another process) or events_chase_window_s has passed (docs/feed.md,
    # "Latency").
    events_poll_s: float = 0.5
    events_chase_s: float = 0.02
    events_chase_window_s: float = 2.0
    # The address (a literal IP) the other server processes of these tables reach this one
    # at, for the datagrams that tell them of pushes and appends at once (docs/feed.md,
    # "Pokes across processes"); loopback: the processes of one machine. "" turns it off
    # (each process then learns of the others' appends by its polls alone).
    peer_host: str = "127.0.0.1"
    heartbeat_s: float = 15.0
    ticket_ttl_s: float = 30.0

    def __post_init__(self) -> None:
        if len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"jwt_secret must be at least {MIN_SECRET_BYTES} bytes")
        bad = set(self.jwt_algorithms) - ASYMMETRIC_ALGORITHMS
        if bad or not self.jwt_algorithms:
            raise ValueError(f"jwt_algorithms must be asymmetric algorithms, not {sorted(bad)}")
        if "*" in self.cors_origins and self.cors_allow_credentials:
            raise ValueError("CORS: '*' cannot be combined with credentials")
        if not (0 < self.body_timeout_s <= 3600 and 0 < self.header_timeout_s <= 3600):
            raise ValueError("body_timeout_s and header_timeout_s must be in (0, 3600]")
        if self.max_body_bytes < 1024 or self.max_mutations < 1:
            raise ValueError("max_body_bytes must be >= 1024 and max_mutations >= 1")
        if self.peer_host:
            try:
                ipaddress.ip_address(self.peer_host)
            except ValueError:
                raise ValueError(f"peer_host must be an IP address, not {self.peer_host!r}"
                                 ) from None
        if self.feed_chase_s <= 0 or self.events_chase_s <= 0:
            # (one at or above its poll interval just means no chase)
            raise ValueError("feed_chase_s and events_chase_s must be > 0")
        if self.tombstone_retention_s <= self.log_retention_s:
            raise ValueError("tombstone_retention_s must be longer than log_retention_s")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "dev": env.get("PYSYNC_DEV", "") == "1",
            "dynamodb_endpoint": env.get("PYSYNC_DYNAMODB_ENDPOINT") or None,
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            "table_prefix": env.get("PYSYNC_TABLE_PREFIX", "pysync_"),
            "jwt_audience": env.get("PYSYNC_JWT_AUDIENCE", "pysync"),
            "jwks_url": env.get("PYSYNC_JWKS_URL") or None,
            "jwt_issuer": env.get("PYSYNC_JWT_ISSUER") or None,
            "jwt_algorithms": _csv(env.get("PYSYNC_JWT_ALGORITHMS")) or ("RS256",),
            "cors_origins": _csv(env.get("PYSYNC_CORS_ORIGINS")),
            "cors_allow_credentials": env.get("PYSYNC_CORS_CREDENTIALS", "") == "1",
            "peer_host": env.get("PYSYNC_PEER_HOST", "127.0.0.1"),
        }
        values["feed_enabled"] = env.get("PYSYNC_FEED", "1") != "0"
        values["create_tables"] = env.get("PYSYNC_CREATE_TABLES", "1") != "0"
        for name, var in (("feed_poll_s", "PYSYNC_FEED_POLL_S"), ("lease_s", "PYSYNC_LEASE_S"),
                          ("feed_chase_s", "PYSYNC_FEED_CHASE_S"),
                          ("events_chase_s", "PYSYNC_EVENTS_CHASE_S"),
                          ("events_chase_window_s", "PYSYNC_EVENTS_CHASE_WINDOW_S"),
                          ("log_retention_s", "PYSYNC_LOG_RETENTION_S"),
                          ("tombstone_retention_s", "PYSYNC_TOMBSTONE_RETENTION_S"),
                          ("events_poll_s", "PYSYNC_EVENTS_POLL_S"),
                          ("heartbeat_s", "PYSYNC_HEARTBEAT_S"),
                          ("body_timeout_s", "PYSYNC_BODY_TIMEOUT_S"),
                          ("header_timeout_s", "PYSYNC_HEADER_TIMEOUT_S")):
            if env.get(var):
                values[name] = float(env[var])
        if env.get("PYSYNC_JWT_SECRET"):
            values["jwt_secret"] = env["PYSYNC_JWT_SECRET"]
        for name, var, kind in (("max_body_bytes", "PYSYNC_MAX_BODY_BYTES", int),
                                ("max_mutations", "PYSYNC_MAX_MUTATIONS", int),
                                ("rate_limit_per_s", "PYSYNC_RATE_LIMIT_PER_S", float),
                                ("rate_limit_burst", "PYSYNC_RATE_LIMIT_BURST", int)):
            if env.get(var):
                values[name] = kind(env[var])
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
