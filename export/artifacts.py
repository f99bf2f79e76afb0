"""Read and validate what `train/run.py` wrote (see docs/model_format.md).

This is the schema of the artifacts folder: the training run writes its files under the names
defined here, and the export and `train/compare.py` read them back. Files that the model
directory holds too keep the name `lambda_handler.manifest` gives them there.
Every problem becomes an `ExportError` naming the file, so a broken training run is reported in
one line instead of a traceback from deep inside the conversion.
"""

from __future__ import annotations

import datetime
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export import ExportError
from lambda_handler.combiner import Combiner
from lambda_handler.labels import Label, LabelSet
from lambda_handler.manifest import (
    BASELINE_FILE,
    BASELINE_WEIGHTS_FILE,
    COMBINER_FILE,
    COMBINER_WEIGHTS_FILE,
    LABELS_FILE,
    TOKENIZER_FILE,
    YEAR_PRIOR_FILE,
)
from lambda_handler.model import ComponentError, parse_components
from lambda_handler.text import Tokenizer
from lambda_handler.tfidf import TfidfScorer, load_arrays
from lambda_handler.year_prior import YearPrior, parse_paper_date

KERAS_MODEL_FILE = "lstm.keras"
TEST_SPLIT_FILE = "test_split.jsonl.gz"
PREDICTIONS_FILE = "predictions.npz"
DATA_FILE = "data.json"
METRICS_FILE = "metrics.json"
MODELS = ("baseline", "lstm", "served")


@dataclass(frozen=True)
class Paper:
    """A held-out test paper: what the tokenizer reads, and its true labels."""

    title: str
    abstract: str
    labels: tuple[str, ...] = ()
    primary: str = ""  # the first category listed, which the label filter may have dropped
    date: datetime.date | None = None  # when the data has one

    @property
    def year(self) -> int | None:
        return None if self.date is None else self.date.year


@dataclass(frozen=True)
class Artifacts:
    """Everything the export needs from a training run, validated."""

    model_path: Path
    tokenizer: Tokenizer
    label_set: LabelSet
    papers: tuple[Paper, ...]
    training_data: dict[str, object]
    metrics: dict[str, dict[str, object]]
    # Written verbatim into the model directory: the baseline's, the combiner's and (when the
    # run has one) the year prior's files, by name.
    copied_files: dict[str, bytes]
    baseline: TfidfScorer
    combiner: Combiner
    predictions: dict[str, np.ndarray]  # training's test-split scores: lstm, baseline, served
    year_prior: YearPrior | None = None

    def offsets(self) -> np.ndarray | None:
        """The test papers' year offsets, as training added them to the served scores."""
        prior = self.year_prior
        return None if prior is None else prior.offsets([paper.year for paper in self.papers])

    @property
    def lstm_thresholds(self) -> np.ndarray:
        """The LSTM's own thresholds (its decision rule alone), for the Keras/ONNX parity gate."""
        return np.asarray(self.metrics["lstm"]["thresholds"], dtype=np.float32)

    @property
    def labels(self) -> tuple[Label, ...]:
        return self.label_set.labels

    @property
    def served_thresholds(self) -> np.ndarray:
        return np.asarray([label.threshold for label in self.labels], dtype=np.float32)


def load_artifacts(artifacts_dir: str | Path, reports_dir: str | Path) -> Artifacts:
    """Read `artifacts/` and `reports/metrics.json`, failing on the first missing or bad file."""
    artifacts_dir, reports_dir = Path(artifacts_dir), Path(reports_dir)
    if not artifacts_dir.is_dir():
        raise ExportError(f"artifacts directory {artifacts_dir} not found (run train/run.py first)")
    model_path = _existing(artifacts_dir / KERAS_MODEL_FILE)
    label_set = parse_labels(read_json(artifacts_dir / LABELS_FILE), artifacts_dir / LABELS_FILE)
    labels = label_set.labels
    papers = read_papers(artifacts_dir / TEST_SPLIT_FILE)
    metrics_document = read_json(reports_dir / METRICS_FILE)
    metrics = parse_metrics(metrics_document, reports_dir / METRICS_FILE)
    training_data = read_json(artifacts_dir / DATA_FILE)
    if metrics_document.get("data") != training_data:  # parse_metrics checked it is an object
        raise ExportError(
            f"{reports_dir / METRICS_FILE} is from another training run than {artifacts_dir} "
            f"(its data or run_id differ from {DATA_FILE}); pass the --reports of that run"
        )
    copied_files = read_files(artifacts_dir, (BASELINE_FILE, BASELINE_WEIGHTS_FILE, COMBINER_FILE))
    for optional in (COMBINER_WEIGHTS_FILE, YEAR_PRIOR_FILE):
        if (artifacts_dir / optional).is_file():
            copied_files.update(read_files(artifacts_dir, (optional,)))
    try:
        baseline, combiner, year_prior = parse_components(copied_files)
    except ComponentError as error:
        raise ExportError(f"{artifacts_dir / error.files[0]}: {error}") from None
    codes = tuple(label.code for label in labels)
    if (
        combiner.labels != codes
        or baseline.n_labels != len(codes)
        or (year_prior is not None and year_prior.labels != codes)
    ):
        raise ExportError(
            f"{artifacts_dir}: the combiner's, the baseline's or the year prior's labels "
            f"differ from {LABELS_FILE}"
        )
    predictions = read_predictions(artifacts_dir / PREDICTIONS_FILE, (len(papers), len(labels)))
    thresholds = metrics["lstm"].get("thresholds")
    if (
        not isinstance(thresholds, list)
        or len(thresholds) != len(labels)
        or not all(type(t) in (int, float) and 0 <= t <= 1 for t in thresholds)
    ):
        raise ExportError(
            f"{reports_dir / METRICS_FILE}: models.lstm.thresholds must be {len(labels)} numbers "
            "from 0 to 1, one per label"
        )
    return Artifacts(
        model_path=model_path,
        tokenizer=read_tokenizer(artifacts_dir / TOKENIZER_FILE),
        label_set=label_set,
        papers=papers,
        training_data=parse_training_data(training_data, artifacts_dir / DATA_FILE),
        metrics=metrics,
        copied_files=copied_files,
        baseline=baseline,
        combiner=combiner,
        predictions=predictions,
        year_prior=year_prior,
    )


