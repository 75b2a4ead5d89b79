"""Gateway start-up: what Redis needs (handoff group, FAQ seed) is retried in the background until it works."""

from __future__ import annotations

from frontend.app import keep_trying


async def test_redis_preparation_is_retried_with_backoff_until_it_succeeds() -> None:
    """keep_trying waits 1, 2, 4 s between attempts (capped) and stops at the first success."""
    waits: list[float] = []
    attempts = iter([RuntimeError("redis down"), RuntimeError("redis down"), None])

    async def step() -> None:
        error = next(attempts)
        if error is not None:
            raise error

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    await keep_trying(step, first_delay=1.0, max_delay=3.0, sleep=fake_sleep)
    assert waits == [1.0, 2.0, 3.0]


async def test_a_step_that_returns_an_awaitable_is_awaited_on_every_try() -> None:
    """The app passes `lambda: prepare_redis(...)`: each retry awaits what it returns (no try is skipped)."""
    tries: list[int] = []

    async def prepare() -> None:
        tries.append(len(tries))
        if len(tries) < 3:
            raise ConnectionError("redis down")

    async def no_wait(seconds: float) -> None:
        pass

    await keep_trying(lambda: prepare(), first_delay=1.0, max_delay=3.0, sleep=no_wait)
    assert tries == [0, 1, 2]
