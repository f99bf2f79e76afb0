"""Compare two training runs on the test papers they share, with paired bootstrap intervals.

Usage: python train/compare.py RUN_A [RUN_B] [--resamples N] [--bootstrap-seed S], where each
RUN is an `--artifacts` folder of `train/run.py`. A paper's split depends only on the seed and
its text (`train.data.split_position`), so runs with the same `--seed` hold out the same papers
of the data they share: a CS-only model and an all-of-arXiv one, or a run before and after a
change. Papers are paired by `train.data.paper_key`; run A's labels are the truth. Both runs
are scored on the shared papers that carry a label both runs have, on those labels, each with
its own served decision (its thresholds, plus the top label). Resampling the papers gives an
interval for the difference: whether it exceeds what the choice of test papers alone moves.
One run alone gets intervals for its own figures. Decisions stay with validation; this reads
the test split only.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
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
from train.data import paper_key
from train.evaluate import outside_cs_stat
from train.thresholds import f1_of_counts, predict_sets

FIGURES = ("micro-F1", "macro-F1", "P@1")
CHUNK = 100  # resamples scored at once: a [CHUNK, papers] weight matrix


@dataclass(frozen=True)
class Run:
    """One training run's test papers and its served scores and decisions on them."""

    keys: tuple[str, ...]  # `paper_key` of each test paper, which pairs two runs' papers
    labels: tuple[str, ...]
    primaries: tuple[str, ...]
    true_codes: tuple[tuple[str, ...], ...]
    scores: np.ndarray  # [papers, labels] served probabilities
    chosen: np.ndarray  # [papers, labels] served label sets (thresholds plus the top label)


def load_run(directory: Path) -> Run:
    """Read a run's test split, labels and served test scores (`ExportError` if unusable)."""
    if not directory.is_dir():
        raise ExportError(f"{directory} is not a folder (an --artifacts folder of train/run.py)")
    papers = read_papers(directory / TEST_SPLIT_FILE)
    label_set = parse_labels(read_json(directory / LABELS_FILE), directory / LABELS_FILE)
    labels = tuple(label.code for label in label_set.labels)
    scores = read_predictions(directory / PREDICTIONS_FILE, (len(papers), len(labels)))["served"]
    thresholds = np.array([label.threshold for label in label_set.labels], dtype=np.float32)
    return Run(
        keys=tuple(paper_key(paper.title, paper.abstract) for paper in papers),
        labels=labels,
        primaries=tuple(paper.primary or next(iter(paper.labels), "") for paper in papers),
        true_codes=tuple(paper.labels for paper in papers),
        scores=scores,
        chosen=predict_sets(scores, thresholds),
    )


@dataclass(frozen=True)
class Outcomes:
    """Per compared paper and label, what one run got right and wrong, as float64 counts."""

    true_positive: np.ndarray  # [papers, labels]
    false_positive: np.ndarray
    false_negative: np.ndarray
    top_right: np.ndarray  # [papers]: 1 where the top label (of the compared labels) is true

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
            weights @ m for m in (self.true_positive, self.false_positive, self.false_negative)
        )
        denominator = 2 * tp + fp + fn  # positives + predicted, per resample and label
        micro = f1_of_counts(tp.sum(1), denominator.sum(1))
        carried = tp + fn > 0
        per_label = f1_of_counts(tp, denominator) * carried
        macro = per_label.sum(1) / np.maximum(carried.sum(1), 1)
        top = weights @ self.top_right / weights.sum(1)
        return np.stack([micro, macro, top], axis=1)


def outcomes(run: Run, rows: np.ndarray, columns: np.ndarray, truth: np.ndarray) -> Outcomes:
    """`run` scored on its `rows` (papers) and `columns` (labels), against `truth`."""
    chosen = run.chosen[np.ix_(rows, columns)]
    top = run.scores[np.ix_(rows, columns)].argmax(axis=1)
    return Outcomes(
        true_positive=(chosen & truth).astype(np.float64),
        false_positive=(chosen & ~truth).astype(np.float64),
        false_negative=(~chosen & truth).astype(np.float64),
        top_right=truth[np.arange(len(rows)), top].astype(np.float64),
    )


@dataclass(frozen=True)
class Comparison:
    """The compared papers and labels, each run's outcomes on them, and what was left out."""

    labels: tuple[str, ...]
    primaries: tuple[str, ...]
    runs: tuple[Outcomes, ...]
    unpaired: tuple[int, ...]  # each run's test papers left out (not shared, or repeated)
    disagreeing: int  # shared papers whose common labels differ between the runs' test splits


