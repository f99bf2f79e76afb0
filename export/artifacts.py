"""Read and validate what `train/run.py` wrote (see docs/model_format.md).

Every problem becomes an `ExportError` naming the file, so a broken training run is reported in
one line instead of a traceback from deep inside the conversion.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from export import ExportError
from lambda_handler.text import Tokenizer

LABELS_FORMAT_VERSION = 1
MODEL_FILE = "lstm.keras"
TOKENIZER_FILE = "tokenizer.json"
LABELS_FILE = "labels.json"
TEST_SPLIT_FILE = "test_split.jsonl.gz"
DATA_FILE = "data.json"
METRICS_FILE = "metrics.json"
MODELS = ("baseline", "lstm")


@dataclass(frozen=True)
class Label:
    """One output of the model: arXiv code, human-readable name, decision threshold, support."""

    code: str
    name: str
    threshold: float
    support: int


@dataclass(frozen=True)
class Paper:
    """A held-out test paper, as much of it as the tokenizer reads."""

    title: str
    abstract: str


@dataclass(frozen=True)
class Artifacts:
    """Everything the export needs from a training run, validated."""

    model_path: Path
    tokenizer: Tokenizer
    labels: tuple[Label, ...]
    papers: tuple[Paper, ...]
    training_data: dict[str, object]
    metrics: dict[str, dict[str, object]]


def load_artifacts(artifacts_dir: str | Path, reports_dir: str | Path) -> Artifacts:
    """Read `artifacts/` and `reports/metrics.json`, failing on the first missing or bad file."""
    artifacts_dir, reports_dir = Path(artifacts_dir), Path(reports_dir)
    if not artifacts_dir.is_dir():
        raise ExportError(f"artifacts directory {artifacts_dir} not found (run train/run.py first)")
    model_path = _existing(artifacts_dir / MODEL_FILE)
    return Artifacts(
        model_path=model_path,
        tokenizer=read_tokenizer(artifacts_dir / TOKENIZER_FILE),
        labels=parse_labels(read_json(artifacts_dir / LABELS_FILE), artifacts_dir / LABELS_FILE),
        papers=read_papers(artifacts_dir / TEST_SPLIT_FILE),
        training_data=parse_training_data(
            read_json(artifacts_dir / DATA_FILE), artifacts_dir / DATA_FILE
        ),
        metrics=parse_metrics(read_json(reports_dir / METRICS_FILE), reports_dir / METRICS_FILE),
    )


def _existing(path: Path) -> Path:
    """`path` itself, or an `ExportError` saying which training output is missing."""
    if not path.is_file():
        raise ExportError(f"{path} not found (run train/run.py first)")
    return path


def read_json(path: Path) -> object:
    """Parsed JSON of `path`, or a one-line error for a missing or malformed file."""
    text = _existing(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ExportError(f"{path} is not valid JSON: {error}") from None


def read_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer saved by training, refused when its settings are not what serving runs."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ExportError(f"{path} must hold a JSON object")
    try:
        return Tokenizer.from_dict(data)
    except ValueError as error:
        raise ExportError(f"{path}: {error}") from None


def parse_labels(data: object, path: Path) -> tuple[Label, ...]:
    """Labels of the LSTM in output order, from training's `labels.json`."""
    if not isinstance(data, dict) or data.get("format_version") != LABELS_FORMAT_VERSION:
        raise ExportError(f"{path}: expected an object with format_version {LABELS_FORMAT_VERSION}")
    if data.get("model") != "lstm":
        raise ExportError(f"{path} describes model {data.get('model')!r}, expected 'lstm'")
    entries = data.get("labels")
    if not isinstance(entries, list) or not entries:
        raise ExportError(f"{path}: labels must be a non-empty list")
    labels = tuple(_label(entry, f"{path}: labels[{i}]") for i, entry in enumerate(entries))
    if len({label.code for label in labels}) != len(labels):
        raise ExportError(f"{path}: label codes are not unique")
    return labels


def _label(entry: object, where: str) -> Label:
    """One validated label entry; `where` locates it in error messages."""
    if not isinstance(entry, dict):
        raise ExportError(f"{where} must be an object")
    code, name, threshold, support = (
        entry.get(key) for key in ("code", "name", "threshold", "support")
    )
    for key, value in (("code", code), ("name", name)):
        if not isinstance(value, str) or not value:
            raise ExportError(f"{where}.{key} must be a non-empty string")
    if not _is_number(threshold) or not 0 <= threshold <= 1:
        raise ExportError(f"{where}.threshold must be a number in [0, 1], got {threshold!r}")
    if not isinstance(support, int) or isinstance(support, bool) or support < 0:
        raise ExportError(f"{where}.support must be a non-negative integer, got {support!r}")
    return Label(code=code, name=name, threshold=float(threshold), support=support)


def _is_number(value: object) -> bool:
    """True for JSON numbers (bool is an int subclass in Python, but not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_papers(path: Path) -> tuple[Paper, ...]:
    """Titles and abstracts of the held-out test split (gzip JSON lines)."""
    papers = []
    try:
        with gzip.open(_existing(path), "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                papers.append(_paper(line, f"{path} line {number}"))
    except (OSError, EOFError) as error:
        raise ExportError(f"{path} is not a readable gzip file: {error}") from None
    if not papers:
        raise ExportError(f"{path} holds no papers")
    return tuple(papers)


def _paper(line: str, where: str) -> Paper:
    """One test paper from a JSON line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ExportError(f"{where} is not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise ExportError(f"{where} must be a JSON object")
    title, abstract = record.get("title"), record.get("abstract")
    if not isinstance(title, str) or not isinstance(abstract, str):
        raise ExportError(f"{where}: title and abstract must be strings")
    return Paper(title=title, abstract=abstract)


def parse_training_data(data: object, path: Path) -> dict[str, object]:
    """The training data's sha256 and row counts (`counts`), as the manifest records them."""
    if not isinstance(data, dict):
        raise ExportError(f"{path} must hold a JSON object")
    sha256, counts = data.get("sha256"), data.get("counts")
    if not isinstance(sha256, str) or not sha256:
        raise ExportError(f"{path}: sha256 must be a non-empty string")
    if not isinstance(counts, dict):
        raise ExportError(f"{path}: counts must be an object of row counts")
    return {"sha256": sha256, "rows": counts}


def parse_metrics(data: object, path: Path) -> dict[str, dict[str, object]]:
    """Test metrics of both models from `reports/metrics.json`."""
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ExportError(f"{path}: expected an object with a 'models' object")
    for name in MODELS:
        if not isinstance(models.get(name), dict):
            raise ExportError(f"{path}: models.{name} is missing")
    return {name: models[name] for name in MODELS}
