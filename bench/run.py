"""Benchmark the Lambda function as it ships, side by side with the same model in Keras.

    python bench/run.py                                # committed lambda_handler/model/
    python bench/run.py --model-dir DIR --keras-model DIR/lstm.keras

Builds the package with `sam build` into a temporary directory (or uses --build-dir), measures
cold start, warm latency, batch throughput, peak RSS and package size on real abstracts
($ARXIV_SAMPLE_CSV, else artifacts/test_split.jsonl.gz, or --papers), prints the targets, and
writes bench/results.md, bench/results.png and bench/results.json. Takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import findings, report
from bench.measure import Plan, measure
from bench.package import BUNDLED_MODEL, function_dir, sam_build
from bench.papers import REPO, default_papers_path, read_papers
from export.artifacts import KERAS_MODEL_FILE
from infra import runtime
from lambda_handler.files import write_json_atomic

DEFAULT_KERAS_MODEL = REPO / "artifacts" / KERAS_MODEL_FILE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, help="model directory (default: the one bundled in the build)"
    )
    parser.add_argument(
        "--keras-model", type=Path, help=f"Keras model (default {DEFAULT_KERAS_MODEL} if present)"
    )
    parser.add_argument("--build-dir", type=Path, help="an existing `sam build` output to use")
    parser.add_argument(
        "--python",
        help=f"interpreter that runs the function (default ${runtime.ENV_VAR}, else python3.13)",
    )
    parser.add_argument("--papers", type=Path, help="CSV or JSONL of papers (title, abstract)")
    parser.add_argument("--requests", type=int, default=1000, help="one-abstract requests")
    parser.add_argument("--cold-starts", type=int, default=10, help="fresh processes")
    parser.add_argument("--keras-requests", type=int, default=100, help="Keras one-abstract runs")
    parser.add_argument(
        "--keras-threads", type=int, default=1, help="TensorFlow threads (1; 0 = all cores)"
    )
    parser.add_argument("--min-seconds", type=float, default=2.0, help="per batch figure")
    parser.add_argument("--out", type=Path, default=REPO / "bench", help="where results go")
    parser.add_argument("--note", default="", help="a line for results.md, e.g. the machine load")
    parser.add_argument(
        "--rerender", action="store_true", help="rewrite results.md/.png from results.json only"
    )
    args = parser.parse_args(argv)
    if args.python is None and not args.rerender:
        args.python = runtime.lambda_python()
        if args.python is None:
            parser.error(f"{runtime.missing_reason()}; or pass --python")
    if args.keras_model is None and DEFAULT_KERAS_MODEL.is_file():
        args.keras_model = DEFAULT_KERAS_MODEL
    return args


def model_description(model_dir: Path, where: str) -> str:
    manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    return f"{manifest['model']['name']} {manifest['model']['version']} ({where})"


def rerender(out: Path) -> int:
    """Rewrite results.md and results.png from results.json, without measuring again."""
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    context, results = saved["context"], saved["results"]
    context["findings"] = findings.text(results)
    print(*report.write(results, context, out), sep="\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rerender:
        return rerender(args.out)
    papers_path = args.papers or default_papers_path()
    papers = read_papers(papers_path)
    with tempfile.TemporaryDirectory(prefix="arxiv-bench-") as scratch:
        workdir = Path(scratch)
        if args.build_dir:
            function = function_dir(args.build_dir)
        else:
            print("building the package (sam build) ...", file=sys.stderr, flush=True)
            function = sam_build(workdir)
        model_dir = args.model_dir.resolve() if args.model_dir else None
        served = model_dir or function / BUNDLED_MODEL
        if not (served / "manifest.json").is_file():
            raise SystemExit(
                f"error: no model in {served} (none committed in lambda_handler/model/ yet?); "
                "pass --model-dir"
            )
        where = str(model_dir) if model_dir else f"bundled in the build, {BUNDLED_MODEL}/"
        model = model_description(served, where)  # before the temporary build goes away
        plan = Plan(
            function_dir=function,
            model_dir=model_dir,
            python=args.python,
            papers=papers,
            keras_model=args.keras_model,
            requests=args.requests,
            cold_starts=args.cold_starts,
            keras_requests=args.keras_requests,
            keras_threads=args.keras_threads,
            min_seconds=args.min_seconds,
            workdir=workdir,
        )
        print("measuring (a few minutes) ...", file=sys.stderr, flush=True)
        results = measure(plan)
    context = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": model,
        "papers": str(papers_path),
        "function": "sam build of infra/template.yaml"
        + (f" ({args.build_dir})" if args.build_dir else ", built by this run"),
        "keras": str(args.keras_model)
        if args.keras_model
        else f"no {DEFAULT_KERAS_MODEL.relative_to(REPO)}; pass --keras-model",
        "warmup": str(plan.warmup),
        "keras_requests": str(plan.keras_requests),
        "min_seconds": str(plan.min_seconds),
        "package_note": f", with {model_dir} in place of the bundled model" if model_dir else "",
        "findings": findings.text(results),
        "note": args.note,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "results.json", {"context": context, "results": results})
    paths = report.write(results, context, args.out)
    print(report.targets_table(results), report.side_by_side(results), sep="\n\n")
    print(f"\nwrote {', '.join(str(path) for path in paths)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
