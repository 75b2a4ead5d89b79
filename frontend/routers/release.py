"""Admin release API (admin key): read the canary, set a candidate and weight, promote, roll back."""

from __future__ import annotations

import logging
from dataclasses import asdict

from fastapi import APIRouter

from frontend.deps import Admin, Services
from frontend.protocol.errors import ErrorResponse
from frontend.protocol.release import DecisionOut, ReleaseOut, ReleaseUpdate, RollbackRequest, VariantOut, WindowOut
from frontend.services.release import Decision, ReleaseService, Variant

logger = logging.getLogger(__name__)
router = APIRouter(
    prefix="/admin/release", tags=["admin"], responses={401: {"model": ErrorResponse}, 409: {"model": ErrorResponse}}
)


async def release_status(release: ReleaseService) -> ReleaseOut:
    state = await release.state()
    decisions = [DecisionOut(**asdict(d)) for d in await release.decisions()]

    async def variant_out(variant: Variant, weight: int) -> VariantOut:
        window = await release.window(variant.name)
        return VariantOut(
            name=variant.name,
            model=variant.model,
            url=variant.url,
            role=variant.role,
            weight=weight,
            window=WindowOut(total=window.total, errors=window.errors, error_rate=round(window.error_rate, 4)),
        )

    variants = [await variant_out(state.stable, 100 - state.weight)]
    if state.candidate is not None:
        variants.append(await variant_out(state.candidate, state.weight))
    return ReleaseOut(
        status=state.status,
        variants=variants,
        steps=list(state.steps),
        step_seconds=state.step_seconds,
        error_rate_threshold=release.policy.error_rate,
        min_sample=release.policy.min_sample,
        window_seconds=release.policy.window_seconds,
        last_decision=decisions[0] if decisions else None,
        decisions=decisions,
    )


def _logged(decision: Decision) -> Decision:
    logger.warning("release %s: %s", decision.action, decision.reason, extra={"release": asdict(decision)})
    return decision


@router.get("", response_model=ReleaseOut)
async def get_release(services: Services, _: Admin) -> ReleaseOut:
    return await release_status(services.release)


@router.post("", response_model=ReleaseOut)
async def set_release(body: ReleaseUpdate, services: Services, _: Admin) -> ReleaseOut:
    steps = tuple(body.steps) if body.steps else None
    await services.release.start(body.candidate, body.weight, body.name, body.url, steps, body.step_seconds)
    return await release_status(services.release)


@router.post("/promote", response_model=ReleaseOut)
async def promote(services: Services, _: Admin) -> ReleaseOut:
    _logged(await services.release.promote())
    return await release_status(services.release)


@router.post("/rollback", response_model=ReleaseOut)
async def rollback(services: Services, _: Admin, body: RollbackRequest | None = None) -> ReleaseOut:
    decision = _logged(await services.release.rollback((body or RollbackRequest()).reason))
    services.metrics.rollbacks.labels(decision.variant, "manual").inc()
    services.metrics.release_weight.labels(decision.variant).set(0)
    return await release_status(services.release)
