"""`POST /chat`: the blueprint's endpoint (`?prompt=` or a JSON body) and its answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ReplySource = Literal["llm", "faq", "agent", "handoff"]


class ChatRequest(BaseModel):
    message: str = Field(min_length=1)
    session_id: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)


class ChatResponse(BaseModel):
    message: str
    session_id: str
    intent: str
    message_id: str
    finish_reason: str
    source: ReplySource
    variant: str = ""  # the model variant (A/B arm) that answered
