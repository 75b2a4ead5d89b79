"""What a dead replica's turn still owes its customer, read from Redis by the replica that took it over.

The turn hash (`chan:turn:*`) names the session and the session's last event id before the message was stored;
the first reply frame after the customer's message names the reply, and the reply hash says how it ended. A
reply still `streaming` is left until the reply leases end it (`interrupted`, partial text kept); then the
customer gets the final text, or the partial text followed by an apology, or the apology alone.
"""

from __future__ import annotations

from frontend.protocol.frames import HANDOFF_QUEUED
from frontend.services.events import SessionEvents
from frontend.services.sessions import SessionStore

REPLY_FRAMES = ("delta", "done", "error")
SCAN_FRAMES = 500


async def _reply_of_turn(events: SessionEvents, session_id: str, after: str) -> tuple[str | None, str | None]:
    """(reply message id, handoff notice) of the first turn stored after event `after`; (None, None) if none."""
    seen_user = False
    for _event_id, frame in await events.range(session_id, after, "+", SCAN_FRAMES):
        kind = frame.get("type")
        if kind == "user":
            seen_user = True
        elif seen_user and kind in REPLY_FRAMES and isinstance(frame.get("message_id"), str):
            return str(frame["message_id"]), None
        elif seen_user and kind == "handoff":
            return None, str(frame.get("message") or HANDOFF_QUEUED)
    return None, None


async def owed_text(turn: dict[str, str], sessions: SessionStore, events: SessionEvents, apology: str) -> str | None:
    """The text to send for `turn` ("" for nothing), or None while its reply is still streaming elsewhere."""
    if turn.get("state") == "sending":  # the reply was final; its replica died before sending it
        return turn.get("reply", "")
    session_id = turn.get("session", "")
    if not session_id:  # died before the message reached a session: nothing was stored
        return apology
    message_id, notice = await _reply_of_turn(events, session_id, turn.get("after") or "0-0")
    if notice is not None:
        return notice
    if message_id is None:
        info = await sessions.get(session_id)
        return "" if info is not None and info.state == "agent" else apology  # an agent answers held sessions
    reply = await sessions.get_reply(message_id)
    if reply is None:
        return apology
    if reply.status == "streaming":
        return None
    if reply.status == "done":
        return reply.text
    if reply.status == "handoff":
        return HANDOFF_QUEUED
    return f"{reply.text}\n\n{apology}" if reply.text else apology  # interrupted, cancelled, error
