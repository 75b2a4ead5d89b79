"""The trained intent model as plain arrays: char n-gram TF-IDF features and a linear softmax layer.

Training uses scikit-learn (see `train.py`), but inference only needs a vocabulary, IDF weights and the
weight matrix, so the artefact stores those and importing it costs milliseconds instead of the ~1 s that
importing scikit-learn takes. `char_ngrams` reproduces scikit-learn's `char_wb` analyser exactly; a unit
test checks the probabilities against the scikit-learn pipeline.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ARTEFACT_FORMAT = 2  # 1 was a joblib pickle of a dict
_ARTEFACT_ARRAYS = ("header", "grams", "idf", "weights", "bias")
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
    temperature: float = 1.0  # logits are divided by it: fitted on cross-validated predictions (calibration)

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
        if self.temperature != 1.0:
            logits /= self.temperature
        logits -= logits.max()
        probabilities: FloatArray = np.exp(logits)
        probabilities /= probabilities.sum()
        return probabilities

    def save(self, path: Path) -> None:
        """Write the artefact as arrays plus a JSON header in one `.npz` (no pickle; see `load`)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        grams = np.empty(len(self.vocabulary), dtype=object)
        for gram, index in self.vocabulary.items():
            grams[index] = gram
        header = {
            "format": ARTEFACT_FORMAT,
            "labels": list(self.labels),
            "ngram_range": list(self.ngram_range),
            "sublinear_tf": self.sublinear_tf,
            "temperature": self.temperature,
        }
        with path.open("wb") as out:  # an open file, so numpy does not append ".npz" to the name
            np.savez_compressed(
                out,
                header=np.array(json.dumps(header)),
                grams=grams.astype(str),
                idf=self.idf,
                weights=self.weights,
                bias=self.bias,
            )

    @classmethod
    def load(cls, path: Path) -> CharNgramModel:
        """Read an artefact written by `save`; `allow_pickle=False`, so a file can carry numbers and text only."""
        try:
            with np.load(path, allow_pickle=False) as arrays:
                raw = {name: arrays[name] for name in _ARTEFACT_ARRAYS}
        except (ValueError, OSError, KeyError) as exc:
            raise ValueError(f"{path}: not an intent model artefact ({exc})") from None
        header = json.loads(str(raw["header"]))
        if not isinstance(header, dict) or header.get("format") != ARTEFACT_FORMAT:
            raise ValueError(f"{path}: unsupported intent artefact format {header.get('format')!r}")
        labels = tuple(str(label) for label in header["labels"])
        weights = np.ascontiguousarray(raw["weights"], dtype=np.float64)
        grams = [str(gram) for gram in raw["grams"]]
        if weights.shape != (len(grams), len(labels)):
            raise ValueError(f"{path}: weights have shape {weights.shape}, inconsistent with vocabulary and labels")
        low, high = header["ngram_range"]
        return cls(
            labels=labels,
            vocabulary={gram: index for index, gram in enumerate(grams)},
            idf=np.asarray(raw["idf"], dtype=np.float64),
            weights=weights,
            bias=np.asarray(raw["bias"], dtype=np.float64),
            ngram_range=(int(low), int(high)),
            sublinear_tf=bool(header["sublinear_tf"]),
            temperature=float(header["temperature"]),
        )
