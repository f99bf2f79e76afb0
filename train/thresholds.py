"""Decision rules: turn probabilities into label sets, with thresholds chosen on validation.

Every rule returns at least the top-scoring label. Rules are compared by *cross-fitted*
validation scores (thresholds tuned on four folds of the validation split, scored on the
fifth), because a per-label threshold tuned and scored on the same papers always looks best.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
FOLDS = 5
MICRO_F1_TOLERANCE = 0.001


def predict_sets(probabilities: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Boolean label matrix: scores at or above threshold, plus each row's top label."""
    chosen = probabilities >= thresholds
    chosen[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = True
    return chosen


def f1_of_counts(tp: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """F1 = 2·tp / (positives + predicted), elementwise; 0 where both are 0 (nothing to count)."""
    tp, denominator = np.asarray(tp, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    return np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)


def micro_f1(targets: np.ndarray, predicted: np.ndarray) -> float:
    """Micro-averaged F1 of boolean predictions."""
    true = targets.astype(bool)
    tp = np.logical_and(true, predicted).sum()
    denominator = true.sum() + predicted.sum()
    return float(2 * tp / denominator) if denominator else 0.0


def macro_f1(targets: np.ndarray, predicted: np.ndarray) -> float:
    """Unweighted mean of per-label F1 (labels with no positives and no predictions count 0)."""
    true = targets.astype(bool)
    tp = np.logical_and(true, predicted).sum(axis=0)
    denominator = true.sum(axis=0) + predicted.sum(axis=0)
    return float(np.mean(f1_of_counts(tp, denominator)))


def grid_reach(probabilities: np.ndarray) -> np.ndarray:
    """How many GRID thresholds each score reaches: `score >= GRID[k]` exactly for k < reach.

    Compared in float64, as `predict_sets` compares scores with a GRID threshold; NaN reaches
    none, as it passes no comparison."""
    scores = np.asarray(probabilities, dtype=np.float64)
    reach = np.searchsorted(GRID, scores, side="right")
    reach[np.isnan(scores)] = 0
    return reach


def counts_reaching(histograms: np.ndarray, bins: int) -> np.ndarray:
    """From per-row histograms of reach values `[rows, bins]`, how many scores reach each GRID
    threshold: `[rows, len(GRID)]`."""
    return np.cumsum(histograms[:, ::-1], axis=1)[:, ::-1][:, 1:bins]


def best_global_threshold(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """The single threshold on GRID with the highest micro-F1 (ties: the lowest).

    Counted in one pass rather than by predicting label sets at each of GRID's 91 thresholds
    (the same counts; on 16,589 x 152 validation scores, 2026-12-06: about 0.02 s against 0.5 s).
    """
    true = targets.astype(bool)
    reach = grid_reach(probabilities)
    reach[np.arange(len(reach)), probabilities.argmax(axis=1)] = len(GRID)  # the top label
    bins = len(GRID) + 1
    histograms = np.stack(
        [np.bincount(reach.ravel(), minlength=bins), np.bincount(reach[true], minlength=bins)]
    )
    predicted, tp = counts_reaching(histograms, bins)
    denominator = true.sum() + predicted
    return float(GRID[int(np.argmax(f1_of_counts(tp, denominator)))])


def best_global_micro_f1(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """Micro-F1 at the best global threshold (the training monitor)."""
    return micro_f1(
        targets, predict_sets(probabilities, best_global_threshold(targets, probabilities))
    )


def counts_on_grid(targets: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per (grid threshold, label): true positives and predictions; per label: positives.

    Counted from each label's histogram of reach values rather than from a boolean
    `[papers, thresholds, labels]` array (the same counts, in a fraction of the time and
    without that array's 230 MB on 16,589 x 152 validation scores)."""
    true = targets.astype(bool)
    n_labels, bins = true.shape[1], len(GRID) + 1
    cells = grid_reach(probabilities) + bins * np.arange(n_labels)
    predicted = np.bincount(cells.ravel(), minlength=bins * n_labels).reshape(n_labels, bins)
    tp = np.bincount(cells[true], minlength=bins * n_labels).reshape(n_labels, bins)
    return counts_reaching(tp, bins).T, counts_reaching(predicted, bins).T, true.sum(axis=0)


def per_label_thresholds(targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each label's own-F1-best threshold on GRID (ties: the lowest); serves macro-F1."""
    tp, predicted, positives = counts_on_grid(targets, probabilities)
    denominator = positives + predicted
    return GRID[f1_of_counts(tp, denominator).argmax(axis=0)]


def micro_ascent_thresholds(
    targets: np.ndarray, probabilities: np.ndarray, start: float, passes: int = 2
) -> np.ndarray:
    """Per-label thresholds by coordinate ascent on *overall* micro-F1, from `start`.

    Each label in turn gets the threshold that maximises micro-F1 with the others fixed, so a
    rare label's threshold drops only when its extra hits outweigh its false alarms overall.
    """
    tp, predicted, positives = counts_on_grid(targets, probabilities)
    labels = np.arange(tp.shape[1])
    index = np.full(len(labels), int(np.abs(GRID - start).argmin()))
    total_positives = positives.sum()
    for _ in range(passes):
        for j in labels:
            other_tp = tp[index, labels].sum() - tp[index[j], j]
            other_predicted = predicted[index, labels].sum() - predicted[index[j], j]
            f1 = 2 * (other_tp + tp[:, j]) / (other_predicted + predicted[:, j] + total_positives)
            index[j] = int(f1.argmax())
    return GRID[index]


@dataclass(frozen=True)
class Rule:
    """A way to choose thresholds: per-label optimum shrunk toward the global one.

    `objective` is what a label's own threshold maximises: its F1 ("label-f1") or the overall
    micro-F1 ("micro-f1", by coordinate ascent). `prior` is the shrinkage strength in
    validation positives: a label with n positives gets (n·t_label + prior·t_global) /
    (n + prior). `min_support` falls back to the global threshold for labels with fewer
    positives. prior=inf is the plain global rule.
    """

    name: str
    prior: float = float("inf")
    min_support: int = 0
    objective: str = "label-f1"

    def fit(self, targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Per-label thresholds for this rule, tuned on `targets`/`probabilities`: float32, as
        labels.json serves them, so that training's figures count exactly the labels that
        serving would give (a score equal to a float32 threshold is kept by both)."""
        global_t = best_global_threshold(targets, probabilities)
        n_labels = targets.shape[1]
        if np.isinf(self.prior):
            return np.full(n_labels, global_t, dtype=np.float32)
        support = targets.sum(axis=0)
        if self.objective == "micro-f1":
            own = micro_ascent_thresholds(targets, probabilities, global_t)
        else:
            own = per_label_thresholds(targets, probabilities)
        weight = np.divide(support, support + self.prior, out=np.zeros(n_labels), where=support > 0)
        shrunk = weight * own + (1.0 - weight) * global_t
        return np.where(support >= self.min_support, shrunk, global_t).astype(np.float32)


RULES = (
    Rule("global"),
    Rule("per-label", prior=0.0),
    Rule("per-label, ≥50 positives", prior=0.0, min_support=50),
    Rule("shrunk, prior 10", prior=10.0),
    Rule("shrunk, prior 30", prior=30.0),
    Rule("shrunk, prior 100", prior=100.0),
    Rule("micro-ascent", prior=0.0, objective="micro-f1"),
    Rule("micro-ascent, shrunk, prior 30", prior=30.0, objective="micro-f1"),
)


@dataclass(frozen=True)
class RuleScore:
    """Cross-fitted validation scores of one rule."""

    name: str
    micro_f1: float
    macro_f1: float


def folds_of(n: int, seed: int) -> np.ndarray:
    """Fold number of each validation paper: the same split for every rule and combiner."""
    return np.random.default_rng(seed).permutation(n) % FOLDS


def cross_fitted(
    rule: Rule, targets: np.ndarray, probabilities: np.ndarray, seed: int
) -> RuleScore:
    """Score `rule` on each validation fold with thresholds fitted on the other folds."""
    folds = folds_of(len(targets), seed)
    predicted = np.zeros(targets.shape, dtype=bool)
    for fold in range(FOLDS):
        held_out = folds == fold
        thresholds = rule.fit(targets[~held_out], probabilities[~held_out])
        predicted[held_out] = predict_sets(probabilities[held_out], thresholds)
    return RuleScore(rule.name, micro_f1(targets, predicted), macro_f1(targets, predicted))


def choose_rule(
    targets: np.ndarray, probabilities: np.ndarray, seed: int
) -> tuple[Rule, np.ndarray, list[RuleScore]]:
    """Pick the rule with the best cross-fitted macro-F1 that keeps the global rule's micro-F1.

    Returns the rule, its thresholds refitted on the whole validation split, and all scores.
    """
    scores = [cross_fitted(rule, targets, probabilities, seed) for rule in RULES]
    floor = scores[0].micro_f1 - MICRO_F1_TOLERANCE
    eligible = [i for i, score in enumerate(scores) if score.micro_f1 >= floor]
    best = max(eligible, key=lambda i: (scores[i].macro_f1, scores[i].micro_f1))
    rule = RULES[best]
    return rule, rule.fit(targets, probabilities), scores
