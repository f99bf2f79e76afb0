"""Fault injection with real processes: broken model files met by a cold start, and export and
training runs killed part-way.

Already covered elsewhere, in-process, and not repeated here: refusing a tampered model.onnx, a
missing tokenizer.json, a wrong manifest version and a dozen other broken directories
(tests/test_runtime_model.py); an export interrupted before its swap (tests/test_export.py);
training data with a broken quote, binary garbage, a missing `terms` column or an empty file,
and a training run interrupted before it writes (tests/test_train_run.py). Here the same
promises are checked the way they would fail in production: a fresh interpreter importing the
handler (a cold start), and SIGINT or SIGKILL sent to `export/run.py` and `train/run.py`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    SERVING_MODEL_NAME,
    serving_v1_event,
    serving_v2_event,
    write_serving_manifest,
)
from test_export import (
    export_args,
    snapshot,
    training_run,  # noqa: F401  (fixture: a fake training run)
)

from bench.figures import record
from export import artifacts as artifacts_schema
from lambda_handler import manifest
from lambda_handler.model import Classifier

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
SAMPLE = os.environ.get("ARXIV_SAMPLE_CSV")
ABSTRACT = "We train convolutional neural networks for object detection in images."
COLD_START = (
    "import json, sys\n"
    "from lambda_handler import app  # loads the model at import, as Lambda's init does\n"
    "for event in json.loads(sys.argv[1]):\n"
    "    print(json.dumps({'answer': app.handler(event, None)}), flush=True)\n"
)
REFUSING = "refusing to serve (requests get 503 until a later try loads it): "
EVENTS = [
    serving_v2_event("GET", "/health"),
    serving_v2_event("POST", "/classify", {"abstract": ABSTRACT}),
    serving_v1_event("GET", "/labels"),
    {"title": "Detection", "abstract": ABSTRACT},
]


# --- broken model files, met by a cold start ------------------------------------------------


def truncate(name: str, remanifest: bool = False, keep: float = 0.5) -> Callable[[Path], None]:
    """Cut a file to `keep` of its size; optionally rewrite manifest.json to match it."""

    def apply(model_dir: Path) -> None:
        path = model_dir / name
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
        if remanifest:
            write_serving_manifest(model_dir)

    return apply


def flip_byte(name: str, at: Callable[[bytes], int] = lambda data: len(data) // 3):
    """Change one bit of a file's byte `at(data)` (by default a third of the way in)."""

    def apply(model_dir: Path) -> None:
        data = bytearray((model_dir / name).read_bytes())
        data[at(bytes(data))] ^= 0x20
        (model_dir / name).write_bytes(bytes(data))

    return apply


BREAKAGES = {
    "truncated model.onnx": (truncate("model.onnx"), "model.onnx is"),
    "truncated model.onnx, manifest rewritten to match": (
        truncate("model.onnx", remanifest=True),
        "model.onnx cannot be loaded by onnxruntime",
    ),
    "empty model.onnx, manifest rewritten to match": (
        truncate("model.onnx", remanifest=True, keep=0.0),
        "model.onnx cannot be loaded by onnxruntime",
    ),
    "tampered model.onnx (one byte)": (flip_byte("model.onnx"), "model.onnx sha256"),
    "tampered manifest.json (one byte)": (
        flip_byte("manifest.json", at=lambda data: data.index(SERVING_MODEL_NAME.encode())),
        "manifest.json does not match its own manifest_sha256",
    ),
    "missing tokenizer.json": (
        lambda model_dir: (model_dir / "tokenizer.json").unlink(),
        "tokenizer.json is missing",
    ),
    "manifest format_version 1": (
        lambda model_dir: write_serving_manifest(model_dir, format_version=1),
        "format_version is 1",
    ),
    "missing baseline.npz": (
        lambda model_dir: (model_dir / "baseline.npz").unlink(),
        "baseline.npz is missing",
    ),
    "truncated baseline.npz, manifest rewritten to match": (
        truncate("baseline.npz", remanifest=True),
        "baseline.json/baseline.npz: not a readable npz file",
    ),
    "tampered combiner.npz, manifest rewritten to match": (
        truncate("combiner.npz", remanifest=True, keep=0.9),
        "combiner.json/combiner.npz: not a readable npz file",
    ),
    "truncated manifest.json": (truncate("manifest.json"), "manifest.json is not valid JSON"),
    "model directory deleted": (shutil.rmtree, "no model: the model directory does not exist"),
}


