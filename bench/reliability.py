"""Run the reliability suite and write its figures to bench/reliability.md.

    python bench/reliability.py [-- extra pytest arguments]

Runs `pytest -m reliability` with $RELIABILITY_FIGURES pointing at a scratch file, into which
the tests record their figures (bench/figures.py): soak RSS growth, fuzz examples, load
requests/s and p99, fault-injection outcomes. Exits with pytest's status, and leaves the file
alone when pytest ran no test (a usage error, nothing collected, an interruption).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import FIGURES_ENV
from bench.machine import describe, machine
from lambda_handler.files import write_bytes_atomic

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "reliability.md"
SECTIONS = {
    "soak": "Soak (tests/test_reliability_soak.py)",
    "fuzz": "Fuzz (tests/test_reliability_fuzz.py)",
    "load": "Load through the local server (tests/test_reliability_load.py)",
    "faults": "Fault injection (tests/test_reliability_faults.py)",
}


PYTEST_RAN = (0, 1)  # pytest's exit status when tests ran: all passed, or some failed


def markdown(
    figures: list[dict],
    summary: str,
    seconds: float,
    where: str,
    known: list[str],
    pytest_args: list[str] | None = None,
) -> str:
    """bench/reliability.md: one table per test file, in the order of SECTIONS, then the
    expected failures (known issues) with their reasons."""
    extra = f" with `{' '.join(pytest_args)}`" if pytest_args else ""
    parts = [
        "# Reliability figures",
        "",
        f"Written by `python bench/reliability.py` ({datetime.now(UTC):%Y-%m-%d %H:%M UTC}) from "
        f"`pytest -m reliability`{extra}: **{summary}** in {seconds / 60:.1f} min on {where}.",
    ]
    order = list(SECTIONS)
    ranked = sorted(figures, key=lambda f: order.index(f["test"]) if f["test"] in order else 99)
    for test, rows in groupby(ranked, key=lambda figure: figure["test"]):
        parts += [
            "",
            f"## {SECTIONS.get(test, test)}",
            "",
            "| figure | value | note |",
            "|---|---|---|",
        ]
        for row in rows:
            value = f"{row['value']:,}" if isinstance(row["value"], int) else str(row["value"])
            cell = f"{value} {row['unit']}".strip()
            note = str(row["note"]).replace("|", "\\|")
            parts.append(f"| {row['name']} | {cell} | {note} |")
    if known:
        parts += ["", "## Known issues (tests marked xfail)", ""]
        parts += [f"- {line.removeprefix('XFAIL ')}" for line in known]
    return "\n".join(parts) + "\n"


def parse_args(argv: list[str]) -> list[str]:
    """The extra pytest arguments (those after `--`); `--help` is this script's own."""
    parser = argparse.ArgumentParser(
        description="Run the reliability suite (pytest -m reliability) and write its figures to "
        "bench/reliability.md."
    )
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    return parser.parse_args(argv).pytest_args


def main(argv: list[str]) -> int:
    argv = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reliability-") as scratch:
        figures_path = Path(scratch) / "figures.jsonl"
        figures_path.touch()
        before = machine()
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "reliability", "-q", *argv],
            cwd=REPO,
            env={**os.environ, FIGURES_ENV: str(figures_path)},
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        figures = [json.loads(line) for line in figures_path.read_text().splitlines()]
    lines = done.stdout.strip().splitlines()
    print("\n".join(lines[-15:]))
    if done.returncode not in PYTEST_RAN:
        print(done.stderr.strip()[-2000:], file=sys.stderr)
        print(f"pytest ran no test (exit {done.returncode}); {OUT} left as it was", file=sys.stderr)
        return done.returncode
    summary = lines[-1].strip("= ") if lines else f"pytest exited with {done.returncode}"
    where = describe(before, machine())
    known = [line for line in lines if line.startswith("XFAIL ")]  # from pytest's -ra summary
    text = markdown(figures, summary, seconds, where, known, argv)
    write_bytes_atomic(OUT, text.encode("utf-8"))
    print(f"wrote {OUT}", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
