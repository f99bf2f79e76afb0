"""Measure faster alternatives to the shipped model, for a decision (nothing here ships).

    python bench/alternatives.py [--keras-model artifacts/lstm.keras] [--model-dir DIR]
                                 [--sizes 96x128 80x128 64x128 ...] [--build-dir DIR]

1. The same trained weights as a leaner graph (bench/seqlens_graph.py), next to the exported
   model.onnx: speed, and the largest score difference between the two.
2. Random-weight models of other sizes (LSTM units x embedding width), through the real export
   (bench/random_model.py), each also as the leaner graph.

Every figure is a raw `Classifier.predict` in the built Lambda package (onnxruntime 1.16.3, one
thread), on real abstracts. Writes bench/alternatives.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe, machine
from bench.measure import Plan, function_env, isolated, percentiles_ms, run_json
from bench.package import BUNDLED_MODEL, function_dir, sam_build
from bench.papers import REPO, default_papers_path, read_papers
from bench.random_model import export_random_model
from bench.report import number, table
from lambda_handler.files import write_bytes_atomic, write_json_atomic

# the sizes trained for README.md ("Speed against quality"), and one smaller
DEFAULT_SIZES = ("96x128", "80x128", "64x128", "96x64", "48x128")
EXPORTED, LEANER = "exported graph (tf2onnx)", "leaner graph (sequence_lens)"


def leaner_twin(model_dir: Path, keras_model: Path, out: Path) -> Path:
    """A copy of `model_dir` whose model.onnx is the leaner graph of `keras_model`'s weights."""
    import keras

    import train.lstm  # noqa: F401  (registers the custom layer)
    from bench.seqlens_graph import sequence_lens_graph

    model = keras.saving.load_model(keras_model, compile=False)
    twin = Path(shutil.copytree(model_dir, out))
    write_bytes_atomic(twin / "model.onnx", sequence_lens_graph(model))
    return twin


def candidates(args: argparse.Namespace, served: Path, scratch: Path, papers) -> list[dict]:
    """The trained model and its twin, then each random size and its twin."""
    found = []
    if args.keras_model:
        twin = leaner_twin(served, args.keras_model, scratch / "trained-leaner")
        found += [
            {"name": f"trained: {EXPORTED}", "dir": str(served)},
            {"name": f"trained: {LEANER}", "dir": str(twin), "compare_to": f"trained: {EXPORTED}"},
        ]
    for size in args.sizes:
        units, width = (int(part) for part in size.split("x"))
        folder = scratch / f"random-{size}"
        model_dir = export_random_model(folder, papers, units=units, embedding_dim=width)
        twin = leaner_twin(model_dir, folder / "lstm.keras", folder / "leaner")
        found += [
            {"name": f"{size}: {EXPORTED}", "dir": str(model_dir)},
            {"name": f"{size}: {LEANER}", "dir": str(twin), "compare_to": f"{size}: {EXPORTED}"},
        ]
    return found


def markdown(results: dict, context: dict[str, str]) -> str:
    rows = []
    for name, figures in results.items():
        single = percentiles_ms(figures["single_s"])
        diff = figures["max_abs_diff"]
        rows.append([
            name, number(figures["onnx_mb"], 1), number(single["p50"], 3), number(single["p99"], 3),
            number(figures["as_sent"]), number(figures["sub_batched"]),
            "" if diff is None else f"{diff:.1e}",
        ])  # fmt: skip
    header = [
        "model (units x embedding: graph)", "model.onnx MB", "one abstract p50 (ms)", "p99 (ms)",
        "batch of 32 padded as sent (/s)", "batch of 32 as `predict` runs it (/s)",
        "max abs score diff vs exported",
    ]  # fmt: skip
    return f"""# Alternatives to the shipped model graph

Written by `python bench/alternatives.py` ({context["date"]}) on {context["machine"]}; papers:
{context["papers"]}. Raw `Classifier.predict` in the built package (onnxruntime 1.16.3, one
thread); "as sent" is one run padded to the batch's longest, "as `predict` runs it" sorts the
batch by length into sub-batches. Random-weight sizes say nothing about accuracy; what the
trained sizes score is in README.md, "Speed against quality".

{table(header, rows)}

The leaner graph (bench/seqlens_graph.py) computes the same function from the same weights as
the export of train/lstm.py's padding-invariant BiLSTM, but it is built by hand: one
bidirectional ONNX `LSTM` with `sequence_lens` over a post-padded copy of the token ids, which
skips padding steps, instead of the two unidirectional LSTMs and the index and mask ops that
tf2onnx emits. The export must come from tf2onnx, so it stays a measurement.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-model", type=Path, help="trained model (artifacts/lstm.keras)")
    parser.add_argument("--model-dir", type=Path, help="its export (default: bundled model)")
    parser.add_argument("--sizes", nargs="*", default=list(DEFAULT_SIZES), help="UNITSxWIDTH")
    parser.add_argument("--build-dir", type=Path, help="an existing `sam build` output")
    parser.add_argument("--papers", type=Path, help="CSV or JSONL of papers")
    parser.add_argument("--requests", type=int, default=400, help="one-abstract runs per model")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="per batch figure")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "alternatives.md")
    args = parser.parse_args(argv)
    if args.keras_model is None and (REPO / "artifacts" / "lstm.keras").is_file():
        args.keras_model = REPO / "artifacts" / "lstm.keras"
    papers_path = args.papers or default_papers_path()
    papers = read_papers(papers_path)
    before = machine()
    with tempfile.TemporaryDirectory(prefix="arxiv-alternatives-") as tmp:
        scratch = Path(tmp)
        function = function_dir(args.build_dir) if args.build_dir else sam_build(scratch)
        served = (args.model_dir or function / BUNDLED_MODEL).resolve()
        workload = {
            "papers": [[paper.title, paper.abstract] for paper in papers],
            "candidates": candidates(args, served, scratch, papers),
            "batch": 32,
            "requests": args.requests,
            "min_seconds": args.min_seconds,
        }
        write_json_atomic(scratch / "candidates.json", workload)
        plan = Plan(function_dir=function, model_dir=served, papers=papers)
        results = run_json(
            isolated("raw", str(function), str(scratch / "candidates.json")), function_env(plan)
        )
    context = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe(before, machine()),
        "papers": str(papers_path),
    }
    write_bytes_atomic(args.out, markdown(results, context).encode("utf-8"))
    print(markdown(results, context))
    return 0


if __name__ == "__main__":
    sys.exit(main())
