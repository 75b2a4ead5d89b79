"""What a human agent does with a session: take it from the queue, reply, release it back to the bot."""

from __future__ import annotations

import logging
import time

from frontend.errors import GatewayError
from frontend.protocol.frames import HANDOFF_TIMED_OUT, agent_frame, handoff_frame
from frontend.services.events import SessionEvents
from frontend.services.handoff import HandoffQueue
from frontend.services.sessions import SessionStore, StoredTurn, new_message_id
from python_backends.pii import redact

logger = logging.getLogger(__name__)


def not_holding() -> GatewayError:
    return GatewayError("not_assigned", "该会话不由您接待。", 409)


class AgentDesk:
    def __init__(
        self, sessions: SessionStore, events: SessionEvents, queue: HandoffQueue, store_redacted: bool = True
    ) -> None:
        self._sessions = sessions
        self._events = events
        self._queue = queue
        self._store_redacted = store_redacted

    async def take(self, agent: str, session_id: str | None = None) -> str | None:
        """Claim `session_id`, or the oldest queued session; None when the queue is empty."""
        if session_id is None:
            session_id = await self._queue.next_session(
                agent, lambda candidate: self._sessions.claim(candidate, agent, queued_only=True)
            )
            if session_id is None:
                return None
        elif not await self._sessions.claim(session_id, agent):
            raise GatewayError("already_assigned", "该会话已由其他客服接待。", 409)
        await self._events.publish(session_id, handoff_frame(session_id, "assigned", "human_agent"))
        logger.info("agent %s took session %s", agent, session_id)
        return session_id

    async def reply(self, agent: str, session_id: str, text: str) -> str:
        info = await self._sessions.require(session_id)
        if info.state != "agent" or info.agent != agent:
            raise not_holding()
        message_id = new_message_id()
        stored = redact(text) if self._store_redacted else text  # like customer messages
        await self._sessions.append_turn(session_id, StoredTurn("assistant", stored, message_id, "agent", time.time()))
        await self._events.publish(session_id, agent_frame(session_id, message_id, stored))
        await self._sessions.touch(session_id)
        return message_id

    async def release(self, agent: str, session_id: str) -> None:
        info = await self._sessions.require(session_id)
        if info.state != "agent" or info.agent != agent:
            raise not_holding()
        await self._sessions.set_state(session_id, "bot")
        await self._events.publish(session_id, handoff_frame(session_id, "released"))
        logger.info("agent %s released session %s", agent, session_id)

    async def requeue(self, agent: str, session_id: str) -> None:
        """The agent left without releasing: the customer goes back to the queue, not to the bot."""
        try:
            queued = await self._queue.queue(session_id, "agent_left", held_by=agent)
        except GatewayError:  # the session expired meanwhile
            return
        if queued:
            await self._events.publish(session_id, handoff_frame(session_id, "queued", "human_agent"))

    async def return_overdue(self, wait_seconds: float) -> int:
        """Sessions nobody took within `wait_seconds` go back to the bot, and the customer is told so."""
        returned = await self._queue.return_overdue(wait_seconds)
        for session_id in returned:
            await self._events.publish(session_id, handoff_frame(session_id, "released", notice=HANDOFF_TIMED_OUT))
            logger.info("session %s waited too long for an agent; back to the bot", session_id)
        return len(returned)
