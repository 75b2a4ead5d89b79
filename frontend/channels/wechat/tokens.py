"""access_token per account, cached in Redis with its expiry and shared by every replica.

Fetching a new token invalidates the previous one, so refreshes are serialised by a Redis lock: one replica
fetches, the others wait and reread. A caller whose token was rejected (40001/42001) asks for a refresh
*past that token*; if another caller already replaced it, the new one is returned without a second fetch.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

from redis.asyncio import Redis
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_delay, wait_exponential

logger = logging.getLogger(__name__)

EXPIRY_MARGIN_SECONDS = 300  # refresh this long before WeChat's expiry
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int


TokenFetcher = Callable[[], Awaitable[IssuedToken]]


class TokenUnavailable(Exception):
    """No token within the wait: the refresher holding the lock is stuck or WeChat refuses the credentials."""


def _refresh_timed_out(state: RetryCallState) -> NoReturn:
    raise TokenUnavailable("access_token refresh did not finish in time")


class AccessTokenStore:
    """One account's token: `get()` the cached one, `refresh(stale)` after WeChat rejected `stale`."""

    def __init__(
        self,
        redis: Redis,
        key: str,
        fetch: TokenFetcher,
        lock_seconds: float = 10.0,
        wait_seconds: float = 15.0,
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        self._redis = redis
        self._key = key
        self._lock_key = key + ":lock"
        self._fetch = fetch
        self._lock_seconds = lock_seconds
        self._wait_seconds = wait_seconds
        self._on_refresh = on_refresh

    async def cached(self) -> str | None:
        raw = await self._redis.get(self._key)
        if not raw:
            return None
        entry = json.loads(raw)
        return str(entry["token"]) if float(entry["expires_at"]) > time.time() else None

    async def get(self) -> str:
        return await self.cached() or await self.refresh(stale=None)

    async def refresh(self, stale: str | None) -> str:
        """A token other than `stale` (None: any valid one), fetched by exactly one caller at a time."""
        waiting = AsyncRetrying(  # another replica is fetching: reread when it is done, 20 ms doubling to 200 ms
            retry=retry_if_result(lambda token: token is None),
            stop=stop_after_delay(self._wait_seconds),
            wait=wait_exponential(multiplier=0.02, max=0.2),
            retry_error_callback=_refresh_timed_out,
        )
        token: str = await waiting(self._refresh_unless_locked, stale)
        return token

    async def _refresh_unless_locked(self, stale: str | None) -> str | None:
        """A token other than `stale`: the cached one, or a new one if we get the lock; None while another
        caller holds it."""
        current = await self.cached()
        if current is not None and current != stale:
            return current
        owner = secrets.token_hex(8)
        if not await self._redis.set(self._lock_key, owner, nx=True, px=int(self._lock_seconds * 1000)):
            return None
        try:
            current = await self.cached()  # replaced while we took the lock
            if current is not None and current != stale:
                return current
            return await self._fetch_and_store()
        finally:
            await self._redis.eval(_RELEASE, 1, self._lock_key, owner)

    async def _fetch_and_store(self) -> str:
        issued = await self._fetch()
        lifetime = max(60, issued.expires_in - EXPIRY_MARGIN_SECONDS) if issued.expires_in > 120 else issued.expires_in
        entry = json.dumps({"token": issued.token, "expires_at": time.time() + lifetime})
        await self._redis.set(self._key, entry, ex=max(1, int(lifetime)))
        if self._on_refresh is not None:
            self._on_refresh()
        logger.info("access_token refreshed (valid %ds)", lifetime)
        return issued.token
