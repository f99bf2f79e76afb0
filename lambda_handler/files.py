"""Atomic file writes and checksums (standard library only).

Every artifact this project writes goes through here, so an interrupted run leaves the previous
file intact instead of a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would make artifacts unreadable in a Lambda zip
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def json_bytes(data: object) -> bytes:
    """`data` as the project's JSON files hold it: UTF-8, indented, with a final newline."""
    return (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def write_json_atomic(path: str | Path, data: object) -> None:
    """Write `data` as UTF-8 JSON to `path`, atomically."""
    write_bytes_atomic(path, json_bytes(data))


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def staged_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty sibling folder to fill; on success it replaces `target` whole.

    On an exception the staging folder is removed and `target` is left as it was, so readers
    never see a mix of old and new files. The swap is two renames on one file system.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
    staging.chmod(0o755)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = None
    if target.exists():
        retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, retired / target.name)
    try:
        os.replace(staging, target)
    except BaseException:
        if retired is not None:
            os.replace(retired / target.name, target)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    fsync_directory(target.parent)


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries (renames) to disk, where the platform allows it."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
