"""Who may call what: API keys (constant-time compare), the optional site key, origins, client identity."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from frontend.errors import forbidden, unauthorized


def presented_key(conn: HTTPConnection, query_name: str = "api_key") -> str | None:
    """`X-API-Key`, `Authorization: Bearer`, or (for browser WebSockets, which cannot set headers) a query key."""
    header = conn.headers.get("x-api-key")
    if header:
        return header
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return conn.query_params.get(query_name) or None


def matches_any(candidate: str | None, keys: Iterable[str]) -> bool:
    if not candidate:
        return False
    found = False
    for key in keys:
        found |= secrets.compare_digest(candidate.encode(), key.encode())
    return found


def require_key(conn: HTTPConnection, keys: Iterable[str]) -> str:
    """Return a non-secret identity for the key (for rate limits and logs); 401 when missing or wrong."""
    candidate = presented_key(conn)
    if not matches_any(candidate, keys):
        raise unauthorized()
    assert candidate is not None
    return "key-" + hashlib.sha256(candidate.encode()).hexdigest()[:12]


def client_ip(conn: HTTPConnection) -> str:
    """The client address: the peer, or, when the peer is in `GATEWAY_TRUSTED_PROXIES`, the nearest untrusted
    address in X-Forwarded-For (rewritten by the app's proxy-headers middleware; uvicorn's own is off)."""
    return conn.client.host if conn.client else "unknown"


def origin_allowed(conn: HTTPConnection, allowed: frozenset[str]) -> bool:
    """No Origin (not a browser), same origin as the Host header, or listed in `allowed_origins` ("*" = any)."""
    origin = conn.headers.get("origin")
    if not origin:
        return True
    if "*" in allowed or origin.rstrip("/") in allowed:
        return True
    return urlsplit(origin).netloc == conn.headers.get("host", "")


def check_origin(conn: HTTPConnection, allowed: frozenset[str]) -> None:
    if not origin_allowed(conn, allowed):
        raise forbidden()
