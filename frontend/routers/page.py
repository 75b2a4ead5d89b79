"""The web chat page (plain HTML/JS from `static/`) and the little configuration it reads at start."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from frontend.deps import Services

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/page-config")
async def page_config(services: Services) -> dict[str, object]:
    """The site key is public by design (like a captcha site key): it ties the socket to this page."""
    site_key = services.settings.site_key
    return {
        "site_key": site_key.get_secret_value() if site_key else None,
        "max_message_chars": services.limits.current.max_message_chars,
    }
