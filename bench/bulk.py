"""Benchmark the local bulk run: papers/s with 1 and 2 workers, peak memory, and the time for a
million abstracts extrapolated from it.

    python bench/bulk.py [--records 100000] [--papers CSV_OR_JSONL] [--workers 1 2]

Writes a JSON Lines input of `--records` records by repeating the real abstracts of `--papers`
(default $ARXIV_SAMPLE_CSV, else artifacts/test_split.jsonl.gz, as for bench/run.py), then
times `python -m lambda_handler.bulk` on it, in a fresh output directory per run, with the
committed model. Peak RSS is the largest sum over the
process tree (parent and workers), sampled from /proc every 0.1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.papers import REPO, default_papers_path, read_papers


def write_input(source: Path, papers: int, path: Path) -> None:
    """`papers` JSON Lines records, cycling through the real papers of `source`."""
    rows = read_papers(source)
    with open(path, "w", encoding="utf-8") as out:
        for n in range(papers):
            paper = rows[n % len(rows)]
            out.write(json.dumps({"id": f"p{n}", **paper.to_dict()}) + "\n")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
            total += int(rss.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


def time_run(input_path: Path, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bulk-bench-") as output:
        command = [sys.executable, "-m", "lambda_handler.bulk", str(input_path), output,
                   "--workers", str(workers)]  # fmt: skip
        env = {**os.environ, "LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, tree_rss_mb(process.pid))
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        stderr = process.stderr.read() if process.stderr else ""
        if process.returncode != 0:
            raise SystemExit(f"bulk run failed ({process.returncode}): {stderr[-2000:]}")
        summary = json.loads((Path(output) / "_summary.json").read_text())
    papers = summary["classified"] + summary["failed"]
    return {"workers": workers, "papers": papers, "seconds": seconds,
            "papers_per_s": papers / seconds, "peak_rss_mb": peak}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records to classify")
    parser.add_argument("--papers", type=Path, help="CSV or JSONL of real papers to repeat")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if args.records < 1 or min(args.workers) < 1:
        parser.error("--records and --workers must be at least 1")
    args.papers = args.papers or default_papers_path()
    with tempfile.TemporaryDirectory(prefix="bulk-input-") as folder:
        input_path = Path(folder) / "papers.jsonl"
        write_input(args.papers, args.records, input_path)
        print(f"input: {args.records:,} records from {args.papers} ({os.cpu_count()} CPUs)")
        print("| workers | papers | seconds | papers/s | peak RSS (MB) | 1 million papers |")
        print("|---|---|---|---|---|---|")
        for workers in args.workers:
            run = time_run(input_path, workers)
            million = 1_000_000 / run["papers_per_s"] / 60
            print(f"| {workers} | {run['papers']:,} | {run['seconds']:.1f} | "
                  f"{run['papers_per_s']:,.0f} | {run['peak_rss_mb']:.0f} | {million:.1f} min |",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
