"""The one error body every HTTP endpoint returns; shaped like OpenAI's so its SDK reads the message."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str
    type: str = "gateway_error"
    param: str | None = None  # the request field at fault (OpenAI API errors)
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
