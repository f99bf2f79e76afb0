"""Figures that the reliability tests report, collected by bench/reliability.py.

A test calls `record("soak", "RSS growth", 1.2, "MB")`; the figure is printed (visible with
`pytest -s`) and, when $RELIABILITY_FIGURES names a file, appended to it as a JSON line.
"""

from __future__ import annotations

import json
import os

FIGURES_ENV = "RELIABILITY_FIGURES"


def record(test: str, name: str, value: object, unit: str = "", note: str = "") -> None:
    """Report one figure of a reliability test."""
    line = {"test": test, "name": name, "value": value, "unit": unit, "note": note}
    print(f"[{test}] {name}: {value} {unit} {note}".rstrip())
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
