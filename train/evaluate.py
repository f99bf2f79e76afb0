"""Test-split metrics of a model's label sets and rankings."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support, precision_score, recall_score


def precision_at_k(targets: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Mean share of each paper's k top-scoring labels that are true."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(targets, top, axis=1)
    return float(hits.sum(axis=1).mean() / k)


def evaluate(
    targets: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray, labels: list[str]
) -> dict[str, object]:
    """Summary metrics plus a per-label table for one model on one split."""
    true = targets.astype(int)
    chosen = predicted.astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(
        true, chosen, average=None, zero_division=0
    )
    return {
        "micro_f1": float(f1_score(true, chosen, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(true, chosen, average="macro", zero_division=0)),
        "samples_f1": float(f1_score(true, chosen, average="samples", zero_division=0)),
        "micro_precision": float(precision_score(true, chosen, average="micro", zero_division=0)),
        "micro_recall": float(recall_score(true, chosen, average="micro", zero_division=0)),
        "p_at_1": precision_at_k(true, probabilities, 1),
        "p_at_3": precision_at_k(true, probabilities, 3),
        "mean_labels_predicted": float(chosen.sum(axis=1).mean()),
        "mean_labels_true": float(true.sum(axis=1).mean()),
        "papers": len(true),
        "per_label": {
            label: {
                "precision": float(precision[j]),
                "recall": float(recall[j]),
                "f1": float(f1[j]),
                "support": int(support[j]),
            }
            for j, label in enumerate(labels)
        },
    }
