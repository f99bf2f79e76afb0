"""The TF-IDF baseline: learns, saves without pickle, and scores identically with numpy only."""

import numpy as np
from conftest import TOPICS

from train.baseline import BaselineConfig, NumpyBaseline, fit, ngrams


def corpus(n=120, seed=0):
    rng = np.random.default_rng(seed)
    codes = list(TOPICS)
    documents, targets = [], np.zeros((n, len(codes)), dtype=np.float32)
    for i in range(n):
        j = i % len(codes)
        targets[i, j] = 1
        documents.append([*rng.choice(TOPICS[codes[j]].split(), 12), "shared", "words"])
    return documents, targets


def test_ngrams_append_joined_bigrams():
    assert ngrams(["a", "b", "c"], 2) == ["a", "b", "c", "a b", "b c"]
    assert ngrams(["a"], 3) == ["a"]


def test_baseline_learns_separable_topics():
    documents, targets = corpus()
    model = fit(documents, targets, BaselineConfig(min_df=1), n_jobs=1)
    probabilities = model.predict_proba(documents)
    assert (probabilities.argmax(axis=1) == targets.argmax(axis=1)).mean() > 0.95


def test_saved_artifacts_score_like_scikit_learn_without_it(tmp_path):
    documents, targets = corpus()
    model = fit(documents, targets, BaselineConfig(min_df=1), n_jobs=1)
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocabulary.json", "weights.npz"]
    unseen = [["image", "segmentation", "never-seen"], [], ["convex", "duality", "shared"]]
    np.testing.assert_allclose(
        NumpyBaseline(tmp_path).predict_proba(unseen), model.predict_proba(unseen), atol=1e-5
    )