def pair(runs: list[Run]) -> Comparison:
    """The papers every run holds out that carry a label every run has, on those labels."""
    first = runs[0]
    labels = tuple(code for code in first.labels if all(code in run.labels for run in runs[1:]))
    if not labels:
        raise ExportError("the runs have no label in common")
    column = {code: j for j, code in enumerate(labels)}
    positions = [unique_positions(run.keys) for run in runs]
    shared, true_columns, disagreeing = [], [], 0
    for key, i in positions[0].items():
        codes = [column[code] for code in first.true_codes[i] if code in column]
        if codes and all(key in where for where in positions[1:]):
            shared.append(key)
            true_columns.append(codes)
            others = (
                run.true_codes[where[key]]
                for run, where in zip(runs[1:], positions[1:], strict=True)
            )
            disagreeing += any(
                {column[code] for code in other if code in column} != set(codes) for other in others
            )
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
        rows = np.array([where[key] for key in shared])
        columns = np.array([run.labels.index(code) for code in labels])
        scored.append(outcomes(run, rows, columns, truth))
    return Comparison(
        labels=labels,
        primaries=tuple(first.primaries[positions[0][key]] for key in shared),
        runs=tuple(scored),
        unpaired=tuple(len(run.keys) - len(shared) for run in runs),
        disagreeing=disagreeing,
    )


def unique_positions(keys: tuple[str, ...]) -> dict[str, int]:
    """Each key's row, for keys that occur once (a repeated one cannot be paired)."""
    counts = Counter(keys)
    return {key: i for i, key in enumerate(keys) if counts[key] == 1}


def bootstrap(
    comparison: Comparison, rows: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each run's figures on `rows`, and the same for `resamples` resamples of those papers,
    every run on the same resample: shapes [runs, figures] and [resamples, runs, figures]."""
    runs = [run.subset(rows) for run in comparison.runs]
    point = np.stack([run.figures(np.ones((1, len(rows))))[0] for run in runs])
    rng = np.random.default_rng(seed)
    resampled = []
    for start in range(0, resamples, CHUNK):
        draws = rng.integers(0, len(rows), size=(min(CHUNK, resamples - start), len(rows)))
        weights = np.stack([np.bincount(draw, minlength=len(rows)) for draw in draws])
        resampled.append(np.stack([run.figures(weights.astype(np.float64)) for run in runs], 1))
    return point, np.concatenate(resampled)


def figure_rows(group: str, point: np.ndarray, resampled: np.ndarray, papers: int) -> list[str]:
    """Table rows for one group of papers: each figure, and its or the difference's interval."""
    two = len(point) == 2
    lines = []
    for k, figure in enumerate(FIGURES):
        values = [f"{value:.4f}" for value in point[:, k]]
        spread = resampled[:, 1, k] - resampled[:, 0, k] if two else resampled[:, 0, k]
        low, high = np.percentile(spread, [2.5, 97.5])
        sign = "+" if two else ""  # a difference carries its sign
        if two:
            values.append(f"{point[1, k] - point[0, k]:+.4f}")
        values.append(f"{low:{sign}.4f} to {high:{sign}.4f}")
        lines.append(f"| {group} ({papers:,}) | {figure} | " + " | ".join(values) + " |")
    return lines


def report(comparison: Comparison, names: list[str], resamples: int, seed: int) -> str:
    """A markdown table: figures per group of papers, and the paired difference if two runs."""
    outside = outside_cs_stat(comparison.primaries)
    groups = [("all", np.ones(len(outside), dtype=bool)), ("outside cs/stat", outside)]
    interval = "95% interval of B - A" if len(names) == 2 else "95% interval"
    header = ["papers", "figure", *names, *(["B - A"] if len(names) == 2 else []), interval]
    left_out = ", ".join(
        f"{name} {count:,}" for name, count in zip(names, comparison.unpaired, strict=True)
    )
    lines = [
        f"{len(comparison.primaries):,} test papers{' shared' if len(names) == 2 else ''} that "
        f"carry one of the {len(comparison.labels)} labels in common (papers left out: "
        f"{left_out}); {resamples:,} bootstrap resamples of them (seed {seed}).",
    ]
    if comparison.disagreeing:
        lines.append(
            f"{comparison.disagreeing:,} of them carry other labels in B's test split than in "
            "A's; A's are used."
        )
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, mask in groups:
        rows = np.flatnonzero(mask)
        if len(rows):
            point, resampled = bootstrap(comparison, rows, resamples, seed)
            lines += figure_rows(group, point, resampled, len(rows))
    return "\n".join(lines)


def bounded_int(low: int, high: int) -> object:
    """An argparse type: an integer from `low` to `high`, else a usage error naming the range."""

    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    """The command line: print the comparison; 2 with one `error:` line for unusable runs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="artifacts folder")
    parser.add_argument("--resamples", type=bounded_int(1, 1_000_000), default=2000, help="(2000)")
    parser.add_argument("--bootstrap-seed", type=bounded_int(0, 2**32 - 1), default=0, help="(0)")
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
    print(report(comparison, names, args.resamples, args.bootstrap_seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
