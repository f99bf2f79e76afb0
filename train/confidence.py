"""When to call an answer doubtful: a top score below which the top label is usually wrong.

Chosen on validation (out-of-fold served scores), like the thresholds. The line is offered
only if the top score really separates right from wrong top labels (AUROC ≥ MIN_AUROC); it is
then the highest top score under which the top label is right at most MAX_PRECISION of the
time: a flagged answer is more likely wrong than right, with a margin for the step from
validation to new papers (at 0.5, the first two-file model's line flagged answers that were
right 53% of the time on test; at 0.4, 44%: measured 2026-12-02).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

MIN_AUROC = 0.7
MAX_PRECISION = 0.4
RULE = (
    f"flag an answer whose top score is below the highest line under which validation's top "
    f"labels were right at most {MAX_PRECISION:.0%} of the time (offered if AUROC >= {MIN_AUROC})"
)


def top_label_right(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each paper's top score, and whether its top label is one of its true labels."""
    top = scores.argmax(axis=1)
    rows = np.arange(len(scores))
    return scores[rows, top], targets[rows, top] > 0


def choose(targets: np.ndarray, scores: np.ndarray) -> dict[str, object]:
    """The low-confidence line (`top_score_below`, None if not offered) and its figures."""
    top, right = top_label_right(targets, scores)
    below = None
    if separation(top, right) >= MIN_AUROC:
        order = np.argsort(top, kind="stable")
        precision = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
        # A line just above paper k flags papers 0..k; ties in the top score move together.
        sorted_top = top[order]
        distinct = np.append(sorted_top[1:] > sorted_top[:-1], True)
        ok = np.flatnonzero((precision <= MAX_PRECISION) & distinct)
        if len(ok):
            k = ok[-1]
            upper = sorted_top[k + 1] if k + 1 < len(sorted_top) else 1.0
            below = round(float((sorted_top[k] + upper) / 2), 4)
    return {"top_score_below": below, "validation": describe(targets, scores, below)}


def separation(top: np.ndarray, right: np.ndarray) -> float:
    """AUROC of the top score for telling right from wrong top labels (0.5 if all alike)."""
    return float(roc_auc_score(right, top)) if 0 < right.sum() < len(right) else 0.5


def describe(
    targets: np.ndarray, scores: np.ndarray, below: float | None
) -> dict[str, float | int | None]:
    """How the line splits `scores`: share flagged and top-label precision on either side."""
    top, right = top_label_right(targets, scores)
    flagged = top < below if below is not None else np.zeros(len(top), dtype=bool)
    return {
        "papers": len(top),
        "auroc": round(separation(top, right), 4),
        "flagged_share": round(float(flagged.mean()), 4) if len(top) else 0.0,
        "precision_flagged": round(float(right[flagged].mean()), 4) if flagged.any() else None,
        "precision_rest": round(float(right[~flagged].mean()), 4) if (~flagged).any() else None,
    }
