"""Per-stream PII redaction state for the `pii_filter` model.

Inside the ensemble every streamed LLM chunk reaches `pii_filter` as its own request. Redacting chunks one by one
would leak a phone number split across two chunks, so we keep one StreamingRedactor per stream id, apply chunks
in index order, and forget streams that finish, are cancelled, or go quiet (a client that vanished mid-stream).
A chunk of a stream that was forgotten for idleness starts it again at that chunk, so a slow reply is never
swallowed; chunks of a cancelled stream are dropped.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from python_backends.pii import StreamingRedactor


@dataclass
class _Stream:
    redactor: StreamingRedactor
    next_index: int = 0
    pending: dict[int, tuple[str, bool]] = field(default_factory=dict)
    touched: float = 0.0


class RedactionStreams:
    """Thread-safe map of stream id -> redactor; `process` returns the text that is safe to release now."""

    def __init__(
        self, idle_seconds: float = 600.0, clock: Callable[[], float] = time.monotonic, remembered: int = 4096
    ) -> None:
        self._streams: dict[str, _Stream] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()  # stream id -> "evicted" | "cancelled", newest last
        self._remembered = remembered
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def process(self, stream_id: str, index: int, text: str, final: bool) -> str:
        """Apply chunk `index` of `stream_id`; chunks that arrive early wait for their predecessors."""
        with self._lock:
            now = self._clock()
            self._evict_idle(now)
            stream = self._streams.get(stream_id)
            if stream is None:
                ended = self._ended.pop(stream_id, None)
                if ended == "cancelled":
                    self._remember(stream_id, ended)
                    return ""
                # A stream forgotten for idleness resumes at this chunk (its earlier chunks were released).
                stream = self._streams[stream_id] = _Stream(StreamingRedactor(), next_index=index if ended else 0)
            if index < stream.next_index:
                return ""  # a duplicate, or a chunk of a resumed stream that came after its successor
            stream.touched = now
            stream.pending[index] = (text, final)
            released: list[str] = []
            while stream.next_index in stream.pending:
                chunk, is_final = stream.pending.pop(stream.next_index)
                stream.next_index += 1
                released.append(stream.redactor.feed(chunk))
                if is_final:
                    released.append(stream.redactor.flush())
                    del self._streams[stream_id]
                    break
            return "".join(released)

    def cancel(self, stream_id: str) -> bool:
        """Forget a stream whose client went away; True the first time (the caller then stops the generation)."""
        with self._lock:
            if self._ended.get(stream_id) == "cancelled":
                return False
            self._streams.pop(stream_id, None)
            self._remember(stream_id, "cancelled")
            return True

    def __len__(self) -> int:
        return len(self._streams)

    def _remember(self, stream_id: str, how: str) -> None:
        self._ended[stream_id] = how
        self._ended.move_to_end(stream_id)
        while len(self._ended) > self._remembered:
            self._ended.popitem(last=False)

    def _evict_idle(self, now: float) -> None:
        stale = [sid for sid, s in self._streams.items() if now - s.touched > self._idle_seconds]
        for sid in stale:
            del self._streams[sid]
            self._remember(sid, "evicted")
