"""The TF-IDF + logistic-regression baseline scored with numpy alone, as served and as evaluated.

Training fits the model with scikit-learn (`train/baseline.py`) and hands this module the
vocabulary, idf and coefficients; everything that scores papers afterwards, the training
report included, goes through `TfidfScorer`, so the figures describe what ships.

Features are the paper's content words (`lambda_handler.text.words`) and their n-grams, with
sublinear tf, idf and l2 normalisation as scikit-learn's `TfidfVectorizer` computes them. The
coefficients are stored feature-major and sparse: near-zero weights are pruned at training
time and the rest kept as float16 (the size and score error this costs are in the report).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FORMAT_VERSION = 1
ARRAYS = ("idf", "indptr", "label_ids", "values", "intercept")


def ngrams(words: Sequence[str], max_ngram: int) -> list[str]:
    """Words followed by their space-joined n-grams up to `max_ngram`."""
    grams = list(words)
    for n in range(2, max_ngram + 1):
        grams.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return grams


@dataclass(frozen=True, eq=False)
class TfidfScorer:
    """Vocabulary, idf and sparse per-feature coefficient rows (CSR: feature → labels)."""

    terms: tuple[str, ...]
    max_ngram: int
    idf: np.ndarray  # float32 [features]
    indptr: np.ndarray  # int [features + 1]: row f's labels are label_ids[indptr[f]:indptr[f+1]]
    label_ids: np.ndarray  # unsigned int [nonzeros]
    values: np.ndarray  # float16 [nonzeros], as stored (products are computed in float32)
    intercept: np.ndarray  # float32 [labels]

    def __post_init__(self) -> None:
        n_features, n_labels = len(self.terms), len(self.intercept)
        if self.max_ngram < 1:
            raise ValueError(f"max_ngram must be at least 1, got {self.max_ngram}")
        if self.idf.shape != (n_features,) or self.indptr.shape != (n_features + 1,):
            raise ValueError(
                f"idf {self.idf.shape} and indptr {self.indptr.shape} do not fit {n_features} terms"
            )
        if self.indptr[0] != 0 or np.any(np.diff(self.indptr) < 0):
            raise ValueError("indptr must start at 0 and never decrease")
        if self.label_ids.shape != self.values.shape or self.indptr[-1] != len(self.values):
            raise ValueError("label_ids, values and indptr disagree on the number of weights")
        if len(self.label_ids) and not 0 <= self.label_ids.min() <= self.label_ids.max() < n_labels:
            raise ValueError(f"label_ids must lie in [0, {n_labels})")
        arrays = (self.idf, self.values, self.intercept)
        if not all(np.all(np.isfinite(array)) for array in arrays):
            raise ValueError("idf, coefficients and intercepts must be finite")
        index = {term: i for i, term in enumerate(self.terms)}
        if len(index) != n_features:
            raise ValueError("the vocabulary lists a term twice")
        object.__setattr__(self, "_index", index)

    @property
    def n_labels(self) -> int:
        return len(self.intercept)

    @classmethod
    def from_dense(
        cls,
        terms: Sequence[str],
        max_ngram: int,
        idf: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        prune_below: float = 0.0,
    ) -> TfidfScorer:
        """Build from scikit-learn's `[labels, features]` coefficients, dropping |w| < prune_below
        and rounding the rest to float16 (as they are stored)."""
        by_feature = np.asarray(coef, dtype=np.float32).T
        keep = np.abs(by_feature) >= prune_below
        features, labels = np.nonzero(keep)  # row-major: grouped by feature, labels ascending
        indptr = np.zeros(len(terms) + 1, dtype=np.int32)
        np.cumsum(np.bincount(features, minlength=len(terms)), out=indptr[1:])
        return cls(
            tuple(terms),
            max_ngram,
            np.asarray(idf, dtype=np.float32),
            indptr,
            labels.astype(np.uint16),
            by_feature[features, labels].astype(np.float16),
            np.asarray(intercept, dtype=np.float32),
        )

    def logits(self, documents: Sequence[Sequence[str]]) -> np.ndarray:
        """Per-label logits `[documents, labels]` for papers given as content-word lists."""
        out = np.tile(self.intercept, (len(documents), 1))
        index, n_labels = self._index, self.n_labels  # type: ignore[attr-defined]
        for row, words in enumerate(documents):
            counts: dict[int, int] = {}
            for gram in ngrams(words, self.max_ngram):
                column = index.get(gram)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            if not counts:
                continue
            columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
            weights = (1.0 + np.log(tf)) * self.idf[columns]
            weights /= max(float(np.sqrt(weights @ weights)), 1e-12)
            starts, ends = self.indptr[columns], self.indptr[columns + 1]
            lengths = ends - starts
            total = int(lengths.sum())
            if total == 0:
                continue
            # Positions of every kept weight of these features, without a Python loop.
            offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
            positions = offsets + np.arange(total)
            contributions = np.repeat(weights, lengths) * self.values[positions]
            out[row] += np.bincount(
                self.label_ids[positions], weights=contributions, minlength=n_labels
            ).astype(np.float32)
        return out

    def predict_proba(self, documents: Sequence[Sequence[str]]) -> np.ndarray:
        """Per-label probabilities, the logistic of `logits`."""
        return sigmoid(self.logits(documents))

    def to_files(self) -> tuple[dict[str, object], bytes]:
        """The JSON document (vocabulary and settings) and the npz bytes (arrays) to save."""
        document = {
            "format_version": FORMAT_VERSION,
            "features": "content words and their n-grams up to max_ngram",
            "max_ngram": self.max_ngram,
            "sublinear_tf": True,
            "norm": "l2",
            "terms": list(self.terms),
        }
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            idf=self.idf.astype(np.float32),
            indptr=self.indptr.astype(np.int32),
            label_ids=self.label_ids.astype(np.uint16),
            values=self.values.astype(np.float16),
            intercept=self.intercept.astype(np.float32),
        )
        return document, buffer.getvalue()

    @classmethod
    def from_files(cls, document_bytes: bytes, weights_bytes: bytes) -> TfidfScorer:
        """Rebuild from `to_files`' output; raise ValueError naming what is wrong."""
        document = load_document(document_bytes, FORMAT_VERSION)
        terms, max_ngram = document.get("terms"), document.get("max_ngram")
        if not isinstance(terms, list) or not all(isinstance(term, str) for term in terms):
            raise ValueError("terms must be a list of strings")
        if type(max_ngram) is not int:
            raise ValueError("max_ngram must be an integer")
        if document.get("sublinear_tf") is not True or document.get("norm") != "l2":
            raise ValueError("only sublinear tf with l2 normalisation is implemented")
        arrays = load_arrays(weights_bytes, ARRAYS)
        expected = {"idf": "f", "indptr": "iu", "label_ids": "u", "values": "f", "intercept": "f"}
        for name, kinds in expected.items():
            if arrays[name].dtype.kind not in kinds or arrays[name].ndim != 1:
                raise ValueError(f"{name} is {arrays[name].dtype} {arrays[name].shape}")
        return cls(tuple(terms), max_ngram, **arrays)  # kept as stored: no copy at cold start


def load_document(raw: bytes, format_version: int) -> dict:
    """A JSON object with the expected `format_version`; ValueError otherwise."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format_version") != format_version:
        raise ValueError(f"expected an object with format_version {format_version}")
    return document


def load_arrays(raw: bytes, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named arrays of an npz file's bytes, never unpickling; ValueError when malformed."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise ValueError(f"the arrays {', '.join(missing)} are missing")
            return {name: archive[name] for name in names}
    except ValueError as error:
        if "pickle" in str(error):
            raise ValueError("it holds pickled (object) data, which is never loaded") from None
        raise
    except Exception as error:  # zipfile, zlib and format errors differ across numpy versions
        raise ValueError(f"not a readable npz file ({type(error).__name__})") from None


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function in float32, without overflow warnings for large |logits|."""
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)


def logit(probabilities: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Inverse of `sigmoid`, with probabilities clipped to [eps, 1 - eps] first."""
    clipped = np.clip(probabilities.astype(np.float64), eps, 1.0 - eps)
    return np.log(clipped / (1.0 - clipped)).astype(np.float32)
