"""The parity gate: ONNX Runtime must reproduce Keras on the held-out test split.

Both models see the inputs the Lambda function builds: papers sorted by token length, batched,
each batch pre-padded to its longest member; a few papers also go alone at their exact length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from export import ExportError
from export.graph import Predict
from lambda_handler.text import pad
from train.thresholds import predict_sets

MAX_ABS_DIFF = 1e-4
MIN_LABEL_SET_AGREEMENT = 0.999
BATCH_SIZE = 64
SINGLE_PAPERS = 8


@dataclass(frozen=True)
class ParityReport:
    """How closely the candidate reproduced the reference; stored in the manifest."""

    papers: int
    single_papers: int
    empty_papers_skipped: int
    batch_size: int
    max_abs_diff: float
    label_set_agreement: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready copy for the manifest's `parity` block."""
        return asdict(self)


def length_batches(sequences: Sequence[Sequence[int]], batch_size: int) -> Iterator[np.ndarray]:
    """Sequences sorted by length, in batches pre-padded to their longest member."""
    ordered = sorted(sequences, key=len)
    for start in range(0, len(ordered), batch_size):
        yield np.asarray(pad(ordered[start : start + batch_size]), dtype=np.int32)


def single_positions(total: int, count: int) -> np.ndarray:
    """Up to `count` positions spread from the first to the last of `total` (length-sorted)."""
    return np.unique(np.linspace(0, total - 1, num=min(count, total)).round()).astype(int)


def measure_parity(
    reference: Predict,
    candidate: Predict,
    sequences: Sequence[Sequence[int]],
    thresholds: Sequence[float],
    batch_size: int = BATCH_SIZE,
    singles: int = SINGLE_PAPERS,
) -> ParityReport:
    """Run both predictors on the same batches, and some papers alone too, and compare
    probabilities and label sets. A paper's label set agrees when it agrees in every run."""
    nonempty = [sequence for sequence in sequences if sequence]
    if not nonempty:
        raise ExportError("parity gate: no test paper has a single token")
    thresholds = np.asarray(thresholds, dtype=np.float32)
    ordered = sorted(nonempty, key=len)  # length_batches keeps this order (a stable sort)
    positions = single_positions(len(ordered), singles)
    runs = [
        (np.arange(start, start + len(batch)), batch)
        for start, batch in zip(
            range(0, len(ordered), batch_size), length_batches(ordered, batch_size), strict=True
        )
    ]
    runs += [(np.array([i]), np.asarray([ordered[i]], dtype=np.int32)) for i in positions]
    largest_diffs, agrees = [], np.ones(len(ordered), dtype=bool)
    for rows, batch in runs:
        expected, actual = reference(batch), candidate(batch)
        if expected.shape != actual.shape:
            raise ExportError(
                f"parity gate: output shapes differ, {expected.shape} vs {actual.shape}"
            )
        largest_diffs.append(np.max(np.abs(expected - actual)))
        same = predict_sets(expected, thresholds) == predict_sets(actual, thresholds)
        agrees[rows] &= np.all(same, axis=1)
    return ParityReport(
        papers=len(nonempty),
        single_papers=len(positions),
        empty_papers_skipped=len(sequences) - len(nonempty),
        batch_size=batch_size,
        max_abs_diff=float(np.max(largest_diffs)),
        label_set_agreement=float(agrees.mean()),
    )


def check_parity(report: ParityReport) -> None:
    """Raise `ExportError` with every missed target, in one line, when the gate fails."""
    misses = []
    if not report.max_abs_diff <= MAX_ABS_DIFF:  # also catches NaN
        misses.append(f"max |Δprob| {report.max_abs_diff:.2e} > {MAX_ABS_DIFF:.0e}")
    if report.label_set_agreement < MIN_LABEL_SET_AGREEMENT:
        misses.append(
            f"label sets agree for {report.label_set_agreement:.2%} of papers "
            f"< {MIN_LABEL_SET_AGREEMENT:.1%}"
        )
    if misses:
        raise ExportError(f"parity gate failed on {report.papers} test papers: {'; '.join(misses)}")
