"""labels.json: the served labels in output order, their thresholds, and the low-confidence rule.

One schema for everyone who reads or writes the file: training writes it
(`train/pipeline.py`), the export checks it and copies it into the model directory, and the
function reads it. The format is described in docs/model_format.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

FORMAT_VERSION = 1


def float32_decimal(value: float) -> float:
    """The shortest decimal that reads back as `value`'s float32 (0.32, not 0.3199999928474426):
    how a threshold, served as float32, is written whatever precision it was given in."""
    return float(str(np.float32(value)))


@dataclass(frozen=True)
class Label:
    """One arXiv category in model output order, with its tuned decision threshold."""

    code: str
    name: str
    threshold: float
    archive: str = ""
    support: int = 0  # training papers carrying the label

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "name": self.name,
            "archive": self.archive,
            "threshold": float32_decimal(self.threshold),
            "support": self.support,
        }


@dataclass(frozen=True)
class LabelSet:
    """The labels and the rules that turn scores into an answer.

    `low_confidence_below` is a top score under which the answer is flagged as doubtful; it is
    None when validation did not show that the top score tells right from wrong top labels.
    `low_confidence` keeps the validation figures behind that choice.
    """

    labels: tuple[Label, ...]
    decision_rule: dict[str, object] = field(default_factory=dict)
    low_confidence_below: float | None = None
    low_confidence: dict[str, object] = field(default_factory=dict)

    def to_document(self) -> dict[str, object]:
        return {
            "format_version": FORMAT_VERSION,
            "decision_rule": self.decision_rule,
            "low_confidence": {**self.low_confidence, "top_score_below": self.low_confidence_below},
            "labels": [label.to_dict() for label in self.labels],
        }

    @classmethod
    def from_bytes(cls, raw: bytes) -> LabelSet:
        """Parse labels.json's bytes; ValueError says what is wrong."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as error:
            raise ValueError(f"is not valid JSON ({error})") from None
        return cls.from_document(data)

    @classmethod
    def from_document(cls, data: object) -> LabelSet:
        """Validate a parsed labels.json; ValueError names the offending entry."""
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"must be an object with format_version {FORMAT_VERSION}")
        entries = data.get("labels")
        if not isinstance(entries, list) or not entries:
            raise ValueError("must list at least one label")
        labels = tuple(_label(entry, index) for index, entry in enumerate(entries))
        if len({label.code for label in labels}) != len(labels):
            raise ValueError("lists a label code twice")
        rule = data.get("decision_rule", {})
        if not isinstance(rule, dict):
            raise ValueError("decision_rule must be an object")
        low = data.get("low_confidence", {})
        if not isinstance(low, dict):
            raise ValueError("low_confidence must be an object")
        below = low.get("top_score_below")
        if below is not None and not (_is_number(below) and 0.0 < below < 1.0):
            raise ValueError("low_confidence.top_score_below must be null or a number in (0, 1)")
        figures = {key: value for key, value in low.items() if key != "top_score_below"}
        return cls(labels, rule, None if below is None else float(below), figures)


def _label(entry: object, index: int) -> Label:
    if not isinstance(entry, dict):
        raise ValueError(f"label {index} is not an object")
    code, name, threshold = entry.get("code"), entry.get("name"), entry.get("threshold")
    archive, support = entry.get("archive", ""), entry.get("support", 0)
    if not isinstance(code, str) or not code or not isinstance(name, str) or not name:
        raise ValueError(f"label {index} needs a non-empty string 'code' and 'name'")
    if not isinstance(archive, str):
        raise ValueError(f"archive of {code} must be a string")
    if not _is_number(threshold) or not 0.0 <= threshold <= 1.0:  # also refuses NaN and inf
        raise ValueError(f"threshold of {code} must be a number in [0, 1]")
    if not isinstance(support, int) or isinstance(support, bool) or support < 0:
        raise ValueError(f"support of {code} must be a non-negative integer, got {support!r}")
    return Label(code, name, float(threshold), archive, support)


def _is_number(value: object) -> bool:
    """True for JSON numbers (bool is an int subclass in Python, but not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
