"""Per-stream redaction state in pii_filter: chunks applied in order, finished and idle streams forgotten."""

from __future__ import annotations

from python_backends.pii import redact
from python_backends.redaction_streams import RedactionStreams

TEXT = "请拨打13812345678联系我，邮箱zhang.san@example.com，订单号202611270001。"


def test_chunks_of_one_stream_redact_like_the_whole_text() -> None:
    """Feeding a stream chunk by chunk releases exactly redact(text), never a digit of the number early."""
    streams = RedactionStreams()
    chunks = [TEXT[i : i + 3] for i in range(0, len(TEXT), 3)]
    released = ""
    for i, chunk in enumerate(chunks):
        released += streams.process("s1", i, chunk, final=i == len(chunks) - 1)
        assert "1381234" not in released
    assert released == redact(TEXT)
    assert len(streams) == 0


def test_out_of_order_chunks_wait_for_their_predecessors() -> None:
    """Chunk 1 arriving before chunk 0 is held until chunk 0 comes."""
    streams = RedactionStreams()
    assert streams.process("s", 1, "世界", final=True) == ""
    assert streams.process("s", 0, "你好", final=False) == "你好世界"


def test_streams_do_not_share_state() -> None:
    """Two interleaved streams each get their own redaction."""
    streams = RedactionStreams()
    a = streams.process("a", 0, "手机138", False) + streams.process("a", 1, "12345678", True)
    b = streams.process("b", 0, "你好", False) + streams.process("b", 1, "再见", True)
    assert (a, b) == ("手机[手机号]", "你好再见")


def test_idle_streams_are_evicted() -> None:
    """A stream whose client vanished is dropped after the idle timeout."""
    now = [0.0]
    streams = RedactionStreams(idle_seconds=10, clock=lambda: now[0])
    streams.process("gone", 0, "半句", final=False)
    now[0] = 11.0
    streams.process("other", 0, "x", final=False)
    assert len(streams) == 1


def test_a_stream_evicted_for_idleness_resumes_instead_of_swallowing_the_rest() -> None:
    """A slow reply whose stream was forgotten still releases its later chunks (redacted) and its end."""
    now = [0.0]
    streams = RedactionStreams(idle_seconds=10, clock=lambda: now[0])
    assert streams.process("slow", 0, "您好，", final=False) == "您好，"
    now[0] = 11.0
    streams.process("other", 0, "x", final=False)  # evicts "slow"
    released = streams.process("slow", 1, "请拨打13812345678", final=False)
    released += streams.process("slow", 2, "。", final=True)
    assert released == "请拨打[手机号]。"
    assert len(streams) == 1  # only "other" is left


def test_a_cancelled_stream_is_forgotten_and_reported_once() -> None:
    streams = RedactionStreams()
    streams.process("c", 0, "手机138", final=False)
    assert streams.cancel("c") is True and streams.cancel("c") is False
    assert len(streams) == 0
    assert streams.process("c", 1, "12345678", final=True) == ""
    assert len(streams) == 0
