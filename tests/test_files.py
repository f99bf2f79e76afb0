"""Atomic writes and the staged directory swap: old or new, never a mix."""

import os

import pytest

from lambda_handler import files
from lambda_handler.files import (
    OutputFolderError,
    check_replaceable,
    check_writable_folder,
    sha256_file,
    staged_directory,
    write_bytes_atomic,
)

MARKER = "manifest.json"  # what marks a folder as a previous output of the same kind


def test_write_is_atomic_readable_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.bin"
    write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["a.bin"]
    assert sha256_file(path) == "11507a0e2f5e69d5dfa40a62a1bd7b6ee57e6bcd85c67c9b8431b36fff21c437"


def test_staged_directory_replaces_the_whole_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / MARKER).write_text("old")
    (target / "stale.txt").write_text("old")
    with staged_directory(target, MARKER) as staging:
        (staging / "fresh.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["fresh.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize("kind", ["folder of other files", "file", "file in the path"])
def test_a_folder_that_is_not_a_previous_output_is_never_replaced(tmp_path, kind):
    # `--artifacts data` or `--out ~` must not delete what is there: refused, untouched.
    data = tmp_path / "data"
    data.mkdir()
    (data / "papers.csv").write_text("titles,summaries,terms")
    target = {
        "folder of other files": data,
        "file": data / "papers.csv",
        "file in the path": data / "papers.csv" / "model",
    }[kind]
    with pytest.raises(OutputFolderError) as refused:
        check_replaceable(target, MARKER)
    with pytest.raises(OutputFolderError), staged_directory(target, MARKER):
        raise AssertionError("never entered")
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    assert [p.name for p in data.iterdir()] == ["papers.csv"]
    assert str(data) in str(refused.value)


def test_a_link_to_a_previous_output_is_refused_naming_the_folder_to_pass(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / MARKER).write_text("old")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OutputFolderError, match="is a symbolic link; pass the folder it points"):
        check_replaceable(tmp_path / "link", MARKER)
    check_replaceable(tmp_path / "real", MARKER)


def test_an_absent_or_empty_folder_may_be_filled(tmp_path):
    check_replaceable(tmp_path / "new" / "model", MARKER)
    (tmp_path / "empty").mkdir()
    with staged_directory(tmp_path / "empty", MARKER) as staging:
        (staging / MARKER).write_text("{}")
    assert [p.name for p in (tmp_path / "empty").iterdir()] == [MARKER]


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_failure_while_filling_keeps_the_old_folder(tmp_path, failure):
    target = tmp_path / "model"
    target.mkdir()
    (target / "a.txt").write_text("old")
    (target / MARKER).write_text("old")
    with pytest.raises(failure), staged_directory(target, MARKER) as staging:
        (staging / "a.txt").write_text("half")
        raise failure
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    (target / "a.txt").write_text("old")
    (target / MARKER).write_text("old")
    real_replace, calls = os.replace, []

    def flaky_replace(source, destination):
        calls.append(source)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(source, destination)

    monkeypatch.setattr(files.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"), staged_directory(target, MARKER) as staging:
        (staging / "a.txt").write_text("new")
    monkeypatch.undo()
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_several_files_are_replaced_together_or_not_at_all(tmp_path, monkeypatch):
    (tmp_path / "a.md").write_text("old a")
    (tmp_path / "b.md").write_text("old b")
    calls = []
    real_fsync = files.os.fsync

    def fsync_fails_on_the_second_file(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync_fails_on_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        files.write_files_atomic(tmp_path, {"a.md": b"new a", "b.md": b"new b"})
    assert (tmp_path / "a.md").read_text() == "old a" and (tmp_path / "b.md").read_text() == "old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.md", "b.md"]  # no temporary left
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    files.write_files_atomic(tmp_path, {"a.md": b"new a", "b.md": b"new b"})
    assert (tmp_path / "a.md").read_text() == "new a" and (tmp_path / "b.md").read_text() == "new b"


def test_a_reports_folder_must_take_files(tmp_path):
    check_writable_folder(tmp_path / "reports" / "sub")
    assert list(tmp_path.iterdir()) == []  # checked, not made
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputFolderError, match=r"a-file/sub \(\S+/a-file is a file\)"):
        check_writable_folder(tmp_path / "a-file" / "sub")
