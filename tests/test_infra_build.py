"""`sam validate --lint` and `sam build` of infra/template.yaml, then the built function run as
Lambda's python3.13 runtime would run it: every sample event, and the export's reference papers,
in a fresh, isolated CPython 3.13 (the stand-in for `sam local invoke`, which needs Docker). The
arm64 build, which this machine cannot run, is checked statically.

The interpreter comes from $LAMBDA_PYTHON (infra/runtime.py; `.ci/run` sets it); tests that
need it are skipped, with the reason, without one. Builds go to a temporary directory; nothing is
written to the repository. Until a trained model is committed in lambda_handler/model/, the test
model from conftest.py is copied into the built function, where the bundled model would be.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from export.reference import REFERENCE_FILE, Reference
from infra import check_package, make_events, runtime

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "infra" / "template.yaml"
MAKEFILE = REPO / "infra" / "Makefile"
INVOKE_LOCAL = REPO / "infra" / "invoke_local.py"
REFERENCE = REPO / "reports" / REFERENCE_FILE
PACKAGE_TARGET_MB = 130  # Lambda refuses more than 250 MB unzipped
SCORE_TOLERANCE = 1e-5  # the API rounds scores to 6 decimals
NEVER_PACKAGED = {"train", "tests", "export", "bench", "artifacts", "infra", "docs", "data"}


def sam_executable() -> str | None:
    beside_python = str(Path(sys.executable).parent)
    return shutil.which("sam", path=os.pathsep.join([beside_python, os.environ.get("PATH", "")]))


def build_env(**extra: str) -> dict[str, str]:
    """This environment (LAMBDA_PYTHON included), offline SAM, and this venv's pip for make."""
    return {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "PIP": f"{shlex.quote(sys.executable)} -m pip",
        **extra,
    }


