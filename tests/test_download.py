"""Tests for train/download.py against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from train.download import DownloadError, download

BODY = b"titles,summaries,terms\n" + b"".join(
    f"Paper {i},An abstract about topic {i % 97}.,['cs.LG']\n".encode() for i in range(20_000)
)
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()


class _Handler(SimpleHTTPRequestHandler):
    """Serves the test folder, plus a few deliberately broken responses."""

    release_stalled: threading.Event

    def do_GET(self) -> None:
        body = (Path(self.directory) / "data.csv").read_bytes()
        if self.path == "/no-length.csv":  # HTTP/1.0: the body ends when the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/truncated.csv":  # announces more than it sends, then closes
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body)
        elif self.path in ("/page.csv", "/page-as-text.csv"):  # a sign-in page, status 200
            page = b"<!doctype html><title>Sign in</title><p>Please sign in."
            self.send_response(200)
            html = self.path == "/page.csv"
            self.send_header("Content-Type", "text/html" if html else "text/plain")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
        elif self.path == "/stalled.csv":  # sends part of the body, then goes quiet
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:1000])
            self.wfile.flush()
            self.release_stalled.wait(10)
        else:
            super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """Base URL of a server whose /data.csv is BODY, written by the test."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "data.csv").write_bytes(BODY)
    release = threading.Event()
    handler = functools.partial(_Handler, directory=str(served))
    _Handler.release_stalled = release
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _files(folder: Path) -> list[str]:
    """Every entry of `folder`, hidden temporary files included."""
    return sorted(os.listdir(folder))


def test_download_writes_the_body_and_checks_size_and_sha256(server: str, out_dir: Path) -> None:
    destination = out_dir / "arxiv_data.csv"
    result = download(
        f"{server}/data.csv",
        destination,
        expected_sha256=BODY_SHA256,
        expected_size=len(BODY),
        progress=False,
    )
    assert result == destination
    assert destination.read_bytes() == BODY
    assert _files(out_dir) == ["arxiv_data.csv"]


def test_download_creates_missing_folders_and_replaces_an_old_file(
    server: str, tmp_path: Path
) -> None:
    destination = tmp_path / "new" / "data" / "arxiv_data.csv"
    download(f"{server}/data.csv", destination, expected_sha256=None, expected_size=None)
    destination.write_bytes(b"stale")
    download(f"{server}/data.csv", destination, expected_sha256=None, expected_size=None)
    assert hashlib.sha256(destination.read_bytes()).hexdigest() == BODY_SHA256


@pytest.mark.parametrize("existing", [None, b"previous good copy\n"])
def test_wrong_sha256_keeps_the_destination_as_it_was(
    server: str, out_dir: Path, existing: bytes | None
) -> None:
    destination = out_dir / "arxiv_data.csv"
    if existing is not None:
        destination.write_bytes(existing)
    url = f"{server}/data.csv"
    with pytest.raises(DownloadError) as caught:
        download(url, destination, expected_sha256="0" * 64, expected_size=len(BODY))
    message = str(caught.value)
    assert url in message and BODY_SHA256 in message and "\n" not in message
    if existing is None:
        assert _files(out_dir) == []
    else:
        assert _files(out_dir) == ["arxiv_data.csv"]
        assert destination.read_bytes() == existing


def test_sha256_is_compared_case_insensitively(server: str, out_dir: Path) -> None:
    destination = out_dir / "arxiv_data.csv"
    download(
        f"{server}/data.csv", destination, expected_sha256=BODY_SHA256.upper(), expected_size=None
    )
    assert destination.read_bytes() == BODY


def test_size_other_than_expected_is_refused(server: str, out_dir: Path) -> None:
    with pytest.raises(DownloadError, match=f"Content-Length is {len(BODY)}, expected 12345"):
        download(f"{server}/data.csv", out_dir / "a.csv", expected_sha256=None, expected_size=12345)
    assert _files(out_dir) == []


def test_size_is_checked_when_the_server_sends_no_content_length(
    server: str, out_dir: Path
) -> None:
    with pytest.raises(DownloadError, match=f"received {len(BODY)} bytes, expected 12345"):
        download(
            f"{server}/no-length.csv", out_dir / "a.csv", expected_sha256=None, expected_size=12345
        )
    assert _files(out_dir) == []


def test_truncated_body_is_refused_and_leaves_nothing(server: str, out_dir: Path) -> None:
    url = f"{server}/truncated.csv"
    with pytest.raises(DownloadError) as caught:
        download(url, out_dir / "a.csv", expected_sha256=None, expected_size=None, progress=False)
    assert str(caught.value) == (
        f"download of {url} failed: received {len(BODY)} bytes, "
        f"Content-Length was {len(BODY) + 1000}"
    )
    assert _files(out_dir) == []


def test_http_error_is_reported_with_its_status(server: str, out_dir: Path) -> None:
    url = f"{server}/missing.csv"
    with pytest.raises(DownloadError) as caught:
        download(url, out_dir / "a.csv", expected_sha256=None, expected_size=None)
    assert str(caught.value) == f"download of {url} failed: HTTP 404 File not found"
    assert _files(out_dir) == []


