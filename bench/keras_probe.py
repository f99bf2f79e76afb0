"""Measure the same model in Keras/TensorFlow, for comparison with the ONNX function.

    python bench/keras_probe.py cold KERAS_MODEL WORKLOAD.json SPAWNED_NS
    python bench/keras_probe.py warm KERAS_MODEL WORKLOAD.json

Inputs are the papers of bench/probe.py, tokenized by the same tokenizer.json; batches are
pre-padded to their longest member. TensorFlow gets `keras_threads` threads (bench/run.py's
--keras-threads: 1 like the function by default, 0 for TensorFlow's default of all cores).
Prints one JSON object. Besides `model(x)` (eager) and `model.predict(x)`, the warm figures
include the export's `tf.function` (export.convert.serving_function), the fastest way to serve
the model with TensorFlow, so the speed-up is not only measured against eager overhead.
"""

# ruff: noqa: E402  (the clock is read before any other import)
from __future__ import annotations

import time

TOP_NS = time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # first statement: the script starts here

import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.probe import cold_phases, now_ns, peak_rss_mb, run_mode, throughput, timed


def load(keras_model: Path, workload: dict) -> tuple[ModuleType, Any, list[list[int]]]:
    """(keras module, model, token ids of every paper); imports TensorFlow and sets its thread
    pools to `keras_threads` (0 keeps TensorFlow's default: all cores)."""
    import keras
    import tensorflow as tf

    if workload["keras_threads"]:
        tf.config.threading.set_intra_op_parallelism_threads(workload["keras_threads"])
        tf.config.threading.set_inter_op_parallelism_threads(workload["keras_threads"])

    import train.lstm  # noqa: F401  (registers the custom pooling layer)
    from lambda_handler.text import Tokenizer

    model = keras.saving.load_model(keras_model, compile=False)
    tokenizer = Tokenizer.load(Path(workload["tokenizer"]))
    sequences = [tokenizer.encode(title, abstract) for title, abstract in workload["papers"]]
    return keras, model, [sequence for sequence in sequences if sequence]


def batch(sequences: list[list[int]]):
    """Pre-padded int32 array, as the runtime feeds the model."""
    import numpy as np

    from lambda_handler.text import pad

    return np.asarray(pad(sequences), dtype=np.int32)


def cold(keras_model: Path, workload: dict, spawned_ns: int) -> dict:
    """Import TensorFlow, load the model and tokenizer, and score the first paper."""
    before_import = now_ns()
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    imported = now_ns()
    _, model, sequences = load(keras_model, workload)
    loaded = now_ns()
    model(batch(sequences[:1]), training=False).numpy()
    answered = now_ns()
    phases = cold_phases(spawned_ns, TOP_NS, before_import, loaded, answered)
    return {**phases, "import_ms": (imported - before_import) * 1e-6}


def warm(keras_model: Path, workload: dict) -> dict:
    """Single-paper latency and batch throughput of `model(x)`, `model.predict(x)` and the
    export's `tf.function` (dynamic `[batch, time]` signature, traced once)."""
    keras, model, sequences = load(keras_model, workload)
    import tensorflow as tf

    requests, min_seconds = workload["keras_requests"], workload["min_seconds"]
    singles = [batch([sequences[i % len(sequences)]]) for i in range(requests)]
    groups = {
        size: [batch(sequences[i : i + size]) for i in range(0, size * 4, size)]
        for size in workload["batch_sizes"]
    }

    def measure(ways: dict[str, Callable]) -> dict[str, dict]:
        """Latency of every single paper and throughput of every batch size, per way."""
        figures: dict[str, dict] = {"single_s": {}, "batches": {}}
        for name, way in ways.items():
            timed(way(x) for x in singles[:10])  # warm-up (and tracing)
            figures["single_s"][name] = timed(way(x) for x in singles)
        for size, xs in groups.items():
            figures["batches"][str(size)] = {
                name: throughput([way(x) for x in xs], size, min_seconds)
                for name, way in ways.items()
            }
        return figures

    result = measure(
        {
            "call": lambda x: lambda: model(x, training=False).numpy(),
            "predict": lambda x: lambda: model.predict(x, verbose=0),
        }
    )
    result["peak_rss_mb"] = peak_rss_mb()  # before the export's imports (tf2onnx, onnx)
    from export.convert import OUTPUT_NAME, serving_function

    function = serving_function(model)
    compiled = measure({"function": lambda x: lambda: function(x)[OUTPUT_NAME].numpy()})
    result["single_s"].update(compiled["single_s"])
    for size, ways in compiled["batches"].items():
        result["batches"][size].update(ways)
    result.update(
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
        threads={
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    )
    return result


if __name__ == "__main__":
    sys.exit(run_mode({"cold": cold, "warm": warm}, sys.argv[1:]))
