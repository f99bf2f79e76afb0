"""Refuse to start on a CPU other than the one the package's native wheels were built for.

`sam build` fetches numpy's and onnxruntime's wheels for `LAMBDA_ARCH` (infra/Makefile), which
SAM cannot take from the template's `Architecture` parameter; the Makefile records it in
`build.json` beside this module. A mismatch would otherwise surface as numpy's long
"Importing the numpy C-extensions failed" on every request. Standard library only: it runs
before numpy is imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

BUILD_FILE = Path(__file__).with_name("build.json")
# uname's machine names, as Lambda's Architectures spell them (os.uname: `platform` costs 1 ms)
ARCHITECTURES = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


class WrongArchitecture(RuntimeError):
    """The package was built for another CPU architecture than the one it runs on."""


def check_architecture(build_file: Path = BUILD_FILE, machine: str | None = None) -> None:
    """Raise `WrongArchitecture` naming both architectures and the fix; a source checkout
    (no build.json) is not checked."""
    if not build_file.is_file():
        return
    try:
        built = json.loads(build_file.read_text(encoding="utf-8"))["architecture"]
    except (ValueError, KeyError, TypeError):
        raise WrongArchitecture(
            f"{build_file.name} does not say which architecture the package was built for; "
            "rebuild it with `sam build`"
        ) from None
    raw = machine or os.uname().machine
    running = ARCHITECTURES.get(raw)
    if running is None:
        raise WrongArchitecture(
            f"the function runs on {raw}, which no Lambda architecture is; the package was "
            f"built for {built}"
        )
    if built != running:
        raise WrongArchitecture(
            f"this package's numpy and onnxruntime were built for {built}, but the function "
            f"runs on {running}: build with `LAMBDA_ARCH={running} sam build` for "
            f"Architecture={running}, or deploy with Architecture={built}"
        )
