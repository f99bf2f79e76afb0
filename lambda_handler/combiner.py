"""How the served system turns the LSTM's and the baseline's scores into one score per label.

Training compares the kinds below on validation and saves the chosen one (`train/ensemble.py`):
- `lstm` or `baseline`: one model's probabilities, unchanged;
- `mean`: `w · p_lstm + (1 - w) · p_baseline`;
- `stacked`: a per-label logistic regression over both models' logits,
  `sigmoid([logit(p_lstm), logit(p_baseline)] @ weights + bias)`, which can learn label
  co-occurrence (cs.CV with eess.IV) that per-label thresholds cannot.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from lambda_handler.tfidf import load_arrays, load_document, logit, sigmoid

FORMAT_VERSION = 1
KINDS = ("lstm", "baseline", "mean", "stacked")


@dataclass(frozen=True, eq=False)
class Combiner:
    """One way of combining both models' `[papers, labels]` probabilities."""

    kind: str
    labels: tuple[str, ...]
    lstm_weight: float = 1.0
    weights: np.ndarray | None = None  # float32 [2 · labels, labels], stacked only
    bias: np.ndarray | None = None  # float32 [labels], stacked only

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown combiner kind {self.kind!r}; expected one of {KINDS}")
        if not 0.0 <= self.lstm_weight <= 1.0:
            raise ValueError(f"lstm_weight must lie in [0, 1], got {self.lstm_weight}")
        n = len(self.labels)
        if self.kind == "stacked":
            if self.weights is None or self.bias is None:
                raise ValueError("a stacked combiner needs weights and bias")
            if self.weights.shape != (2 * n, n) or self.bias.shape != (n,):
                raise ValueError(
                    f"stacked weights {self.weights.shape} and bias {self.bias.shape} do not "
                    f"fit {n} labels; expected ({2 * n}, {n}) and ({n},)"
                )
            if not (np.all(np.isfinite(self.weights)) and np.all(np.isfinite(self.bias))):
                raise ValueError("stacked weights and bias must be finite")

    @property
    def uses_lstm(self) -> bool:
        return self.kind != "baseline"

    @property
    def uses_baseline(self) -> bool:
        return self.kind != "lstm"

    def describe(self) -> str:
        """A short human-readable name (`mean, LSTM weight 0.4`)."""
        if self.kind == "mean":
            return f"mean, LSTM weight {self.lstm_weight:g}"
        if self.kind == "stacked":
            return f"stacked logistic layer over both models' logits ({len(self.labels)} labels)"
        return f"{self.kind} alone"

    def combine(
        self,
        lstm: np.ndarray | None,
        baseline: np.ndarray | None,
        offsets: np.ndarray | None = None,
    ) -> np.ndarray:
        """Combined probabilities; a model the kind does not use may be passed as None.
        `offsets` (`[papers, labels]`, from `YearPrior.offsets`) are added to the logits."""
        if self.kind != "stacked":
            scores = self._combine_probabilities(lstm, baseline)
            if offsets is None:
                return scores
            # Only the rows with an offset go through logit and back, so that a paper without
            # one scores the same whatever its batch-mates.
            shifted = np.flatnonzero(offsets.any(axis=1))
            scores = scores.copy()
            scores[shifted] = sigmoid(logit(scores[shifted]) + offsets[shifted])
            return scores
        assert lstm is not None and baseline is not None
        assert self.weights is not None and self.bias is not None
        # Row by row: a paper must score the same alone or in any batch, and BLAS may round a
        # matrix-matrix product differently from a vector-matrix one.
        features = stack_features(lstm, baseline)
        logits = np.zeros((len(features), len(self.labels)), dtype=np.float32)
        for row, paper in enumerate(features):
            logits[row] = paper @ self.weights
        logits += self.bias
        return sigmoid(logits if offsets is None else logits + offsets)

    def _combine_probabilities(
        self, lstm: np.ndarray | None, baseline: np.ndarray | None
    ) -> np.ndarray:
        """The probabilities of the kinds other than `stacked`, before any offset."""
        if self.kind == "lstm":
            return np.asarray(lstm, dtype=np.float32)
        if self.kind == "baseline":
            return np.asarray(baseline, dtype=np.float32)
        assert lstm is not None and baseline is not None
        w = np.float32(self.lstm_weight)
        return (w * lstm + (np.float32(1.0) - w) * baseline).astype(np.float32)

    def to_files(self) -> tuple[dict[str, object], bytes | None]:
        """combiner.json's document, and combiner.npz's bytes for a stacked combiner."""
        document = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "lstm_weight": self.lstm_weight,
            "labels": list(self.labels),
        }
        if self.kind != "stacked":
            return document, None
        buffer = io.BytesIO()
        np.savez_compressed(buffer, weights=self.weights, bias=self.bias)
        return document, buffer.getvalue()

    @classmethod
    def from_files(cls, document_bytes: bytes, arrays_bytes: bytes | None) -> Combiner:
        """Rebuild from `to_files`' output; raise ValueError naming what is wrong."""
        document = load_document(document_bytes, FORMAT_VERSION)
        kind, labels, weight = (document.get(k) for k in ("kind", "labels", "lstm_weight"))
        if not isinstance(labels, list) or not all(isinstance(code, str) for code in labels):
            raise ValueError("labels must be a list of label codes")
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            raise ValueError("lstm_weight must be a number")
        weights = bias = None
        if kind == "stacked":
            if arrays_bytes is None:
                raise ValueError("a stacked combiner needs its arrays file")
            arrays = load_arrays(arrays_bytes, ("weights", "bias"))
            weights = arrays["weights"].astype(np.float32)
            bias = arrays["bias"].astype(np.float32)
        return cls(str(kind), tuple(labels), float(weight), weights, bias)


def stack_features(lstm: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """The stacked layer's input: both models' logits side by side, `[papers, 2 · labels]`."""
    return np.concatenate([logit(lstm), logit(baseline)], axis=1)
