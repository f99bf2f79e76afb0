"""`sam validate --lint` and `sam build` of infra/template.yaml, then every sample event against
the built function in a fresh, isolated Python process (the stand-in for `sam local invoke`,
which needs Docker).

The build goes to a temporary directory; nothing is written to the repository. Until a trained
model is committed in lambda_handler/model/, the test model from conftest.py is copied into the
built function, where the bundled model would be.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra import make_events

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "infra" / "template.yaml"
INVOKE_LOCAL = REPO / "infra" / "invoke_local.py"
PACKAGE_TARGET_MB = 130  # Lambda refuses more than 250 MB unzipped
# The python3.11 runtime runs on Amazon Linux 2: shared libraries must not need a newer glibc.
LAMBDA_GLIBC = (2, 26)
NEVER_PACKAGED = {"train", "tests", "export", "bench", "artifacts", "infra", "docs", "data"}


def sam_executable() -> str | None:
    beside_python = str(Path(sys.executable).parent)
    return shutil.which("sam", path=os.pathsep.join([beside_python, os.environ.get("PATH", "")]))


def sam(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the SAM CLI offline: no telemetry, a region, this Python (3.11) for the Makefile."""
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "PYTHON": shlex.quote(sys.executable),
    }
    executable = sam_executable()
    assert executable
    return subprocess.run(
        [executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def tail(done: subprocess.CompletedProcess, lines: int = 40) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if sam_executable() is None:
        pytest.skip("the AWS SAM CLI (`sam`) is not installed")
    if shutil.which("make") is None:
        pytest.skip("`make` is not installed; sam's makefile build method needs it")
    return tmp_path_factory.mktemp("sam")


@pytest.fixture(scope="module")
def function_dir(workdir: Path, serving_model_dir: Path) -> Path:
    """`sam build` into a temporary directory; the built ClassifyFunction, with a model."""
    build, cache = workdir / "build", workdir / "cache"
    done = sam(
        "build", "--template-file", str(TEMPLATE), "--build-dir", str(build),
        "--cache-dir", str(cache), cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, (
        "sam build failed. The package targets the python3.11 Lambda platform "
        "(manylinux2014 x86_64 wheels), so every pin in lambda_handler/requirements.txt needs "
        f"such a wheel:\n{tail(done)}"
    )
    built = build / "ClassifyFunction"
    model = built / "lambda_handler" / "model"
    if not (model / "manifest.json").is_file():
        shutil.copytree(serving_model_dir, model)
    return built


def test_template_passes_sam_validate_lint(workdir: Path):
    done = sam("validate", "--lint", "--template-file", str(TEMPLATE), cwd=workdir, timeout=120)
    assert done.returncode == 0, tail(done)


def directory_mb(root: Path) -> float:
    files = (path for path in root.rglob("*") if path.is_file() and not path.is_symlink())
    return sum(path.stat().st_size for path in files) / 1e6


def test_package_holds_only_the_handler_and_its_dependencies(function_dir: Path):
    top = {path.name for path in function_dir.iterdir()}
    assert "lambda_handler" in top
    assert not top & NEVER_PACKAGED
    assert {"numpy", "onnxruntime"} <= top
    handler = function_dir / "lambda_handler"
    assert (handler / "app.py").is_file()
    assert (handler / "requirements.txt").is_file()
    size = directory_mb(function_dir)
    assert size <= PACKAGE_TARGET_MB, f"the unzipped package is {size:.0f} MB"


def test_bytecode_is_fresh_and_valid_whatever_the_file_dates(function_dir: Path):
    """Every .pyc is unchecked-hash for this CPython and matches its source: Lambda uses it even
    though `sam deploy` zips every file with the date 1980-01-01."""
    sources = list((function_dir / "lambda_handler").rglob("*.py"))
    assert sources
    for source in sources:
        compiled = Path(importlib.util.cache_from_source(str(source)))
        assert compiled.is_file(), f"no bytecode for {source.relative_to(function_dir)}"
    for compiled in function_dir.rglob("*.pyc"):
        header = compiled.read_bytes()[:16]
        where = compiled.relative_to(function_dir)
        assert header[:4] == importlib.util.MAGIC_NUMBER, f"{where} is for another Python"
        assert int.from_bytes(header[4:8], "little") == 0b01, f"{where} is not unchecked-hash"
        source = Path(importlib.util.source_from_cache(str(compiled)))
        assert header[8:16] == importlib.util.source_hash(source.read_bytes()), f"{where} is stale"


def glibc_needed(library: Path) -> tuple[int, int]:
    """The newest GLIBC_2.x symbol version a shared library refers to."""
    versions = re.findall(rb"GLIBC_2\.(\d+)", library.read_bytes())
    return max(((2, int(minor)) for minor in versions), default=(2, 0))


def test_native_libraries_load_on_amazon_linux_2(function_dir: Path):
    libraries = [path for path in function_dir.rglob("*.so*") if path.is_file()]
    assert libraries
    too_new = {
        str(path.relative_to(function_dir)): "{}.{}".format(*needed)
        for path in libraries
        if (needed := glibc_needed(path)) > LAMBDA_GLIBC
    }
    assert not too_new, f"these need a newer glibc than Lambda python3.11's 2.26: {too_new}"


def invoke(function_dir: Path, events: list[Path]) -> tuple[list[dict], dict, float]:
    """Run infra/invoke_local.py in a fresh `python -I -S`; (answers, runtime report, wall s)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    command = [sys.executable, "-I", "-S", str(INVOKE_LOCAL), str(function_dir), *map(str, events)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines and "runtime" in lines[-1], f"rc={done.returncode}\n{done.stderr[-3000:]}"
    return lines[:-1], lines[-1]["runtime"], wall


def test_every_event_gets_its_expected_answer_from_the_built_function(function_dir: Path):
    expected = json.loads((make_events.EVENTS_DIR / make_events.EXPECTED_FILE).read_text())
    events = sorted(make_events.EVENTS_DIR / name for name in expected)
    answers, runtime, wall = invoke(function_dir, events)

    modules = runtime["modules"]
    for package in ("numpy", "onnxruntime"):
        origin = Path(modules["files"][package])
        assert origin.is_relative_to(function_dir), f"{package} came from {origin}"
    assert modules["outside_function_dir"] == []

    assert [answer["event"] for answer in answers] == [path.name for path in events]
    failures = {
        answer["event"]: found
        for answer in answers
        if (found := make_events.problems(expected[answer["event"]], answer["response"]))
    }
    assert not failures
    print(
        f"\ncold start from {function_dir}: import+load {runtime['import_and_load_ms']:.0f} ms, "
        f"first answer {runtime['script_to_first_answer_ms']:.0f} ms after the script started, "
        f"{len(answers)} events in {wall:.2f} s wall (process included); "
        f"unzipped size {directory_mb(function_dir):.0f} MB"
    )
