"""Intent classification for Chinese customer-service messages: YAML rules, a char n-gram model, an LLM."""

from python_backends.intent.classifier import IntentClassifier, IntentConfig, classify, default_classifier
from python_backends.intent.labels import LABELS, IntentResult

__all__ = ["LABELS", "IntentClassifier", "IntentConfig", "IntentResult", "classify", "default_classifier"]
