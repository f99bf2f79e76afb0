"""Invoke the built Lambda function on sample events without Docker (stand-in for
`sam local invoke`).

    sam build                                   # in infra/ (see samconfig.toml)
    python3.13 -I -S invoke_local.py .aws-sam/build/ClassifyFunction events/v2-classify-single.json

Run it with a CPython 3.13, as the package holds cp313 wheels (infra/runtime.py finds one), and
with `-I -S`: the interpreter then adds neither the environment, the user's nor any
site-packages to the module path, and this script puts only the function directory in front
of the standard library, as /var/task is on Lambda. numpy and onnxruntime therefore come from
the build, never from a virtualenv; the last output line lists where every imported module came
from and names any that came from elsewhere.

The function gets the environment that template.yaml gives it (`DEFAULT_ENV`, overridable with
`--env NAME=VALUE`), a Lambda-like context, and one event per file, in order, in one process:
the first answer is the cold start. Output is one JSON line per event,
`{"event", "response", "ms"}`, or `{"event", "error": {"errorType", "errorMessage",
"stackTrace"}, "ms"}` when the function raises (a bulk batch whose options it refuses), as
Lambda reports a function error; then `{"runtime": {...}}` with the time to import the handler
(which loads the model) and to the first answer, and where numpy and onnxruntime came from.
The function's own log lines go to stderr, as they go to CloudWatch on Lambda. The exit status
is 1 when an event raised or a module came from outside the function directory.

Unlike `sam local invoke` this uses the local CPython and glibc, not Amazon Linux 2023's, and has
no boto3, so MODEL_S3_URI cannot be tried here. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import sysconfig
import time
import traceback
import uuid
from pathlib import Path

STARTED = time.perf_counter()

HANDLER_MODULE, HANDLER_NAME = "lambda_handler.app", "handler"
FUNCTION_NAME = "ClassifyFunction"
MEMORY_MB = 1769
TIMEOUT_S = 10
# The function's environment as template.yaml sets it with default parameters.
DEFAULT_ENV = {"MODEL_S3_URI": "", "LOG_LEVEL": "INFO", "ORT_NUM_THREADS": "1"}


class LambdaContext:
    """The attributes and method of the context object that the Lambda runtime passes."""

    def __init__(self, function_name: str = FUNCTION_NAME) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = str(MEMORY_MB)
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        )
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2026/11/25/[$LATEST]local"
        self._deadline = time.monotonic() + TIMEOUT_S

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def stdlib_roots() -> list[Path]:
    return [Path(sysconfig.get_path(name)).resolve() for name in ("stdlib", "platstdlib")]


def is_stdlib(path: Path) -> bool:
    """True for the standard library's own files, not its site-packages."""
    in_packages = "site-packages" in path.parts or "dist-packages" in path.parts
    return not in_packages and any(path.is_relative_to(root) for root in stdlib_roots())


def isolate(function_dir: Path) -> None:
    """Module path = the function directory, then the standard library, and nothing else."""
    stdlib = [entry for entry in sys.path if entry and is_stdlib(Path(entry).resolve())]
    sys.path[:] = [str(function_dir), *stdlib]
    sys.dont_write_bytecode = True  # leave the build as sam built it (/var/task is read-only)


def lambda_environment(function_dir: Path, overrides: dict[str, str]) -> dict[str, str]:
    """What the Lambda runtime and template.yaml put in the function's environment."""
    return {
        "LAMBDA_TASK_ROOT": str(function_dir),
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        **DEFAULT_ENV,
        **overrides,
    }


def module_origins(function_dir: Path) -> dict[str, object]:
    """The interpreter's version, where numpy and onnxruntime came from, and every imported
    module that came neither from the function directory nor from the standard library."""
    outside = []
    for name, module in sorted(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name == "__main__" or not file:
            continue
        path = Path(file).resolve()
        if not (path.is_relative_to(function_dir) or is_stdlib(path)):
            outside.append(name)
    packages = {name: sys.modules.get(name) for name in ("numpy", "onnxruntime")}
    versions = {name: getattr(module, "__version__", None) for name, module in packages.items()}
    return {
        "files": {name: getattr(module, "__file__", None) for name, module in packages.items()},
        "versions": {"python": sys.version.split()[0], **versions},
        "outside_function_dir": outside,
    }


def run(function_dir: Path, events: list[tuple[Path, object]], env: dict[str, str]) -> int:
    """Import the handler (cold start), invoke it on each event (by its file), print JSON
    lines."""
    isolate(function_dir)
    os.environ.update(lambda_environment(function_dir, env))
    out = sys.stdout
    # The function logs to sys.stdout; send that to stderr and keep stdout for the answers.
    with contextlib.redirect_stdout(sys.stderr):
        before_import = time.perf_counter()
        # app.py loads the model at import, as Lambda's init phase does.
        handler = getattr(importlib.import_module(HANDLER_MODULE), HANDLER_NAME)
        import_ms = (time.perf_counter() - before_import) * 1000
        first_answer_ms, function_errors = None, 0
        for path, event in events:
            began = time.perf_counter()
            try:
                outcome = {"response": handler(event, LambdaContext())}
            except Exception as error:  # as Lambda reports a function error (a refused batch)
                function_errors += 1
                trace = traceback.format_exception(error)
                outcome = {
                    "error": {
                        "errorType": type(error).__name__,
                        "errorMessage": str(error),
                        "stackTrace": [line.rstrip("\n") for line in trace[1:]],
                    }
                }
            ms = (time.perf_counter() - began) * 1000
            if first_answer_ms is None:
                first_answer_ms = (time.perf_counter() - STARTED) * 1000
            line = {"event": path.name, **outcome, "ms": round(ms, 3)}
            print(json.dumps(line, ensure_ascii=False), file=out, flush=True)
    runtime = {
        "python": sys.version.split()[0],
        "import_and_load_ms": round(import_ms, 1),
        "script_to_first_answer_ms": None if first_answer_ms is None else round(first_answer_ms, 1),
        "modules": module_origins(function_dir),
    }
    print(json.dumps({"runtime": runtime}), file=out, flush=True)
    return 1 if function_errors or runtime["modules"]["outside_function_dir"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "function_dir", type=Path, help="the built function, e.g. .aws-sam/build/ClassifyFunction"
    )
    parser.add_argument("events", type=Path, nargs="+", help="event JSON files")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set one of the function's environment variables (repeatable)",
    )
    args = parser.parse_args(argv)
    function_dir = args.function_dir.resolve()
    if not (function_dir / HANDLER_MODULE.split(".")[0]).is_dir():
        parser.error(f"{function_dir} holds no {HANDLER_MODULE.split('.')[0]}/; run sam build")
    malformed = [item for item in args.env if "=" not in item or item.startswith("=")]
    if malformed:
        parser.error(f"--env takes NAME=VALUE, got {malformed[0]!r}")
    events = []
    for path in args.events:
        try:
            events.append((path.resolve(), json.loads(path.read_text(encoding="utf-8"))))
        except OSError as error:
            parser.error(f"cannot read event file {path}: {error.strerror}")
        except ValueError as error:  # also UnicodeDecodeError
            parser.error(f"event file {path} is not JSON: {str(error).splitlines()[0][:200]}")
    overrides = dict(item.split("=", 1) for item in args.env)
    return run(function_dir, events, overrides)


if __name__ == "__main__":
    sys.exit(main())
