"""The combiner: its arithmetic as served (lambda_handler/combiner.py) and how training fits and
chooses one on validation papers only (train/ensemble.py)."""

import numpy as np
import pytest

from lambda_handler.combiner import Combiner, stack_features
from lambda_handler.tfidf import logit, sigmoid
from train.ensemble import (
    SIMPLE_CANDIDATES,
    STACKED_SHRINKAGE,
    Candidate,
    choose_combiner,
    fit_stacked,
    softplus,
)
from train.thresholds import folds_of

LABELS = ("cs.CV", "eess.IV", "cs.CL")


def synthetic(n: int = 1500, seed: int = 0):
    """Two noisy models of three labels, where eess.IV goes with cs.CV three times in four:
    only a layer that sees every label's score can learn that."""
    rng = np.random.default_rng(seed)
    vision = rng.random(n) < 0.5
    targets = np.stack([vision, vision & (rng.random(n) < 0.75), ~vision], axis=1).astype(float)
    truth_logit = np.where(targets[:, [0, 0, 2]] > 0, 2.0, -2.0)  # eess.IV's score says nothing
    lstm = sigmoid(truth_logit + rng.normal(0, 1.5, targets.shape))
    baseline = sigmoid(truth_logit + rng.normal(0, 1.5, targets.shape))
    lstm[:, 1] = baseline[:, 1] = sigmoid(rng.normal(-1.0, 1.0, n))
    return lstm, baseline, targets.astype(np.float32)


