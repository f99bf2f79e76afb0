"""Fit the year prior (`lambda_handler/year_prior.py`) on the training papers' labels and years.

Each year's label shares are shrunk toward the overall ones by `smoothing` pseudo-papers, so a
year with few papers shifts little. Only years up to `until` are fitted: later papers of the
shared data come from field-specific daily listings (astro-ph, math.NT, math.QA/RT; the CS ones
carry no date), so their label mix is the sources' choice, not arXiv's, and would push a dated
2026 CS paper away from CS. Papers of later years, or without a date, are scored without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lambda_handler.tfidf import logit
from lambda_handler.year_prior import YearPrior


def fit(
    labels: Sequence[str],
    targets: np.ndarray,
    years: Sequence[int | None],
    until: int,
    smoothing: float,
) -> YearPrior | None:
    """The year prior of these training papers (`targets` `[papers, labels]`), or None when
    none of them has a year up to `until`."""
    known = np.array([year is not None and year <= until for year in years])
    if not known.any():
        return None
    dated = np.array([year for year, ok in zip(years, known, strict=True) if ok])
    papers = len(targets)
    overall = (targets.sum(axis=0, dtype=np.float64) + 1.0) / (papers + 2.0)
    first = int(dated.min())
    shifts = np.zeros((until - first + 1, len(labels)), dtype=np.float32)
    counts = targets[known]
    for row, year in enumerate(range(first, until + 1)):
        of_year = counts[dated == year]
        share = (of_year.sum(axis=0, dtype=np.float64) + smoothing * overall) / (
            len(of_year) + smoothing
        )
        shifts[row] = logit(share) - logit(overall)
    return YearPrior(tuple(labels), first, shifts)
