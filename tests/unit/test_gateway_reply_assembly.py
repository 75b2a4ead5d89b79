"""Stream deltas carry only new text; the gateway fills in `message` (the whole reply so far) per socket."""

from __future__ import annotations

from frontend.protocol.frames import Frame, done_frame, stored_delta
from frontend.services.events import ReplyAssembler

SESSION, REPLY = "a" * 32, "msg_1"


class StoredReply:
    """What the assembler may read from Redis: the stored text (written at a bounded rate) and the stream."""

    def __init__(self, stored: str, full: str) -> None:
        self.stored, self.full = stored, full
        self.reads = 0

    async def stored_text(self, message_id: str) -> str:
        self.reads += 1
        return self.stored

    async def reply_text(self, session_id: str, message_id: str, stored: str, before: str = "+") -> str:
        self.reads += 1
        return self.full


def deltas(*pieces: str) -> list[Frame]:
    frames, offset = [], 0
    for piece in pieces:
        frames.append(stored_delta(SESSION, REPLY, offset, piece, "greeting"))
        offset += len(piece)
    return frames


async def test_a_socket_following_from_the_start_assembles_without_reading_redis() -> None:
    """Each forwarded delta's `message` is the previous one plus its `delta`; `offset` never reaches the client."""
    store = StoredReply("", "")
    assembler = ReplyAssembler(store)  # type: ignore[arg-type]
    out = [await assembler.complete(SESSION, f"{n}-0", f) for n, f in enumerate(deltas("您好", "，请问", "有什么事"))]
    assert [f["message"] for f in out] == ["您好", "您好，请问", "您好，请问有什么事"]
    assert all("offset" not in f for f in out) and store.reads == 0
    done = await assembler.complete(SESSION, "9-0", done_frame(SESSION, REPLY, out[-1]["message"], "", "stop", "llm"))
    assert done["message"] == "您好，请问有什么事" and not assembler._texts


async def test_a_socket_joining_mid_reply_reads_the_start_once() -> None:
    """Resumed after the first delta: the start comes from the stored text (or the stream), then it goes on."""
    frames = deltas("您好", "，请问", "有什么事")
    for stored, full in (("您好，请问有", ""), ("您", "您好")):  # stored text ahead of, or behind, the resume point
        store = StoredReply(stored, full)
        assembler = ReplyAssembler(store)  # type: ignore[arg-type]
        out = [await assembler.complete(SESSION, f"{n}-0", dict(f)) for n, f in enumerate(frames[1:], start=1)]
        assert [f["message"] for f in out] == ["您好，请问", "您好，请问有什么事"]
        assert store.reads in (1, 2)
