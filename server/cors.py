"""CORS for the sync API: an explicit allow-list of origins (Settings.cors_origins).

Auth travels in the Authorization header, not in cookies, so credentials are off by default;
"*" together with credentials is refused by Settings. With an empty list no CORS headers are
sent at all and browsers keep the API same-origin.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from server.config import Settings

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Last-Event-ID")
# Cross-origin scripts may read these response headers (backoff needs Retry-After).
EXPOSED_HEADERS = ("Retry-After",)
PREFLIGHT_MAX_AGE_S = 600


def cors_middleware(settings: Settings) -> list[Middleware]:
    if not settings.cors_origins:
        return []
    return [Middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        allow_credentials=settings.cors_allow_credentials,
        max_age=PREFLIGHT_MAX_AGE_S,
    )]
