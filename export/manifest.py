"""Describe a model directory in `manifest.json`, and verify a directory against it.

A reader serves a directory only when every file the manifest lists has the recorded size and
sha256, so the manifest is written (and uploaded) last.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from export import ExportError
from export.graph import INPUT_NAME, OUTPUT_NAME
from lambda_handler.files import sha256_file
from lambda_handler.manifest import (
    FORMAT_VERSION,
    MODEL_FILE,
    OPTIONAL_FILES,
    REQUIRED_FILES,
    Manifest,
    ModelError,
    read_model_dir,
    with_checksum,
)

MODEL_NAME = "arxiv-classifier"


def file_entry(path: Path) -> dict[str, object]:
    """The manifest's record of one file."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def model_version(created: datetime, onnx_sha256: str) -> str:
    """`YYYY.MM.DD-<8 hex>`: sortable by date, unique per model.onnx."""
    return f"{created:%Y.%m.%d}-{onnx_sha256[:8]}"


def utc_timestamp(created: datetime) -> str:
    """ISO 8601 UTC with a `Z`, to the second."""
    return f"{created:%Y-%m-%dT%H:%M:%SZ}"


PER_LABEL_TABLE = "per_label"  # metrics.json's name for a table with one entry per label


def summarize_metrics(value: object) -> object:
    """`value` without per-label tables: lists (thresholds, rules, combiners) and `per_label`
    objects are dropped. Tables keyed otherwise stay, even where a key is also a label code
    (`by_archive` has `astro-ph` and `hep-th`, archives that are labels too)."""
    if not isinstance(value, dict):
        return value
    return {
        key: summarize_metrics(item)
        for key, item in value.items()
        if not isinstance(item, list) and key != PER_LABEL_TABLE
    }


def build_manifest(
    directory: Path,
    *,
    created: datetime,
    opset: int,
    training_data: dict[str, object],
    metrics: dict[str, object],
    served: dict[str, str],
    gates: dict[str, object],
    versions: dict[str, str],
) -> dict[str, object]:
    """The manifest of a directory holding `REQUIRED_FILES` and any `OPTIONAL_FILES` (hashed
    here, from disk), with its own checksum."""
    present = [name for name in OPTIONAL_FILES if (directory / name).is_file()]
    files = {name: file_entry(directory / name) for name in (*REQUIRED_FILES, *present)}
    return with_checksum(
        {
            "format_version": FORMAT_VERSION,
            "model": {
                "name": MODEL_NAME,
                "version": model_version(created, files[MODEL_FILE]["sha256"]),
            },
            "created": utc_timestamp(created),
            "files": files,
            "io": {"input": INPUT_NAME, "output": OUTPUT_NAME, "opset": opset},
            "training_data": training_data,
            "served": served,
            "metrics": metrics,
            "gates": gates,
            "versions": versions,
        }
    )


def verify_model_dir(directory: Path) -> Manifest:
    """The manifest of `directory`, once every file it lists matches its size and sha256.

    It is read as the function reads it (lambda_handler.manifest.read_model_dir), so the export
    and the upload accept exactly the directories the function would serve.
    """
    try:
        manifest, _ = read_model_dir(directory)
    except ModelError as error:
        raise ExportError(f"{directory}: {error}") from None
    return manifest
