"""PII filter for Chinese customer-service text: resident IDs, phones, bank cards, emails, passports, plates,
street addresses and personal names in context, also as customers type them (any separators, full-width and
spoken digits).

`redact(text)` replaces values with typed placeholders; `StreamingRedactor` does the same for a stream without
ever releasing part of a value; order numbers, tracking numbers, prices and hotlines pass unchanged.
"""

from python_backends.pii.config import RedactionConfig
from python_backends.pii.pii_types import ALL_TYPES, PiiSpan, PiiType
from python_backends.pii.redactor import Redactor, find_pii, redact
from python_backends.pii.streaming import StreamingRedactor

__all__ = [
    "ALL_TYPES",
    "PiiSpan",
    "PiiType",
    "RedactionConfig",
    "Redactor",
    "StreamingRedactor",
    "find_pii",
    "redact",
]
