"""The function runs with nothing but lambda_handler/requirements.txt installed (as in Lambda).

Slow: creates one venv and pip-installs onnxruntime and numpy into it (from the local index).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "sklearn", "scipy", "pandas", "nltk", "torch", "boto3")
SCRIPT = """
import importlib.util, json, sys
from lambda_handler import app
single = app.handler({"title": "Robots", "abstract": "robot navigation agents grasping"}, None)
event = {"version": "2.0", "rawPath": "/classify", "requestContext": {"http": {"method": "POST"}},
         "body": json.dumps({"documents": [{"abstract": "image segmentation"},
                                           {"abstract": "language models"}]})}
batch = app.handler(event, None)
print(json.dumps({
    "single": single["statusCode"], "batch": batch["statusCode"],
    "labels": json.loads(single["body"])["results"][0]["labels"],
    "loaded": sorted(m for m in %r if m in sys.modules),
    "importable": sorted(m for m in %r if importlib.util.find_spec(m) is not None),
    "handler_file": app.__file__,
}))
""" % (HEAVY, HEAVY)  # noqa: UP031


@pytest.mark.slow
def test_handler_runs_in_a_venv_holding_only_the_lambda_requirements(
    tmp_path, serving_model_dir, serving_service
):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    requirements = REPO / "lambda_handler" / "requirements.txt"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-input", "-r", str(requirements)],
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]

    build = tmp_path / "build"  # like a SAM build directory: just the package
    shutil.copytree(
        REPO / "lambda_handler",
        build / "lambda_handler",
        ignore=shutil.ignore_patterns("__pycache__", "model", "*.pyc"),
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "MODEL_", "VIRTUAL_ENV"))
    }
    env.update(
        {"PYTHONPATH": str(build), "MODEL_DIR": str(serving_model_dir), "LOG_LEVEL": "ERROR"}
    )
    done = subprocess.run(
        [str(python), "-I", "-c", f"import sys; sys.path.insert(0, {str(build)!r})\n" + SCRIPT],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["handler_file"].startswith(str(build))
    assert (result["single"], result["batch"]) == (200, 200)
    assert result["loaded"] == [] and result["importable"] == []
    expected = serving_service.handle(
        {"title": "Robots", "abstract": "robot navigation agents grasping"}
    )
    assert result["labels"] == json.loads(expected["body"])["results"][0]["labels"]
