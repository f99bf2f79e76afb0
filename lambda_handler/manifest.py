"""The model directory's manifest.json: parse it, check its version, verify files against it.

See docs/model_format.md. The local loader (model.py, through `read_model_dir`), the S3
downloader (s3_model.py) and the export's check of what it wrote trust a file only after its
size and sha256 match the manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.json"
# 2: the served system is an LSTM, a TF-IDF baseline and a combiner; 3: the manifest carries
# its own checksum, so that a changed byte in it is refused like one in any file it lists.
FORMAT_VERSION = 3
CHECKSUM_KEY = "manifest_sha256"
LSTM_PRECISIONS = ("int8", "fp32")
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
LABELS_FILE = "labels.json"
BASELINE_FILE = "baseline.json"
BASELINE_WEIGHTS_FILE = "baseline.npz"
COMBINER_FILE = "combiner.json"
COMBINER_WEIGHTS_FILE = "combiner.npz"  # only for a stacked combiner
YEAR_PRIOR_FILE = "year_prior.json"  # only for a model trained on dated papers
REQUIRED_FILES = (
    MODEL_FILE,
    TOKENIZER_FILE,
    LABELS_FILE,
    BASELINE_FILE,
    BASELINE_WEIGHTS_FILE,
    COMBINER_FILE,
)
OPTIONAL_FILES = (COMBINER_WEIGHTS_FILE, YEAR_PRIOR_FILE)

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ModelError(Exception):
    """The model cannot be served; the message names the problem without local paths."""


@dataclass(frozen=True)
class FileEntry:
    """One file the manifest lists, with its expected size and checksum."""

    name: str
    sha256: str
    size: int

    def verify(self, data: bytes) -> None:
        """Raise ModelError unless `data` has this entry's size and sha256."""
        if len(data) != self.size:
            raise ModelError(f"{self.name} is {len(data)} bytes but manifest.json says {self.size}")
        actual = hashlib.sha256(data).hexdigest()
        if actual != self.sha256:
            raise ModelError(
                f"{self.name} sha256 {actual[:12]}… does not match manifest.json "
                f"({self.sha256[:12]}…): the file is corrupt or was changed"
            )


@dataclass(frozen=True)
class Manifest:
    """The parts of manifest.json that serving relies on."""

    name: str
    version: str
    files: Mapping[str, FileEntry]
    input_name: str
    output_name: str
    served: Mapping[
        str, str
    ]  # what is served, e.g. {"combiner": "stacked", "lstm_precision": "int8"}

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        """Validate manifest.json's bytes; raise ModelError naming the first problem."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as error:
            raise ModelError(f"manifest.json is not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise ModelError("manifest.json must hold a JSON object")
        version = data.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise ModelError(
                f"manifest.json format_version is {version!r}; this function reads only "
                f"format_version {FORMAT_VERSION}"
            )
        checksum = data.pop(CHECKSUM_KEY, None)
        try:
            expected = content_sha256(data)
        except (ValueError, RecursionError):  # nested too deep to serialise again
            expected = None
        if expected is None or checksum != expected:
            raise ModelError(
                f"manifest.json does not match its own {CHECKSUM_KEY}: the file is corrupt or "
                "was changed"
            )
        model, io, files = data.get("model"), data.get("io"), data.get("files")
        if not isinstance(model, dict) or not all(
            isinstance(model.get(key), str) and model.get(key) for key in ("name", "version")
        ):
            raise ModelError("manifest.json model must hold non-empty 'name' and 'version'")
        if not isinstance(io, dict) or not all(
            isinstance(io.get(key), str) and io.get(key) for key in ("input", "output")
        ):
            raise ModelError("manifest.json io must name the model's 'input' and 'output'")
        if not isinstance(files, dict):
            raise ModelError("manifest.json files must map file names to sha256 and bytes")
        entries = {name: _file_entry(name, spec) for name, spec in files.items()}
        missing = [name for name in REQUIRED_FILES if name not in entries]
        if missing:
            raise ModelError(f"manifest.json does not list {', '.join(missing)}")
        served = data.get("served", {})
        if not isinstance(served, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in served.items()
        ):
            raise ModelError("manifest.json served must map names to strings")
        precision = served.get("lstm_precision", LSTM_PRECISIONS[0])
        if precision not in LSTM_PRECISIONS:
            raise ModelError(
                f"manifest.json served.lstm_precision is {precision!r}; expected one of "
                f"{', '.join(LSTM_PRECISIONS)}"
            )
        return cls(
            name=model["name"],
            version=model["version"],
            files=entries,
            input_name=io["input"],
            output_name=io["output"],
            served=served,
        )


def content_sha256(document: Mapping[str, object]) -> str:
    """Hex sha256 of `document` as canonical JSON (sorted keys, no spaces, ASCII): the same for
    every serialisation of the same content, so a manifest's checksum survives re-indenting."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def with_checksum(document: Mapping[str, object]) -> dict[str, object]:
    """`document` (a manifest without its checksum) with `CHECKSUM_KEY` added, as written."""
    return {**document, CHECKSUM_KEY: content_sha256(document)}


def _file_entry(name: object, spec: object) -> FileEntry:
    """One validated `files` entry; names must be plain file names (no paths)."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or name == MANIFEST_NAME:
        raise ModelError(f"manifest.json lists an invalid file name {name!r}")
    if not isinstance(spec, dict):
        raise ModelError(f"manifest.json entry for {name} must be an object")
    sha256, size = spec.get("sha256"), spec.get("bytes")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ModelError(f"manifest.json sha256 of {name} is not 64 lower-case hex digits")
    if type(size) is not int or size < 0:
        raise ModelError(f"manifest.json bytes of {name} is not a non-negative integer")
    return FileEntry(name=name, sha256=sha256, size=size)


def read_model_dir(model_dir: Path) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest of `model_dir` and the bytes of every file it lists, each checked against
    it; raise ModelError naming the first problem."""
    manifest_path = model_dir / MANIFEST_NAME
    if not model_dir.is_dir():
        raise ModelError("no model: the model directory does not exist")
    if not manifest_path.is_file():
        raise ModelError("no model: manifest.json is missing from the model directory")
    manifest = Manifest.parse(read_file(manifest_path, MANIFEST_NAME))
    blobs: dict[str, bytes] = {}
    for name, entry in manifest.files.items():
        blobs[name] = read_file(model_dir / name, name)
        entry.verify(blobs[name])
    return manifest, blobs


def read_file(path: Path, name: str) -> bytes:
    """Bytes of a model file, with a ModelError naming it when missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{name} is missing from the model directory") from None
    except OSError as error:
        raise ModelError(f"{name} cannot be read ({error.strerror})") from None
