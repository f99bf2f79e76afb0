"""The benchmark's abstracts: real papers from the Kaggle sample CSV or the held-out test split."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from export.artifacts import TEST_SPLIT_FILE
from lambda_handler.__main__ import InputError
from lambda_handler.__main__ import read_papers as read_paper_file

REPO = Path(__file__).resolve().parents[1]
SAMPLE_ENV = "ARXIV_SAMPLE_CSV"
TEST_SPLIT = REPO / "artifacts" / TEST_SPLIT_FILE


@dataclass(frozen=True)
class Paper:
    """A title and an abstract, as a client sends them."""

    title: str
    abstract: str

    def to_dict(self) -> dict[str, str]:
        return {"title": self.title, "abstract": self.abstract}


def default_papers_path() -> Path:
    """$ARXIV_SAMPLE_CSV, else artifacts/test_split.jsonl.gz; SystemExit when neither exists."""
    candidates = [Path(os.environ[SAMPLE_ENV])] if os.environ.get(SAMPLE_ENV) else []
    candidates.append(TEST_SPLIT)
    for path in candidates:
        if path.is_file():
            return path
    raise SystemExit(
        f"no papers to benchmark: set {SAMPLE_ENV} to the Kaggle sample CSV, run train/run.py "
        f"(for {TEST_SPLIT.relative_to(REPO)}), or pass --papers"
    )


def read_papers(path: Path) -> list[Paper]:
    """Papers with a non-empty abstract from a Kaggle-format CSV or a JSONL file (.gz too)."""
    try:
        papers = [
            Paper(str(paper.fields.get("title") or ""), str(paper.fields.get("abstract")))
            for paper in read_paper_file(path)
            if isinstance(paper.fields.get("abstract"), str) and paper.fields["abstract"].strip()
        ]
    except InputError as error:
        raise SystemExit(f"error: {error}") from None
    if not papers:
        raise SystemExit(f"error: {path} holds no papers with an abstract")
    return papers
