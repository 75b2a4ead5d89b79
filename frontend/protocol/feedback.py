"""`POST /feedback`: a customer's rating of one reply, stored with the model variant for A/B comparison."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class FeedbackRequest(BaseModel):
    session_id: str
    message_id: str
    rating: int | None = Field(default=None, ge=1, le=5)
    thumbs: Literal["up", "down"] | None = None
    comment: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _rating_or_thumbs(self) -> FeedbackRequest:
        if self.rating is None and self.thumbs is None:
            raise ValueError("give a rating (1-5) or thumbs (up/down)")
        return self


class FeedbackResponse(BaseModel):
    status: Literal["recorded"] = "recorded"
    message_id: str
    variant: str


class VariantSummary(BaseModel):
    variant: str
    count: int
    mean_rating: float | None
    thumbs_up: int
    thumbs_down: int


class FeedbackSummary(BaseModel):
    variants: list[VariantSummary]