def cold_start(model_dir: Path) -> subprocess.CompletedProcess:
    """A fresh interpreter imports the handler with MODEL_DIR and answers EVENTS."""
    env = {**os.environ, "MODEL_DIR": str(model_dir), "PYTHONPATH": str(REPO), "LOG_LEVEL": "INFO"}
    env.pop("MODEL_S3_URI", None)
    return subprocess.run(
        [sys.executable, "-c", COLD_START, json.dumps(EVENTS)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_model_gives_a_clean_503_and_one_clear_log_line_at_cold_start(
    make_serving_model_dir, breakage
):
    model_dir = make_serving_model_dir()
    damage, reason = BREAKAGES[breakage]
    damage(model_dir)
    done = cold_start(model_dir)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    logs = [line for line in lines if "answer" not in line]
    answers = [line["answer"] for line in lines if "answer" in line]

    failure = logs[0]
    assert (failure["level"], failure["event"]) == ("ERROR", "model_load_failed")
    assert failure["message"].startswith(REFUSING)
    assert reason in failure["message"] and "traceback" not in failure
    assert sum(line["event"] == "model_load_failed" for line in logs) == 1
    assert len(answers) == len(EVENTS)
    for answer in answers:
        body = json.loads(answer["body"])
        assert answer["statusCode"] == 503, answer
        assert body["error"] == "model_unavailable" and reason in body["message"]
        assert str(model_dir) not in answer["body"]
    assert json.loads(answers[0]["body"])["status"] == "unavailable"
    record(
        "faults",
        f"cold start on: {breakage}",
        "503",
        note=failure["message"].removeprefix(REFUSING),
    )


# --- export/run.py killed part-way ----------------------------------------------------------


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float) -> bool:
    """Poll `condition` every millisecond; False when the process ended or time ran out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.001)
    return False


def staging_dirs(target: Path) -> set[str]:
    """Staging folders that `lambda_handler.files.staged_directory` made beside `target`."""
    return {p.name for p in target.parent.glob(f".{target.name}.staging-*")}


def kill_while_writing(process: subprocess.Popen, target: Path, rng: random.Random) -> str:
    """SIGKILL a run a random few milliseconds after it starts filling a new staging folder."""
    existing = staging_dirs(target)
    if not wait_for(lambda: staging_dirs(target) - existing, process, timeout=600):
        return "finished before writing"
    time.sleep(rng.uniform(0, 0.03))
    process.kill()
    process.wait(timeout=60)
    return "killed while writing or swapping" if process.returncode < 0 else "finished"


def kill_at_random(process: subprocess.Popen, target: Path, rng: random.Random) -> str:
    """SIGKILL a run at a random moment of its first seconds (imports, conversion, parity)."""
    existing = staging_dirs(target)
    wait_for(lambda: False, process, timeout=rng.uniform(0.5, 6.0))
    process.kill()
    process.wait(timeout=60)
    if process.returncode >= 0:
        return "finished"
    return "killed while writing" if staging_dirs(target) - existing else "killed before writing"


def start(command: list[str], log: Path, sigint: object = signal.SIG_DFL) -> subprocess.Popen:
    """Run `command` in its own session with SIGINT at `sigint` (a shell's background job,
    `cmd &` or `nohup`, starts with it ignored; the jobs install their own handlers)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            command,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),  # type: ignore[arg-type]
        )


def test_export_killed_at_random_points_leaves_the_previous_model_serving(
    training_run,  # noqa: F811  (the fixture imported above)
    serving_model_dir,
    tmp_path,
):
    out = Path(shutil.copytree(serving_model_dir, tmp_path / "deploy" / "model"))
    before, previous_version = snapshot(out), Classifier.load(out).info.version
    command = [sys.executable, "export/run.py", *export_args(training_run, out)]
    rng = random.Random(20261125)
    landed = []
    for kill in (kill_at_random, kill_while_writing, kill_while_writing, kill_while_writing):
        landed.append(kill(start(command, tmp_path / "export.log"), out, rng))
        # Old model byte for byte, or (a kill after the swap) a complete new one; either serves.
        served = Classifier.load(out)
        assert snapshot(out) == before or served.info.version != previous_version, landed
    assert any("killed" in where for where in landed), landed

    # The killed runs' staging folders do not stop the next export.
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert Classifier.load(out).info.version != previous_version
    record("faults", "export/run.py SIGKILLed", len(landed), "times", "; ".join(landed))
    record(
        "faults",
        "staging folders left by SIGKILL",
        len(staging_dirs(out)),
        note="hidden, never served; the SAM build skips them",
    )


