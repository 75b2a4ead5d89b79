"""Score the classifier on a held-out split: `python -m python_backends.intent.evaluate [--blind]`.

Prints accuracy, macro-F1, per-label precision/recall, the confusion matrix, accuracy vs coverage and every
miss (single messages and follow-ups with their previous turn), and writes the same as Markdown (plus a
confusion-matrix PNG) to `perf/reports/intent_accuracy.md`, or `intent_blind.md` for the blind split.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from python_backends.intent.classifier import IntentClassifier, IntentConfig
from python_backends.intent.dataset import Example, load_examples
from python_backends.intent.labels import FALLBACK_LABEL, LABELS, IntentResult
from python_backends.intent.paths import (
    BLIND_FOLLOWUPS_PATH,
    BLIND_PATH,
    FOLLOWUPS_PATH,
    PACKAGE_DIR,
    TEST_PATH,
)

REPORT_DIR = PACKAGE_DIR.parents[1] / "perf" / "reports"
REPORT_PATH = REPORT_DIR / "intent_accuracy.md"
BLIND_REPORT_PATH = REPORT_DIR / "intent_blind.md"
COVERAGE_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


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
    """Classify every example (after its previous turn, if any) and score the result."""
    return score(examples, [classifier.classify(example.text, example.previous) for example in examples])


def raw_config(config: IntentConfig) -> IntentConfig:
    """The same pipeline without abstention or LLM: the model always names its best label."""
    return dataclasses.replace(
        config, min_model_confidence=0.0, min_model_confidence_without_cjk=0.0, llm_fallback=None
    )


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """At one abstention threshold: share of messages labelled, their accuracy, accuracy counting `other`."""

    threshold: float
    coverage: float
    covered_accuracy: float
    accuracy: float


def coverage_table(
    examples: Sequence[Example], raw: Sequence[IntentResult], thresholds: Sequence[float] = COVERAGE_THRESHOLDS
) -> list[CoverageRow]:
    """Accuracy vs coverage when model decisions below each threshold abstain to `other` (rules never do)."""
    rows = []
    for threshold in thresholds:
        covered = correct_covered = correct = 0
        for example, result in zip(examples, raw, strict=True):
            abstains = result.source == "model" and result.confidence < threshold
            label = FALLBACK_LABEL if abstains else result.label
            correct += label == example.label
            if not abstains:
                covered += 1
                correct_covered += label == example.label
        share, total = _ratio(covered, len(examples)), _ratio(correct, len(examples))
        rows.append(CoverageRow(threshold, share, _ratio(correct_covered, covered), total))
    return rows


def format_coverage(rows: Sequence[CoverageRow]) -> list[str]:
    lines = [
        "Accuracy vs coverage (model decisions below the threshold abstain to `other`; rule decisions always count)",
        "",
        "| threshold | coverage | accuracy of labelled | accuracy (abstained = other) |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {r.threshold:.2f} | {r.coverage:.3f} | {r.covered_accuracy:.3f} | {r.accuracy:.3f} |" for r in rows]
    return lines


def _abbreviation(label: str) -> str:
    return "".join(part[:2] for part in label.split("_"))


def format_scores(evaluation: Evaluation) -> list[str]:
    """Headline numbers, per-label table and confusion matrix (rows gold, columns predicted) as Markdown lines."""
    lines = [f"- **accuracy: {evaluation.accuracy:.4f}**", f"- **macro-F1: {evaluation.macro_f1:.4f}**"]
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
    return lines


def format_misses(evaluation: Evaluation) -> list[str]:
    lines = [f"Misclassified ({len(evaluation.misses)})", ""]
    lines += ["| previous turn | text | gold | predicted | confidence | source |", "|---|---|---|---|---:|---|"]
    for example, result in evaluation.misses:
        previous, text = (
            value.replace("|", "\\|").replace("\n", " ") for value in (" / ".join(example.previous), example.text)
        )
        lines.append(
            f"| {previous} | {text} | {example.label} | {result.label} | {result.confidence:.2f} | {result.source} |"
        )
    return lines


def format_report(
    title: str, evaluation: Evaluation, followups: Evaluation | None, coverage: Sequence[CoverageRow], intro: str
) -> str:
    """The Markdown report of one evaluation run."""
    lines = [f"# {title}", "", intro, "", *format_scores(evaluation), "", *format_coverage(coverage), ""]
    if followups is not None:
        total = sum(s.support for s in followups.per_label.values())
        lines += [f"Follow-ups with a previous turn: **accuracy {followups.accuracy:.4f}** ({total} cases)", ""]
        for source, (correct, count) in sorted(followups.by_source.items()):
            lines.append(f"- decided by `{source}`: {count} cases, {_ratio(correct, count):.4f} correct")
        lines.append("")
    lines += format_misses(evaluation)
    if followups is not None:
        lines += ["", *format_misses(followups)]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blind", action="store_true", help="score the blind split (run once, never tune on it)")
    parser.add_argument("--test", type=Path, default=None, help="labelled JSONL split (default: test.jsonl)")
    parser.add_argument("--followups", type=Path, default=None, help="labelled follow-up cases with history")
    parser.add_argument("--report", type=Path, default=None, help="where to write the Markdown report")
    args = parser.parse_args(argv)
    test = args.test or (BLIND_PATH if args.blind else TEST_PATH)
    followups_path = args.followups or (BLIND_FOLLOWUPS_PATH if args.blind else FOLLOWUPS_PATH)
    report_path = args.report or (BLIND_REPORT_PATH if args.blind else REPORT_PATH)
    classifier = IntentClassifier()
    started = time.perf_counter()
    classifier.load()
    load_seconds = time.perf_counter() - started
    examples = load_examples(test)
    evaluation = evaluate(classifier, examples)
    unabstained = IntentClassifier(raw_config(classifier.config))
    raw_results = [unabstained.classify(example.text, example.previous) for example in examples]
    followups = evaluate(classifier, load_examples(followups_path)) if followups_path.exists() else None
    from python_backends.intent.plots import plot_confusion  # deferred: matplotlib

    report_path.parent.mkdir(parents=True, exist_ok=True)
    png = plot_confusion(evaluation, report_path.with_suffix(".png"), test.name)
    intro = (
        f"Split: `{test.name}` ({len(examples)} messages, never used for training) and `{followups_path.name}`. "
        f"Regenerate with `python -m python_backends.intent.evaluate{' --blind' if args.blind else ''}`; how the "
        "splits were written: `python_backends/intent/data/README.md`.\n\n"
        f"![confusion matrix]({png.name})"
    )
    title = "Intent classifier accuracy" + (" on the blind split" if args.blind else "")
    report = format_report(title, evaluation, followups, coverage_table(examples, raw_results), intro)
    report_path.write_text(report, encoding="utf-8")
    print(report)
    print(f"(classifier loaded in {load_seconds * 1000:.0f} ms; report written to {report_path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
