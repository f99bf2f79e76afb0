"""Run the probes (bench/probe.py, bench/keras_probe.py) in fresh processes and summarise them.

Every figure comes from a subprocess: the built function in the Lambda runtime's CPython 3.13
with `-I -S` (only the package and the standard library on its path, so the onnxruntime and numpy
that ship), Keras in this virtualenv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.machine import machine
from bench.package import BUNDLED_MODEL, unzipped_mb
from bench.papers import Paper
from infra.invoke_local import lambda_environment
from infra.make_events import http_api_v2
from lambda_handler.files import write_json_atomic
from lambda_handler.manifest import TOKENIZER_FILE
from lambda_handler.text import Tokenizer

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROBE = BENCH / "probe.py"
KERAS_PROBE = BENCH / "keras_probe.py"
BATCH_SIZES = (1, 8, 32, 64)
TIMEOUT_S = 1800


@dataclass(frozen=True)
class Plan:
    """What to measure and how much of it."""

    function_dir: Path
    model_dir: Path | None  # None: the model bundled in the build
    python: str  # the interpreter that runs the function (infra.runtime.lambda_python)
    papers: list[Paper]
    keras_model: Path | None = None
    requests: int = 1000
    warmup: int = 100
    cold_starts: int = 10
    keras_requests: int = 100
    keras_threads: int = 1  # as ORT_NUM_THREADS; 0 = TensorFlow's default (all cores)
    min_seconds: float = 2.0
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    options_batch: int = 32
    sub_batches: tuple[int, ...] = (2, 4, 8, 16)
    workdir: Path = field(default=Path("."))

    @property
    def served_model_dir(self) -> Path:
        return self.model_dir or self.function_dir / BUNDLED_MODEL


def classifiable(papers: list[Paper], tokenizer: Tokenizer) -> list[Paper]:
    """Papers whose abstract has a content word (the others get a 400, not a score)."""
    return [paper for paper in papers if tokenizer.words("", paper.abstract)]


def workload(plan: Plan) -> dict[str, object]:
    """The probes' input: v2 events of real abstracts, the papers, and the run's sizes."""
    tokenizer_path = plan.served_model_dir / TOKENIZER_FILE
    papers = classifiable(plan.papers, Tokenizer.load(tokenizer_path))

    def event(name: str, body: object) -> dict:
        return http_api_v2(name, "POST", "/classify", json.dumps(body, ensure_ascii=False))

    batch_events = {}
    for size in plan.batch_sizes:
        groups = [papers[i : i + size] for i in range(0, len(papers) - size + 1, size)][:8]
        batch_events[str(size)] = [
            event(f"batch-{size}-{i}", {"documents": [p.to_dict() for p in group]})
            for i, group in enumerate(groups)
        ]
    return {
        "tokenizer": str(tokenizer_path),
        "papers": [[paper.title, paper.abstract] for paper in papers],
        "single_events": [event(f"single-{i}", p.to_dict()) for i, p in enumerate(papers)],
        "batch_events": batch_events,
        "batch_sizes": list(plan.batch_sizes),
        "requests": plan.requests,
        "warmup": plan.warmup,
        "keras_requests": plan.keras_requests,
        "keras_threads": plan.keras_threads,
        "min_seconds": plan.min_seconds,
        "options_batch": plan.options_batch,
        "sub_batches": list(plan.sub_batches),
    }


def run_json(command: list[str], env: dict[str, str] | None = None) -> dict:
    """Run a probe; its last stdout line is the JSON result."""
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, env=env or plain_env()
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"error: {' '.join(command[:4])} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def plain_env() -> dict[str, str]:
    """Only locale, PATH, HOME and TMPDIR of this environment."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


def function_env(plan: Plan) -> dict[str, str]:
    """What Lambda and template.yaml give the function, with MODEL_DIR for an outside model."""
    overrides = {"MODEL_DIR": str(plan.model_dir)} if plan.model_dir else {}
    return {**plain_env(), **lambda_environment(plan.function_dir, overrides)}


def isolated(plan: Plan, *args: str) -> list[str]:
    return [plan.python, "-I", "-S", str(PROBE), *args]


def spawned() -> str:
    """Now on the system-wide monotonic clock, in ns, for a child to subtract from."""
    return str(time.clock_gettime_ns(time.CLOCK_MONOTONIC))


