"""The PII kinds the filter knows and the span it reports for each hit."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PiiType(StrEnum):
    """A kind of personal data; the value is the key used in `data/pii_rules.yaml` and the corpus."""

    ID_CARD = "id_card"
    MOBILE = "mobile"
    LANDLINE = "landline"
    BANK_CARD = "bank_card"
    EMAIL = "email"
    PASSPORT = "passport"
    LICENSE_PLATE = "license_plate"
    ADDRESS = "address"
    NAME = "name"


ALL_TYPES: frozenset[PiiType] = frozenset(PiiType)


@dataclass(frozen=True, slots=True)
class PiiSpan:
    """One detected value: `text[start:end] == value` in the text that was scanned."""

    type: PiiType
    start: int
    end: int
    value: str
