"""FastAPI dependencies (`Annotated` aliases): the services, and the callers' credentials."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from frontend.agent_auth import agent_for_key
from frontend.errors import unauthorized
from frontend.security import client_ip, matches_any, presented_key, require_key
from frontend.services.container import GatewayServices


def get_services(conn: HTTPConnection) -> GatewayServices:
    services: GatewayServices = conn.app.state.services
    return services


Services = Annotated[GatewayServices, Depends(get_services)]


def api_client(conn: HTTPConnection, services: Services) -> str:
    return require_key(conn, services.settings.api_key_values())


def admin(conn: HTTPConnection, services: Services) -> str:
    return require_key(conn, [services.settings.admin_api_key.get_secret_value()])


def agent(conn: HTTPConnection, services: Services) -> str:
    """The human agent whose own key was presented (agent console calls); 401 otherwise."""
    found = agent_for_key(presented_key(conn), services.settings.agent_key_pairs())
    if found is None:
        raise unauthorized()
    return found


def customer_ip(conn: HTTPConnection, services: Services) -> str:
    """The chat page's own calls (feedback, history) present the site key when one is configured, or any API key;
    gives the caller's IP (for rate limits)."""
    site_key = services.settings.site_key
    candidate = presented_key(conn, query_name="site_key") or conn.headers.get("x-site-key")
    if site_key is None or matches_any(candidate, [site_key.get_secret_value(), *services.settings.api_key_values()]):
        return client_ip(conn)
    raise unauthorized()


ApiClient = Annotated[str, Depends(api_client)]
Admin = Annotated[str, Depends(admin)]
CustomerIp = Annotated[str, Depends(customer_ip)]
Agent = Annotated[str, Depends(agent)]
