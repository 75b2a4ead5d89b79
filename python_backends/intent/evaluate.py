"""Score the classifier on the held-out split: `python -m python_backends.intent.evaluate`.

Prints accuracy, macro-F1, per-label precision/recall, the confusion matrix and every miss, and writes
the same as Markdown to `perf/reports/intent_accuracy.md`.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from python_backends.intent.classifier import IntentClassifier
from python_backends.intent.dataset import Example, load_examples
from python_backends.intent.labels import LABELS, IntentResult
from python_backends.intent.paths import PACKAGE_DIR, TEST_PATH

REPORT_PATH = PACKAGE_DIR.parents[1] / "perf" / "reports" / "intent_accuracy.md"


@dataclass(frozen=True, slots=True)
class LabelScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Evaluation:
    """Scores of one run over a labelled split; `confusion[(gold, predicted)]` counts messages."""

    accuracy: float
    macro_f1: float
    per_label: dict[str, LabelScores]
    confusion: Counter[tuple[str, str]]
    by_source: dict[str, tuple[int, int]]  # source -> (correct, total)
    misses: list[tuple[Example, IntentResult]]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def score(examples: Sequence[Example], results: Sequence[IntentResult]) -> Evaluation:
    """Compare predictions with gold labels."""
    pairs = list(zip(examples, results, strict=True))
    confusion: Counter[tuple[str, str]] = Counter((ex.label, res.label) for ex, res in pairs)
    per_label: dict[str, LabelScores] = {}
    for label in LABELS:
        true_positive = confusion[(label, label)]
        predicted = sum(count for (_, guess), count in confusion.items() if guess == label)
        support = sum(count for (gold, _), count in confusion.items() if gold == label)
        precision, recall = _ratio(true_positive, predicted), _ratio(true_positive, support)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = LabelScores(precision, recall, f1, support)
    by_source: dict[str, tuple[int, int]] = {}
    for ex, res in pairs:
        correct, total = by_source.get(res.source, (0, 0))
        by_source[res.source] = (correct + (ex.label == res.label), total + 1)
    correct_total = sum(confusion[(label, label)] for label in LABELS)
    scored = [scores.f1 for scores in per_label.values() if scores.support]
    return Evaluation(
        accuracy=_ratio(correct_total, len(examples)),
        macro_f1=sum(scored) / len(scored) if scored else 0.0,
        per_label=per_label,
        confusion=confusion,
        by_source=by_source,
        misses=[(ex, res) for ex, res in pairs if ex.label != res.label],
    )


def evaluate(classifier: IntentClassifier, examples: Sequence[Example]) -> Evaluation:
    """Classify every example and score the result."""
    return score(examples, [classifier.classify(example.text) for example in examples])


def _abbreviation(label: str) -> str:
    return "".join(part[:2] for part in label.split("_"))


def format_report(evaluation: Evaluation, test_path: Path, n_examples: int) -> str:
    """Markdown: headline numbers, per-label table, confusion matrix (rows gold, columns predicted), misses."""
    lines = [
        "# Intent classifier accuracy",
        "",
        f"Test split: `{test_path.name}` ({n_examples} messages, never used for training). "
        "Regenerate with `python -m python_backends.intent.evaluate`; "
        "how the split was written and tuned: `python_backends/intent/data/README.md`.",
        "",
        f"- **accuracy: {evaluation.accuracy:.4f}**",
        f"- **macro-F1: {evaluation.macro_f1:.4f}**",
    ]
    for source, (correct, total) in sorted(evaluation.by_source.items()):
        lines.append(f"- decided by `{source}`: {total} messages, {_ratio(correct, total):.4f} correct")
    lines += ["", "| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label, scores in evaluation.per_label.items():
        lines.append(f"| {label} | {scores.precision:.3f} | {scores.recall:.3f} | {scores.f1:.3f} | {scores.support} |")
    header = " | ".join(_abbreviation(label) for label in LABELS)
    lines += ["", "Confusion matrix (rows: gold, columns: predicted)", "", f"| gold \\ predicted | {header} |"]
    lines.append("|---|" + "---:|" * len(LABELS))
    for gold in LABELS:
        cells = " | ".join(str(evaluation.confusion[(gold, guess)] or ".") for guess in LABELS)
        lines.append(f"| {gold} | {cells} |")
    lines += ["", f"Misclassified ({len(evaluation.misses)})", "", "| text | gold | predicted | confidence | source |"]
    lines.append("|---|---|---|---:|---|")
    for example, result in evaluation.misses:
        text = example.text.replace("|", "\\|")
        lines.append(f"| {text} | {example.label} | {result.label} | {result.confidence:.2f} | {result.source} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--test", type=Path, default=TEST_PATH, help="labelled JSONL test split")
    parser.add_argument("--report", type=Path, default=REPORT_PATH, help="where to write the Markdown report")
    args = parser.parse_args(argv)
    classifier = IntentClassifier()
    started = time.perf_counter()
    classifier.load()
    load_seconds = time.perf_counter() - started
    examples = load_examples(args.test)
    evaluation = evaluate(classifier, examples)
    report = format_report(evaluation, args.test, len(examples))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report, encoding="utf-8")
    print(report)
    print(f"(classifier loaded in {load_seconds * 1000:.0f} ms; report written to {args.report})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
