"""The local interpreter that stands in for Lambda's python3.13 runtime.

The package holds cp313 wheels, so only a CPython 3.13 can import it. Like infra/Makefile, this
takes $LAMBDA_PYTHON, else `python3.13` on PATH; `.ci/run` sets LAMBDA_PYTHON to pyenv's 3.13.
Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess

ENV_VAR = "LAMBDA_PYTHON"
RUNTIME_PYTHON = (3, 13)  # template.yaml: Runtime python3.13
VERSION_CHECK = (
    "import sys; sys.exit(sys.implementation.name != 'cpython' or sys.version_info[:2] != {})"
)


def lambda_python() -> str | None:
    """Path of a CPython 3.13 from $LAMBDA_PYTHON or PATH, or None when there is none."""
    candidate = os.environ.get(ENV_VAR) or shutil.which("python3.13")
    if not candidate or not is_runtime_python(candidate):
        return None
    return candidate


def is_runtime_python(executable: str) -> bool:
    """Whether `executable` runs and is a CPython of the runtime's version."""
    try:
        done = subprocess.run(
            [executable, "-I", "-S", "-c", VERSION_CHECK.format(RUNTIME_PYTHON)],
            capture_output=True,
            timeout=60,
        )
    except OSError:
        return False
    return done.returncode == 0


def missing_reason() -> str:
    """Why lambda_python() found nothing, in one line."""
    given = os.environ.get(ENV_VAR)
    version = "{}.{}".format(*RUNTIME_PYTHON)
    if given:
        return f"{ENV_VAR}={given} is not a working CPython {version}"
    return (
        f"no CPython {version}: set {ENV_VAR} to one (.ci/run uses pyenv's "
        f"$(pyenv root)/versions/3.13.0/bin/python) or put python{version} on PATH"
    )
