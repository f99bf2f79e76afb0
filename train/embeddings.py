"""Word vectors from the training split itself: PPMI co-occurrence matrix factorised by SVD.

With 36k papers and no pretrained vectors (nothing can be downloaded here), starting the
embedding from corpus statistics (Levy & Goldberg, 2014: SVD of shifted PPMI ≈ word2vec)
gives the LSTM word similarities it would otherwise have to learn from the labels alone.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds

from lambda_handler.text import FIRST_WORD_ID


def cooccurrences(sequences: list[list[int]], vocab_size: int, window: int) -> sparse.csr_matrix:
    """Symmetric counts of word ids appearing within `window` positions in the same paper."""
    flat = np.fromiter((i for seq in sequences for i in seq), dtype=np.int32)
    paper = np.repeat(np.arange(len(sequences), dtype=np.int32), [len(s) for s in sequences])
    rows, cols = [], []
    for offset in range(1, window + 1):
        left, right = flat[:-offset], flat[offset:]
        keep = (
            (paper[:-offset] == paper[offset:]) & (left >= FIRST_WORD_ID) & (right >= FIRST_WORD_ID)
        )
        rows.append(left[keep])
        cols.append(right[keep])
    rows_all, cols_all = np.concatenate(rows), np.concatenate(cols)
    ones = np.ones(len(rows_all), dtype=np.float32)
    counts = sparse.coo_matrix((ones, (rows_all, cols_all)), shape=(vocab_size, vocab_size)).tocsr()
    return counts + counts.T


def ppmi_vectors(
    sequences: list[list[int]], vocab_size: int, dim: int, window: int = 5, seed: int = 0
) -> np.ndarray:
    """Embedding matrix `[vocab_size, dim]` from the SVD of the positive PMI matrix.

    Context counts are smoothed with exponent 0.75 as in word2vec; rows are scaled to the
    spread of Keras's default embedding initialiser, and padding/OOV rows stay small random.
    """
    counts = cooccurrences(sequences, vocab_size, window).tocoo()
    word_totals = np.asarray(counts.sum(axis=1)).ravel()
    context = word_totals**0.75
    pmi = np.log(counts.data * context.sum() / (word_totals[counts.row] * context[counts.col]))
    positive = pmi > 0
    ppmi = sparse.csr_matrix(
        (pmi[positive].astype(np.float32), (counts.row[positive], counts.col[positive])),
        shape=counts.shape,
    )
    rng = np.random.default_rng(seed)
    if dim < vocab_size - 1:
        start = rng.uniform(-1, 1, size=vocab_size)
        left, singular, _ = svds(ppmi, k=dim, v0=start, random_state=seed)
    else:  # a toy vocabulary: dense SVD, zero-padded to `dim` columns
        left, singular, _ = np.linalg.svd(ppmi.toarray())
        left = np.pad(left, ((0, 0), (0, dim - left.shape[1])))
        singular = np.pad(singular, (0, dim - len(singular)))
    vectors = left * np.sqrt(singular)
    vectors *= 0.03 / max(float(vectors[FIRST_WORD_ID:].std()), 1e-12)
    vectors[:FIRST_WORD_ID] = rng.normal(0, 0.03, size=(FIRST_WORD_ID, dim))
    return vectors.astype(np.float32)
