"""The local interpreter that stands in for Lambda's python3.13 runtime.

The package holds cp313 wheels, so only a CPython 3.13 can import it. Like infra/Makefile (a test
holds the two to the same choice), this takes $LAMBDA_PYTHON, else the first CPython 3.13 that
runs of `python3.13` on PATH (which may be a pyenv shim that does not) and pyenv's 3.13
installs; `.ci/run` sets LAMBDA_PYTHON to the same. Standard library only.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

ENV_VAR = "LAMBDA_PYTHON"
RUNTIME_PYTHON = (3, 13)  # template.yaml: Runtime python3.13
VERSION_CHECK = (
    "import sys; sys.exit(sys.implementation.name != 'cpython' or sys.version_info[:2] != {})"
)


def lambda_python() -> str | None:
    """Path of a CPython 3.13 ($LAMBDA_PYTHON, else the first that runs of PATH's python3.13
    and pyenv's 3.13 installs), or None when there is none."""
    if os.environ.get(ENV_VAR):
        candidate = os.environ[ENV_VAR]
        return candidate if is_runtime_python(candidate) else None
    root = pyenv_root()
    candidates = [shutil.which("python3.13")]
    if root:
        candidates += sorted(glob.glob(os.path.join(root, "versions", "3.13*", "bin", "python")))
    return next((c for c in candidates if c and is_runtime_python(c)), None)


def pyenv_root() -> str | None:
    """`pyenv root`, or None without pyenv."""
    try:
        done = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


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
        f"no CPython {version}: set {ENV_VAR} to one, put python{version} on PATH or install "
        f"{version} with pyenv"
    )


if __name__ == "__main__":  # `.ci/run` takes its choice from here
    import sys

    found = lambda_python()
    if found:
        print(found)
    sys.exit(0 if found else 1)
