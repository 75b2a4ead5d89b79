"""Origin checks and API key extraction on a bare ASGI connection."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from frontend.security import matches_any, origin_allowed, presented_key


def conn(headers: dict[str, str], query: str = "") -> HTTPConnection:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return HTTPConnection({"type": "websocket", "headers": raw, "query_string": query.encode(), "path": "/"})


def test_origin_rules() -> None:
    """No Origin (not a browser), same origin and listed origins pass; others do not."""
    allowed = frozenset({"https://shop.example"})
    assert origin_allowed(conn({"host": "gw:8080"}), allowed)
    assert origin_allowed(conn({"host": "gw:8080", "origin": "http://gw:8080"}), allowed)
    assert origin_allowed(conn({"host": "gw:8080", "origin": "https://shop.example/"}), allowed)
    assert not origin_allowed(conn({"host": "gw:8080", "origin": "https://evil.example"}), allowed)


def test_keys_from_header_bearer_or_query() -> None:
    """X-API-Key, a Bearer token, or the query key (browsers cannot set socket headers)."""
    assert presented_key(conn({"x-api-key": "a"})) == "a"
    assert presented_key(conn({"authorization": "Bearer b"})) == "b"
    assert presented_key(conn({}, "api_key=c")) == "c"
    assert presented_key(conn({})) is None
    assert matches_any("a", ["x", "a"]) and not matches_any(None, ["a"]) and not matches_any("", [""])
