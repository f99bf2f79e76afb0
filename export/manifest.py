"""Describe a model directory in `manifest.json`, and verify a directory against it.

A reader serves a directory only when every file the manifest lists has the recorded size and
sha256, so the manifest is written (and uploaded) last.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from export import ExportError
from export.graph import INPUT_NAME, OUTPUT_NAME
from lambda_handler.files import sha256_file
from lambda_handler.manifest import FORMAT_VERSION, MANIFEST_NAME, MODEL_FILE, REQUIRED_FILES

MODEL_NAME = "arxiv-lstm"


def file_entry(path: Path) -> dict[str, object]:
    """The manifest's record of one file."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def model_version(created: datetime, onnx_sha256: str) -> str:
    """`YYYY.MM.DD-<8 hex>`: sortable by date, unique per model.onnx."""
    return f"{created:%Y.%m.%d}-{onnx_sha256[:8]}"


def utc_timestamp(created: datetime) -> str:
    """ISO 8601 UTC with a `Z`, to the second."""
    return f"{created:%Y-%m-%dT%H:%M:%SZ}"


def summarize_metrics(value: object, label_codes: frozenset[str]) -> object:
    """`value` without per-label tables: lists and objects keyed by label codes are dropped."""
    if not isinstance(value, dict):
        return value
    return {
        key: summarize_metrics(item, label_codes)
        for key, item in value.items()
        if not isinstance(item, list)
        and not (isinstance(item, dict) and label_codes.intersection(item))
    }


def build_manifest(
    directory: Path,
    *,
    created: datetime,
    opset: int,
    training_data: dict[str, object],
    metrics: dict[str, object],
    parity: dict[str, object],
    versions: dict[str, str],
) -> dict[str, object]:
    """The manifest of a directory holding `REQUIRED_FILES` (hashed here, from disk)."""
    files = {name: file_entry(directory / name) for name in REQUIRED_FILES}
    return {
        "format_version": FORMAT_VERSION,
        "model": {
            "name": MODEL_NAME,
            "version": model_version(created, files[MODEL_FILE]["sha256"]),
        },
        "created": utc_timestamp(created),
        "files": files,
        "io": {"input": INPUT_NAME, "output": OUTPUT_NAME, "opset": opset},
        "training_data": training_data,
        "metrics": metrics,
        "parity": parity,
        "versions": versions,
    }


def read_manifest(directory: Path) -> dict[str, object]:
    """The parsed manifest of `directory`, checked for format version and a file list."""
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path} not found: {directory} is not a model directory") from None
    except json.JSONDecodeError as error:
        raise ExportError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path}: expected an object with format_version {FORMAT_VERSION}")
    if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise ExportError(f"{path}: files must be a non-empty object")
    return manifest


def verify_model_dir(directory: Path) -> dict[str, object]:
    """The manifest of `directory`, once every file it lists matches its size and sha256."""
    manifest = read_manifest(directory)
    for name, expected in manifest["files"].items():
        path = directory / name
        if Path(name).name != name or name == MANIFEST_NAME:
            raise ExportError(f"{directory / MANIFEST_NAME} lists an invalid file name {name!r}")
        if not path.is_file():
            raise ExportError(f"{path} is listed in the manifest but missing")
        if file_entry(path) != expected:
            raise ExportError(f"{path} does not match the size and sha256 in the manifest")
    return manifest
