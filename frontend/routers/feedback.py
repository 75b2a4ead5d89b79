"""`POST /feedback`: the chat page's rating buttons (site key when configured, or an API key)."""

from __future__ import annotations

from fastapi import APIRouter

from frontend.deps import CustomerIp, Services
from frontend.protocol.errors import ErrorResponse
from frontend.protocol.feedback import FeedbackRequest, FeedbackResponse
from frontend.services.feedback import submit_feedback

router = APIRouter(tags=["feedback"], responses={404: {"model": ErrorResponse}})


@router.post("/feedback", response_model=FeedbackResponse)
async def feedback(body: FeedbackRequest, services: Services, ip: CustomerIp) -> FeedbackResponse:
    await services.limiter.check("ip", ip, services.settings.rate_limit_per_ip)
    variant = await submit_feedback(services.feedback, services.sessions, services.metrics, body)
    return FeedbackResponse(message_id=body.message_id, variant=variant)
