"""Per-stream PII redaction state for the `pii_filter` model.

Inside the ensemble every streamed LLM chunk reaches `pii_filter` as its own request. Redacting chunks one by one
would leak a phone number split across two chunks, so we keep one StreamingRedactor per stream id, apply chunks
in index order, and forget streams that finish or go quiet (a client that vanished mid-stream).
"""

from __future__ import annotations

import threading
import time
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

    def __init__(self, idle_seconds: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._streams: dict[str, _Stream] = {}
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
                stream = self._streams[stream_id] = _Stream(StreamingRedactor())
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

    def __len__(self) -> int:
        return len(self._streams)

    def _evict_idle(self, now: float) -> None:
        stale = [sid for sid, s in self._streams.items() if now - s.touched > self._idle_seconds]
        for sid in stale:
            del self._streams[sid]