def percentiles(values: list[float], scale: float = 1.0) -> dict[str, float]:
    """p50, p95, p99, max and count of `values` times `scale`."""
    scaled = np.asarray(values, dtype=float) * scale
    p50, p95, p99 = np.percentile(scaled, [50, 95, 99])
    return {"p50": p50, "p95": p95, "p99": p99, "max": scaled.max(), "n": len(scaled)}


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    return percentiles(seconds, 1000)


def summarise_cold(runs: list[dict]) -> dict[str, object]:
    """Median and max of the total, and the median of each phase."""
    phases = [key for key in runs[0] if key.endswith("_ms")]
    return {
        "n": len(runs),
        "median_ms": float(np.median([run["total_ms"] for run in runs])),
        "max_ms": float(max(run["total_ms"] for run in runs)),
        "phases_median_ms": {key: float(np.median([run[key] for run in runs])) for key in phases},
    }


def serving(plan: Plan, workload_path: Path) -> dict[str, object]:
    """Cold starts, warm latency, batch throughput, peak RSS and size of the built function."""
    function, env = str(plan.function_dir), function_env(plan)
    event_path = plan.workdir / "cold_event.json"  # small: the cold start reads only this
    write_json_atomic(event_path, read_json(workload_path)["single_events"][0])
    cold = [
        run_json(isolated(plan, "cold", function, str(event_path), spawned()), env)
        for _ in range(plan.cold_starts)
    ]
    warm = run_json(isolated(plan, "warm", function, str(workload_path)), env)
    return {
        "cold": summarise_cold(cold),
        "single_ms": percentiles_ms(warm["single_handler_s"]),
        "single_raw_ms": percentiles_ms(warm["single_raw_s"]),
        "encode_ms": percentiles_ms(warm["encode_s"]),
        "tokens": percentiles(warm["tokens"]),
        "batches": {
            size: {way: figures["per_second"] for way, figures in ways.items()}
            for size, ways in warm["batches"].items()
        },
        "rss_after_load_mb": warm["rss_after_load_mb"],
        "peak_rss_mb": warm["peak_rss_mb"],
        "package_mb": unzipped_mb(plan.function_dir, plan.model_dir),
        "threads": warm["threads"],
        "versions": warm["modules"]["versions"],
        "outside_function_dir": warm["modules"]["outside_function_dir"],
    }


def options(plan: Plan, workload_path: Path) -> dict[str, object]:
    """Raw batch throughput under other session options and batch layouts, and an op profile."""
    return run_json(
        isolated(plan, "options", str(plan.function_dir), str(workload_path)), function_env(plan)
    )


def keras(plan: Plan, workload_path: Path) -> dict[str, object]:
    """The same figures for the Keras model (cold starts, `model(x)` and `model.predict(x)`)."""
    assert plan.keras_model is not None
    base = [sys.executable, str(KERAS_PROBE)]
    model, path = str(plan.keras_model), str(workload_path)
    cold = [run_json([*base, "cold", model, path, spawned()]) for _ in range(plan.cold_starts)]
    warm = run_json([*base, "warm", model, path])
    return {
        "cold": summarise_cold(cold),
        "single_ms": {way: percentiles_ms(times) for way, times in warm["single_s"].items()},
        "batches": {
            size: {way: figures["per_second"] for way, figures in ways.items()}
            for size, ways in warm["batches"].items()
        },
        "peak_rss_mb": warm["peak_rss_mb"],
        "versions": warm["versions"],
        "threads": warm["threads"],
    }


def interpreter_ms(python: str, runs: int = 10) -> float:
    """Median wall time of `python -I -S -c pass` (start-up plus exit), for reference."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([python, "-I", "-S", "-c", "pass"], check=True, env=plain_env())
        times.append(time.perf_counter() - began)
    return float(np.median(times) * 1000)


def measure(plan: Plan) -> dict[str, object]:
    """Every figure of the benchmark, as one JSON-ready dict."""
    workload_path = plan.workdir / "workload.json"
    write_json_atomic(workload_path, workload(plan))
    results: dict[str, object] = {"machine_before": machine()}
    results["serving"] = serving(plan, workload_path)
    results["serving"]["interpreter_only_ms"] = interpreter_ms(plan.python)
    results["options"] = options(plan, workload_path)
    if plan.keras_model is not None:
        results["keras"] = keras(plan, workload_path)
    results["machine_after"] = machine()
    return results
