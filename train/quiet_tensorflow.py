"""Import TensorFlow without the C++ start-up lines a user cannot act on.

TensorFlow 2.21 logs its oneDNN notice and absl's "before InitializeLog" warning from C++ at
import, past `TF_CPP_MIN_LOG_LEVEL`, straight to file descriptor 2. Importing with that
descriptor pointed at /dev/null hides them; an import error still surfaces as an exception.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 (what C++ code writes to) to /dev/null for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow() -> None:
    """Import tensorflow and keras once, quietly (later imports are then free and silent)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_stderr_silenced():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