def test_each_kind_combines_as_documented():
    lstm = np.array([[0.9, 0.2, 0.1]], dtype=np.float32)
    baseline = np.array([[0.5, 0.6, 0.3]], dtype=np.float32)
    np.testing.assert_array_equal(Combiner("lstm", LABELS).combine(lstm, None), lstm)
    np.testing.assert_array_equal(
        Combiner("baseline", LABELS, 0.0).combine(None, baseline), baseline
    )
    mean = Combiner("mean", LABELS, 0.25).combine(lstm, baseline)
    np.testing.assert_allclose(mean, 0.25 * lstm + 0.75 * baseline, atol=1e-7)
    weights = np.zeros((6, 3), dtype=np.float32)
    weights[0, 1] = 1.0  # eess.IV from cs.CV's LSTM logit alone
    stacked = Combiner("stacked", LABELS, 1.0, weights, np.full(3, 0.5, np.float32))
    assert stacked.combine(lstm, baseline)[0, 1] == pytest.approx(sigmoid(logit(lstm)[0, 0] + 0.5))
    # Every weight at work, against the formula written out: the LSTM's logits, then the
    # baseline's, times the weights, plus the bias, through a sigmoid.
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(6, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    lstm, baseline = rng.uniform(0.01, 0.99, size=(2, 4, 3)).astype(np.float32)
    odds = np.log(np.concatenate([lstm / (1 - lstm), baseline / (1 - baseline)], axis=1))
    expected = 1 / (1 + np.exp(-(odds.astype(np.float64) @ weights + bias)))
    stacked = Combiner("stacked", LABELS, 1.0, weights, bias)
    np.testing.assert_allclose(stacked.combine(lstm, baseline), expected, atol=2e-6)


def test_a_paper_scores_the_same_alone_or_in_a_batch():
    lstm, baseline, targets = synthetic(40)
    combiner = Candidate("stacked", lstm_weight=0.5, shrinkage=0.01).fit(
        LABELS, lstm, baseline, targets
    )
    batch = combiner.combine(lstm, baseline)
    for i in range(len(lstm)):
        np.testing.assert_array_equal(
            combiner.combine(lstm[i : i + 1], baseline[i : i + 1])[0], batch[i]
        )


def test_stacked_files_round_trip_and_shapes_are_checked():
    lstm, baseline, targets = synthetic(200)
    combiner = Candidate("stacked", lstm_weight=0.5, shrinkage=0.1).fit(
        LABELS, lstm, baseline, targets
    )
    document, arrays = combiner.to_files()
    import json

    again = Combiner.from_files(json.dumps(document).encode(), arrays)
    np.testing.assert_array_equal(again.combine(lstm, baseline), combiner.combine(lstm, baseline))
    with pytest.raises(ValueError, match="do not fit 2 labels"):
        Combiner("stacked", LABELS[:2], 1.0, combiner.weights, combiner.bias)
    with pytest.raises(ValueError, match="lstm_weight must lie in"):
        Combiner("mean", LABELS, 1.5)


def test_fit_stacked_learns_label_co_occurrence_that_the_models_miss():
    lstm, baseline, targets = synthetic()
    weights, _ = fit_stacked(stack_features(lstm, baseline), targets, 0.001, lstm_weight=0.5)
    # eess.IV (column 1) is predicted from cs.CV's scores (rows 0 and 3), not its own (1 and 4).
    assert weights[0, 1] > 0.3 and weights[3, 1] > 0.3
    assert abs(weights[1, 1]) < 0.25 and abs(weights[4, 1]) < 0.25
    # A strong pull gives back the logit mean it starts from.
    prior = np.zeros_like(weights)
    prior[[0, 1, 2], [0, 1, 2]] = 0.3
    prior[[3, 4, 5], [0, 1, 2]] = 0.7
    pulled, _ = fit_stacked(stack_features(lstm, baseline), targets, 100.0, lstm_weight=0.3)
    assert np.abs(pulled - prior).max() < 0.01 < np.abs(weights - prior).max()


def test_choice_is_cross_fitted_on_validation_and_refitted_on_all_of_it():
    lstm, baseline, targets = synthetic()
    choice = choose_combiner(LABELS, lstm, baseline, targets, seed=1)
    names = [score.name for score in choice.scores]
    assert names[: len(SIMPLE_CANDIDATES)] == [c.name for c in SIMPLE_CANDIDATES]
    assert len(names) == len(SIMPLE_CANDIDATES) + len(STACKED_SHRINKAGE)
    assert choice.candidate.kind == "stacked"  # the only kind that can use co-occurrence
    by_name = {score.name: score for score in choice.scores}
    assert by_name[choice.candidate.name].micro_f1 == max(s.micro_f1 for s in choice.scores)
    assert by_name["mean, LSTM weight 0.5"].micro_f1 > by_name["lstm alone"].micro_f1
    # Out-of-fold scores differ from the all-validation refit: each fold never saw itself.
    refit = choice.combiner.combine(lstm, baseline)
    assert 0 < np.abs(refit - choice.out_of_fold).max() < 0.5
    folds = folds_of(len(targets), seed=1)
    assert sorted(np.bincount(folds)) == [300] * 5


def test_softplus_equals_logaddexp_without_overflow():
    z = np.concatenate([np.linspace(-200, 200, 40001), [-1e30, 1e30]]).astype(np.float32)
    expected = np.logaddexp(0.0, z.astype(np.float64))
    got = softplus(z)
    assert got.dtype == np.float32 and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=2e-7, atol=1e-30)


def test_a_stacked_fit_is_the_same_problem_whatever_the_features_average():
    """The solver centres the features and moves the bias to match, so shifting a model's
    logits by a constant changes the bias, not the combined scores."""
    lstm, baseline, targets = synthetic(600)
    features = stack_features(lstm, baseline)
    weights, bias = fit_stacked(features, targets, 0.1, lstm_weight=0.5)
    shifted_weights, shifted_bias = fit_stacked(features - 4.0, targets, 0.1, lstm_weight=0.5)
    np.testing.assert_allclose(
        (features - 4.0) @ shifted_weights + shifted_bias, features @ weights + bias, atol=2e-3
    )
    # Started at its own solution, the solver stays there.
    again, again_bias = fit_stacked(features, targets, 0.1, 0.5, initial=(weights, bias))
    np.testing.assert_allclose(features @ again + again_bias, features @ weights + bias, atol=2e-3)
