"""Choose how to combine the LSTM and the baseline, on validation papers only.

Both models have seen the training papers, so every combiner is fitted on validation
predictions. Candidates are compared by cross-fitted scores: on each of five validation folds,
the combiner and a global threshold are fitted on the other four folds and scored on it. The
chosen combiner's out-of-fold validation scores then feed the decision-rule machinery
(`train.thresholds.choose_rule`), and the combiner itself is refitted on all validation papers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from lambda_handler.combiner import Combiner, stack_features
from lambda_handler.tfidf import sigmoid
from train.evaluate import precision_at_k
from train.thresholds import (
    FOLDS,
    best_global_threshold,
    folds_of,
    macro_f1,
    micro_f1,
    predict_sets,
)

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
        self,
        labels: tuple[str, ...],
        lstm: np.ndarray,
        baseline: np.ndarray,
        targets: np.ndarray,
        start: Combiner | None = None,
        offsets: np.ndarray | None = None,
    ) -> Combiner:
        """The combiner, fitted on these (validation) predictions where it has parameters; a
        stacked layer's solver starts from `start`'s weights when given (a warm start), and
        learns on top of the papers' year `offsets` when given, as it will be served."""
        if self.kind != "stacked":
            return Combiner(self.kind, labels, self.lstm_weight)
        initial = None if start is None else (start.weights, start.bias)
        weights, bias = fit_stacked(
            stack_features(lstm, baseline),
            targets,
            self.shrinkage,
            self.lstm_weight,
            initial,
            offsets,
        )
        return Combiner("stacked", labels, self.lstm_weight, weights, bias)


SIMPLE_CANDIDATES = (
    Candidate("lstm"),
    Candidate("baseline", lstm_weight=0.0),
    *(Candidate("mean", lstm_weight=w) for w in MEAN_WEIGHTS),
)


