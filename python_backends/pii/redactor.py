"""One-shot redaction: find every value in a text and replace it by a typed placeholder or a partial mask."""

from __future__ import annotations

from functools import lru_cache

from python_backends.pii.config import RedactionConfig
from python_backends.pii.context import ContextClassifier
from python_backends.pii.normalize import normalize
from python_backends.pii.pii_types import PiiSpan, PiiType
from python_backends.pii.scanner import Hit, PiiScanner


class Redactor:
    """Redaction for one `RedactionConfig`; build once and reuse (the scanner and context regex are compiled)."""

    def __init__(self, config: RedactionConfig | None = None) -> None:
        self.config = config or RedactionConfig()
        rules = self.config.rules
        self._rules = rules.types
        self._scanner = PiiScanner(self.config.enabled_types, ContextClassifier(rules), rules)

    def find_pii(self, text: str) -> list[PiiSpan]:
        """Every value in `text`, left to right, with offsets into `text`."""
        return [
            PiiSpan(hit.type, hit.start, hit.end, text[hit.start : hit.end])
            for hit in self._hits(normalize(text), 0, len(text))
        ]

    def redact(self, text: str) -> str:
        """`text` with every value replaced; everything else, order numbers included, is left as it was."""
        return self.redact_range(text, normalize(text), 0, len(text))[0]

    def redact_range(self, text: str, folded: str, pos: int, stop: int) -> tuple[str, int]:
        """Redact values starting in `[pos, stop)` and the text between them.

        Returns the output and the position it covers up to: `stop`, or further when a value that starts
        before `stop` ends after it. `folded` is `normalize(text)`.
        """
        parts: list[str] = []
        for hit in self._hits(folded, pos, stop):
            parts.append(text[pos : hit.start])
            parts.append(self.render(hit.type, text[hit.start : hit.end]))
            pos = hit.end
        if pos < stop:
            parts.append(text[pos:stop])
            pos = stop
        return "".join(parts), pos

    def render(self, pii_type: PiiType, value: str) -> str:
        """The replacement for one value: its placeholder, or in mask mode the value with its middle hidden."""
        rules = self._rules[pii_type]
        if self.config.mode == "placeholder":
            return rules.placeholder
        folded = normalize(value)
        head = rules.keep_head.search(folded)
        tail = rules.keep_tail.search(folded)
        keep_until = head.end() if head and head.start() == 0 else 0
        keep_from = tail.start() if tail and tail.end() == len(folded) else len(folded)
        keep_from = max(keep_from, keep_until)
        middle = "".join(
            self.config.mask_char if folded_char.isalnum() else char
            for char, folded_char in zip(value[keep_until:keep_from], folded[keep_until:keep_from], strict=True)
        )
        return value[:keep_until] + middle + value[keep_from:]

    @property
    def scanner(self) -> PiiScanner:
        return self._scanner

    def _hits(self, folded: str, pos: int, stop: int) -> list[Hit]:
        return self._scanner.hits(folded, pos, stop)


@lru_cache(maxsize=1)
def default_redactor() -> Redactor:
    """The redactor with default settings, built on first use."""
    return Redactor()


def redact(text: str) -> str:
    """`text` with every PII value replaced by its typed placeholder (`[手机号]`, `[身份证号]`, ...)."""
    return default_redactor().redact(text)


def find_pii(text: str) -> list[PiiSpan]:
    """Every PII value in `text` with its type and offsets."""
    return default_redactor().find_pii(text)
