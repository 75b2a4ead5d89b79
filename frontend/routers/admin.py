"""Admin API (admin API key): manage the FAQ cache, read the A/B feedback summary."""

from __future__ import annotations

from fastapi import APIRouter, status

from frontend.deps import Admin, Services
from frontend.errors import GatewayError, invalid_request
from frontend.protocol.errors import ErrorResponse
from frontend.protocol.faq import FaqEntry, FaqEntryIn, FaqList
from frontend.protocol.feedback import FeedbackSummary

router = APIRouter(prefix="/admin", tags=["admin"], responses={401: {"model": ErrorResponse}})


@router.get("/faq", response_model=FaqList)
async def list_faq(services: Services, _: Admin) -> FaqList:
    return FaqList(entries=await services.faq.list())


@router.post("/faq", response_model=FaqEntry, status_code=status.HTTP_201_CREATED)
async def add_faq(entry: FaqEntryIn, services: Services, _: Admin) -> FaqEntry:
    try:
        return await services.faq.upsert(entry)
    except ValueError as exc:
        raise invalid_request(str(exc)) from None


@router.delete("/faq/{entry_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_faq(entry_id: str, services: Services, _: Admin) -> None:
    if not await services.faq.delete(entry_id):
        raise GatewayError("not_found", "没有这条 FAQ。", 404)


@router.get("/feedback/summary", response_model=FeedbackSummary)
async def feedback_summary(services: Services, _: Admin) -> FeedbackSummary:
    return FeedbackSummary(variants=await services.feedback.summary())
