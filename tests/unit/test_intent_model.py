"""The exported char n-gram model: equal to scikit-learn, artefact round trip, training entry points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from python_backends.intent.dataset import Example, load_examples
from python_backends.intent.labels import LABELS
from python_backends.intent.model import CharNgramModel, char_ngrams
from python_backends.intent.normalize import normalize
from python_backends.intent.paths import TEST_PATH, TRAIN_PATH
from python_backends.intent.train import NGRAM_RANGE, export, fit, fit_sklearn, main

SAMPLES = ["", "a", "ab", "我要退款", "hi 客服", "  refund   please ", "x y z", "退款,到账了吗?😀"]


@pytest.fixture(scope="module")
def fitted() -> tuple[TfidfVectorizer, LogisticRegression]:
    examples = load_examples(TRAIN_PATH)
    return fit_sklearn([normalize(e.text) for e in examples], [e.label for e in examples])


@pytest.fixture(scope="module")
def model(fitted: tuple[TfidfVectorizer, LogisticRegression]) -> CharNgramModel:
    return export(*fitted)


def test_char_ngrams_equal_sklearn_char_wb(fitted: tuple[TfidfVectorizer, LogisticRegression]) -> None:
    """Our n-gram extraction is exactly scikit-learn's `char_wb` analyser."""
    analyzer = fitted[0].build_analyzer()
    for text in SAMPLES:
        assert char_ngrams(text, *NGRAM_RANGE) == analyzer(text)


def test_probabilities_equal_sklearn(fitted: tuple[TfidfVectorizer, LogisticRegression], model: CharNgramModel) -> None:
    """Serving without scikit-learn gives the same probabilities as the fitted pipeline."""
    vectorizer, classifier = fitted
    texts = [normalize(e.text) for e in load_examples(TEST_PATH)] + SAMPLES
    expected = classifier.predict_proba(vectorizer.transform(texts))
    actual = np.vstack([model.predict_proba(text) for text in texts])
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-9)
    assert model.labels == tuple(classifier.classes_)


def test_artefact_round_trips(model: CharNgramModel, tmp_path: Path) -> None:
    """save -> load gives an identical model."""
    path = tmp_path / "nested" / "model.npz"
    model.save(path)
    loaded = CharNgramModel.load(path)
    assert loaded.labels == model.labels
    assert loaded.vocabulary == model.vocabulary
    assert loaded.ngram_range == model.ngram_range
    for text in SAMPLES:
        np.testing.assert_array_equal(loaded.predict_proba(text), model.predict_proba(text))


def test_artefact_holds_only_arrays_and_json(model: CharNgramModel, tmp_path: Path) -> None:
    """The artefact opens with pickle disabled: numbers, strings and a JSON header, no Python objects."""
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
        header = json.loads(str(arrays["header"]))
    assert set(header["labels"]) == set(LABELS)


def _pickled_npz(path: Path) -> None:
    np.savez(path, header=np.array([{"format": 2}], dtype=object))


@pytest.mark.parametrize(
    "write",
    [
        lambda path: path.write_bytes(b"not a zip file"),
        lambda path: np.savez(path, header=np.array(json.dumps({"format": 99}))),
        _pickled_npz,
    ],
    ids=["garbage", "wrong-format", "pickled-object"],
)
def test_foreign_artefacts_are_rejected(tmp_path: Path, write: Any) -> None:
    """Loading something that is not our artefact (or that needs pickle) raises instead of misclassifying."""
    path = tmp_path / "model.npz"
    write(path)
    with pytest.raises(ValueError):
        CharNgramModel.load(path)


def test_unknown_text_gets_a_probability_distribution(model: CharNgramModel) -> None:
    """Text with no known n-grams still yields probabilities that sum to one."""
    probabilities = model.predict_proba("ꙮꙮ")
    assert probabilities.shape == (len(LABELS),)
    assert probabilities.sum() == pytest.approx(1.0)


def test_training_needs_every_label() -> None:
    """A training set missing labels is refused: the model could never predict them."""
    with pytest.raises(ValueError, match="no examples"):
        fit([Example("你好", "greeting"), Example("我要退款", "refund")])


def test_train_command_writes_the_artefact(tmp_path: Path) -> None:
    """`python -m python_backends.intent.train --train ... --out ...` writes a loadable artefact."""
    mini = tmp_path / "train.jsonl"
    lines = [json.dumps({"text": f"{label} 示例 {i}", "label": label}) for label in LABELS for i in range(2)]
    mini.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out" / "model.npz"
    assert main(["--train", str(mini), "--out", str(out)]) == 0
    assert CharNgramModel.load(out).labels == tuple(sorted(LABELS))
