"""The background loops of a replica (lease renewal and sweeps, socket claims, channel deliveries)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from frontend.services.redis_store import REDIS_FAILED

logger = logging.getLogger(__name__)


async def every(period: float, step: Callable[[], Awaitable[object]], what: str, first_after: float = 0.0) -> None:
    """Run `step` every `period` seconds, counted from each start, until cancelled; the first run comes after
    `first_after` seconds (at once by default). A failing step is logged and runs again at the next tick: Redis
    being away is expected (one line), anything else gets its traceback."""
    if first_after > 0:
        await asyncio.sleep(first_after)
    while True:
        started = time.monotonic()
        try:
            await step()
        except REDIS_FAILED as exc:
            logger.warning("%s failed: %r", what, exc)
        except Exception:
            logger.exception("%s failed", what)
        await asyncio.sleep(max(0.05, period - (time.monotonic() - started)))
