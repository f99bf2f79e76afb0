"""Download the training data: streamed to disk, checked, and moved into place atomically.

The body goes to a temporary file next to the destination (named like the ones
`lambda_handler.files.write_bytes_atomic` makes), is checked against Content-Length, the
expected size and the expected sha256, is fsynced, and only then replaces the destination.
Any failure removes the temporary file and leaves an existing destination as it was.
"""

from __future__ import annotations

import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from lambda_handler.files import sha256_file

# The Kaggle "arXiv Paper Abstracts" file (51,774 rows; columns titles, summaries, terms) as
# published for the keras.io multi-label text classification example.
KAGGLE_MIRROR_URL = (
    "https://github.com/soumik12345/multi-label-text-classification/releases/download/v0.2/"
    "arxiv_data.csv"
)
# Not pinned: no published sha256 or exact byte size of this release asset could be found
# (searched code, notebooks, pages and issues that use the URL; none records either), so the
# download is checked against Content-Length only. Pin both from a verified download.
KAGGLE_MIRROR_SHA256: str | None = None
KAGGLE_MIRROR_SIZE: int | None = None

_CHUNK_SIZE = 1 << 16
_MB = 1_000_000


class DownloadError(Exception):
    """A download failed; the one-line message names the URL and the problem."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"download of {url} failed: {problem}")


def download(
    url: str,
    destination: str | Path,
    *,
    expected_sha256: str | None,
    expected_size: int | None,
    timeout: float = 60,
    progress: bool = True,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Fetch `url` into `destination`, replacing it only once every check has passed.

    Raises `DownloadError` on network and HTTP errors, an HTML page, short bodies and size or
    hash mismatches; `check(temporary_path)` may refuse the content too, by raising (say, when
    it is not the CSV expected), so nothing that fails it ever lands at `destination`.
    """
    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise DownloadError(
            url, f"cannot write to {destination.parent} ({error.strerror or type(error).__name__})"
        ) from None
    try:
        with os.fdopen(handle, "wb") as out:
            _fetch(url, out, expected_size, timeout, destination.name if progress else None)
            out.flush()
            os.fsync(out.fileno())
        if expected_sha256 is not None:
            actual = sha256_file(temporary)
            if actual != expected_sha256.lower():
                raise DownloadError(url, f"sha256 is {actual}, expected {expected_sha256}")
        if check is not None:
            check(Path(temporary))
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return destination


def _fetch(
    url: str, out: BinaryIO, expected_size: int | None, timeout: float, label: str | None
) -> None:
    """Stream the body of `url` into `out`, with progress under `label` unless it is None."""
    announced: int | None = None
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            media_type = response.headers.get_content_type()
            if media_type == "text/html":  # a login, error or landing page served with 200
                raise DownloadError(url, f"the server sent a web page ({media_type}), not data")
            announced = _content_length(response)
            if announced is not None and expected_size is not None and announced != expected_size:
                raise DownloadError(url, f"Content-Length is {announced}, expected {expected_size}")
            meter = _Progress(label, announced) if label is not None else None
            try:
                while chunk := response.read(_CHUNK_SIZE):
                    out.write(chunk)
                    done += len(chunk)
                    if meter is not None:
                        meter.update(done)
            finally:
                if meter is not None:
                    meter.finish(done)
    except urllib.error.HTTPError as error:
        error.close()  # it holds the response's connection
        raise DownloadError(url, f"HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise DownloadError(url, str(error.reason)) from error
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(url, f"{type(error).__name__}: {error}") from error
    if announced is not None and done != announced:
        raise DownloadError(url, f"received {done} bytes, Content-Length was {announced}")
    if expected_size is not None and done != expected_size:
        raise DownloadError(url, f"received {done} bytes, expected {expected_size}")


def _content_length(response: http.client.HTTPResponse) -> int | None:
    """The announced body size, or None when the server did not send a usable one."""
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


class _Progress:
    """Reports download progress on stderr.

    On a terminal one line is redrawn with a bar, bytes, percent and speed; elsewhere (logs,
    CI) a line is printed every 10% of the body, or every 10 MB when its size is unknown.
    """

    _WIDTH = 30
    _REDRAW_SECONDS = 0.1

    def __init__(self, label: str, total: int | None) -> None:
        self.label = label
        self.total = total
        self.step = max(1, total // 10) if total else 10 * _MB
        self.started = self.last_drawn = time.monotonic()
        self.next_line = self.step
        self.shown = -1

    def update(self, done: int) -> None:
        """Show `done` bytes if it is time to."""
        if sys.stderr.isatty():
            now = time.monotonic()
            if now - self.last_drawn >= self._REDRAW_SECONDS:
                self.last_drawn = now
                self._show(done)
        elif done >= self.next_line:
            self.next_line = (done // self.step + 1) * self.step
            self._show(done)

    def finish(self, done: int) -> None:
        """Show the final count and end the line, whether the download succeeded or not."""
        if done != self.shown or sys.stderr.isatty():
            self._show(done)
        if sys.stderr.isatty():
            print(file=sys.stderr, flush=True)

    def _show(self, done: int) -> None:
        self.shown = done
        rate = done / _MB / max(time.monotonic() - self.started, 1e-6)
        if self.total:
            fraction = min(done / self.total, 1.0)
            filled = round(fraction * self._WIDTH)
            bar = "#" * filled + "." * (self._WIDTH - filled)
            text = (
                f"{self.label} [{bar}] {done / _MB:.1f}/{self.total / _MB:.1f} MB "
                f"{fraction:4.0%} {rate:.1f} MB/s"
            )
        else:
            text = f"{self.label} {done / _MB:.1f} MB {rate:.1f} MB/s"
        if sys.stderr.isatty():  # redraw in place: return to column 0, clear to end of line
            print(f"\r{text}\x1b[K", end="", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)
