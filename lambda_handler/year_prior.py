"""A paper's year as evidence about its categories, added to the served system's logits.

arXiv's categories have lifetimes: bare `astro-ph` ends when the archive was split (2009), q-fin
starts in 2008, eess in 2017, and every category's share of papers drifts. For a paper whose year
is known and covered, label l's logit gains `logit(share of l among that year's training papers)
- logit(share of l among all training papers)`: Bayes' rule for a year that tells nothing more
about the words, which is how the models read them. A paper without a year, or from a year the
table does not cover, is scored as before. The table is fitted in `train/year_prior.py`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from lambda_handler.tfidf import load_document

FORMAT_VERSION = 1
REDUCED_PRECISION = re.compile(r"[0-9]{4}(-[0-9]{2})?")  # 2019, 2019-05
EARLIEST_DATE = date(1900, 1, 1)  # a `date` outside EARLIEST_DATE..tomorrow is not a paper's date


@dataclass(frozen=True, eq=False)
class YearPrior:
    """Per-year logit shifts of each label, for the years `first_year` to `last_year`."""

    labels: tuple[str, ...]
    first_year: int
    shifts: np.ndarray  # float32 [years, labels]

    def __post_init__(self) -> None:
        if self.shifts.ndim != 2 or self.shifts.shape[1] != len(self.labels):
            raise ValueError(
                f"shifts of shape {self.shifts.shape} do not fit {len(self.labels)} labels"
            )
        if len(self.shifts) == 0 or not np.all(np.isfinite(self.shifts)):
            raise ValueError("shifts must hold at least one year and be finite")

    @property
    def last_year(self) -> int:
        return self.first_year + len(self.shifts) - 1

    def offsets(self, years: Sequence[int | None]) -> np.ndarray | None:
        """Logit offsets `[papers, labels]` for papers of these years (None: unknown), or None
        when no paper's year is covered, so that callers skip the addition."""
        first, last = self.first_year, self.last_year
        covered = [
            (i, year - first)
            for i, year in enumerate(years)
            if year is not None and first <= year <= last
        ]
        if not covered:
            return None
        rows, table_rows = zip(*covered, strict=True)
        offsets = np.zeros((len(years), len(self.labels)), dtype=np.float32)
        offsets[list(rows)] = self.shifts[list(table_rows)]
        return offsets

    def to_document(self) -> dict[str, object]:
        """year_prior.json's document: plain numbers, so that it diffs and reads like the rest."""
        return {
            "format_version": FORMAT_VERSION,
            "labels": list(self.labels),
            "first_year": self.first_year,
            "last_year": self.last_year,
            # float32's shortest repr, which reads back to the same float32
            "shifts": [[float(str(value)) for value in row] for row in self.shifts],
        }

    @classmethod
    def from_bytes(cls, raw: bytes) -> YearPrior:
        """Rebuild from year_prior.json's bytes; raise ValueError naming what is wrong."""
        document = load_document(raw, FORMAT_VERSION)
        labels, first, last = (document.get(k) for k in ("labels", "first_year", "last_year"))
        if not isinstance(labels, list) or not all(isinstance(code, str) for code in labels):
            raise ValueError("labels must be a list of label codes")
        if type(first) is not int or type(last) is not int or last < first:
            raise ValueError("first_year and last_year must be integers, first ≤ last")
        try:
            shifts = np.array(document.get("shifts"), dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError("shifts must be a table of numbers, one row per year") from None
        if shifts.ndim != 2 or len(shifts) != last - first + 1:
            raise ValueError(
                f"shifts must have one row per year {first}..{last} ({last - first + 1}), "
                f"got shape {shifts.shape}"
            )
        return cls(tuple(labels), first, shifts)


def parse_paper_date(raw: str) -> date | None:
    """A paper's date from an ISO date (`2019-05-01`, or a date and time), or from ISO's reduced
    precision, a year (`2019`) or a year and month (`2019-05`), read as their first day, since
    catalogues often hold no more and the year prior reads only the year. None when it does
    not parse, has anything after it, is an ISO week date (`2019-W01` is 2018-12-31, so it
    would lend its paper the wrong year), or lies outside EARLIEST_DATE..tomorrow (UTC).
    Training files, the test split, the API, bulk runs and the CLI all read dates with it."""
    text = raw.strip()
    if "W" in text.upper():
        return None
    try:
        if REDUCED_PRECISION.fullmatch(text):
            value: date = date(int(text[:4]), int(text[5:] or 1), 1)
        elif len(text) <= 10:
            value = date.fromisoformat(text)
        else:
            value = datetime.fromisoformat(text)
    except ValueError:
        return None
    day = value.date() if isinstance(value, datetime) else value
    latest = datetime.now(UTC).date() + timedelta(days=1)
    return day if EARLIEST_DATE <= day <= latest else None
