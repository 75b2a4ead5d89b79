"""Text normalisation shared by the rules, training and inference, so all three see the same string."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import yaml

from python_backends.intent.paths import CHARACTER_MAP_PATH

_WHITESPACE = re.compile(r"\s+")


def load_character_map(path: Path) -> dict[int, str]:
    """Read the traditional->simplified table (YAML mapping of single characters) as a `str.translate` table."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of traditional -> simplified characters")
    table: dict[int, str] = {}
    for source, target in raw.items():
        if not (isinstance(source, str) and isinstance(target, str) and len(source) == 1):
            raise ValueError(f"{path}: bad entry {source!r}: {target!r} (need one character -> string)")
        table[ord(source)] = target
    return table


class TextNormalizer:
    """NFKC (full-width -> half-width), lowercase, traditional -> simplified, collapsed whitespace."""

    def __init__(self, character_map: dict[int, str]) -> None:
        self._table = character_map

    @classmethod
    def from_file(cls, path: Path = CHARACTER_MAP_PATH) -> TextNormalizer:
        return cls(load_character_map(path))

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFKC", text).lower().translate(self._table)
        return _WHITESPACE.sub(" ", text).strip()


@lru_cache(maxsize=1)
def default_normalizer() -> TextNormalizer:
    """The normaliser built from the packaged character map, loaded once per process."""
    return TextNormalizer.from_file()


def normalize(text: str) -> str:
    """Normalise with the packaged character map."""
    return default_normalizer()(text)