def sam(*args: str, cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """Run the SAM CLI offline with build_env(**env)."""
    executable = sam_executable()
    assert executable
    return subprocess.run(
        [executable, *args],
        cwd=cwd,
        env=build_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
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
def lambda_python() -> str:
    """The CPython 3.13 that stands in for Lambda's runtime."""
    found = runtime.lambda_python()
    if found is None:
        pytest.skip(runtime.missing_reason())
    return found


def sam_build(workdir: Path, name: str, serving_model_dir: Path, *args: str, **env: str) -> Path:
    """`sam build` into workdir/name; the built ClassifyFunction, with a model."""
    build, cache = workdir / name, workdir / f"{name}-cache"
    done = sam(
        "build", "--template-file", str(TEMPLATE), "--build-dir", str(build),
        "--cache-dir", str(cache), *args, cwd=workdir, **env,
    )  # fmt: skip
    assert done.returncode == 0, (
        "sam build failed. The package targets Lambda's python3.13 (CPython 3.13 "
        "manylinux_2_28 wheels), so every pin in lambda_handler/requirements.txt needs "
        f"such a wheel:\n{tail(done)}"
    )
    built = build / "ClassifyFunction"
    model = built / "lambda_handler" / "model"
    if not (model / "manifest.json").is_file():
        shutil.copytree(serving_model_dir, model)
    return built


@pytest.fixture(scope="module")
def function_dir(workdir: Path, serving_model_dir: Path) -> Path:
    """The default (x86_64) build."""
    return sam_build(workdir, "build", serving_model_dir)


@pytest.fixture(scope="module")
def arm64_function_dir(workdir: Path, serving_model_dir: Path) -> Path:
    """The Graviton build, made as the README says."""
    return sam_build(
        workdir, "build-arm64", serving_model_dir,
        "--parameter-overrides", "Architecture=arm64", LAMBDA_ARCH="arm64",
    )  # fmt: skip


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


BYTECODE_CHECK = """
import importlib.util, json, sys
from pathlib import Path
root = Path(sys.argv[1])
problems = []
for source in sorted((root / "lambda_handler").rglob("*.py")):
    if not Path(importlib.util.cache_from_source(str(source))).is_file():
        problems.append(f"no bytecode for {source.relative_to(root)}")
compiled_files = sorted(root.rglob("*.pyc"))
for compiled in compiled_files:
    header, where = compiled.read_bytes()[:16], compiled.relative_to(root)
    if header[:4] != importlib.util.MAGIC_NUMBER:
        problems.append(f"{where} is for another Python")
    elif int.from_bytes(header[4:8], "little") != 0b01:
        problems.append(f"{where} is not unchecked-hash")
    else:
        source = Path(importlib.util.source_from_cache(str(compiled)))
        if header[8:16] != importlib.util.source_hash(source.read_bytes()):
            problems.append(f"{where} is stale")
print(json.dumps({"compiled": len(compiled_files), "problems": problems}))
"""


def test_bytecode_is_for_python_313_and_valid_whatever_the_file_dates(
    function_dir: Path, lambda_python: str
):
    """Every .pyc is unchecked-hash for CPython 3.13 and matches its source, so Lambda uses it
    although `sam deploy` zips every file with the date 1980-01-01. (The build found the same
    interpreter through LAMBDA_PYTHON.)"""
    done = subprocess.run(
        [lambda_python, "-I", "-S", "-c", BYTECODE_CHECK, str(function_dir)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    found = json.loads(done.stdout)
    assert found["compiled"] > 100, "the package has (almost) no bytecode"
    assert found["problems"] == []


def test_native_libraries_are_x86_64_and_load_on_amazon_linux_2023(function_dir: Path):
    assert check_package.problems(function_dir, "x86_64") == []


def test_trimmed_package_leaves_out_what_the_function_never_loads(function_dir: Path):
    assert not list(function_dir.glob("onnxruntime/capi/libonnxruntime.so*"))
    for unused in ("onnxruntime/quantization", "onnxruntime/tools", "numpy/f2py"):
        assert not (function_dir / unused).exists(), unused
    assert not list((function_dir / "numpy").rglob("tests"))
    assert not list((function_dir / "numpy").rglob("*.pyi"))


def test_arm64_build_holds_only_aarch64_code_for_amazon_linux_2023(arm64_function_dir: Path):
    assert check_package.problems(arm64_function_dir, "arm64") == []
    assert list(arm64_function_dir.glob("onnxruntime/capi/*aarch64-linux-gnu.so"))
    assert (arm64_function_dir / "lambda_handler" / "model" / "manifest.json").is_file()
    size = directory_mb(arm64_function_dir)
    assert size <= PACKAGE_TARGET_MB, f"the unzipped arm64 package is {size:.0f} MB"


def test_a_package_for_another_cpu_fails_at_cold_start_in_one_clear_line(
    function_dir: Path, arm64_function_dir: Path, lambda_python: str
):
    """An arm64 package deployed as x86_64 (or the other way round, as a mistaken `--guided`
    answer does) names both architectures and the fix before numpy fails to import."""
    build = json.loads((function_dir / "lambda_handler" / "build.json").read_text())
    assert build == {"architecture": "x86_64"}
    health = make_events.EVENTS_DIR / "v2-health.json"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    command = [lambda_python, "-I", "-S", str(INVOKE_LOCAL), str(arm64_function_dir), str(health)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert (
        "WrongArchitecture: this package's numpy and onnxruntime were built for arm64, but the "
        "function runs on x86_64: build with `LAMBDA_ARCH=x86_64 sam build`"
    ) in done.stderr, done.stderr[-2000:]
    assert "Importing the numpy C-extensions failed" not in done.stderr


def make_build(tmp_path: Path, requirements: str, **env: str) -> subprocess.CompletedProcess:
    """infra/Makefile's target run as SAM runs it, on a one-file source directory."""
    source, artifacts = tmp_path / "source", tmp_path / "artifacts"
    source.mkdir()
    (source / "requirements.txt").write_text(requirements)
    return subprocess.run(
        ["make", "--makefile", str(MAKEFILE), "build-ClassifyFunction"],
        cwd=source,
        env=build_env(ARTIFACTS_DIR=str(artifacts), **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_missing_wheel_fails_the_build_in_one_line(workdir: Path, tmp_path: Path):
    done = make_build(tmp_path, "onnxruntime==0.0.1\n", LAMBDA_ARCH="arm64")
    assert done.returncode != 0
    assert done.stderr.splitlines()[0] == (
        "error: no CPython 3.13 wheel of onnxruntime==0.0.1 for manylinux_2_28_aarch64"
    ), done.stderr


def test_an_unknown_architecture_fails_the_build_in_one_line(workdir: Path, tmp_path: Path):
    done = make_build(tmp_path, "numpy==2.4.6\n", LAMBDA_ARCH="sparc")
    assert done.returncode != 0
    first = done.stderr.splitlines()[0]
    assert first == "error: LAMBDA_ARCH must be x86_64 or arm64, got 'sparc'", done.stderr
    assert not (tmp_path / "artifacts").exists()


def invoke(python: str, function_dir: Path, events: list[Path]) -> tuple[list[dict], dict, float]:
    """Run infra/invoke_local.py in a fresh `python -I -S`; (answers, runtime report, wall s)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    command = [python, "-I", "-S", str(INVOKE_LOCAL), str(function_dir), *map(str, events)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines and "runtime" in lines[-1], f"rc={done.returncode}\n{done.stderr[-3000:]}"
    return lines[:-1], lines[-1]["runtime"], wall


def test_a_batch_the_function_refuses_is_reported_as_lambda_reports_a_function_error(
    function_dir: Path, lambda_python: str, tmp_path: Path
):
    refused = tmp_path / "bulk-refused.json"
    batch = {"Items": [{"title": "t", "abstract": "Graph neural networks."}]}
    refused.write_text(json.dumps({**batch, "BatchInput": {"top_k": 21}}))
    health = make_events.EVENTS_DIR / "v2-health.json"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    command = [lambda_python, "-I", "-S", str(INVOKE_LOCAL), str(function_dir), str(refused)]
    done = subprocess.run(
        [*command, str(health)], env=env, capture_output=True, text=True, timeout=300
    )
    first, second = (json.loads(line) for line in done.stdout.splitlines()[:2])
    assert done.returncode == 1, done.stderr[-2000:]
    assert first["event"] == "bulk-refused.json" and "response" not in first
    assert first["error"]["errorType"] == "InvalidBatchOptions"
    assert "top_k" in first["error"]["errorMessage"]
    assert any("handle_batch" in line for line in first["error"]["stackTrace"])
    assert second["event"] == "v2-health.json" and second["response"]["statusCode"] == 200


def test_every_event_gets_its_expected_answer_from_the_built_function(
    function_dir: Path, lambda_python: str
):
    expected = json.loads((make_events.EVENTS_DIR / make_events.EXPECTED_FILE).read_text())
    events = sorted(make_events.EVENTS_DIR / name for name in expected)
    answers, report, wall = invoke(lambda_python, function_dir, events)

    assert report["python"].startswith("3.13."), report["python"]
    modules = report["modules"]
    for package in ("numpy", "onnxruntime"):
        origin = Path(modules["files"][package])
        assert origin.is_relative_to(function_dir), f"{package} came from {origin}"
    assert modules["outside_function_dir"] == []

    assert [answer["event"] for answer in answers] == [path.name for path in events]
    failures = {
        answer["event"]: found
        for answer in answers
        if (
            found := make_events.problems(
                expected[answer["event"]],
                answer.get("response"),
                answer.get("error", {}).get("errorType"),
            )
        )
    }
    assert not failures
    print(
        f"\ncold start from {function_dir}: import+load {report['import_and_load_ms']:.0f} ms, "
        f"first answer {report['script_to_first_answer_ms']:.0f} ms after the script started, "
        f"{len(answers)} events in {wall:.2f} s wall (process included); "
        f"unzipped size {directory_mb(function_dir):.0f} MB"
    )


def classify_event(
    path: Path, papers: list[tuple[str, str, str | None]], **options: object
) -> Path:
    """An HTTP API event POSTing `papers` (title, abstract, date or None) as one batch to
    /classify, written to `path`."""
    documents = [
        {"title": title, "abstract": abstract, **({"date": date} if date else {})}
        for title, abstract, date in papers
    ]
    body = json.dumps({"documents": documents, **options})
    path.write_text(json.dumps(make_events.http_api_v2(path.stem, "POST", "/classify", body)))
    return path


def test_built_package_reproduces_the_scores_the_export_verified(
    function_dir: Path, lambda_python: str, tmp_path: Path
):
    """The export's reference papers, with their dates, through the built handler, on CPython
    3.13 with the package's own onnxruntime and numpy: every score within 1e-5 of what the
    export's end-to-end gate saw, and the same label set for every paper."""
    reference = Reference.load(REFERENCE)
    manifest = function_dir / "lambda_handler" / "model" / "manifest.json"
    version = json.loads(manifest.read_text())["model"]["version"]
    assert reference.model_version == version, (
        f"{REFERENCE.relative_to(REPO)} is for model {reference.model_version}, but the package "
        f"bundles {version}: python export/run.py writes both"
    )
    assert len(reference.papers) >= 500
    dated = sum(date is not None for _, _, date in reference.papers)
    assert dated > 0, "the reference has no dated paper, so the year prior would go unchecked"
    everything = len(reference.labels)
    events = []
    for number, rows in enumerate(reference.batches()):
        papers = [reference.papers[i] for i in rows]
        scored = tmp_path / f"scores-{number}.json"
        events.append(classify_event(scored, papers, top_k=everything, threshold=0))
        events.append(classify_event(tmp_path / f"labels-{number}.json", papers, top_k=everything))
    answers, _, _ = invoke(lambda_python, function_dir, events)
    assert [answer["response"]["statusCode"] for answer in answers] == [200] * len(events)
    scores, label_sets = [], []
    for all_scores, chosen in zip(answers[::2], answers[1::2], strict=True):
        for result in json.loads(all_scores["response"]["body"])["results"]:
            row = {label["label"]: label["score"] for label in result["labels"]}
            scores.append([row[code] for code in reference.labels])
        for result in json.loads(chosen["response"]["body"])["results"]:
            label_sets.append(tuple(label["label"] for label in result["labels"]))
    difference = np.abs(np.asarray(scores) - reference.scores)
    paper, label = np.unravel_index(difference.argmax(), difference.shape)
    assert difference.max() <= SCORE_TOLERANCE, (
        f"paper {paper}, {reference.labels[label]}: |Δscore| {difference.max():.2e}"
    )
    differing = [i for i, codes in enumerate(label_sets) if codes != reference.label_sets[i]]
    assert differing == [], f"{len(differing)} papers get another label set, e.g. {differing[:5]}"
    print(
        f"\n{len(scores)} reference papers ({dated} dated) on {lambda_python}: max |Δscore| "
        f"{difference.max():.1e}, the same label set for every paper"
    )
