"""Train the intent model: `python -m python_backends.intent.train` writes `artefacts/model.npz`.

scikit-learn fits TF-IDF over character 1-3 grams and a multinomial logistic regression; the fitted
numbers are exported into a `CharNgramModel` so serving never imports scikit-learn. Confidence is calibrated
by temperature scaling: one divisor of the logits, fitted to minimise the log-loss of out-of-fold predictions
(k-fold cross-validation on the training split), so "0.8" means right about 80 % of the time on unseen text.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from python_backends.intent.dataset import Example, load_examples
from python_backends.intent.labels import LABELS
from python_backends.intent.model import CharNgramModel, FloatArray
from python_backends.intent.normalize import normalize
from python_backends.intent.paths import ARTEFACT_PATH, TRAIN_PATH

logger = logging.getLogger(__name__)

NGRAM_RANGE = (1, 3)
REGULARISATION_C = 20.0
CALIBRATION_FOLDS = 5
SEED = 0


def fit_sklearn(texts: Sequence[str], labels: Sequence[str]) -> tuple[TfidfVectorizer, LogisticRegression]:
    """Fit vectoriser and classifier on normalised texts (kept separate so tests can compare outputs)."""
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=NGRAM_RANGE, lowercase=False, sublinear_tf=True, dtype=np.float64
    )
    features = vectorizer.fit_transform(texts)
    # newton-cg converges in a few steps here (0.2 s) where lbfgs needs seconds
    classifier = LogisticRegression(C=REGULARISATION_C, solver="newton-cg", max_iter=500)
    classifier.fit(features, labels)
    return vectorizer, classifier


def export(vectorizer: TfidfVectorizer, classifier: LogisticRegression) -> CharNgramModel:
    """Copy the fitted numbers out of scikit-learn objects."""
    return CharNgramModel(
        labels=tuple(str(label) for label in classifier.classes_),
        vocabulary={str(gram): int(index) for gram, index in vectorizer.vocabulary_.items()},
        idf=np.asarray(vectorizer.idf_, dtype=np.float64),
        weights=np.ascontiguousarray(classifier.coef_.T, dtype=np.float64),
        bias=np.asarray(classifier.intercept_, dtype=np.float64),
        ngram_range=NGRAM_RANGE,
        sublinear_tf=True,
    )


def out_of_fold_logits(texts: Sequence[str], labels: Sequence[str], folds: int = CALIBRATION_FOLDS) -> FloatArray:
    """Each text's logits from a model that never saw it (stratified k-fold), columns in sorted label order."""
    logits = np.zeros((len(texts), len(set(labels))), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    for train_index, held_index in splitter.split(np.zeros(len(labels)), labels):
        vectorizer, classifier = fit_sklearn([texts[i] for i in train_index], [labels[i] for i in train_index])
        logits[held_index] = classifier.decision_function(vectorizer.transform([texts[i] for i in held_index]))
    return logits


def fit_temperature(logits: FloatArray, gold: npt.NDArray[np.intp]) -> float:
    """The divisor of the logits that minimises the log-loss of the gold labels (temperature scaling)."""

    def log_loss(log_temperature: float) -> float:
        scaled = logits / np.exp(log_temperature)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float(np.mean(log_norm - scaled[np.arange(len(gold)), gold]))

    result = minimize_scalar(log_loss, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(result.x))


def fit(
    examples: Sequence[Example], normalize_text: Callable[[str], str] = normalize, calibrate: bool = True
) -> CharNgramModel:
    """Train on examples that must cover every label, so the model can output all of them.

    With `calibrate`, the exported model carries the temperature fitted on out-of-fold logits.
    """
    missing = set(LABELS) - {example.label for example in examples}
    if missing:
        raise ValueError(f"training data has no examples for {sorted(missing)}")
    texts = [normalize_text(example.text) for example in examples]
    labels = [example.label for example in examples]
    vectorizer, classifier = fit_sklearn(texts, labels)
    model = export(vectorizer, classifier)
    folds = min(CALIBRATION_FOLDS, min(Counter(labels).values()))
    if not calibrate or folds < 2:
        return model
    column = {label: index for index, label in enumerate(model.labels)}
    gold = np.array([column[label] for label in labels], dtype=np.intp)
    temperature = fit_temperature(out_of_fold_logits(texts, labels, folds), gold)
    return dataclasses.replace(model, temperature=temperature)


def train(train_path: Path = TRAIN_PATH, out_path: Path = ARTEFACT_PATH) -> CharNgramModel:
    """Train from a JSONL split and write the artefact."""
    started = time.perf_counter()
    examples = load_examples(train_path)
    model = fit(examples)
    model.save(out_path)
    logger.info(
        "trained intent model on %s examples (%s features, temperature %.2f) in %.2f s -> %s",
        len(examples),
        len(model.vocabulary),
        model.temperature,
        time.perf_counter() - started,
        out_path,
    )
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, default=TRAIN_PATH, help="labelled JSONL training split")
    parser.add_argument("--out", type=Path, default=ARTEFACT_PATH, help="where to write model.npz")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train(args.train, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
