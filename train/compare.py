"""Compare two training runs on the test papers they share, with paired bootstrap intervals.

Usage: python train/compare.py RUN_A [RUN_B] [--resamples N] [--seed S], where each RUN is an
`--artifacts` folder of `train/run.py`. A paper's split depends only on the seed and its text
(`train.data.split_position`), so runs with the same `--seed` hold out the same papers of the
data they share: a CS-only model and an all-of-arXiv one, or a run before and after a change.
Both runs are scored on the papers they share and the labels both have, each with its own served
decision (its thresholds, plus the top label). Resampling the papers gives an interval for the
difference: whether it exceeds what the choice of test papers alone moves. One run alone gets
intervals for its own figures. Decisions stay with validation; this reads the test split only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from export import ExportError
from export.artifacts import (
    LABELS_FILE,
    PREDICTIONS_FILE,
    TEST_SPLIT_FILE,
    parse_labels,
    read_json,
    read_papers,
    read_predictions,
)
from train.categories import archive
from train.thresholds import predict_sets

FIGURES = ("micro-F1", "macro-F1", "P@1")
CHUNK = 100  # resamples scored at once: a [CHUNK, papers] weight matrix


@dataclass(frozen=True)
class Run:
    """One training run's test papers and its served scores and decisions on them."""

    papers: tuple[tuple[str, str], ...]  # (title, abstract), the key that pairs two runs
    labels: tuple[str, ...]
    primaries: tuple[str, ...]
    true_codes: tuple[tuple[str, ...], ...]
    scores: np.ndarray  # [papers, labels] served probabilities
    chosen: np.ndarray  # [papers, labels] served label sets (thresholds plus the top label)


def load_run(directory: Path) -> Run:
    """Read a run's test split, labels and served test scores (`ExportError` if unusable)."""
    papers = read_papers(directory / TEST_SPLIT_FILE)
    label_set = parse_labels(read_json(directory / LABELS_FILE), directory / LABELS_FILE)
    labels = tuple(label.code for label in label_set.labels)
    scores = read_predictions(directory / PREDICTIONS_FILE, (len(papers), len(labels)))["served"]
    thresholds = np.array([label.threshold for label in label_set.labels], dtype=np.float32)
    return Run(
        papers=tuple((paper.title, paper.abstract) for paper in papers),
        labels=labels,
        primaries=tuple(paper.primary or paper.labels[0] for paper in papers),
        true_codes=tuple(paper.labels for paper in papers),
        scores=scores,
        chosen=predict_sets(scores, thresholds),
    )


@dataclass(frozen=True)
class Outcomes:
    """Per paper and label, what one run got right and wrong on the compared papers."""

    true_positive: np.ndarray  # [papers, labels] bool
    false_positive: np.ndarray
    false_negative: np.ndarray
    top_right: np.ndarray  # [papers] bool: the top label (of the compared labels) is true

    def subset(self, rows: np.ndarray) -> Outcomes:
        """The same outcomes for the papers `rows` only."""
        return Outcomes(
            self.true_positive[rows],
            self.false_positive[rows],
            self.false_negative[rows],
            self.top_right[rows],
        )

    def figures(self, weights: np.ndarray) -> np.ndarray:
        """micro-F1, macro-F1 (over the labels the weighted papers carry, as the report's
        subsets do) and P@1, for each row of paper weights (a resample's counts)."""
        tp, fp, fn = (
            weights @ matrix.astype(np.float64)
            for matrix in (self.true_positive, self.false_positive, self.false_negative)
        )
        micro = f1(tp.sum(1), fp.sum(1), fn.sum(1))
        carried = tp + fn > 0
        macro = (f1(tp, fp, fn) * carried).sum(1) / np.maximum(carried.sum(1), 1)
        top = weights @ self.top_right / weights.sum(1)
        return np.stack([micro, macro, top], axis=1)


