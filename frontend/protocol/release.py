"""Admin release API: the candidate, its weight, the window error rates and the decisions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ReleaseUpdate(BaseModel):
    """`POST /admin/release`: make `candidate` (any Triton model name) the candidate at `weight` % of new sessions."""

    candidate: str = Field(min_length=1, max_length=128)
    weight: int = Field(ge=0, le=100)
    name: str | None = Field(default=None, max_length=128, description="variant name (default: the model name)")
    url: str | None = Field(default=None, max_length=256, description="its Triton gRPC host:port (default: stable's)")
    steps: list[int] | None = Field(default=None, description="promotion steps in percent, e.g. [10, 25, 50, 100]")
    step_seconds: float | None = Field(default=None, ge=0, description="healthy time per automatic step; 0 = manual")


class RollbackRequest(BaseModel):
    reason: str = Field(default="rolled back by an operator", max_length=500)


class WindowOut(BaseModel):
    total: int
    errors: int
    error_rate: float


class VariantOut(BaseModel):
    name: str
    model: str
    url: str
    role: Literal["stable", "candidate"]
    weight: int = Field(description="percent of new sessions")
    window: WindowOut


class DecisionOut(BaseModel):
    action: str
    variant: str
    reason: str
    at: float
    weight_before: int
    weight_after: int
    errors: int
    total: int


class ReleaseOut(BaseModel):
    status: Literal["none", "active", "rolled_back"]
    variants: list[VariantOut]
    steps: list[int]
    step_seconds: float
    error_rate_threshold: float
    min_sample: int
    window_seconds: float
    last_decision: DecisionOut | None
    decisions: list[DecisionOut]
