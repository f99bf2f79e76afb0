"""Choose how to combine the LSTM and the baseline, on validation papers only.

Both models have seen the training papers, so every combiner is fitted on validation
predictions. Candidates are compared by cross-fitted scores: on each of five validation folds,
the combiner and a global threshold are fitted on the other four folds and scored on it. The
chosen combiner's out-of-fold validation scores then feed the decision-rule machinery
(`train.thresholds.choose_rule`), and the combiner itself is refitted on all validation papers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from lambda_handler.combiner import Combiner, stack_features
from train.evaluate import precision_at_k
from train.thresholds import FOLDS, best_global_threshold, macro_f1, micro_f1, predict_sets

MEAN_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
# Strengths of the pull toward the logit mean, per weight and per paper-averaged loss. Measured
# 2026-12-02 on the 165k-paper data (cross-fitted validation micro-F1): 1.0 → 0.6270, 0.1 →
# 0.6258, 0.01 → 0.6204, none (shrunk toward 0 instead, C 0.03-0.3) → 0.603-0.609.
STACKED_SHRINKAGE = (1.0, 0.3, 0.1)
MAX_ITERATIONS = 100


@dataclass(frozen=True)
class Candidate:
    """A combiner to try: its kind and its hyper-parameters."""

    kind: str
    lstm_weight: float = 1.0  # of the mean; for a stacked layer, of the logit mean it starts from
    shrinkage: float = 0.0  # stacked only: pull of each weight toward that logit mean

    @property
    def name(self) -> str:
        if self.kind == "mean":
            return f"mean, LSTM weight {self.lstm_weight:g}"
        if self.kind == "stacked":
            return (
                f"stacked logistic layer, shrinkage {self.shrinkage:g} toward the logit mean "
                f"(LSTM weight {self.lstm_weight:g})"
            )
        return f"{self.kind} alone"

    def fit(
        self, labels: tuple[str, ...], lstm: np.ndarray, baseline: np.ndarray, targets: np.ndarray
    ) -> Combiner:
        """The combiner, fitted on these (validation) predictions where it has parameters."""
        if self.kind != "stacked":
            return Combiner(self.kind, labels, self.lstm_weight)
        weights, bias = fit_stacked(
            stack_features(lstm, baseline), targets, self.shrinkage, self.lstm_weight
        )
        return Combiner("stacked", labels, self.lstm_weight, weights, bias)


SIMPLE_CANDIDATES = (
    Candidate("lstm"),
    Candidate("baseline", lstm_weight=0.0),
    *(Candidate("mean", lstm_weight=w) for w in MEAN_WEIGHTS),
)


def fit_stacked(
    features: np.ndarray, targets: np.ndarray, shrinkage: float, lstm_weight: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label logistic regressions over all `features`, fitted jointly by L-BFGS.

    Minimises the mean binary cross-entropy + shrinkage/2 · ‖W - W₀‖² (bias unpenalised),
    where W₀ is the logit mean `w · logit(p_lstm) + (1 - w) · logit(p_baseline)` of each label:
    a strong pull gives back that mean, a weaker one lets a label learn from the others'
    scores. The labels' problems are independent, so one joint solve equals L separate ones.
    """
    n_features, n_labels = features.shape[1], targets.shape[1]
    x = features.astype(np.float32)
    y = targets.astype(np.float32)
    papers = len(x)
    prior = np.zeros((n_features, n_labels), dtype=np.float32)
    prior[np.arange(n_labels), np.arange(n_labels)] = lstm_weight
    prior[n_labels + np.arange(n_labels), np.arange(n_labels)] = 1.0 - lstm_weight
    initial = np.concatenate([prior.ravel().astype(np.float64), np.zeros(n_labels)])

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        weights = params[:-n_labels].reshape(n_features, n_labels).astype(np.float32)
        bias = params[-n_labels:].astype(np.float32)
        z = x @ weights + bias
        loss = np.logaddexp(0.0, z) - y * z
        residual = (0.5 * (1.0 + np.tanh(0.5 * z)) - y) / papers
        offset = weights - prior
        grad_weights = x.T @ residual + shrinkage * offset
        value = float(
            loss.sum(dtype=np.float64) / papers
            + 0.5 * shrinkage * (offset.astype(np.float64) ** 2).sum()
        )
        gradient = np.concatenate([grad_weights.ravel(), residual.sum(axis=0)])
        return value, gradient.astype(np.float64)

    result = minimize(
        objective,
        initial,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": MAX_ITERATIONS, "ftol": 1e-8},
    )
    params = result.x
    weights = params[:-n_labels].reshape(n_features, n_labels).astype(np.float32)
    return weights, params[-n_labels:].astype(np.float32)


