"""The Lambda package as `sam build` makes it from infra/template.yaml, and its unzipped size."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "infra" / "template.yaml"
FUNCTION = "ClassifyFunction"
BUNDLED_MODEL = Path("lambda_handler") / "model"


def sam_build(workdir: Path) -> Path:
    """`sam build` into `workdir` (offline; this venv's pip, and LAMBDA_PYTHON for the bytecode,
    as infra/Makefile reads it); the function dir."""
    beside_python = str(Path(sys.executable).parent)
    sam = shutil.which("sam", path=os.pathsep.join([beside_python, os.environ.get("PATH", "")]))
    if sam is None:
        raise SystemExit("error: the AWS SAM CLI (`sam`) is not installed; or pass --build-dir")
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "PIP": f"{shlex.quote(sys.executable)} -m pip",
    }
    build = workdir / "build"
    command = [sam, "build", "--template-file", str(TEMPLATE), "--build-dir", str(build)]
    done = subprocess.run(
        [*command, "--cache-dir", str(workdir / "cache")],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"error: sam build failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return function_dir(build)


def function_dir(path: Path) -> Path:
    """The built function directory: `path` itself or `path/ClassifyFunction`."""
    for candidate in (path / FUNCTION, path):
        if (candidate / "lambda_handler" / "app.py").is_file():
            return candidate.resolve()
    raise SystemExit(f"error: {path} holds no built {FUNCTION} (lambda_handler/app.py)")


def tree_bytes(root: Path) -> int:
    """Bytes of every regular file under `root` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def unzipped_mb(function: Path, model_dir: Path | None) -> float:
    """Unzipped package size in MB: the build, with `model_dir` in place of its bundled model."""
    size = tree_bytes(function)
    if model_dir is not None:
        size += tree_bytes(model_dir) - tree_bytes(function / BUNDLED_MODEL)
    return size / 1e6
