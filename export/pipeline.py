"""The export: training artifacts in, a verified model directory published atomically out.

Nothing touches the output directory until the fp32 ONNX graph has passed its checks and the
Keras parity gate, and the int8 graph the quantization gate; the files are then written to a
staging directory, loaded by the function's own `Classifier`, held to training's label sets
(the end-to-end gate), and swapped into place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from export import ExportError
from export.artifacts import Artifacts
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
from export.quantize import (
    EndToEndReport,
    check_end_to_end,
    check_quantization,
    measure_quantization,
    quantize,
    scores_in_order,
)
from export.reference import REFERENCE_PAPERS, Reference
from lambda_handler.files import (
    OutputFolderError,
    check_replaceable,
    staged_directory,
    write_bytes_atomic,
    write_json_atomic,
)
from lambda_handler.manifest import LABELS_FILE, MANIFEST_NAME, MODEL_FILE, TOKENIZER_FILE
from lambda_handler.model import Classifier
from lambda_handler.text import Tokenizer
from lambda_handler.validation import MAX_DOCUMENTS
from train.thresholds import micro_f1, predict_sets

PRECISIONS = ("int8", "fp32")

BASELINE_TOLERANCE = 1e-5  # the same numpy scorer ran in training: only float rounding may differ
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """What an export produced: where, and which model version."""

    out: Path
    version: str
    reference: Reference  # test papers with the scores the end-to-end gate verified


def export_model(
    artifacts: Artifacts,
    out: Path,
    *,
    opset: int = MIN_OPSET,
    batch_size: int = BATCH_SIZE,
    precision: str = "int8",
) -> ExportResult:
    """Convert, check and gate the trained LSTM, then publish the served system at `out`."""
    try:  # here, not after minutes of conversion and gates, when the model is staged beside it
        check_replaceable(out, marker=MANIFEST_NAME)
    except OutputFolderError as error:
        raise ExportError(str(error)) from None
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    n_labels = len(artifacts.labels)
    model = load_keras_model(artifacts.model_path, n_labels, artifacts.tokenizer.size)
    onnx_model = to_onnx(serving_function(model), opset)
    check_graph(onnx_model, n_labels)
    fp32_bytes, opset_used = onnx_model.SerializeToString(), opset_version(onnx_model)
    logger.info(
        "converted %s to ONNX opset %d (%.1f MB)",
        artifacts.model_path,
        opset_used,
        len(fp32_bytes) / 1e6,
    )

    sequences = [artifacts.tokenizer.encode(p.title, p.abstract) for p in artifacts.papers]
    fp32_predict = onnx_predictor(onnx_session(fp32_bytes))
    parity = measure_parity(
        keras_predictor(model), fp32_predict, sequences, artifacts.lstm_thresholds, batch_size
    )
    logger.info(
        "parity on %d papers (+%d alone): max |Δprob| %.1e, label sets agree for %.2f%%",
        parity.papers,
        parity.single_papers,
        parity.max_abs_diff,
        100 * parity.label_set_agreement,
    )
    check_parity(parity)

    kept = [i for i, sequence in enumerate(sequences) if sequence]
    kept_sequences = [sequences[i] for i in kept]
    codes = [label.code for label in artifacts.labels]
    targets = multi_hot([artifacts.papers[i].labels for i in kept], codes)
    baseline_scores = shipped_baseline_scores(artifacts, kept)
    all_offsets = artifacts.offsets()
    offsets = None if all_offsets is None else all_offsets[kept]
    fp32_scores = scores_in_order(fp32_predict, kept_sequences, batch_size)
    quantization = None
    served_bytes = fp32_bytes
    if precision == "int8":
        served_bytes = quantize(fp32_bytes)
        int8_scores = scores_in_order(
            onnx_predictor(onnx_session(served_bytes)), kept_sequences, batch_size
        )
        quantization = measure_quantization(
            fp32_scores,
            int8_scores,
            baseline_scores,
            artifacts.combiner,
            artifacts.served_thresholds,
            targets,
            offsets,
        )
        logger.info(
            "int8 (%.1f MB): served label sets agree with fp32 for %.2f%% of %d papers; served "
            "micro-F1 %.4f (fp32 %.4f)",
            len(served_bytes) / 1e6,
            100 * quantization.label_set_agreement,
            quantization.papers,
            quantization.served_micro_f1_int8,
            quantization.served_micro_f1_fp32,
        )
        check_quantization(quantization)

    sample = next(length_batches(kept_sequences, batch_size))
    served_predict = onnx_predictor(onnx_session(served_bytes))
    created = datetime.now(UTC)
    served = {
        "combiner": artifacts.combiner.kind,
        "combiner_detail": artifacts.combiner.describe(),
        "lstm_precision": precision,
    }
    prior = artifacts.year_prior
    if prior is not None:
        served["year_prior"] = f"{prior.first_year}..{prior.last_year}"

    with staged_directory(out, marker=MANIFEST_NAME) as staging:
        write_bytes_atomic(staging / MODEL_FILE, served_bytes)
        artifacts.tokenizer.save(staging / TOKENIZER_FILE)
        write_json_atomic(staging / LABELS_FILE, artifacts.label_set.to_document())
        for name, blob in artifacts.copied_files.items():
            write_bytes_atomic(staging / name, blob)
        gates = {
            "parity": parity.to_dict(),
            "quantization": quantization.to_dict() if quantization else None,
        }
        write_json_atomic(
            staging / MANIFEST_NAME,
            manifest_for(staging, artifacts, created, opset_used, served, gates),
        )
        verify_staged(staging, artifacts.tokenizer, sample, served_predict(sample))
        end_to_end, reference = measure_end_to_end(staging, artifacts, targets, kept, batch_size)
        logger.info(
            "end to end (the function's Classifier on the staged directory): label sets as in "
            "training for %.2f%% of %d papers, served micro-F1 %.4f",
            100 * end_to_end.label_set_agreement,
            end_to_end.papers,
            end_to_end.micro_f1,
        )
        check_end_to_end(end_to_end)
        gates["end_to_end"] = end_to_end.to_dict()
        manifest = manifest_for(staging, artifacts, created, opset_used, served, gates)
        write_json_atomic(staging / MANIFEST_NAME, manifest)
        verify_model_dir(staging)
    return ExportResult(out=out, version=manifest["model"]["version"], reference=reference)


def shipped_baseline_scores(artifacts: Artifacts, kept: list[int]) -> np.ndarray:
    """The shipped baseline's scores of the kept test papers, as the function computes them;
    refused unless they are training's (predictions.npz), which the gates also rely on."""
    papers = [artifacts.papers[i] for i in kept]
    scores = artifacts.baseline.predict_proba(
        [artifacts.tokenizer.words(paper.title, paper.abstract) for paper in papers]
    )
    trained = artifacts.predictions["baseline"][kept]
    finite = np.isfinite(trained).all() and np.isfinite(scores).all()
    gap = float(np.max(np.abs(scores - trained), initial=0.0)) if finite else float("inf")
    if not gap <= BASELINE_TOLERANCE:
        raise ExportError(
            f"the baseline scores the test papers up to {gap:.2g} away from training's "
            f"predictions.npz (tolerance {BASELINE_TOLERANCE:g}): they are not of the same run"
        )
    return scores


