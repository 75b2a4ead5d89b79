"""Backoff for a call whose first try just failed (Redis restarting, a start-up step that needs Redis).

The first try stays a plain call on the hot path; only a failure pays for `tenacity`: wait `first_delay`, try
again, doubling the wait up to `max_delay`, until the call succeeds or `stop` says enough (then the last error
is raised).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never, wait_exponential
from tenacity.stop import StopBaseT

T = TypeVar("T")


async def retry_after_failure(
    call: Callable[..., Awaitable[T]],
    *args: Any,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    first_delay: float,
    max_delay: float,
    stop: StopBaseT = stop_never,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`call(*args)` again after `first_delay`, then after twice that each time (at most `max_delay`), while it
    raises `retry_on` and `stop` allows; returns its first result."""
    await sleep(first_delay)
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        stop=stop,
        wait=wait_exponential(multiplier=2 * first_delay, max=max_delay),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )

    async def attempt() -> T:  # tenacity awaits only `async def` functions; `call` may just return an awaitable
        return await call(*args)

    result: T = await retrying(attempt)
    return result
