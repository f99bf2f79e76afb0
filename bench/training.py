"""Benchmark the full training run: wall time, peak memory and test quality against targets.

    python bench/training.py --data A.csv.gz [--data B.csv.gz] [-- extra train/run.py args]

Runs `train/run.py` in a child process (so its peak RSS can be read), then prints its time,
memory and the served system's test quality against the project's targets for the full
run on all fields. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = (
    ("wall time (min)", lambda r: r["minutes"], "≤", 40.0),
    ("peak RSS (GB)", lambda r: r["peak_rss_gb"], "≤", 8.0),
    ("served test micro-F1", lambda r: r["served"]["micro_f1"], "≥", 0.61),
    (
        "served minus best single micro-F1",
        lambda r: r["served"]["micro_f1"] - max(r["lstm"]["micro_f1"], r["baseline"]["micro_f1"]),
        "≥",
        0.006,
    ),
    ("served P@1 outside cs/stat", lambda r: r["outside_cs_stat"]["p_at_1"], "≥", 0.76),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", required=True, action="append", help="a training CSV; repeat for several"
    )
    parser.add_argument("--reports", type=Path, default=REPO / "reports")
    parser.add_argument("extra", nargs="*", help="more train/run.py arguments, after --")
    args = parser.parse_args(argv)
    command = [sys.executable, str(REPO / "train" / "run.py")]
    command += [flag for path in args.data for flag in ("--data", path)]
    command += ["--reports", str(args.reports), *args.extra]
    started = time.perf_counter()
    finished = subprocess.run(command, check=False)
    minutes = (time.perf_counter() - started) / 60
    if finished.returncode != 0:
        print(f"train/run.py failed with exit code {finished.returncode}", file=sys.stderr)
        return finished.returncode
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: kilobytes
    metrics = json.loads((args.reports / "metrics.json").read_text(encoding="utf-8"))
    results = {"minutes": minutes, "peak_rss_gb": peak_kb / 1024**2}
    results |= {name: model["test"] for name, model in metrics["models"].items()}
    results["outside_cs_stat"] = metrics["models"]["served"]["breakdown"]["outside_cs_stat"]

    print("\nfigure                          value    target   met")
    missed = 0
    for name, value_of, sign, target in TARGETS:
        value = value_of(results)
        if value is None:  # no test paper outside cs/stat (a CS-only run)
            print(f"{name:30s} {'-':>8s}   {sign} {target:<6g} no papers")
            continue
        met = value <= target if sign == "≤" else value >= target
        missed += not met
        print(f"{name:30s} {value:8.4f}   {sign} {target:<6g} {'yes' if met else 'NO'}")
    for name in ("baseline", "lstm", "served"):
        test, rule = results[name], metrics["models"][name]["rule"]
        print(
            f"{name:9s} micro-F1 {test['micro_f1']:.4f}  macro-F1 {test['macro_f1']:.4f}  "
            f"samples-F1 {test['samples_f1']:.4f}  P@1 {test['p_at_1']:.4f}  "
            f"P@3 {test['p_at_3']:.4f}  rule: {rule}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
