"""Cross-validate rules + model on the training split: `python -m python_backends.intent.crossval`.

Each fold trains (and calibrates) a model without the held-out fifth and classifies it with the full pipeline
(noise guard, YAML rules, model), so the per-label scores, the confusion matrix and the accuracy-vs-coverage
curve describe phrasing the model never saw. Writes `perf/reports/intent_crossval.md` and two PNGs beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from python_backends.intent.classifier import IntentClassifier, IntentConfig
from python_backends.intent.dataset import Example, load_examples
from python_backends.intent.evaluate import (
    REPORT_DIR,
    coverage_table,
    format_coverage,
    format_misses,
    format_scores,
    raw_config,
    score,
)
from python_backends.intent.labels import IntentResult
from python_backends.intent.normalize import normalize
from python_backends.intent.paths import TRAIN_PATH
from python_backends.intent.train import SEED, fit, fit_temperature, out_of_fold_logits

FOLDS = 5


def out_of_fold_results(
    examples: Sequence[Example], configs: Sequence[IntentConfig], folds: int = FOLDS
) -> list[list[IntentResult]]:
    """Per config, every example classified by a pipeline whose model was trained without it."""
    results: list[list[IntentResult | None]] = [[None] * len(examples) for _ in configs]
    labels = [example.label for example in examples]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    with tempfile.TemporaryDirectory() as scratch:
        for fold, (train_index, held_index) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            path = Path(scratch) / f"fold{fold}.npz"
            fit([examples[i] for i in train_index]).save(path)
            for per_config, config in zip(results, configs, strict=True):
                classifier = IntentClassifier(dataclasses.replace(config, model_path=path, train_if_missing=False))
                for i in held_index:
                    per_config[i] = classifier.classify(examples[i].text, examples[i].previous)
    return [[result for result in per_config if result is not None] for per_config in results]


def expected_calibration_error(logits: np.ndarray, gold: np.ndarray, temperature: float, bins: int = 10) -> float:
    """Mean |confidence - accuracy| over equal-width confidence bins, weighted by bin size."""
    scaled = logits / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    probabilities = np.exp(scaled) / np.exp(scaled).sum(axis=1, keepdims=True)
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == gold
    edges = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = edges == b
        if members.any():
            error += members.mean() * abs(float(confidence[members].mean()) - float(correct[members].mean()))
    return error


def calibration_lines(examples: Sequence[Example]) -> list[str]:
    """ECE of the model's out-of-fold confidence before and after temperature scaling."""
    texts, labels = [normalize(e.text) for e in examples], [e.label for e in examples]
    column = {label: index for index, label in enumerate(sorted(set(labels)))}
    gold = np.array([column[label] for label in labels])
    logits = out_of_fold_logits(texts, labels)
    temperature = fit_temperature(logits, gold)
    before, after = (expected_calibration_error(logits, gold, t) for t in (1.0, temperature))
    return [
        f"Calibration of the model's out-of-fold confidence (10-bin expected calibration error): {before:.3f} raw, "
        f"{after:.3f} after temperature scaling (T = {temperature:.2f}, fitted on the same folds; the model's "
        "probabilities are under-confident before scaling)."
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, default=TRAIN_PATH, help="labelled JSONL training split")
    parser.add_argument("--out", type=Path, default=REPORT_DIR, help="folder for the report and PNGs")
    args = parser.parse_args(argv)
    from python_backends.intent.plots import plot_confusion, plot_coverage  # deferred: matplotlib

    examples = load_examples(args.train)
    served, raw = out_of_fold_results(examples, [IntentConfig(), raw_config(IntentConfig())])
    evaluation = score(examples, served)
    table = coverage_table(examples, raw)
    args.out.mkdir(parents=True, exist_ok=True)
    confusion_png = plot_confusion(evaluation, args.out / "intent_crossval_confusion.png", "5-fold CV, train split")
    coverage_png = plot_coverage(table, args.out / "intent_crossval_coverage.png", IntentConfig().min_model_confidence)
    lines = [
        "# Intent classifier: cross-validation on the training split",
        "",
        f"{FOLDS}-fold stratified cross-validation of the whole pipeline (rules + calibrated model + abstention) "
        f"on `{args.train.name}` ({len(examples)} messages). Regenerate with "
        "`python -m python_backends.intent.crossval`.",
        "",
        *format_scores(evaluation),
        "",
        f"![confusion matrix]({confusion_png.name})",
        "",
        *format_coverage(table),
        "",
        *calibration_lines(examples),
        "",
        f"![accuracy vs coverage]({coverage_png.name})",
        "",
        *format_misses(evaluation),
    ]
    report = "\n".join(lines) + "\n"
    (args.out / "intent_crossval.md").write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