def fit_stacked(
    features: np.ndarray,
    targets: np.ndarray,
    shrinkage: float,
    lstm_weight: float = 0.5,
    initial: tuple[np.ndarray, np.ndarray] | None = None,
    offsets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label logistic regressions over all `features`, fitted jointly by L-BFGS.

    Minimises the mean binary cross-entropy + shrinkage/2 · ‖W - W₀‖² (bias unpenalised),
    where W₀ is the logit mean `w · logit(p_lstm) + (1 - w) · logit(p_baseline)` of each label:
    a strong pull gives back that mean, a weaker one lets a label learn from the others'
    scores. The labels' problems are independent, so one joint solve equals L separate ones.
    `offsets` `[papers, labels]`, when given, are added to every logit z as fixed terms.
    The solver starts from `initial` (weights, bias) when given, else from (W₀, 0). It works
    on centred features (logits average about -8) with the bias moved to match, the same
    problem but better conditioned: on the CS-only validation predictions (2026-12-03) it
    reached a lower objective in MAX_ITERATIONS than the uncentred solve did in three times
    as many.
    """
    n_features, n_labels = features.shape[1], targets.shape[1]
    means = features.mean(axis=0, dtype=np.float64).astype(np.float32)
    x = features.astype(np.float32) - means
    y = targets.astype(np.float32)
    fixed = np.float32(0.0) if offsets is None else offsets.astype(np.float32)
    papers = len(x)
    prior = np.zeros((n_features, n_labels), dtype=np.float32)
    prior[np.arange(n_labels), np.arange(n_labels)] = lstm_weight
    prior[n_labels + np.arange(n_labels), np.arange(n_labels)] = 1.0 - lstm_weight
    start_weights, start_bias = (prior, np.zeros(n_labels)) if initial is None else initial
    centred_bias = start_bias + means @ start_weights  # z = features @ W + b = x @ W + this
    start = np.concatenate([start_weights.ravel(), centred_bias]).astype(np.float64)

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        weights = params[:-n_labels].reshape(n_features, n_labels).astype(np.float32)
        bias = params[-n_labels:].astype(np.float32)
        z = x @ weights + bias + fixed
        loss = softplus(z).sum(dtype=np.float64) - (y * z).sum(dtype=np.float64)
        residual = (sigmoid(z) - y) / papers
        deviation = weights - prior
        grad_weights = x.T @ residual + shrinkage * deviation
        value = float(loss / papers + 0.5 * shrinkage * (deviation.astype(np.float64) ** 2).sum())
        gradient = np.concatenate([grad_weights.ravel(), residual.sum(axis=0)])
        return value, gradient.astype(np.float64)

    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": MAX_ITERATIONS, "ftol": 1e-8},
    )
    weights = result.x[:-n_labels].reshape(n_features, n_labels)
    bias = result.x[-n_labels:] - means.astype(np.float64) @ weights
    return weights.astype(np.float32), bias.astype(np.float32)


def softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + eᶻ) in z's precision, without overflow. As max(z, 0) + log1p(e^-|z|) it runs
    about 10x faster than `np.logaddexp(0, z)` on float32 (measured 2026-12-03: 3.5 against
    38 ms for 13k x 152), which was half of each objective evaluation."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


@dataclass(frozen=True)
class CandidateScore:
    """Cross-fitted validation figures of one candidate (global threshold per fold)."""

    name: str
    micro_f1: float
    macro_f1: float
    p_at_1: float


def out_of_fold(
    candidate: Candidate,
    labels: tuple[str, ...],
    lstm: np.ndarray,
    baseline: np.ndarray,
    targets: np.ndarray,
    folds: np.ndarray,
    starts: Sequence[Combiner | None] = (None,) * FOLDS,
    offsets: np.ndarray | None = None,
) -> tuple[np.ndarray, list[Combiner]]:
    """Each validation paper's combined scores (with its year `offsets`, when given) from a
    combiner fitted on the other folds, and the combiner of each fold (fold k's solver starts
    from `starts[k]`, fitted on the same papers)."""
    scores = np.zeros(targets.shape, dtype=np.float32)
    combiners = []
    for fold, start in zip(range(FOLDS), starts, strict=True):
        held_out = folds == fold
        fit_offsets, held_offsets = (
            (None, None) if offsets is None else (offsets[~held_out], offsets[held_out])
        )
        combiner = candidate.fit(
            labels, lstm[~held_out], baseline[~held_out], targets[~held_out], start, fit_offsets
        )
        scores[held_out] = combiner.combine(lstm[held_out], baseline[held_out], held_offsets)
        combiners.append(combiner)
    return scores, combiners


def mean_of(combiners: Sequence[Combiner]) -> Combiner:
    """The stacked combiner whose weights and bias are the mean of `combiners`' (all stacked)."""
    first = combiners[0]
    return Combiner(
        "stacked",
        first.labels,
        first.lstm_weight,
        np.mean([c.weights for c in combiners], axis=0),
        np.mean([c.bias for c in combiners], axis=0),
    )


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
    offsets: np.ndarray | None = None,
) -> Choice:
    """The candidate with the best cross-fitted micro-F1 (ties: macro-F1), refitted on all.

    The single models and means come first; the stacked layers are then pulled toward the
    logit mean with the best mean's LSTM weight, strongest pull first. Each stacked fit starts
    where the previous strength's fit on the same papers ended, and each refit on all
    validation papers from the mean of its five fold fits, so that the solver's iteration cap
    leaves it nearer the optimum (the logits of both models are nearly collinear, so the
    objective is flat in some directions and the cap, not a tolerance, ends most fits).
    Every candidate is fitted and scored with the papers' year `offsets` when given.
    """
    folds = folds_of(len(targets), seed)
    candidates = list(SIMPLE_CANDIDATES)
    oof = [
        out_of_fold(c, labels, lstm, baseline, targets, folds, offsets=offsets)[0]
        for c in candidates
    ]
    fitted = [c.fit(labels, lstm, baseline, targets, offsets=offsets) for c in candidates]
    scores = [
        cross_fitted_score(c.name, s, targets, folds) for c, s in zip(candidates, oof, strict=True)
    ]
    means = [i for i, c in enumerate(candidates) if c.kind == "mean"]
    weight = candidates[max(means, key=lambda i: scores[i].micro_f1)].lstm_weight
    starts: Sequence[Combiner | None] = (None,) * FOLDS
    for shrinkage in sorted(shrinkages, reverse=True):
        candidate = Candidate("stacked", lstm_weight=weight, shrinkage=shrinkage)
        candidates.append(candidate)
        scores_of_folds, starts = out_of_fold(
            candidate, labels, lstm, baseline, targets, folds, starts, offsets
        )
        oof.append(scores_of_folds)
        fitted.append(candidate.fit(labels, lstm, baseline, targets, mean_of(starts), offsets))
        scores.append(cross_fitted_score(candidate.name, oof[-1], targets, folds))
    best = max(range(len(candidates)), key=lambda i: (scores[i].micro_f1, scores[i].macro_f1))
    return Choice(
        candidates[best], fitted[best], oof[best], tuple(scores), tuple(fitted), tuple(oof)
    )
