"""Draft a reply for a human agent through the same `customer_service` ensemble the bot uses.

The draft answers the customer's latest message with the session's earlier turns as history (the agent's own
replies included), so it reads like the conversation so far. It only ever goes back to the agent who asked; the
customer sees nothing until the agent sends it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from frontend.errors import GatewayError
from frontend.services.history import history_to_send
from frontend.services.limits import GatewayLimits
from frontend.services.sessions import SessionStore
from frontend.services.triton import ChatCall, TritonChat


def nothing_to_answer() -> GatewayError:
    return GatewayError("nothing_to_suggest", "客户还没有发消息，暂无可建议的回复。", 409)


class ReplySuggester:
    def __init__(
        self, sessions: SessionStore, triton: TritonChat, limits: GatewayLimits, max_tokens: int
    ) -> None:
        self._sessions = sessions
        self._triton = triton
        self._limits = limits
        self._max_tokens = max_tokens

    async def call_for(self, session_id: str, request_id: str) -> ChatCall:
        """The ensemble call: the latest customer message, and everything before it as history."""
        turns = await self._sessions.turns(session_id)
        last_user = max((i for i, t in enumerate(turns) if t.role == "user"), default=None)
        if last_user is None:
            raise nothing_to_answer()
        history = history_to_send(turns[:last_user], self._limits.current)
        max_tokens = self._limits.max_tokens(None, self._max_tokens)
        return ChatCall(turns[last_user].content, history, max_tokens, streaming=True, request_id=request_id)

    async def draft(self, session_id: str, request_id: str) -> AsyncGenerator[str, None]:
        """Yield the draft's text deltas (already PII-filtered by the ensemble)."""
        call = await self.call_for(session_id, request_id)
        async with aclosing(self._triton.stream(call)) as chunks:
            async for chunk in chunks:
                if chunk.delta:
                    yield chunk.delta