# --- train/run.py interrupted -----------------------------------------------------------------

needs_sample = pytest.mark.skipif(
    not SAMPLE, reason="set ARXIV_SAMPLE_CSV to the Kaggle sample CSV (.ci/run does)"
)
TRAIN_ARGS = ["--epochs", "1", "--vocab-size", "3000", "--min-label-count", "5", "--quiet"]
# What a complete run leaves: every file the export reads (its names, not a copy of them).
ARTIFACT_FILES = {
    artifacts_schema.KERAS_MODEL_FILE, artifacts_schema.TOKENIZER_FILE,
    artifacts_schema.LABELS_FILE, artifacts_schema.DATA_FILE, artifacts_schema.TEST_SPLIT_FILE,
    artifacts_schema.PREDICTIONS_FILE, manifest.BASELINE_FILE, manifest.BASELINE_WEIGHTS_FILE,
    manifest.COMBINER_FILE, manifest.COMBINER_WEIGHTS_FILE,
}  # fmt: skip


@pytest.fixture
def previous_run(tmp_path: Path) -> tuple[Path, Path]:
    """An earlier run's artifacts/ and reports/ that an interrupted run must not touch."""
    artifacts, reports = tmp_path / "run" / "artifacts", tmp_path / "run" / "reports"
    (artifacts / "baseline").mkdir(parents=True)
    reports.mkdir()
    (artifacts / "lstm.keras").write_bytes(b"previous model")
    (artifacts / "data.json").write_text('{"previous": true}')  # a previous run's: replaceable
    (artifacts / "baseline" / "labels.json").write_text('{"previous": true}')
    (reports / "metrics.json").write_text('{"previous": true}')
    return artifacts, reports


def train_command(artifacts: Path, reports: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(REPO / "train" / "run.py"), "--data", str(SAMPLE),
        "--artifacts", str(artifacts), "--reports", str(reports), *TRAIN_ARGS, *extra,
    ]  # fmt: skip


@needs_sample
@pytest.mark.parametrize(
    ("sent", "sigint"),
    [("SIGINT", signal.SIG_DFL), ("SIGINT", signal.SIG_IGN), ("SIGTERM", signal.SIG_DFL)],
    ids=["sigint", "sigint-background-job", "sigterm"],
)
def test_sigint_during_training_exits_130_and_leaves_no_half_written_artifacts(
    previous_run, sent, sigint
):
    artifacts, reports = previous_run
    before = snapshot(artifacts.parent)
    log = artifacts.parent.parent / "train.log"
    # Five epochs, interrupted when the first one has been scored: patience 2 guarantees at
    # least two more, so the signal lands inside model.fit however fast the machine is (a
    # fixed sleep assumed how long one epoch takes).
    process = start(train_command(artifacts, reports, "--epochs", "5"), log, sigint)
    try:
        first_epoch = lambda: " - val micro-F1" in log.read_text()  # noqa: E731
        assert wait_for(first_epoch, process, timeout=600), log.read_text()
        process.send_signal(getattr(signal, sent))
        assert process.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    assert output.rstrip().endswith("interrupted: previous artifacts and reports are untouched")
    assert "Traceback" not in output
    assert snapshot(artifacts.parent) == before
    assert sorted(p.name for p in artifacts.parent.iterdir()) == ["artifacts", "reports"]
    started = "as a background job" if sigint is signal.SIG_IGN else "in the foreground"
    name = f"train/run.py {sent} during model.fit, started {started}"
    record("faults", name, "exit 130", note="artifacts untouched")


@needs_sample
def test_sigkill_while_training_writes_leaves_old_or_complete_artifacts(previous_run):
    artifacts, reports = previous_run
    before = snapshot(artifacts)
    process = start(train_command(artifacts, reports), artifacts.parent.parent / "train.log")
    landed = kill_while_writing(process, artifacts, random.Random(7))
    names = {p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*") if p.is_file()}
    assert snapshot(artifacts) == before or names == ARTIFACT_FILES, (landed, names)
    for path in reports.iterdir():  # each report file is whole: old, or new and complete
        if path.suffix == ".json":
            json.loads(path.read_text())
    record("faults", "train/run.py SIGKILLed while writing", landed, note="artifacts old or new")