def manifest_for(
    staging: Path,
    artifacts: Artifacts,
    created: datetime,
    opset: int,
    served: dict[str, str],
    gates: dict[str, object],
) -> dict[str, object]:
    return build_manifest(
        staging,
        created=created,
        opset=opset,
        training_data=artifacts.training_data,
        metrics=manifest_metrics(artifacts),
        served=served,
        gates=gates,
        versions=library_versions(),
    )


def multi_hot(label_sets: Sequence[Sequence[str]], codes: Sequence[str]) -> np.ndarray:
    """Boolean `[papers, labels]` truth in the model's label order (unknown codes ignored)."""
    column = {code: j for j, code in enumerate(codes)}
    matrix = np.zeros((len(label_sets), len(codes)), dtype=bool)
    for i, labels in enumerate(label_sets):
        for code in labels:
            if code in column:
                matrix[i, column[code]] = True
    return matrix


def measure_end_to_end(
    staging: Path, artifacts: Artifacts, targets: np.ndarray, kept: list[int], batch_size: int
) -> tuple[EndToEndReport, Reference]:
    """Load `staging` as the function does and classify the test papers, with their years, in
    request-sized batches; compare with the label sets training predicted for the served
    system. The first REFERENCE_PAPERS papers, their dates and their scores become the
    reference for the built package."""
    classifier = Classifier.load(staging)
    batch_size = min(batch_size, MAX_DOCUMENTS)  # the function never scores a larger batch
    papers = [artifacts.papers[i] for i in kept]
    encoded = [classifier.encode(paper.title, paper.abstract) for paper in papers]
    present = [i for i, paper in enumerate(encoded) if paper is not None]

    def score(rows: list[int]) -> np.ndarray:
        """Scores of these papers, with their years, in request-sized batches from the first."""
        scores = np.zeros((len(rows), len(artifacts.labels)), dtype=np.float32)
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            scores[start : start + len(batch)] = classifier.predict(
                [encoded[i] for i in batch], [papers[i].year for i in batch]
            )
        return scores

    scores = score(present)
    expected_scores = artifacts.predictions["served"][[kept[i] for i in present]]
    expected = predict_sets(expected_scores, artifacts.served_thresholds)
    actual = predict_sets(scores, classifier.thresholds)
    report = EndToEndReport(
        papers=len(present),
        papers_without_content_words=len(encoded) - len(present),
        label_set_agreement=float(np.mean(np.all(expected == actual, axis=1))),
        max_abs_diff=float(np.max(np.abs(expected_scores - scores))),
        micro_f1=micro_f1(targets[present], actual),
    )
    codes = [label.code for label in artifacts.labels]
    sample = present[:REFERENCE_PAPERS]
    sample_scores = score(sample)  # batched as the package test sends them
    reference = Reference(
        model_version=classifier.info.version,
        labels=tuple(codes),
        batch_size=batch_size,
        papers=tuple(
            (paper.title, paper.abstract, paper.date.isoformat() if paper.date else None)
            for paper in (papers[i] for i in sample)
        ),
        scores=sample_scores,
        label_sets=tuple(
            tuple(codes[j] for j in classifier.choose(row, len(codes))) for row in sample_scores
        ),
    )
    return report, reference


def manifest_metrics(artifacts: Artifacts) -> dict[str, object]:
    """Each component's and the served system's test metrics, without per-label tables."""
    return {name: summarize_metrics(value) for name, value in artifacts.metrics.items()}


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