def test_a_destination_that_cannot_be_written_is_a_download_error(server: str, tmp_path) -> None:
    (tmp_path / "file").write_text("not a folder")
    url = f"{server}/data.csv"
    with pytest.raises(DownloadError) as caught:
        download(url, tmp_path / "file" / "a.csv", expected_sha256=None, expected_size=None)
    assert str(caught.value).startswith(f"download of {url} failed: cannot write to {tmp_path}")
    assert (tmp_path / "file").read_text() == "not a folder"


def test_refused_connection_is_a_download_error(out_dir: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.csv"
    with pytest.raises(DownloadError, match="Connection refused"):
        download(url, out_dir / "a.csv", expected_sha256=None, expected_size=None)
    assert _files(out_dir) == []


def test_stalled_server_times_out(server: str, out_dir: Path) -> None:
    with pytest.raises(DownloadError, match="timed out"):
        download(
            f"{server}/stalled.csv",
            out_dir / "a.csv",
            expected_sha256=None,
            expected_size=None,
            timeout=0.3,
        )
    assert _files(out_dir) == []


def test_interrupt_removes_the_temporary_file_and_propagates(
    server: str, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination = out_dir / "arxiv_data.csv"
    destination.write_bytes(b"previous good copy\n")

    def interrupted(fd: int) -> None:
        assert any(name.endswith(".tmp") for name in _files(out_dir))  # caught mid-download
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download(f"{server}/data.csv", destination, expected_sha256=None, expected_size=None)
    assert _files(out_dir) == ["arxiv_data.csv"]
    assert destination.read_bytes() == b"previous good copy\n"


def test_body_without_content_length_is_accepted(
    server: str, out_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = out_dir / "arxiv_data.csv"
    download(
        f"{server}/no-length.csv",
        destination,
        expected_sha256=BODY_SHA256,
        expected_size=len(BODY),
    )
    assert destination.read_bytes() == BODY
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1  # under 10 MB: only the final line
    assert re.fullmatch(rf"arxiv_data\.csv {len(BODY) / 1e6:.1f} MB [0-9.]+ MB/s", lines[0])


def test_progress_prints_a_line_per_tenth_when_stderr_is_not_a_terminal(
    server: str, out_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    download(
        f"{server}/data.csv", out_dir / "arxiv_data.csv", expected_sha256=None, expected_size=None
    )
    lines = capsys.readouterr().err.splitlines()
    percents = [int(re.search(r" (\d+)% ", line).group(1)) for line in lines]
    assert 5 <= len(lines) <= 10
    assert percents == sorted(percents) and percents[-1] == 100
    total = f"{len(BODY) / 1e6:.1f}"
    assert re.fullmatch(
        rf"arxiv_data\.csv \[#{{30}}\] {total}/{total} MB 100% [0-9.]+ MB/s", lines[-1]
    )


def test_progress_redraws_one_line_on_a_terminal(
    server: str, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    download(
        f"{server}/data.csv", out_dir / "arxiv_data.csv", expected_sha256=None, expected_size=None
    )
    output = terminal.getvalue()
    assert output.startswith("\r") and output.endswith("\n") and output.count("\n") == 1
    assert "[##############################]" in output.rsplit("\r", 1)[1]
    assert " 100% " in output


def test_no_progress_output_when_disabled(
    server: str, out_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    download(
        f"{server}/data.csv",
        out_dir / "arxiv_data.csv",
        expected_sha256=None,
        expected_size=None,
        progress=False,
    )
    assert capsys.readouterr().err == ""


def test_a_web_page_or_content_its_check_refuses_never_becomes_the_data(
    server: str, out_dir: Path
) -> None:
    from train.data import DataError
    from train.run import check_kaggle_header

    destination = out_dir / "arxiv_data.csv"
    destination.write_bytes(b"the old data")
    with pytest.raises(DownloadError, match="the server sent a web page"):
        download(
            f"{server}/page.csv", destination, expected_sha256=None, expected_size=None,
            progress=False, check=check_kaggle_header,
        )  # fmt: skip
    with pytest.raises(DataError, match="not the Kaggle CSV: no titles, summaries, terms"):
        download(
            f"{server}/page-as-text.csv", destination, expected_sha256=None,
            expected_size=None, progress=False, check=check_kaggle_header,
        )  # fmt: skip
    assert destination.read_bytes() == b"the old data" and _files(out_dir) == ["arxiv_data.csv"]
    download(
        f"{server}/data.csv", destination, expected_sha256=None, expected_size=None,
        progress=False, check=check_kaggle_header,
    )  # fmt: skip
    assert destination.read_bytes() == BODY


def test_the_header_check_reads_past_a_byte_order_mark(tmp_path: Path) -> None:
    from train.run import check_kaggle_header

    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + BODY[:200])
    check_kaggle_header(path)  # no error: pandas reads such a file too
