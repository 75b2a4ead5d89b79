"""What a human agent does with a session: take it from the queue, reply, release it to the bot, transfer it.

Each step also records the agent metrics: queue wait (on take), time to the first agent reply, handle time
(take to release, transfer or requeue) and sessions taken per agent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from frontend.errors import GatewayError, invalid_request
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.frames import HANDOFF_TIMED_OUT, Frame, agent_frame, handoff_frame, transferred_notice
from frontend.services.agent_roster import AgentRoster
from frontend.services.assignment_clock import AssignmentClock
from frontend.services.events import SessionEvents
from frontend.services.handoff import HandoffQueue
from frontend.services.sessions import SessionStore, StoredTurn, new_message_id
from python_backends.pii import redact

logger = logging.getLogger(__name__)


NoticeHook = Callable[[str, Frame], Awaitable[None]]


def not_holding() -> GatewayError:
    return GatewayError("not_assigned", "该会话不由您接待。", 409)


class AgentDesk:
    def __init__(
        self,
        sessions: SessionStore,
        events: SessionEvents,
        queue: HandoffQueue,
        clock: AssignmentClock,
        roster: AgentRoster,
        metrics: GatewayMetrics,
        store_redacted: bool = True,
    ) -> None:
        self._sessions = sessions
        self._events = events
        self._queue = queue
        self._clock = clock
        self._roster = roster
        self._metrics = metrics
        self._store_redacted = store_redacted
        self._notice_hooks: list[NoticeHook] = []

    def on_notice(self, hook: NoticeHook) -> None:
        """Also give every handoff notice (assigned, released, queued again, timed out) to `hook(session_id,
        frame)`, after it is published: the WeChat/WeCom channels send it to customers who are not on a socket."""
        self._notice_hooks.append(hook)

    async def _notice(self, session_id: str, frame: Frame) -> None:
        await self._events.publish(session_id, frame)
        for hook in self._notice_hooks:
            await hook(session_id, frame)

    async def take(self, agent: str, session_id: str | None = None) -> str | None:
        """Claim `session_id`, or the oldest queued session; None when the queue is empty."""
        waited: float | None = None

        async def claim(candidate: str, queued_only: bool) -> bool:
            nonlocal waited
            waited = await self._clock.queued_for(candidate, agent)
            return await self._sessions.claim(candidate, agent, queued_only=queued_only)

        if session_id is None:
            session_id = await self._queue.next_session(agent, lambda candidate: claim(candidate, True))
            if session_id is None:
                return None
        elif not await claim(session_id, False):
            raise GatewayError("already_assigned", "该会话已由其他客服接待。", 409)
        if waited is not None:  # it came from the queue (not an agent re-taking a session they hold)
            self._metrics.handoff_wait_seconds.observe(waited)
        await self._clock.assigned(session_id)
        self._metrics.agent_sessions.labels(agent).inc()
        await self._notice(session_id, handoff_frame(session_id, "assigned", "human_agent"))
        logger.info("agent %s took session %s", agent, session_id)
        return session_id

    async def holds(self, agent: str, session_id: str) -> bool:
        info = await self._sessions.require(session_id)
        return info.state == "agent" and info.agent == agent

    async def require_holding(self, agent: str, session_id: str) -> None:
        if not await self.holds(agent, session_id):
            raise not_holding()

    async def reply(self, agent: str, session_id: str, text: str) -> str:
        await self.require_holding(agent, session_id)
        message_id = new_message_id()
        stored = redact(text) if self._store_redacted else text  # like customer messages
        await self._sessions.append_turn(session_id, StoredTurn("assistant", stored, message_id, "agent", time.time()))
        await self._events.publish(session_id, agent_frame(session_id, message_id, stored, agent))
        await self._sessions.touch(session_id)
        first = await self._clock.first_reply(session_id)
        if first is not None:
            self._metrics.agent_first_reply_seconds.observe(first)
        return message_id

    async def release(self, agent: str, session_id: str) -> None:
        await self.require_holding(agent, session_id)
        await self._observe_handled(session_id, "released")
        await self._sessions.set_state(session_id, "bot")
        await self._notice(session_id, handoff_frame(session_id, "released"))
        logger.info("agent %s released session %s", agent, session_id)

    async def transfer(self, agent: str, session_id: str, to: str, agents: list[str]) -> None:
        """Give a held session to another online agent; their console picks it up from their inbox."""
        if to not in agents:
            raise invalid_request("没有这位客服。")
        if to == agent:
            raise invalid_request("不能转接给自己。")
        if not await self._roster.is_online(to):
            raise GatewayError("agent_offline", f"客服 {to} 当前不在线。", 409)
        await self.require_holding(agent, session_id)
        handled = await self._clock.held_for(session_id)
        if not await self._sessions.reassign(session_id, agent, to):
            raise not_holding()
        if handled is not None:
            self._metrics.agent_handle_seconds.labels("transferred").observe(handled)
        await self._clock.assigned(session_id)
        self._metrics.agent_sessions.labels(to).inc()
        await self._roster.deliver(to, session_id, agent)
        notice = transferred_notice(to)
        await self._notice(session_id, handoff_frame(session_id, "assigned", "human_agent", notice=notice))
        logger.info("agent %s transferred session %s to %s", agent, session_id, to)

    async def requeue(self, agent: str, session_id: str) -> None:
        """The agent left without releasing: the customer goes back to the queue, not to the bot."""
        handled = await self._clock.held_for(session_id)
        try:
            queued = await self._queue.queue(session_id, "agent_left", held_by=agent)
        except GatewayError:  # the session expired meanwhile
            return
        if queued:
            if handled is not None:
                self._metrics.agent_handle_seconds.labels("requeued").observe(handled)
            await self._notice(session_id, handoff_frame(session_id, "queued", "human_agent"))

    async def _observe_handled(self, session_id: str, outcome: str) -> None:
        handled = await self._clock.held_for(session_id)
        if handled is not None:
            self._metrics.agent_handle_seconds.labels(outcome).observe(handled)

    async def return_overdue(self, wait_seconds: float) -> int:
        """Sessions nobody took within `wait_seconds` go back to the bot, and the customer is told so."""
        returned = await self._queue.return_overdue(wait_seconds)
        for session_id in returned:
            await self._notice(session_id, handoff_frame(session_id, "released", notice=HANDOFF_TIMED_OUT))
            logger.info("session %s waited too long for an agent; back to the bot", session_id)
        return len(returned)
