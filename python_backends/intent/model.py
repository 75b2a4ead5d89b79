"""The trained intent model as plain arrays: char n-gram TF-IDF features and a linear softmax layer.

Training uses scikit-learn (see `train.py`), but inference only needs a vocabulary, IDF weights and the
weight matrix, so the artefact stores those and importing it costs milliseconds instead of the ~1 s that
importing scikit-learn takes. `char_ngrams` reproduces scikit-learn's `char_wb` analyser exactly; a unit
test checks the probabilities against the scikit-learn pipeline.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

ARTEFACT_FORMAT = 1
_WHITESPACE = re.compile(r"\s\s+")

FloatArray = npt.NDArray[np.float64]


def char_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """Character n-grams inside word boundaries, padded with spaces (scikit-learn's `char_wb`)."""
    grams: list[str] = []
    for word in _WHITESPACE.sub(" ", text).split():
        padded = f" {word} "
        length = len(padded)
        for n in range(min_n, max_n + 1):
            if n >= length:  # a short word counts once, as a whole
                grams.append(padded)
                break
            grams.extend(padded[offset : offset + n] for offset in range(length - n + 1))
    return grams


@dataclass(frozen=True)
class CharNgramModel:
    """TF-IDF (l2, optional sublinear tf) over char n-grams followed by multinomial logistic regression."""

    labels: tuple[str, ...]
    vocabulary: dict[str, int]
    idf: FloatArray
    weights: FloatArray  # (n_features, n_labels), row per n-gram so a message gathers a few rows
    bias: FloatArray  # (n_labels,)
    ngram_range: tuple[int, int]
    sublinear_tf: bool

    def predict_proba(self, text: str) -> FloatArray:
        """Probability per label (same order as `labels`) for already-normalised text."""
        counts = Counter(
            index for gram in char_ngrams(text, *self.ngram_range) if (index := self.vocabulary.get(gram)) is not None
        )
        logits = self.bias.copy()
        if counts:
            indices = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if self.sublinear_tf:
                tf = np.log(tf) + 1.0
            values = tf * self.idf[indices]
            values /= math.sqrt(float(values @ values))
            logits += values @ self.weights[indices]
        logits -= logits.max()
        probabilities: FloatArray = np.exp(logits)
        probabilities /= probabilities.sum()
        return probabilities

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ARTEFACT_FORMAT,
            "labels": list(self.labels),
            "vocabulary": self.vocabulary,
            "idf": self.idf,
            "weights": self.weights,
            "bias": self.bias,
            "ngram_range": list(self.ngram_range),
            "sublinear_tf": self.sublinear_tf,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CharNgramModel:
        if raw.get("format") != ARTEFACT_FORMAT:
            raise ValueError(f"unsupported intent artefact format {raw.get('format')!r}")
        low, high = raw["ngram_range"]
        weights = np.ascontiguousarray(raw["weights"], dtype=np.float64)
        labels = tuple(raw["labels"])
        if weights.shape != (len(raw["vocabulary"]), len(labels)):
            raise ValueError(f"intent artefact weights have shape {weights.shape}, inconsistent with vocabulary")
        return cls(
            labels=labels,
            vocabulary=dict(raw["vocabulary"]),
            idf=np.asarray(raw["idf"], dtype=np.float64),
            weights=weights,
            bias=np.asarray(raw["bias"], dtype=np.float64),
            ngram_range=(int(low), int(high)),
            sublinear_tf=bool(raw["sublinear_tf"]),
        )

    def save(self, path: Path) -> None:
        """Write the artefact (a dict of builtins and arrays, no pickled classes) with joblib."""
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.to_dict(), path, compress=3)

    @classmethod
    def load(cls, path: Path) -> CharNgramModel:
        raw = joblib.load(path)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: not an intent model artefact")
        return cls.from_dict(raw)
