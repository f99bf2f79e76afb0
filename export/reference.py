"""The export's reference sample: real test papers and the served scores that the end-to-end
gate verified for them, so that the built Lambda package, on its own Python, onnxruntime and
numpy, can be held to what the export checked (tests/test_infra_build.py).

One gzipped JSON file, `reports/served_reference.json.gz` by default: this module is its only
reader and writer. Standard library and numpy only.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lambda_handler.files import write_bytes_atomic

REFERENCE_FILE = "served_reference.json.gz"
REFERENCE_PAPERS = 512
FORMAT_VERSION = 2  # 2: each paper carries its date (null when unknown)
# Scores are stored to 7 decimals (off by at most 5e-8, far below the package test's 1e-5):
# a third of the size of full float32 digits.
SCORE_DECIMALS = 7


class ReferenceError(ValueError):
    """A reference file that is missing, malformed or inconsistent; one line for the user."""


def _paper(record: dict[str, object]) -> tuple[str, str, str | None]:
    """One reference paper as (title, abstract, date or None), its fields' types checked."""
    title, abstract, date = record["title"], record["abstract"], record["date"]
    if not (isinstance(title, str) and isinstance(abstract, str)):
        raise TypeError("a paper's title and abstract must be strings")
    if not isinstance(date, str | None):
        raise TypeError("a paper's date must be a string or null")
    return title, abstract, date


@dataclass(frozen=True)
class Reference:
    """Papers, in the order and batches the gate scored them, with the function's answers."""

    model_version: str
    labels: tuple[str, ...]  # score columns
    batch_size: int  # papers per Classifier.predict call, as in one /classify request
    papers: tuple[tuple[str, str, str | None], ...]  # (title, abstract, ISO date or None)
    scores: np.ndarray  # [papers, labels]
    label_sets: tuple[tuple[str, ...], ...]  # the function's answer with top_k = all labels

    def __post_init__(self) -> None:
        if self.scores.shape != (len(self.papers), len(self.labels)):
            raise ReferenceError(
                f"reference scores have shape {self.scores.shape}, expected "
                f"({len(self.papers)}, {len(self.labels)})"
            )
        if len(self.label_sets) != len(self.papers):
            raise ReferenceError(
                f"reference has {len(self.label_sets)} label sets for {len(self.papers)} papers"
            )
        if self.batch_size < 1:
            raise ReferenceError(f"reference batch size must be >= 1, got {self.batch_size}")

    def batches(self) -> list[range]:
        """Row ranges of the batches the gate ran, in order."""
        size = self.batch_size
        return [range(i, min(i + size, len(self.papers))) for i in range(0, len(self.papers), size)]

    def save(self, path: Path) -> None:
        """Write atomically, with scores rounded to SCORE_DECIMALS."""
        document = {
            "format_version": FORMAT_VERSION,
            "model_version": self.model_version,
            "labels": list(self.labels),
            "batch_size": self.batch_size,
            "papers": [
                {"title": title, "abstract": abstract, "date": date}
                for title, abstract, date in self.papers
            ],
            "scores": np.round(self.scores.astype(np.float64), SCORE_DECIMALS).tolist(),
            "label_sets": [list(codes) for codes in self.label_sets],
        }
        raw = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        write_bytes_atomic(path, gzip.compress(raw, compresslevel=9, mtime=0))

    @classmethod
    def load(cls, path: Path) -> Reference:
        try:
            document = json.loads(gzip.decompress(path.read_bytes()))
        except FileNotFoundError:
            raise ReferenceError(f"no reference file {path}: run python export/run.py") from None
        except (OSError, EOFError, ValueError) as error:
            raise ReferenceError(f"{path} is not gzipped JSON: {error}") from None
        if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
            raise ReferenceError(f"{path} is not a format {FORMAT_VERSION} reference file")
        try:
            return cls(
                model_version=str(document["model_version"]),
                labels=tuple(document["labels"]),
                batch_size=int(document["batch_size"]),
                papers=tuple(_paper(p) for p in document["papers"]),
                scores=np.asarray(document["scores"], dtype=np.float64).reshape(
                    len(document["papers"]), len(document["labels"])
                ),
                label_sets=tuple(tuple(codes) for codes in document["label_sets"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ReferenceError(f"{path} is malformed: {type(error).__name__}: {error}") from None
