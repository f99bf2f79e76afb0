"""The export: training artifacts in, a verified model directory published atomically out.

Nothing touches the output directory until the ONNX graph has passed its checks and the
parity gate; the files are then written to a staging directory, verified from disk, and
swapped into place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from export import ExportError
from export.artifacts import LABELS_FORMAT_VERSION, Artifacts, Label
from export.convert import (
    keras_predictor,
    library_versions,
    load_keras_model,
    serving_function,
    to_onnx,
)
from export.graph import MIN_OPSET, check_graph, onnx_predictor, onnx_session, opset_version
from export.manifest import build_manifest, summarize_metrics, verify_model_dir
from export.parity import BATCH_SIZE, check_parity, length_batches, measure_parity
from lambda_handler.files import staged_directory, write_bytes_atomic, write_json_atomic
from lambda_handler.manifest import LABELS_FILE, MANIFEST_NAME, MODEL_FILE, TOKENIZER_FILE
from lambda_handler.text import Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """What an export produced: where, and which model version."""

    out: Path
    version: str


def export_model(
    artifacts: Artifacts,
    out: Path,
    *,
    opset: int = MIN_OPSET,
    batch_size: int = BATCH_SIZE,
) -> ExportResult:
    """Convert, check and gate the trained LSTM, then publish the model directory at `out`."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"output {out} exists and is not a directory")
    n_labels = len(artifacts.labels)
    model = load_keras_model(artifacts.model_path, n_labels, artifacts.tokenizer.size)
    onnx_model = to_onnx(serving_function(model), opset)
    check_graph(onnx_model, n_labels)
    onnx_bytes, opset_used = onnx_model.SerializeToString(), opset_version(onnx_model)
    logger.info(
        "converted %s to ONNX opset %d (%.1f MB)",
        artifacts.model_path,
        opset_used,
        len(onnx_bytes) / 1e6,
    )

    sequences = [artifacts.tokenizer.encode(p.title, p.abstract) for p in artifacts.papers]
    onnx_predict = onnx_predictor(onnx_session(onnx_bytes))
    thresholds = [label.threshold for label in artifacts.labels]
    parity = measure_parity(keras_predictor(model), onnx_predict, sequences, thresholds, batch_size)
    logger.info(
        "parity on %d papers (+%d alone): max |Δprob| %.1e, label sets agree for %.2f%%",
        parity.papers,
        parity.single_papers,
        parity.max_abs_diff,
        100 * parity.label_set_agreement,
    )
    check_parity(parity)

    sample = next(length_batches([sequence for sequence in sequences if sequence], batch_size))
    created = datetime.now(UTC)

    with staged_directory(out) as staging:
        write_bytes_atomic(staging / MODEL_FILE, onnx_bytes)
        artifacts.tokenizer.save(staging / TOKENIZER_FILE)
        write_json_atomic(staging / LABELS_FILE, labels_document(artifacts.labels))
        manifest = build_manifest(
            staging,
            created=created,
            opset=opset_used,
            training_data=artifacts.training_data,
            metrics=manifest_metrics(artifacts),
            parity=parity.to_dict(),
            versions=library_versions(),
        )
        write_json_atomic(staging / MANIFEST_NAME, manifest)
        verify_staged(staging, artifacts.tokenizer, sample, onnx_predict(sample))
    return ExportResult(out=out, version=manifest["model"]["version"])


def labels_document(labels: Sequence[Label]) -> dict[str, object]:
    """The model directory's `labels.json`: labels in output order (docs/model_format.md)."""
    return {"format_version": LABELS_FORMAT_VERSION, "labels": [asdict(label) for label in labels]}


def manifest_metrics(artifacts: Artifacts) -> dict[str, object]:
    """Both models' test metrics without their per-label tables."""
    codes = frozenset(label.code for label in artifacts.labels)
    return {name: summarize_metrics(value, codes) for name, value in artifacts.metrics.items()}


def verify_staged(
    staging: Path, tokenizer: Tokenizer, sample: np.ndarray, expected: np.ndarray
) -> None:
    """Re-read the staged files from disk: hashes, tokenizer, and the ONNX model's output."""
    verify_model_dir(staging)
    if Tokenizer.load(staging / TOKENIZER_FILE) != tokenizer:
        raise ExportError(f"staged {TOKENIZER_FILE} does not reload to the training tokenizer")
    staged = onnx_predictor(onnx_session(staging / MODEL_FILE))
    if not np.allclose(staged(sample), expected, rtol=0, atol=1e-6):
        raise ExportError(f"staged {MODEL_FILE} does not reproduce the checked model")
