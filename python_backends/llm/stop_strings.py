"""Stop strings over streamed text: never show text that might turn out to be the start of a stop string."""

from __future__ import annotations


class StopStringMatcher:
    """Feed text deltas; get back what is safe to emit, and whether a stop string was hit.

    Only a tail that is a proper prefix of some stop string is held back, so ordinary text flows at once.
    """

    def __init__(self, stop: tuple[str, ...]) -> None:
        self._stop = tuple(s for s in stop if s)
        self._pending = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        if not self._stop:
            return delta
        text = self._pending + delta
        hit = self._earliest_hit(text)
        partial_start = len(text) - self._longest_partial_suffix(text)
        if hit >= 0 and hit <= partial_start:  # no other stop string could still complete earlier
            self.stopped = True
            self._pending = ""
            return text[:hit]
        self._pending = text[partial_start:]
        return text[:partial_start]

    def flush(self) -> str:
        """At the end of generation a partial stop string is just text; a complete one still cuts."""
        text, self._pending = self._pending, ""
        if self.stopped:
            return ""
        hit = self._earliest_hit(text)
        if hit < 0:
            return text
        self.stopped = True
        return text[:hit]

    def _earliest_hit(self, text: str) -> int:
        return min((i for i in (text.find(s) for s in self._stop) if i >= 0), default=-1)

    def _longest_partial_suffix(self, text: str) -> int:
        best = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best
