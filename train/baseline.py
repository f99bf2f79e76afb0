"""TF-IDF + one-vs-rest logistic regression, fitted with scikit-learn and scored with numpy.

It reads the same content words (`lambda_handler.text.words`) as the LSTM, plus word bigrams.
After fitting, the coefficients are pruned and rounded into a `lambda_handler.tfidf.TfidfScorer`,
and every prediction (validation, test, the report) comes from that scorer, exactly as the
Lambda function computes it. `fidelity` measures what pruning and float16 cost against
scikit-learn's own `predict_proba`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from export.artifacts import BASELINE_FILE, BASELINE_WEIGHTS_FILE
from lambda_handler.files import write_bytes_atomic, write_json_atomic
from lambda_handler.tfidf import DENSE_SHARE, TfidfScorer, ngrams


@dataclass(frozen=True)
class BaselineConfig:
    """Feature, regularisation and storage settings of the baseline."""

    max_features: int = 150_000
    max_ngram: int = 2
    min_df: int = 2
    C: float = 4.0  # best validation micro-F1 of {4, 8, 16} on 2025-26 data, of {2, 4, 8} on both
    prune_below: float = 0.1  # coefficients with smaller |w| are dropped from the served model
    dense_share: float = DENSE_SHARE  # features with weights for this share of labels: dense rows

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class BaselineModel:
    """The estimator: `fit`, `predict_proba`, `save`, `load` (scikit-learn's shape)."""

    config: BaselineConfig = field(default_factory=BaselineConfig)
    n_jobs: int = 2
    scorer: TfidfScorer | None = None
    _sklearn: tuple[TfidfVectorizer, list[LogisticRegression]] | None = None

    def fit(
        self,
        documents: list[list[str]],
        targets: np.ndarray,
        validation: tuple[list[list[str]], np.ndarray] | None = None,
    ) -> BaselineModel:
        """Fit TF-IDF (sublinear tf, l2) and one liblinear logistic regression per label.

        `validation` is accepted for the common estimator shape and not used. The labels are
        fitted one by one rather than through `OneVsRestClassifier`, which scored as if its
        columns were shuffled on the 150-label, two-file data (scikit-learn 1.9.1).
        """
        vectorizer = TfidfVectorizer(
            analyzer=lambda words: ngrams(words, self.config.max_ngram),
            max_features=self.config.max_features,
            min_df=self.config.min_df,
            sublinear_tf=True,
            dtype=np.float32,
        )
        features = vectorizer.fit_transform(documents)
        features.sort_indices()  # workers get a read-only memmap and must not sort it in place
        estimators = Parallel(n_jobs=self.n_jobs)(
            delayed(fit_label)(features, targets[:, j], self.config.C)
            for j in range(targets.shape[1])
        )
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        coef = np.vstack([estimator.coef_ for estimator in estimators])
        intercept = np.concatenate([estimator.intercept_ for estimator in estimators])
        self.scorer = TfidfScorer.from_dense(
            terms,
            self.config.max_ngram,
            vectorizer.idf_,
            coef,
            intercept,
            prune_below=self.config.prune_below,
            dense_share=self.config.dense_share,
        )
        self._sklearn = (vectorizer, estimators)
        return self

    def predict_proba(self, documents: list[list[str]]) -> np.ndarray:
        """Per-label probabilities from the stored (pruned, float16) weights."""
        return self._fitted().predict_proba(documents)

    def sklearn_predict_proba(self, documents: list[list[str]]) -> np.ndarray:
        """scikit-learn's own probabilities, before pruning (available right after `fit`)."""
        if self._sklearn is None:
            raise RuntimeError("scikit-learn's model is only kept in memory after fit()")
        vectorizer, estimators = self._sklearn
        features = vectorizer.transform(documents)
        columns = [estimator.predict_proba(features)[:, 1] for estimator in estimators]
        return np.stack(columns, axis=1).astype(np.float32)

    def fidelity(self, documents: list[list[str]]) -> dict[str, float]:
        """Size and score error of the stored weights against scikit-learn's, on `documents`."""
        scorer = self._fitted()
        exact, served = self.sklearn_predict_proba(documents), scorer.predict_proba(documents)
        dense = scorer.idf.size * scorer.n_labels
        return {
            "weights_kept": scorer.n_weights,
            "weights_dense": int(dense),
            "kept_fraction": float(scorer.n_weights / dense),
            "dense_rows": len(scorer.dense_features),
            "max_abs_diff": float(np.max(np.abs(exact - served))),
            "mean_abs_diff": float(np.mean(np.abs(exact - served))),
            "top_label_agreement": float(np.mean(exact.argmax(1) == served.argmax(1))),
            "papers": len(documents),
        }

    def save(self, directory: Path) -> None:
        """Write `baseline.json` (vocabulary, settings) and `baseline.npz` (arrays), atomically."""
        document, weights = self._fitted().to_files()
        document["config"] = self.config.to_dict()
        write_json_atomic(directory / BASELINE_FILE, document)
        write_bytes_atomic(directory / BASELINE_WEIGHTS_FILE, weights)

    @classmethod
    def load(cls, directory: Path) -> BaselineModel:
        """Read what `save` wrote (numpy only; scikit-learn is not needed to score)."""
        raw = (directory / BASELINE_FILE).read_bytes()
        scorer = TfidfScorer.from_files(raw, (directory / BASELINE_WEIGHTS_FILE).read_bytes())
        config = BaselineConfig(**json.loads(raw)["config"])
        return cls(config=config, scorer=scorer)

    def _fitted(self) -> TfidfScorer:
        if self.scorer is None:
            raise RuntimeError("the baseline is not fitted")
        return self.scorer


def fit_label(features: object, positives: np.ndarray, C: float) -> LogisticRegression:
    """One label's liblinear logistic regression (positive class 1). A label that every
    training paper carries (or none) has nothing to learn: it gets a constant score, the
    smoothed share of papers carrying it, which liblinear would refuse to fit."""
    classifier = LogisticRegression(C=C, solver="liblinear", max_iter=1000)
    labels = positives.astype(np.int8)
    if labels.min() == labels.max():
        share = (labels.sum() + 0.5) / (len(labels) + 1.0)
        classifier.classes_ = np.array([0, 1], dtype=np.int8)
        classifier.coef_ = np.zeros((1, features.shape[1]))  # type: ignore[attr-defined]
        classifier.intercept_ = np.array([np.log(share / (1.0 - share))])
        return classifier
    return classifier.fit(features, labels)
