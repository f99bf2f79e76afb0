"""Measure the built Lambda function from inside one isolated interpreter (`python -I -S`).

    python -I -S bench/probe.py cold    FUNCTION_DIR EVENT.json SPAWNED_NS
    python -I -S bench/probe.py warm    FUNCTION_DIR WORKLOAD.json
    python -I -S bench/probe.py options FUNCTION_DIR WORKLOAD.json

As with infra/invoke_local.py (whose context and module check this reuses), the module path
holds only the function directory and the standard library, so numpy and onnxruntime are the
versions that ship. The parent starts this process with the function's environment
(invoke_local.lambda_environment: template.yaml's variables, plus MODEL_DIR for a model outside
the build); the function logs at INFO as deployed, into /dev/null. Prints one JSON object; the
parent (bench/measure.py) turns the raw timings into statistics. Standard library only.
"""

# ruff: noqa: E402  (the clock is read before any other import)
from __future__ import annotations

import time

TOP_NS = time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # first statement: the script starts here

import contextlib
import importlib
import importlib.util
import json
import os
import resource
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

INVOKE_LOCAL = Path(__file__).resolve().parents[1] / "infra" / "invoke_local.py"
HANDLER = "lambda_handler.app"  # template.yaml: Handler lambda_handler.app.handler
GRAPH_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


def now_ns() -> int:
    """CLOCK_MONOTONIC is system-wide, so the parent's spawn time compares with ours."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def load_invoke_local() -> ModuleType:
    """infra/invoke_local.py as a module (it is a script, not part of the function)."""
    spec = importlib.util.spec_from_file_location("invoke_local", INVOKE_LOCAL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def enter_function(function_dir: Path) -> None:
    """Put the function first on the module path, which `-I -S` left as the standard library."""
    if sys.flags.isolated != 1 or sys.flags.no_site != 1:
        raise SystemExit("probe: run me with `python -I -S`")
    sys.path.insert(0, str(function_dir))
    sys.dont_write_bytecode = True  # leave the build as sam built it


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """The function's JSON log lines (stdout) go to /dev/null, as if shipped to CloudWatch."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(calls: Iterable[Callable[[], object]]) -> list[float]:
    """Seconds taken by each call, in order."""
    times = []
    for call in calls:
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return times


def throughput(calls: list[Callable[[], object]], items: int, min_seconds: float) -> dict:
    """Run the calls (each handling `items` papers) round-robin for `min_seconds` at least."""
    calls[0]()  # warm-up: first run of this shape
    done, began = 0, time.perf_counter()
    while True:
        for call in calls:
            call()
            done += items
        elapsed = time.perf_counter() - began
        if elapsed >= min_seconds:
            return {"papers": done, "seconds": elapsed, "per_second": done / elapsed}


def check_ok(answer: dict) -> dict:
    """A handler answer that must be a 200."""
    if answer.get("statusCode") != 200:
        raise SystemExit(f"probe: expected 200, got {json.dumps(answer)[:500]}")
    return answer


def cold(function_dir: Path, event: dict, spawned_ns: int) -> dict:
    """Import the handler (which loads the model) and answer one request, timing each phase."""
    enter_function(function_dir)
    with quiet_stdout():
        before_import = now_ns()
        handler = importlib.import_module(HANDLER).handler
        imported = now_ns()
        answer = check_ok(handler(event, SimpleNamespace(aws_request_id="cold-start")))
        answered = now_ns()
    return {
        **cold_phases(spawned_ns, TOP_NS, before_import, imported, answered),
        "status": answer["statusCode"],
        "modules": load_invoke_local().module_origins(function_dir),
    }


def cold_phases(spawned: int, top: int, started: int, loaded: int, answered: int) -> dict:
    """Milliseconds of each cold-start phase, from CLOCK_MONOTONIC readings in ns: process
    start, first line of the driver, start of the imports, model loaded, first answer."""
    ms = 1e-6
    return {
        "interpreter_ms": (top - spawned) * ms,
        "harness_ms": (started - top) * ms,
        "import_and_load_ms": (loaded - started) * ms,
        "first_request_ms": (answered - loaded) * ms,
        "total_ms": (answered - spawned) * ms,
    }


def warm(function_dir: Path, workload: dict) -> dict:
    """Single-abstract latency and batch throughput through the handler and the raw model."""
    enter_function(function_dir)
    invoke_local = load_invoke_local()
    min_seconds = workload["min_seconds"]
    with quiet_stdout():
        app = importlib.import_module(HANDLER)
        loaded_rss = peak_rss_mb()
        classifier = app.SERVICE.classifier
        context = invoke_local.LambdaContext()
        singles, requests = workload["single_events"], workload["requests"]
        sequences = [classifier.encode(title, abstract) for title, abstract in workload["papers"]]

        def single(i: int) -> Callable[[], object]:
            return lambda: check_ok(app.handler(singles[i % len(singles)], context))

        def raw(i: int) -> Callable[[], object]:
            return lambda: classifier.predict([sequences[i % len(sequences)]])

        def encode(i: int) -> Callable[[], object]:
            return lambda: classifier.encode(*workload["papers"][i % len(sequences)])

        timed(single(i) for i in range(workload["warmup"]))
        handler_times = timed(single(i) for i in range(requests))
        raw_times = timed(raw(i) for i in range(requests))
        encode_times = timed(encode(i) for i in range(requests))
        batches = {}
        for size, events in workload["batch_events"].items():
            n = int(size)
            groups = [sequences[i : i + n] for i in range(0, n * len(events), n)]
            batches[size] = {
                "handler": throughput(
                    [lambda e=e: check_ok(app.handler(e, context)) for e in events], n, min_seconds
                ),
                "raw": throughput(
                    [lambda g=g: classifier.predict(g) for g in groups], n, min_seconds
                ),
            }
    return {
        "single_handler_s": handler_times,
        "single_raw_s": raw_times,
        "encode_s": encode_times,
        "tokens": [min(len(paper.ids), classifier.tokenizer.max_length) for paper in sequences],
        "batches": batches,
        "rss_after_load_mb": loaded_rss,
        "peak_rss_mb": peak_rss_mb(),
        "threads": int(os.environ["ORT_NUM_THREADS"]),
        "modules": invoke_local.module_origins(function_dir),
    }


