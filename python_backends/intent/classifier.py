"""Rules first, then the trained model, then (optionally) an LLM: the intent of one customer message."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from python_backends.intent.dataset import load_examples
from python_backends.intent.labels import FALLBACK_LABEL, IntentResult
from python_backends.intent.llm_fallback import build_prompt, parse_label
from python_backends.intent.model import CharNgramModel
from python_backends.intent.normalize import TextNormalizer
from python_backends.intent.paths import ARTEFACT_PATH, CHARACTER_MAP_PATH, RULES_PATH, TRAIN_PATH
from python_backends.intent.rules import IntentRules

logger = logging.getLogger(__name__)

_CONTENT_CHAR = re.compile(r"[^\W_]")  # a letter, digit or CJK character; emoji and punctuation are not
_REPEATED_UNIT = re.compile(r"(.{1,3}?)\1{2,}")  # "aaaa", "哈哈哈", "hjkhjkhjk"
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_NOISE = IntentResult(FALLBACK_LABEL, 0.0, "rule")


@dataclass(frozen=True)
class IntentConfig:
    """Where the rules and artefact live and when to distrust the model.

    `min_model_confidence`: below it the model's guess is replaced by `other` (we would rather ask the
    customer again than route a refund wrongly); messages without Chinese characters (English, pinyin,
    keyboard noise) have thin training data and must reach `min_model_confidence_without_cjk`.
    `llm_fallback` (off by default) receives a constrained prompt when the model is below `llm_threshold`;
    a reply naming exactly one label wins.
    """

    rules_path: Path = RULES_PATH
    model_path: Path = ARTEFACT_PATH
    train_path: Path = TRAIN_PATH
    character_map_path: Path = CHARACTER_MAP_PATH
    max_input_chars: int = 512
    min_model_confidence: float = 0.3
    min_model_confidence_without_cjk: float = 0.6
    train_if_missing: bool = True
    llm_fallback: Callable[[str], str] | None = None
    llm_threshold: float = 0.5
    llm_confidence: float = 0.6


@dataclass(frozen=True, slots=True)
class _Artefacts:
    normalize: TextNormalizer
    rules: IntentRules
    model: CharNgramModel


class IntentClassifier:
    """Loads rules and model once, on first use (or on `load()`), and classifies messages.

    `classify` never raises for any string. Noise (no letters, digits or CJK characters, or one short unit
    repeated like "aaaa") is `other` with confidence 0; long messages are classified on their first
    `max_input_chars` characters.
    """

    def __init__(self, config: IntentConfig | None = None) -> None:
        self.config = config or IntentConfig()
        self._artefacts: _Artefacts | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load eagerly, e.g. in a Triton `initialize`, so the first request is not slow."""
        self._loaded()

    def classify(self, text: str) -> IntentResult:
        """Noise guard, then the YAML rules, then the model, then (if configured and unsure) the LLM."""
        if not isinstance(text, str):
            return _NOISE
        artefacts = self._loaded()
        prefix = text[: self.config.max_input_chars]
        normalized = artefacts.normalize(prefix)
        content = "".join(_CONTENT_CHAR.findall(normalized))
        if not content:
            return _NOISE
        hit = artefacts.rules.match(normalized)
        if hit is not None:
            return IntentResult(hit.label, hit.confidence, "rule")
        if _REPEATED_UNIT.fullmatch(content):
            return _NOISE
        result = self._predict(artefacts.model, normalized)
        if self.config.llm_fallback is not None and result.confidence < self.config.llm_threshold:
            return self._ask_llm(self.config.llm_fallback, prefix, result)
        return result

    def _predict(self, model: CharNgramModel, normalized: str) -> IntentResult:
        probabilities = model.predict_proba(normalized)
        best = int(probabilities.argmax())
        confidence = float(probabilities[best])
        has_cjk = _CJK.search(normalized) is not None
        threshold = self.config.min_model_confidence if has_cjk else self.config.min_model_confidence_without_cjk
        if confidence < threshold:
            other = model.labels.index(FALLBACK_LABEL)
            return IntentResult(FALLBACK_LABEL, float(probabilities[other]), "model")
        return IntentResult(model.labels[best], confidence, "model")

    def _ask_llm(self, ask: Callable[[str], str], text: str, model_result: IntentResult) -> IntentResult:
        try:
            reply = ask(build_prompt(text))
        except Exception:  # the fallback is best effort; the model's answer still stands
            logger.warning("intent LLM fallback failed; keeping the model result", exc_info=True)
            return model_result
        label = parse_label(reply) if isinstance(reply, str) else None
        if label is None:
            logger.warning("intent LLM fallback replied without exactly one label: %r", reply)
            return model_result
        return IntentResult(label, self.config.llm_confidence, "llm")

    def _loaded(self) -> _Artefacts:
        if self._artefacts is None:
            with self._lock:
                if self._artefacts is None:
                    self._artefacts = self._load_artefacts()
        return self._artefacts

    def _load_artefacts(self) -> _Artefacts:
        normalize = TextNormalizer.from_file(self.config.character_map_path)
        rules = IntentRules.from_yaml(self.config.rules_path, normalize)
        return _Artefacts(normalize, rules, self._load_model(normalize))

    def _load_model(self, normalize: TextNormalizer) -> CharNgramModel:
        path = self.config.model_path
        if path.exists() or not self.config.train_if_missing:
            return CharNgramModel.load(path)
        logger.warning("intent model artefact %s is missing; training it now from %s", path, self.config.train_path)
        from python_backends.intent.train import fit  # deferred: imports scikit-learn (~1 s)

        model = fit(load_examples(self.config.train_path), normalize)
        try:
            model.save(path)
        except OSError:
            logger.warning("could not write intent model artefact %s; using it in memory only", path, exc_info=True)
        return model


@lru_cache(maxsize=1)
def default_classifier() -> IntentClassifier:
    """The process-wide classifier with the packaged rules and artefact."""
    return IntentClassifier()


def classify(text: str) -> IntentResult:
    """Classify one message with the default classifier (loads it on first call)."""
    return default_classifier().classify(text)
