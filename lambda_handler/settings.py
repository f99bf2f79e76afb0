"""Run-time settings read from environment variables, once per container.

Reading never raises: a malformed value falls back to its default and is reported in
`Settings.warnings`, so a typo in the function's configuration cannot break the import of app.py.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "model"
DEFAULT_THREADS = 1
MAX_THREADS = 16  # a Lambda function has at most 6 vCPUs; far more threads only thrash
DEFAULT_LOG_LEVEL = "INFO"


@dataclass(frozen=True)
class Settings:
    """Where the model comes from and how the function runs."""

    model_dir: Path = DEFAULT_MODEL_DIR
    model_s3_uri: str | None = None
    model_cache_dir: Path = Path(tempfile.gettempdir())
    ort_threads: int = DEFAULT_THREADS
    log_level: str = DEFAULT_LOG_LEVEL
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from MODEL_DIR, MODEL_S3_URI, MODEL_CACHE_DIR, ORT_NUM_THREADS, LOG_LEVEL."""
        env = os.environ if environ is None else environ
        warnings: list[str] = []

        threads = DEFAULT_THREADS
        raw_threads = env.get("ORT_NUM_THREADS", "").strip()
        if raw_threads:
            # ASCII digits only (int() also takes "1_0" and other scripts' digits), and no more
            # threads than onnxruntime takes or a function could use.
            if raw_threads.isascii() and raw_threads.isdigit() and raw_threads.strip("0"):
                requested = int(raw_threads) if len(raw_threads) <= 9 else MAX_THREADS + 1
                threads = min(requested, MAX_THREADS)
                if requested > MAX_THREADS:
                    warnings.append(
                        f"ORT_NUM_THREADS={raw_threads[:20]} is more than {MAX_THREADS}; using "
                        f"{MAX_THREADS}"
                    )
            else:
                warnings.append(
                    f"ORT_NUM_THREADS={raw_threads[:20]!r} is not a positive integer; using "
                    f"{DEFAULT_THREADS}"
                )

        level = env.get("LOG_LEVEL", "").strip().upper() or DEFAULT_LOG_LEVEL
        if not isinstance(logging.getLevelName(level), int):
            warnings.append(f"LOG_LEVEL={level!r} is not a logging level; using INFO")
            level = DEFAULT_LOG_LEVEL

        return cls(
            model_dir=Path(env.get("MODEL_DIR", "").strip() or DEFAULT_MODEL_DIR),
            model_s3_uri=env.get("MODEL_S3_URI", "").strip() or None,
            model_cache_dir=Path(env.get("MODEL_CACHE_DIR", "").strip() or tempfile.gettempdir()),
            ort_threads=threads,
            log_level=level,
            warnings=tuple(warnings),
        )