def options(function_dir: Path, workload: dict) -> dict:
    """Raw batch throughput under other session options and batch layouts, plus an op profile."""
    enter_function(function_dir)
    import numpy as np
    import onnxruntime as ort

    from lambda_handler.model import SUB_BATCH, Classifier
    from lambda_handler.settings import Settings
    from lambda_handler.text import pad

    settings = Settings.from_env()  # the environment the parent gave the function
    classifier = Classifier.load(settings.model_dir, settings.ort_threads)
    onnx_bytes = (settings.model_dir / "model.onnx").read_bytes()
    length = classifier.tokenizer.max_length  # the ids the LSTM reads
    sequences = [
        classifier.encode(title, abstract).ids[:length] for title, abstract in workload["papers"]
    ]
    size, min_seconds = workload["options_batch"], workload["min_seconds"]
    groups = [sequences[i : i + size] for i in range(0, len(sequences) - size + 1, size)][:20]

    def session(threads: int = 1, **config: str) -> ort.InferenceSession:
        settings = ort.SessionOptions()
        settings.intra_op_num_threads = settings.inter_op_num_threads = threads
        settings.log_severity_level = 3
        settings.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, config.pop("level", "ORT_ENABLE_ALL")
        )
        settings.execution_mode = getattr(ort.ExecutionMode, config.pop("mode", "ORT_SEQUENTIAL"))
        if config.pop("profile", "") == "1":
            settings.enable_profiling = True
            settings.profile_file_prefix = str(Path(tempfile.gettempdir()) / "bench-ort-profile")
        for key, value in config.items():
            settings.add_session_config_entry(key, value)
        return ort.InferenceSession(onnx_bytes, settings, providers=["CPUExecutionProvider"])

    def padded(group: list[list[int]]) -> np.ndarray:
        return np.asarray(pad(group), dtype=np.int32)

    def split(group: list[list[int]], most: int) -> list[np.ndarray]:
        ordered = sorted(group, key=len)
        return [padded(ordered[i : i + most]) for i in range(0, len(ordered), most)]

    def rate(run: ort.InferenceSession, layouts: list[list[np.ndarray]]) -> float:
        calls = [
            lambda parts=parts: [run.run(None, {"tokens": part}) for part in parts]
            for parts in layouts
        ]
        return throughput(calls, size, min_seconds)["per_second"]

    as_sent = [[padded(group)] for group in groups]
    shipped = session()
    results: dict[str, object] = {"batch": size, "layouts": {}, "sessions": {}}
    results["layouts"]["padded to the longest (as sent)"] = rate(shipped, as_sent)
    for most in workload["sub_batches"]:
        label = f"sorted by length, sub-batches of {most}"
        results["layouts"][label] = rate(shipped, [split(group, most) for group in groups])
    # what ORT_NUM_THREADS=2 gives a function with two vCPUs, with the shipped sub-batches
    results["two_threads_sub_batched"] = rate(
        session(2), [split(group, SUB_BATCH) for group in groups]
    )
    variants = {
        **{f"graph optimization {level}": {"level": level} for level in GRAPH_LEVELS},
        "allow_spinning=0": {"session.intra_op.allow_spinning": "0"},
        "2 threads (intra_op)": {"threads": "2"},
        "2 threads, ORT_PARALLEL": {"threads": "2", "mode": "ORT_PARALLEL"},
    }
    for label, config in variants.items():
        threads = int(config.pop("threads", "1"))
        results["sessions"][label] = rate(session(threads, **config), as_sent)
    results["padding"] = {
        "real_tokens": sum(map(len, sequences[: size * len(groups)])),
        "padded_tokens": sum(part.size for parts in as_sent for part in parts),
    }
    profiled = session(profile="1")
    for parts in as_sent:
        profiled.run(None, {"tokens": parts[0]})
    results["op_ms"] = op_times(Path(profiled.end_profiling()), len(as_sent))
    return results


def op_times(trace: Path, runs: int) -> dict[str, float]:
    """Milliseconds per run spent in each operator type, from an onnxruntime profile."""
    events = json.loads(trace.read_text())
    trace.unlink()
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1000 / runs
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def run_mode(modes: dict[str, Callable[..., dict]], argv: list[str]) -> int:
    """`MODE PATH DATA.json [SPAWNED_NS]`: print the JSON result of `modes[MODE]`."""
    mode, path, data_path = argv[0], Path(argv[1]).resolve(), Path(argv[2])
    if mode not in modes:
        raise SystemExit(f"unknown mode {mode!r}; expected one of {', '.join(modes)}")
    data = json.loads(data_path.read_text(encoding="utf-8"))
    spawned = [int(argv[3])] if len(argv) > 3 else []
    print(json.dumps(modes[mode](path, data, *spawned)))
    return 0


if __name__ == "__main__":
    sys.exit(run_mode({"cold": cold, "warm": warm, "options": options}, sys.argv[1:]))
