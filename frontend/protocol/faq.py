"""Admin API for the FAQ cache."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FaqEntryIn(BaseModel):
    question: str = Field(min_length=1, max_length=500)
    answer: str = Field(min_length=1, max_length=4000)
    aliases: list[str] = Field(default_factory=list, max_length=50)
    intent: str = "other"


class FaqEntry(FaqEntryIn):
    id: str


class FaqList(BaseModel):
    entries: list[FaqEntry]
