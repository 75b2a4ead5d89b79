"""The agent console page (`/agent`, plain HTML/JS in `static/`) and its read-only FAQ search."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from frontend.deps import Agent, Services
from frontend.protocol.errors import ErrorResponse
from frontend.protocol.faq import FaqList
from frontend.routers.page import STATIC_DIR

router = APIRouter(tags=["agent"])


@router.get("/agent", include_in_schema=False)
async def console() -> FileResponse:
    """The page itself holds no data: everything comes over the signed-in socket and agent-key calls."""
    return FileResponse(STATIC_DIR / "agent.html", headers={"Cache-Control": "no-cache"})


@router.get("/agent/faq", response_model=FaqList, responses={401: {"model": ErrorResponse}})
async def search_faq(
    services: Services, _: Agent, q: str = Query(min_length=1, max_length=100, description="search words")
) -> FaqList:
    """FAQ entries matching `q` (question and aliases first, then answers), for agents to insert into a reply."""
    return FaqList(entries=await services.faq.search(q))