@dataclass(frozen=True)
class CandidateScore:
    """Cross-fitted validation figures of one candidate (global threshold per fold)."""

    name: str
    micro_f1: float
    macro_f1: float
    p_at_1: float


def folds_of(n: int, seed: int) -> np.ndarray:
    """Fold number of each validation paper (the same split for every candidate)."""
    return np.random.default_rng(seed).permutation(n) % FOLDS


def out_of_fold(
    candidate: Candidate,
    labels: tuple[str, ...],
    lstm: np.ndarray,
    baseline: np.ndarray,
    targets: np.ndarray,
    folds: np.ndarray,
) -> np.ndarray:
    """Each validation paper's combined scores from a combiner fitted on the other folds."""
    scores = np.zeros(targets.shape, dtype=np.float32)
    for fold in range(FOLDS):
        held_out = folds == fold
        combiner = candidate.fit(labels, lstm[~held_out], baseline[~held_out], targets[~held_out])
        scores[held_out] = combiner.combine(lstm[held_out], baseline[held_out])
    return scores


def cross_fitted_score(
    name: str, scores: np.ndarray, targets: np.ndarray, folds: np.ndarray
) -> CandidateScore:
    """Figures of out-of-fold scores with a global threshold also fitted out of fold."""
    predicted = np.zeros(targets.shape, dtype=bool)
    for fold in range(FOLDS):
        held_out = folds == fold
        threshold = best_global_threshold(targets[~held_out], scores[~held_out])
        predicted[held_out] = predict_sets(scores[held_out], threshold)
    return CandidateScore(
        name,
        micro_f1(targets, predicted),
        macro_f1(targets, predicted),
        precision_at_k(targets, scores, 1),
    )


@dataclass(frozen=True)
class Choice:
    """The chosen combiner, refitted on all validation papers, and what led to it."""

    candidate: Candidate
    combiner: Combiner
    out_of_fold: np.ndarray  # the chosen candidate's cross-fitted validation scores
    scores: tuple[CandidateScore, ...]  # every candidate, in CANDIDATES order
    fitted: tuple[Combiner, ...]  # every candidate refitted on all validation papers
    all_out_of_fold: tuple[np.ndarray, ...]  # every candidate's cross-fitted scores


def choose_combiner(
    labels: tuple[str, ...],
    lstm: np.ndarray,
    baseline: np.ndarray,
    targets: np.ndarray,
    seed: int,
    shrinkages: tuple[float, ...] = STACKED_SHRINKAGE,
) -> Choice:
    """The candidate with the best cross-fitted micro-F1 (ties: macro-F1), refitted on all.

    The single models and means come first; the stacked layers then start from, and are pulled
    toward, the logit mean with the best mean's LSTM weight.
    """
    folds = folds_of(len(targets), seed)
    candidates = list(SIMPLE_CANDIDATES)
    oof = [out_of_fold(c, labels, lstm, baseline, targets, folds) for c in candidates]
    scores = [
        cross_fitted_score(c.name, s, targets, folds) for c, s in zip(candidates, oof, strict=True)
    ]
    means = [i for i, c in enumerate(candidates) if c.kind == "mean"]
    weight = candidates[max(means, key=lambda i: scores[i].micro_f1)].lstm_weight
    for shrinkage in shrinkages:
        candidate = Candidate("stacked", lstm_weight=weight, shrinkage=shrinkage)
        candidates.append(candidate)
        oof.append(out_of_fold(candidate, labels, lstm, baseline, targets, folds))
        scores.append(cross_fitted_score(candidate.name, oof[-1], targets, folds))
    best = max(range(len(candidates)), key=lambda i: (scores[i].micro_f1, scores[i].macro_f1))
    fitted = tuple(c.fit(labels, lstm, baseline, targets) for c in candidates)
    return Choice(candidates[best], fitted[best], oof[best], tuple(scores), fitted, tuple(oof))
