"""Train the intent model: `python -m python_backends.intent.train` writes `artefacts/model.joblib`.

scikit-learn fits TF-IDF over character 1-3 grams and a multinomial logistic regression; the fitted
numbers are exported into a `CharNgramModel` so serving never imports scikit-learn.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from python_backends.intent.dataset import Example, load_examples
from python_backends.intent.labels import LABELS
from python_backends.intent.model import CharNgramModel
from python_backends.intent.normalize import normalize
from python_backends.intent.paths import ARTEFACT_PATH, TRAIN_PATH

logger = logging.getLogger(__name__)

NGRAM_RANGE = (1, 3)
REGULARISATION_C = 20.0


def fit_sklearn(texts: Sequence[str], labels: Sequence[str]) -> tuple[TfidfVectorizer, LogisticRegression]:
    """Fit vectoriser and classifier on normalised texts (kept separate so tests can compare outputs)."""
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=NGRAM_RANGE, lowercase=False, sublinear_tf=True, dtype=np.float64
    )
    features = vectorizer.fit_transform(texts)
    classifier = LogisticRegression(C=REGULARISATION_C, max_iter=2000)
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


def fit(examples: Sequence[Example], normalize_text: Callable[[str], str] = normalize) -> CharNgramModel:
    """Train on examples that must cover every label, so the model can output all of them."""
    missing = set(LABELS) - {example.label for example in examples}
    if missing:
        raise ValueError(f"training data has no examples for {sorted(missing)}")
    texts = [normalize_text(example.text) for example in examples]
    vectorizer, classifier = fit_sklearn(texts, [example.label for example in examples])
    return export(vectorizer, classifier)


def train(train_path: Path = TRAIN_PATH, out_path: Path = ARTEFACT_PATH) -> CharNgramModel:
    """Train from a JSONL split and write the artefact."""
    started = time.perf_counter()
    examples = load_examples(train_path)
    model = fit(examples)
    model.save(out_path)
    logger.info(
        "trained intent model on %s examples (%s features) in %.2f s -> %s",
        len(examples),
        len(model.vocabulary),
        time.perf_counter() - started,
        out_path,
    )
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, default=TRAIN_PATH, help="labelled JSONL training split")
    parser.add_argument("--out", type=Path, default=ARTEFACT_PATH, help="where to write model.joblib")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train(args.train, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
