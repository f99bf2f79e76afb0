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
    write_files_atomic(Path(path).parent, {Path(path).name: data})


def write_files_atomic(directory: str | Path, files: dict[str, bytes]) -> None:
    """Write each `files` name's bytes into `directory`: every file to a temporary one first,
    then all renamed in one quick pass, so an interruption leaves the old set, not a mix (but
    for the instant of the renames)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    temporaries: dict[str, str] = {}
    try:
        for name, data in files.items():
            handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
            temporaries[name] = temporary
            os.fchmod(handle, 0o644)  # mkstemp's 0600 would make artifacts unreadable in a zip
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        for name, temporary in temporaries.items():
            os.replace(temporary, directory / name)
    except BaseException:
        for temporary in temporaries.values():
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


class OutputFolderError(Exception):
    """An output folder that cannot be written, or must not be replaced; one line for users."""


def check_writable_folder(folder: str | Path) -> None:
    """Raise OutputFolderError unless `folder` is, or could be made as, a folder that takes new
    files: checked (without creating anything) before a long run, not found out at its end."""
    folder = Path(folder).absolute()
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise OutputFolderError(f"cannot write to the folder {folder} ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputFolderError(f"cannot write to the folder {folder} ({existing} is read-only)")


def check_replaceable(target: str | Path, marker: str) -> None:
    """Raise OutputFolderError unless `staged_directory` may replace `target` whole: absent,
    empty, or a previous output of the same kind (it holds `marker`), beside which new folders
    can be made. So a mistyped path (`--artifacts data`) never deletes anyone's files."""
    target = Path(target).absolute()
    if target.is_symlink():  # the swap would replace the link, not the folder it points to
        raise OutputFolderError(f"{target} is a symbolic link; pass the folder it points to")
    if target.is_file():
        raise OutputFolderError(f"{target} is a file, not a folder; choose a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / marker).is_file():
        raise OutputFolderError(
            f"{target} holds other files and no {marker}, so it is not a previous output; it "
            "would be replaced whole: choose a new or empty folder"
        )
    check_writable_folder(target.parent)


@contextmanager
def staged_directory(target: str | Path, marker: str) -> Iterator[Path]:
    """Yield an empty sibling folder to fill; on success it replaces `target` whole.

    `target` must pass `check_replaceable(target, marker)`. On an exception the staging folder
    is removed and `target` is left as it was, so readers never see a mix of old and new files.
    The swap is two renames on one file system.
    """
    check_replaceable(target, marker)
    target = Path(target).absolute()
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
