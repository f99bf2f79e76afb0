"""Test-split metrics of a model's label sets and rankings."""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support, precision_score, recall_score

from train.categories import archive, is_cs_or_stat


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


# Each period is reported when it has test papers; together they cover every year.
PERIODS = (
    ("before 2007", None, 2007),
    ("2007-2019", 2007, 2020),
    ("2020-2024", 2020, 2025),
    ("2025-26", 2025, 2027),
    ("2027 and later", 2027, None),
)


def subset_scores(
    targets: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray, rows: np.ndarray
) -> dict[str, float]:
    """micro-F1, macro-F1 (over labels present in the subset) and P@1 of the chosen rows
    (None for an empty subset, such as no paper outside cs/stat: no score, rather than 0)."""
    true, chosen = targets[rows].astype(int), predicted[rows].astype(int)
    if len(true) == 0:
        return {"papers": 0, "micro_f1": None, "macro_f1": None, "p_at_1": None}
    present = true.sum(axis=0) > 0
    return {
        "papers": int(rows.sum()) if rows.dtype == bool else len(rows),
        "micro_f1": float(f1_score(true, chosen, average="micro", zero_division=0)),
        "macro_f1": float(
            f1_score(true[:, present], chosen[:, present], average="macro", zero_division=0)
        )
        if present.any()
        else 0.0,
        "p_at_1": precision_at_k(true, probabilities[rows], 1),
    }


def outside_cs_stat(primaries: list[str]) -> np.ndarray:
    """Which papers' primary category lies outside cs and stat, as a boolean array."""
    return ~np.array([is_cs_or_stat(code) for code in primaries], dtype=bool)


def by_field_and_time(
    targets: np.ndarray,
    probabilities: np.ndarray,
    predicted: np.ndarray,
    labels: list[str],
    primaries: list[str],
    dates: list[object],
    oov_rates: np.ndarray,
    sources: list[str] | None = None,
    file_labels: dict[str, np.ndarray] | None = None,
    top: int = 15,
) -> dict[str, object]:
    """Where the model is good and where it is not: by primary archive, outside cs/stat, by
    period (when dates are known), for CS papers on CS labels, by input file, and its
    commonest mistakes.

    `file_labels[name]` marks the labels a model trained on that file alone would keep. Each
    file's papers that carry one of them are also scored on those labels only: the papers and
    labels of such a model's own test split, since a paper's split depends only on its text."""
    archives = np.array([archive(code) for code in primaries])
    outside = outside_cs_stat(primaries)
    result: dict[str, object] = {
        "outside_cs_stat": subset_scores(targets, probabilities, predicted, outside),
        "by_archive": {},
    }
    top_label = probabilities.argmax(axis=1)
    wrong = targets[np.arange(len(targets)), top_label] == 0
    # Most papers first, ties by name: a set's order changes with each process's hash seed.
    for name in sorted(set(archives), key=lambda a: (-(archives == a).sum(), a)):
        rows = archives == name
        scores = subset_scores(targets, probabilities, predicted, rows)
        scores["oov_rate"] = float(oov_rates[rows].mean())
        mistaken = Counter(labels[top_label[i]] for i in np.flatnonzero(rows & wrong))
        elsewhere = sum(n for code, n in mistaken.items() if archive(code) != name)
        scores["wrong_top"] = {
            "papers": mistaken.total(),
            "in_other_archives": elsewhere,
            "commonest": [{"label": code, "papers": n} for code, n in mistaken.most_common(3)],
        }
        result["by_archive"][name] = scores
    cs_labels = np.array([archive(code) == "cs" for code in labels])
    # CS papers that carry a kept cs label: one whose only cs label was too rare to keep has
    # nothing to be scored on here (as in the by-file figure below).
    cs_rows = (archives == "cs") & targets[:, cs_labels].any(axis=1)
    if cs_rows.any() and cs_labels.any():
        result["cs_papers_cs_labels"] = subset_scores(
            targets[:, cs_labels], probabilities[:, cs_labels], predicted[:, cs_labels], cs_rows
        )
    if sources is not None and len(set(sources)) > 1:
        by_file = {}
        for name in sorted(set(sources)):
            rows = np.array([source == name for source in sources])
            scores = subset_scores(targets, probabilities, predicted, rows)
            own = (file_labels or {}).get(name)
            own_rows = None if own is None else rows & targets[:, own].any(axis=1)
            if own_rows is not None and own_rows.any():  # the papers such a model keeps
                own_scores = subset_scores(
                    targets[:, own], probabilities[:, own], predicted[:, own], own_rows
                )
                scores["own_labels"] = {"labels": int(own.sum()), **own_scores}
            by_file[name] = scores
        result["by_file"] = by_file
    years = np.array([getattr(day, "year", 0) for day in dates])
    if (years > 0).any():
        periods = {}
        for name, start, end in PERIODS:
            rows = (years > 0) & (years >= (start or 0)) & (years < (end or 10_000))
            if rows.any():
                periods[name] = subset_scores(targets, probabilities, predicted, rows)
        result["by_period"] = periods
        result["undated_papers"] = int((years == 0).sum())
    mistakes = Counter(
        (primaries[i], labels[top_label[i]]) for i in np.flatnonzero(wrong)
    ).most_common(top)
    result["top_label_mistakes"] = [
        {"primary": primary, "predicted": code, "papers": count}
        for (primary, code), count in mistakes
    ]
    return result
