"""Decision rules: top label always kept, thresholds found, rules compared fairly."""

import numpy as np

from train import thresholds
from train.thresholds import RULES, Rule, choose_rule, cross_fitted, predict_sets


def test_predict_sets_always_keeps_the_top_label():
    probabilities = np.array([[0.1, 0.2, 0.05], [0.9, 0.8, 0.1]])
    chosen = predict_sets(probabilities, 0.5)
    np.testing.assert_array_equal(chosen, [[False, True, False], [True, True, False]])


def test_micro_and_macro_f1_match_hand_computed_values():
    targets = np.array([[1, 0], [1, 1], [0, 1]])
    predicted = np.array([[1, 1], [1, 0], [0, 1]], dtype=bool)
    assert thresholds.micro_f1(targets, predicted) == 2 * 3 / (4 + 4)
    assert thresholds.macro_f1(targets, predicted) == (1.0 + 2 * 1 / 4) / 2


def synthetic(n=2000, labels=6, seed=0):
    """Scores whose best threshold differs per label (label j is well separated above 0.1+0.1j)."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, labels)) < 0.2).astype(np.float32)
    cut = 0.1 + 0.1 * np.arange(labels)
    positive = cut + rng.random((n, labels)) * (1 - cut)
    negative = rng.random((n, labels)) * cut
    noise = rng.random((n, labels)) < 0.05
    scores = np.where(targets.astype(bool) ^ noise, positive, negative)
    return targets, scores.astype(np.float32), cut


def test_threshold_counts_equal_predicting_at_every_grid_threshold():
    # the one-pass counts against the definition, with scores on and just beside the grid
    # (float32 0.3 lies above float64 0.3, float32 0.29 below 0.29), ties and a NaN
    targets, scores, _ = synthetic(n=500, labels=5, seed=3)
    rng = np.random.default_rng(4)
    on_grid = rng.random(scores.shape) < 0.3
    scores[on_grid] = rng.choice(thresholds.GRID, on_grid.sum()).astype(np.float32)
    scores[7, 2] = np.nan
    sets = [predict_sets(scores, t) for t in thresholds.GRID]
    f1 = [thresholds.micro_f1(targets, chosen) for chosen in sets]
    assert thresholds.best_global_threshold(targets, scores) == thresholds.GRID[np.argmax(f1)]
    tp, predicted, positives = thresholds.counts_on_grid(targets, scores)
    above = np.stack([scores >= t for t in thresholds.GRID])  # [thresholds, papers, labels]
    np.testing.assert_array_equal(tp, (above & targets.astype(bool)).sum(axis=1))
    np.testing.assert_array_equal(predicted, above.sum(axis=1))
    np.testing.assert_array_equal(positives, targets.sum(axis=0))


def test_per_label_thresholds_find_each_labels_cut():
    targets, scores, cut = synthetic()
    found = thresholds.per_label_thresholds(targets, scores)
    np.testing.assert_allclose(found, cut, atol=0.03)


def test_shrinkage_moves_thresholds_toward_the_global_one():
    targets, scores, _ = synthetic()
    global_t = Rule("global").fit(targets, scores)
    own = Rule("own", prior=0.0).fit(targets, scores)
    shrunk = Rule("shrunk", prior=100.0).fit(targets, scores)
    assert np.all(np.abs(shrunk - global_t) <= np.abs(own - global_t) + 1e-9)
    assert np.all(global_t == global_t[0])


def test_labels_without_positives_fall_back_to_the_global_threshold():
    targets, scores, _ = synthetic()
    targets[:, 2] = 0
    fitted = Rule("own", prior=0.0).fit(targets, scores)
    assert np.isfinite(fitted).all()
    assert fitted[2] == Rule("global").fit(targets, scores)[0]


def test_cross_fitting_does_not_reward_overfitting_on_noise():
    rng = np.random.default_rng(1)
    targets = (rng.random((600, 8)) < 0.3).astype(np.float32)
    scores = rng.random((600, 8)).astype(np.float32)
    in_sample = thresholds.micro_f1(
        targets, predict_sets(scores, Rule("own", prior=0.0).fit(targets, scores))
    )
    honest = cross_fitted(Rule("own", prior=0.0), targets, scores, seed=0).micro_f1
    assert honest < in_sample


def test_choose_rule_keeps_micro_f1_and_prefers_per_label_when_labels_differ():
    targets, scores, _ = synthetic()
    rule, fitted, scores_by_rule = choose_rule(targets, scores, seed=0)
    assert len(scores_by_rule) == len(RULES)
    chosen = next(s for s in scores_by_rule if s.name == rule.name)
    assert chosen.micro_f1 >= scores_by_rule[0].micro_f1 - thresholds.MICRO_F1_TOLERANCE
    assert rule.name != "global" and fitted.shape == (6,)


def test_micro_ascent_never_lowers_in_sample_micro_f1_and_adapts_per_label():
    targets, scores, _ = synthetic()
    start = thresholds.best_global_threshold(targets, scores)
    ascended = thresholds.micro_ascent_thresholds(targets, scores, start)
    global_f1 = thresholds.micro_f1(targets, scores >= start)
    assert thresholds.micro_f1(targets, scores >= ascended) >= global_f1
    assert len(set(ascended.tolist())) > 1


def test_rules_give_float32_thresholds_as_served():
    rng = np.random.default_rng(0)
    targets = (rng.random((200, 4)) < 0.3).astype(np.float32)
    scores = np.clip(targets * 0.5 + rng.random((200, 4)) * 0.5, 0, 1).astype(np.float32)
    for rule in RULES:
        fitted = rule.fit(targets, scores)
        assert fitted.dtype == np.float32 and fitted.shape == (4,), rule.name