def read_files(directory: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of each named training output, in order."""
    return {name: _existing(directory / name).read_bytes() for name in names}


def read_predictions(path: Path, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Training's test-split scores of the LSTM, the baseline and the served system."""
    names = ("lstm_test", "baseline_test", "served_test")
    try:
        arrays = load_arrays(_existing(path).read_bytes(), names)
    except ValueError as error:
        raise ExportError(f"{path}: {error}") from None
    for name, array in arrays.items():
        if array.shape != shape:
            raise ExportError(f"{path}: {name} has shape {array.shape}, expected {shape}")
    return {name.removesuffix("_test"): array for name, array in arrays.items()}


def _existing(path: Path) -> Path:
    """`path` itself, or an `ExportError` saying which training output is missing."""
    if not path.is_file():
        raise ExportError(f"{path} not found (run train/run.py first)")
    return path


def read_json(path: Path) -> object:
    """Parsed JSON of `path`, or a one-line error for a missing or malformed file."""
    try:
        return json.loads(_existing(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ExportError(f"{path} is not UTF-8 text") from None
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


def parse_labels(data: object, path: Path) -> LabelSet:
    """The served labels in output order and their rules, from training's `labels.json`."""
    try:
        return LabelSet.from_document(data)
    except ValueError as error:
        raise ExportError(f"{path} {error}") from None


def read_papers(path: Path) -> tuple[Paper, ...]:
    """Titles and abstracts of the held-out test split (gzip JSON lines)."""
    papers = []
    try:
        with gzip.open(_existing(path), "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                papers.append(_paper(line, f"{path} line {number}"))
    except (OSError, EOFError) as error:
        raise ExportError(f"{path} is not a readable gzip file: {error}") from None
    except UnicodeDecodeError:
        raise ExportError(f"{path} is not UTF-8 text") from None
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
    title, abstract, labels = record.get("title"), record.get("abstract"), record.get("labels")
    if not isinstance(title, str) or not isinstance(abstract, str):
        raise ExportError(f"{where}: title and abstract must be strings")
    if not isinstance(labels, list) or not all(isinstance(code, str) for code in labels):
        raise ExportError(f"{where}: labels must be a list of label codes")
    primary, date = record.get("primary"), record.get("date")
    if not isinstance(primary, str | None):
        raise ExportError(f"{where}: primary must be a category code")
    day = parse_paper_date(date) if isinstance(date, str) else None
    if date is not None and day is None:
        raise ExportError(
            f"{where}: date must be an ISO date such as 2019-05-01 (or a year such as 2019), "
            "or null"
        )
    return Paper(title, abstract, tuple(labels), primary or "", day)


def parse_training_data(data: object, path: Path) -> dict[str, object]:
    """Each training file's name, sha256 and size, and the run's row counts, for the manifest."""
    if not isinstance(data, dict):
        raise ExportError(f"{path} must hold a JSON object")
    files, counts = data.get("files"), data.get("counts")
    if not isinstance(files, list) or not files:
        raise ExportError(f"{path}: files must list the training data files")
    described = []
    for entry in files:
        sha256 = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(sha256, str) or not sha256:
            raise ExportError(f"{path}: every file needs a non-empty sha256")
        described.append(
            {
                "name": Path(str(entry.get("path"))).name,
                "sha256": sha256,
                "bytes": entry.get("bytes"),
            }
        )
    if not isinstance(counts, dict):
        raise ExportError(f"{path}: counts must be an object of row counts")
    return {"files": described, "rows": counts}


def parse_metrics(data: object, path: Path) -> dict[str, dict[str, object]]:
    """Test metrics of both models from `reports/metrics.json`."""
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ExportError(f"{path}: expected an object with a 'models' object")
    for name in MODELS:
        if not isinstance(models.get(name), dict):
            raise ExportError(f"{path}: models.{name} is missing")
    return {name: models[name] for name in MODELS}
