"""PNG figures for the intent reports (matplotlib, headless): confusion matrix and accuracy vs coverage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from python_backends.intent.evaluate import CoverageRow, Evaluation  # noqa: E402
from python_backends.intent.labels import LABELS  # noqa: E402


def plot_confusion(evaluation: Evaluation, path: Path, title: str) -> Path:
    """Counts per (gold row, predicted column), labelled in the LABELS order; returns `path`."""
    matrix = np.array([[evaluation.confusion[(gold, guess)] for guess in LABELS] for gold in LABELS])
    figure, axes = plt.subplots(figsize=(9, 8))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(LABELS)), LABELS, rotation=60, ha="right")
    axes.set_yticks(range(len(LABELS)), LABELS)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    axes.set_title(f"{title}: accuracy {evaluation.accuracy:.3f}, macro-F1 {evaluation.macro_f1:.3f}")
    threshold = matrix.max() / 2 if matrix.size else 0
    for row, column in zip(*np.nonzero(matrix), strict=True):
        colour = "white" if matrix[row, column] > threshold else "black"
        axes.text(column, row, str(matrix[row, column]), ha="center", va="center", color=colour, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_coverage(rows: Sequence[CoverageRow], path: Path, chosen: float) -> Path:
    """Accuracy of the labelled messages against the share labelled, one point per threshold."""
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.plot([r.coverage for r in rows], [r.covered_accuracy for r in rows], marker="o")
    for row in rows:
        axes.annotate(
            f"{row.threshold:.2f}",
            (row.coverage, row.covered_accuracy),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
            fontweight="bold" if row.threshold == chosen else "normal",
        )
    axes.set_xlabel("coverage (share not abstained)")
    axes.set_ylabel("accuracy of labelled messages")
    axes.set_title("Accuracy vs coverage by abstention threshold")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
