"""TF-IDF + one-vs-rest logistic regression baseline, saved without pickle.

It tokenizes with the same `lambda_handler.text.words` as the LSTM (plus word bigrams). The
saved artifacts (JSON vocabulary, numpy idf/coefficients/intercepts) are enough to score papers
with numpy alone: `NumpyBaseline` does exactly that, and tests hold it equal to scikit-learn.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from lambda_handler.files import write_bytes_atomic, write_json_atomic

FORMAT_VERSION = 1


@dataclass(frozen=True)
class BaselineConfig:
    """Feature and regularisation settings of the baseline."""

    max_features: int = 100_000
    max_ngram: int = 2
    min_df: int = 2
    C: float = 4.0  # best validation micro-F1 of {4, 8, 16} on the 2025-26 data

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def ngrams(words: list[str], max_ngram: int) -> list[str]:
    """Words followed by their joined n-grams up to `max_ngram` (space-separated)."""
    grams = list(words)
    for n in range(2, max_ngram + 1):
        grams.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return grams


@dataclass
class Baseline:
    """A fitted vectorizer and classifier pair."""

    vectorizer: TfidfVectorizer
    classifier: OneVsRestClassifier
    config: BaselineConfig

    def predict_proba(self, documents: list[list[str]]) -> np.ndarray:
        """Per-label probabilities for documents given as word lists."""
        features = self.vectorizer.transform(documents)
        return np.asarray(self.classifier.predict_proba(features), dtype=np.float32)

    def save(self, directory: Path) -> None:
        """Write `vocabulary.json` and `weights.npz` (idf, coef, intercept), atomically."""
        vocabulary = sorted(self.vectorizer.vocabulary_, key=self.vectorizer.vocabulary_.get)
        write_json_atomic(
            directory / "vocabulary.json",
            {
                "format_version": FORMAT_VERSION,
                "config": self.config.to_dict(),
                "sublinear_tf": True,
                "norm": "l2",
                "terms": vocabulary,
            },
        )
        coef = np.vstack([estimator.coef_ for estimator in self.classifier.estimators_])
        intercept = np.concatenate(
            [estimator.intercept_ for estimator in self.classifier.estimators_]
        )
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            idf=self.vectorizer.idf_.astype(np.float32),
            coef=coef.astype(np.float32),
            intercept=intercept.astype(np.float32),
        )
        write_bytes_atomic(directory / "weights.npz", buffer.getvalue())


def fit(
    documents: list[list[str]], targets: np.ndarray, config: BaselineConfig, n_jobs: int = 2
) -> Baseline:
    """Fit TF-IDF (sublinear tf, l2 norm) and one liblinear logistic regression per label."""
    vectorizer = TfidfVectorizer(
        analyzer=lambda words: ngrams(words, config.max_ngram),
        max_features=config.max_features,
        min_df=config.min_df,
        sublinear_tf=True,
        dtype=np.float32,
    )
    features = vectorizer.fit_transform(documents)
    features.sort_indices()  # workers get a read-only memmap and must not sort it in place
    classifier = OneVsRestClassifier(
        LogisticRegression(C=config.C, solver="liblinear", max_iter=1000), n_jobs=n_jobs
    )
    classifier.fit(features, targets.astype(np.int8))
    return Baseline(vectorizer, classifier, config)


class NumpyBaseline:
    """Scores papers from the saved artifacts with numpy and scipy.sparse, no scikit-learn."""

    def __init__(self, directory: Path):
        meta = json.loads((directory / "vocabulary.json").read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory}: unsupported baseline format {meta.get('format_version')!r}"
            )
        self.max_ngram = int(meta["config"]["max_ngram"])
        self.index = {term: i for i, term in enumerate(meta["terms"])}
        with np.load(directory / "weights.npz") as weights:
            self.idf, self.coef, self.intercept = (
                weights["idf"],
                weights["coef"],
                weights["intercept"],
            )

    def predict_proba(self, documents: list[list[str]]) -> np.ndarray:
        """Per-label probabilities, as `Baseline.predict_proba` computes them."""
        rows, cols, values = [], [], []
        for row, words in enumerate(documents):
            counts: dict[int, int] = {}
            for gram in ngrams(words, self.max_ngram):
                column = self.index.get(gram)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            rows.extend([row] * len(counts))
            cols.extend(counts)
            values.extend(counts.values())
        tf = sparse.csr_matrix(
            (np.asarray(values, dtype=np.float32), (rows, cols)),
            shape=(len(documents), len(self.idf)),
        )
        tf.data = 1.0 + np.log(tf.data)
        weighted = tf.multiply(self.idf).tocsr()
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
        weighted = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ weighted
        logits = weighted @ self.coef.T + self.intercept
        return (1.0 / (1.0 + np.exp(-np.asarray(logits)))).astype(np.float32)
