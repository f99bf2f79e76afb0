"""schemathesis against the local server with the shipped model: every answer to generated
requests, valid and invalid, conforms to lambda_handler/openapi.json (status, content type,
headers, schema), none is a 5xx, and every request that breaks the schema is refused.

Bounded: at most `max-examples` cases per operation (tests/contract/schemathesis.toml) and
MAX_SECONDS of fuzzing, with a fixed seed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "tests" / "contract" / "schemathesis.toml"
MAX_SECONDS = 60
# GET /openapi.json is the schema's own address, which schemathesis does not test;
# tests/test_openapi.py holds it equal to the file.
OPERATIONS = {"POST /classify", "GET /labels", "GET /health", "GET /"}


def schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is in requirements-dev.txt"
    return found


def test_every_answer_conforms_to_the_document(
    shipped_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    done = subprocess.run(
        [
            schemathesis(), "--config-file", str(CONFIG), "--no-color", "run",
            f"{shipped_server}/openapi.json", "--max-time", str(MAX_SECONDS),
            "--report", "ndjson", "--report-dir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=MAX_SECONDS * 4, cwd=tmp_path,
    )  # fmt: skip
    summary = done.stdout[done.stdout.find("SUMMARY") :] or done.stdout[-3000:]
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert cases, summary
    generated, passed = map(int, cases.groups())
    tested = set()
    for report in tmp_path.glob("*.ndjson"):
        tested |= set(re.findall(r'"label": ?"([A-Z]+ /[^"]*)"', report.read_text()))
    assert tested == OPERATIONS
    assert generated == passed and generated >= 500, summary
    with capsys.disabled():  # the count belongs in CI's log
        print(f"\nschemathesis: {generated} cases on {len(tested)} operations, all conform")


def test_the_config_names_only_real_checks():
    """A misspelt check in the config would silently not run."""
    text = CONFIG.read_text(encoding="utf-8")
    checks = set(re.findall(r"^\[checks\.(\w+)\]", text, re.M))
    help_text = subprocess.run(
        [schemathesis(), "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    known = set(re.findall(r"[a-z_]+", help_text[help_text.find("--checks") :][:1500]))
    assert checks and checks <= known, checks - known
