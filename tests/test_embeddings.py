"""PPMI+SVD word vectors: words sharing contexts end up close; shapes and scale are right."""

import numpy as np

from train.embeddings import cooccurrences, ppmi_vectors


def test_cooccurrences_stay_inside_a_paper_and_skip_padding_and_oov():
    counts = cooccurrences([[2, 3, 1, 4], [5, 2]], vocab_size=6, window=1).toarray()
    assert counts[2, 3] == counts[3, 2] == 1
    assert counts[2, 5] == 1  # (5, 2) in the second paper
    assert counts[4, 5] == 0  # last word of paper 1 and first of paper 2 are not neighbours
    assert counts[1].sum() == 0 and counts[0].sum() == 0


def corpus(seed=0):
    """Two topics; words 2-6 co-occur with each other, words 7-11 with each other."""
    rng = np.random.default_rng(seed)
    return [
        list(rng.choice(np.arange(2, 7) if i % 2 else np.arange(7, 12), 20)) for i in range(300)
    ]


def test_words_of_one_topic_are_closer_than_words_of_two():
    vectors = ppmi_vectors(corpus(), vocab_size=12, dim=4)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    same, other = unit[2] @ unit[3], unit[2] @ unit[8]
    assert same > 0.8 and other < same - 0.5


def test_shape_scale_and_determinism():
    sequences = corpus()
    vectors = ppmi_vectors(sequences, vocab_size=40, dim=3, seed=1)
    assert vectors.shape == (40, 3) and vectors.dtype == np.float32
    assert abs(float(vectors[2:].std()) - 0.03) < 1e-3
    np.testing.assert_array_equal(vectors, ppmi_vectors(sequences, vocab_size=40, dim=3, seed=1))
