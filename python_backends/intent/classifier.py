"""Rules first, then the trained model, then the conversation, then (optionally) an LLM: one message's intent."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from python_backends.intent.context import ContextPolicy
from python_backends.intent.dataset import load_examples
from python_backends.intent.labels import FALLBACK_LABEL, IntentResult
from python_backends.intent.llm_fallback import build_prompt, parse_label
from python_backends.intent.model import CharNgramModel
from python_backends.intent.normalize import TextNormalizer
from python_backends.intent.paths import ARTEFACT_PATH, CHARACTER_MAP_PATH, CONTEXT_PATH, RULES_PATH, TRAIN_PATH
from python_backends.intent.rules import IntentRules

logger = logging.getLogger(__name__)

_CONTENT_CHAR = re.compile(r"[^\W_]")  # a letter, digit or CJK character; emoji and punctuation are not
_REPEATED_UNIT = re.compile(r"(.{1,3}?)\1{2,}")  # "aaaa", "哈哈哈", "hjkhjkhjk"
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_NOISE = IntentResult(FALLBACK_LABEL, 0.0, "rule")


@dataclass(frozen=True)
class IntentConfig:
    """Where the rules and artefact live and when to distrust the model.

    The model's confidence is calibrated (temperature scaling, see `train.py`). `min_model_confidence`: below
    it the model abstains and the label is `other` (we would rather ask the customer again than route a refund
    wrongly); messages without Chinese characters (English, pinyin, keyboard noise) have thinner training data
    and must reach `min_model_confidence_without_cjk`. `llm_fallback` (off by default) receives a constrained
    prompt when the model is below `llm_threshold`; a reply naming exactly one label wins, anything else (no
    reply within its time budget, an error, an unclear reply) leaves the model's decision standing.
    """

    rules_path: Path = RULES_PATH
    model_path: Path = ARTEFACT_PATH
    train_path: Path = TRAIN_PATH
    character_map_path: Path = CHARACTER_MAP_PATH
    context_path: Path = CONTEXT_PATH
    max_input_chars: int = 512
    context_turns: int = 3
    min_model_confidence: float = 0.5
    min_model_confidence_without_cjk: float = 0.6
    train_if_missing: bool = True
    llm_fallback: Callable[[str], str | None] | None = None
    llm_threshold: float = 0.5
    llm_confidence: float = 0.6


@dataclass(frozen=True, slots=True)
class _Artefacts:
    normalize: TextNormalizer
    rules: IntentRules
    model: CharNgramModel
    context: ContextPolicy


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

    def classify(self, text: str, previous: str | Sequence[str] | None = None) -> IntentResult:
        """Noise guard, YAML rules, model; then the conversation; then (if unsure) the LLM.

        `previous` is the customer's earlier message, or their earlier messages oldest first: a short follow-up
        with no signal of its own ("还是不行") inherits the intent of the message before it (source `context`),
        which may itself have been inherited (the last `context_turns` messages are read).
        """
        if not isinstance(text, str):
            return _NOISE
        artefacts = self._loaded()
        prefix = text[: self.config.max_input_chars]
        own = self._in_context(artefacts, prefix, self._context(artefacts, previous))
        ask = self.config.llm_fallback
        if ask is not None and own.source == "model" and own.confidence < self.config.llm_threshold:
            return self._ask_llm(ask, prefix, own)
        return own

    def _context(self, artefacts: _Artefacts, previous: str | Sequence[str] | None) -> IntentResult | None:
        """The intent of the conversation so far: each earlier message read in the light of the one before."""
        earlier = [previous] if isinstance(previous, str) else list(previous or ())
        context: IntentResult | None = None
        for message in earlier[-self.config.context_turns :]:
            if isinstance(message, str) and message.strip():
                context = self._in_context(artefacts, message[: self.config.max_input_chars], context)
        return context

    def _in_context(self, artefacts: _Artefacts, text: str, context: IntentResult | None) -> IntentResult:
        own, content_chars = self._decide(artefacts, text)
        if own is _NOISE or context is None or not artefacts.context.is_followup(content_chars, context):
            return own
        return artefacts.context.resolve(own, context)

    def _decide(self, artefacts: _Artefacts, text: str) -> tuple[IntentResult, int]:
        """The message's own intent (noise guard, rules, model) and its count of content characters."""
        normalized = artefacts.normalize(text)
        content = "".join(_CONTENT_CHAR.findall(normalized))
        if not content:
            return _NOISE, 0
        hit = artefacts.rules.match(normalized)
        if hit is not None:
            return IntentResult(hit.label, hit.confidence, "rule"), len(content)
        if _REPEATED_UNIT.fullmatch(content):
            return _NOISE, len(content)
        return self._predict(artefacts.model, normalized), len(content)

    def _predict(self, model: CharNgramModel, normalized: str) -> IntentResult:
        probabilities = model.predict_proba(normalized)
        best = int(probabilities.argmax())
        confidence = float(probabilities[best])
        has_cjk = _CJK.search(normalized) is not None
        threshold = self.config.min_model_confidence if has_cjk else self.config.min_model_confidence_without_cjk
        if confidence < threshold:  # abstain; the confidence reported is the model's (low) best
            return IntentResult(FALLBACK_LABEL, confidence, "model")
        return IntentResult(model.labels[best], confidence, "model")

    def _ask_llm(self, ask: Callable[[str], str | None], text: str, model_result: IntentResult) -> IntentResult:
        try:
            reply = ask(build_prompt(text))
        except Exception:  # the fallback is best effort; the model's answer still stands
            logger.warning("intent LLM fallback failed; keeping the model result", exc_info=True)
            return model_result
        if reply is None:  # no answer within the fallback's time budget
            return model_result
        label = parse_label(reply) if isinstance(reply, str) else None
        if label is None:
            logger.warning("intent LLM fallback replied without exactly one label (%d characters)", len(str(reply)))
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
        context = ContextPolicy.from_yaml(self.config.context_path)
        return _Artefacts(normalize, rules, self._load_model(normalize), context)

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


def classify(text: str, previous: str | Sequence[str] | None = None) -> IntentResult:
    """Classify one message (after the customer's `previous` message(s)) with the default classifier."""
    return default_classifier().classify(text, previous)
