"""Precision and recall per PII type on a labelled corpus; `python -m python_backends.pii.evaluate [--corpus ...]`.

A corpus (`data/*.jsonl`, see `data/README.md`) holds one message per line: `text`, the `pii` values it contains
in order (`type`, `value`), and for hard negatives (order numbers, prices, hotlines, checksum failures...) an
empty list. Each corpus gets its own report in `perf/reports/`.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from python_backends.pii.pii_types import PiiSpan, PiiType
from python_backends.pii.redactor import Redactor

CORPUS_PATH = Path(__file__).resolve().parent / "data" / "corpus.jsonl"
REALISTIC_PATH = CORPUS_PATH.with_name("corpus_realistic.jsonl")
BLIND_PATH = CORPUS_PATH.with_name("corpus_blind.jsonl")
REPORTS = Path(__file__).resolve().parents[2] / "perf" / "reports"
REPORT_PATH = REPORTS / "pii_accuracy.md"
_ABOUT = {
    "corpus.jsonl": (
        "The first corpus, plain formats, written alongside the first recognizers: it shows that the designed "
        "cases hold; it is not an estimate of accuracy on live traffic."
    ),
    "corpus_realistic.jsonl": (
        "Issue 17 tuning split: numbers as customers type them, addresses, names in context, number-heavy "
        "negatives. Written and committed before the recognizers were changed, then used to tune them."
    ),
    "corpus_blind.jsonl": (
        "Issue 17 blind split: written with the tuning split, before any tuning; evaluated once after tuning "
        "was finished and not tuned on afterwards."
    ),
}


@dataclass(frozen=True, slots=True)
class CorpusEntry:
    """One labelled message; `spans` are the labelled values located in `text`, left to right."""

    id: str
    text: str
    spans: tuple[PiiSpan, ...]
    note: str

    @property
    def is_negative(self) -> bool:
        return not self.spans

    def expected_redaction(self, redactor: Redactor) -> str:
        """What `redactor` must output: the labelled values replaced, everything else untouched."""
        parts: list[str] = []
        pos = 0
        for span in self.spans:
            parts += [self.text[pos : span.start], redactor.render(span.type, span.value)]
            pos = span.end
        return "".join(parts) + self.text[pos:]


def load_corpus(path: Path = CORPUS_PATH) -> list[CorpusEntry]:
    entries: list[CorpusEntry] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        text = row["text"]
        spans: list[PiiSpan] = []
        pos = 0
        for item in row["pii"]:
            start = text.find(item["value"], pos)
            if start < 0:
                raise ValueError(f"{path}:{line_no}: {item['value']!r} not found in order in the text")
            pos = start + len(item["value"])
            spans.append(PiiSpan(PiiType(item["type"]), start, pos, item["value"]))
        entries.append(CorpusEntry(row["id"], text, tuple(spans), row.get("note", "")))
    return entries


@dataclass(frozen=True, slots=True)
class TypeScore:
    """Exact-span counts for one type: a hit must have the labelled type, start and end."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        expected = self.true_positives + self.false_negatives
        return self.true_positives / expected if expected else 1.0


@dataclass(frozen=True, slots=True)
class Evaluation:
    scores: dict[PiiType, TypeScore]
    total: TypeScore
    leaks_by_type: dict[PiiType, int]
    leaked: list[tuple[str, PiiSpan]]  # labelled values no redaction covers at all
    altered_negatives: list[str]  # ids of hard negatives whose text changed
    messages: int
    negatives: int


def evaluate(entries: list[CorpusEntry], redactor: Redactor) -> Evaluation:
    tp: Counter[PiiType] = Counter()
    fp: Counter[PiiType] = Counter()
    fn: Counter[PiiType] = Counter()
    leaked: list[tuple[str, PiiSpan]] = []
    altered: list[str] = []
    for entry in entries:
        found = redactor.find_pii(entry.text)
        expected = {(s.type, s.start, s.end) for s in entry.spans}
        predicted = {(s.type, s.start, s.end) for s in found}
        for pii_type, _, _ in predicted & expected:
            tp[pii_type] += 1
        for pii_type, _, _ in predicted - expected:
            fp[pii_type] += 1
        for pii_type, _, _ in expected - predicted:
            fn[pii_type] += 1
        for span in entry.spans:
            if not any(hit.start <= span.start and span.end <= hit.end for hit in found):
                leaked.append((entry.id, span))
        if entry.is_negative and redactor.redact(entry.text) != entry.text:
            altered.append(entry.id)
    scores = {t: TypeScore(tp[t], fp[t], fn[t]) for t in PiiType}
    total = TypeScore(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    negatives = sum(entry.is_negative for entry in entries)
    leaks_by_type = Counter(span.type for _, span in leaked)
    return Evaluation(scores, total, {t: leaks_by_type[t] for t in PiiType}, leaked, altered, len(entries), negatives)


def render_report(result: Evaluation, corpus: Path) -> str:
    lines = [
        "# PII filter accuracy",
        "",
        f"Corpus `{corpus.name}`: {result.messages} messages, {result.negatives} of them hard negatives "
        "(order/tracking numbers, prices, dates, hotlines, model numbers, checksum failures, 11-digit "
        "non-mobiles, digits glued to letters). Exact-span matching: type, start and end must all agree. "
        "A leak is a labelled value that no redacted span covers (a span cut differently but covering the "
        "value counts as FP + FN, not as a leak).",
        "",
        _ABOUT.get(corpus.name, ""),
        "",
        "| type | labelled | TP | FP | FN | precision | recall | leaks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [(t.value, s, result.leaks_by_type[t]) for t, s in result.scores.items()]
    rows.append(("**all**", result.total, len(result.leaked)))
    for name, score, leaks in rows:
        labelled = score.true_positives + score.false_negatives
        lines.append(
            f"| {name} | {labelled} | {score.true_positives} | {score.false_positives} | "
            f"{score.false_negatives} | {score.precision:.3f} | {score.recall:.3f} | {leaks} |"
        )
    lines += [
        "",
        f"- Labelled values left visible (leaks): {len(result.leaked)}",
        f"- Hard negatives altered: {len(result.altered_negatives)} / {result.negatives}",
    ]
    lines += [f"  - leak in {entry_id}: {span.type.value} {span.value!r}" for entry_id, span in result.leaked]
    lines += [f"  - altered: {entry_id}" for entry_id in result.altered_negatives]
    lines += ["", f"Regenerate with `python -m python_backends.pii.evaluate --corpus {_relative(corpus)}`.", ""]
    return "\n".join(lines)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPORTS.parents[1]))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=CORPUS_PATH)
    parser.add_argument("--report", type=Path, default=None, help="default: perf/reports/pii_accuracy[_split].md")
    args = parser.parse_args(argv)
    if args.report is None:
        split = args.corpus.stem.removeprefix("corpus").removeprefix("_")
        args.report = REPORTS / (f"pii_accuracy_{split}.md" if split else "pii_accuracy.md")
    result = evaluate(load_corpus(args.corpus), Redactor())
    report = render_report(result, args.corpus)
    print(report)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report, encoding="utf-8")
    print(f"wrote {args.report}")
    return 0 if not result.leaked and not result.altered_negatives else 1


if __name__ == "__main__":
    raise SystemExit(main())
