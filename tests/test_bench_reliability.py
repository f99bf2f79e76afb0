"""bench/reliability.py writes bench/reliability.md only from a run in which tests ran."""

import subprocess

import pytest

from bench import reliability


@pytest.fixture
def out(tmp_path, monkeypatch):
    path = tmp_path / "reliability.md"
    path.write_text("committed figures\n")
    monkeypatch.setattr(reliability, "OUT", path)
    return path


def test_help_is_the_scripts_own_and_writes_nothing(out, capsys):
    with pytest.raises(SystemExit) as stopped:
        reliability.main(["--help"])
    assert stopped.value.code == 0 and "reliability.md" in capsys.readouterr().out
    assert out.read_text() == "committed figures\n"


@pytest.mark.parametrize(("status", "written"), [(0, True), (1, True), (4, False), (5, False)])
def test_the_file_is_rewritten_only_when_tests_ran(out, monkeypatch, status, written):
    # pytest's exit status: 0 passed, 1 some failed, 4 usage error, 5 nothing collected
    run = subprocess.run

    def pytest_run(command, **kwargs):
        if command[1:3] != ["-m", "pytest"]:
            return run(command, **kwargs)  # the machine description's own commands
        assert command[-2:] == ["-k", "soak"]  # the arguments after -- reach pytest
        return subprocess.CompletedProcess(command, status, "== 3 passed in 1.0s ==\n", "")

    monkeypatch.setattr(reliability.subprocess, "run", pytest_run)
    assert reliability.main(["--", "-k", "soak"]) == status
    text = out.read_text()
    assert (text != "committed figures\n") is written
    if written:
        assert "`pytest -m reliability` with `-k soak`: **3 passed in 1.0s**" in text