def f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 from counts; 0 where there is nothing to count (scikit-learn's zero_division=0)."""
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def outcomes(run: Run, rows: np.ndarray, columns: np.ndarray, truth: np.ndarray) -> Outcomes:
    """`run` scored on its `rows` (papers) and `columns` (labels), against `truth`."""
    chosen = run.chosen[np.ix_(rows, columns)]
    top = run.scores[np.ix_(rows, columns)].argmax(axis=1)
    return Outcomes(
        true_positive=chosen & truth,
        false_positive=chosen & ~truth,
        false_negative=~chosen & truth,
        top_right=truth[np.arange(len(rows)), top],
    )


@dataclass(frozen=True)
class Comparison:
    """The compared papers and labels, and each run's outcomes on them."""

    labels: tuple[str, ...]
    primaries: tuple[str, ...]
    truth: np.ndarray
    runs: tuple[Outcomes, ...]


def pair(runs: list[Run]) -> Comparison:
    """The papers every run holds out that carry a label every run has, on those labels."""
    first = runs[0]
    labels = tuple(code for code in first.labels if all(code in run.labels for run in runs[1:]))
    if not labels:
        raise ExportError("the runs have no label in common")
    positions = [{paper: i for i, paper in enumerate(run.papers)} for run in runs]
    column = {code: j for j, code in enumerate(labels)}
    shared, true_columns = [], []
    for i, paper in enumerate(first.papers):
        codes = [column[code] for code in first.true_codes[i] if code in column]
        if codes and all(paper in where for where in positions[1:]):
            shared.append(paper)
            true_columns.append(codes)
    if not shared:
        raise ExportError(
            "the runs share no test paper with one of their common labels (were they trained "
            "with the same --seed on overlapping data?)"
        )
    truth = np.zeros((len(shared), len(labels)), dtype=bool)
    for i, codes in enumerate(true_columns):
        truth[i, codes] = True
    scored = []
    for run, where in zip(runs, positions, strict=True):
        rows = np.array([where[paper] for paper in shared])
        columns = np.array([run.labels.index(code) for code in labels])
        scored.append(outcomes(run, rows, columns, truth))
    primaries = tuple(first.primaries[positions[0][paper]] for paper in shared)
    return Comparison(labels, primaries, truth, tuple(scored))


def bootstrap(
    comparison: Comparison, rows: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each run's figures on `rows`, and the same for `resamples` resamples of those papers:
    shapes [runs, figures] and [resamples, runs, figures]."""
    runs = [run.subset(rows) for run in comparison.runs]
    point = np.stack([run.figures(np.ones((1, len(rows))))[0] for run in runs])
    rng = np.random.default_rng(seed)
    resampled = []
    for start in range(0, resamples, CHUNK):
        draws = rng.integers(0, len(rows), size=(min(CHUNK, resamples - start), len(rows)))
        weights = np.stack([np.bincount(draw, minlength=len(rows)) for draw in draws]).astype(
            np.float64
        )
        resampled.append(np.stack([run.figures(weights) for run in runs], axis=1))
    return point, np.concatenate(resampled)


def report(comparison: Comparison, names: list[str], resamples: int, seed: int) -> str:
    """A markdown table: figures per group of papers, and the paired difference if two runs."""
    outside = np.array([archive(code) not in ("cs", "stat") for code in comparison.primaries])
    groups = [("all", np.ones(len(outside), dtype=bool)), ("outside cs/stat", outside)]
    two = len(names) == 2
    header = ["papers", "figure", *names, *(["B - A", "95% interval of B - A"] if two else [])]
    if not two:
        header.append("95% interval")
    lines = [
        f"{len(comparison.primaries):,} shared test papers, {len(comparison.labels)} labels "
        f"in common; {resamples:,} paired bootstrap resamples (seed {seed}).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for group, mask in groups:
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        point, resampled = bootstrap(comparison, rows, resamples, seed)
        for k, figure in enumerate(FIGURES):
            values = [f"{value:.4f}" for value in point[:, k]]
            spread = resampled[:, 1, k] - resampled[:, 0, k] if two else resampled[:, 0, k]
            low, high = np.percentile(spread, [2.5, 97.5])
            sign = "+" if two else ""  # a difference carries its sign
            if two:
                values.append(f"{point[1, k] - point[0, k]:+.4f}")
            values.append(f"{low:{sign}.4f} to {high:{sign}.4f}")
            lines.append(f"| {group} ({len(rows):,}) | {figure} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="artifacts folder")
    parser.add_argument("--resamples", type=positive_int, default=2000, help="(2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    args = parser.parse_args(argv)
    if len(args.runs) > 2:
        parser.error("give one run, or two to compare")
    try:
        comparison = pair([load_run(directory) for directory in args.runs])
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    names = ["A", "B"][: len(args.runs)]
    for name, directory in zip(names, args.runs, strict=True):
        print(f"{name}: {directory}")
    print()
    print(report(comparison, names, args.resamples, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
