"""Ctrl-C and `kill` as KeyboardInterrupt, for the command-line jobs (training, export, bulk)."""

from __future__ import annotations

import signal


def interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, also in a shell's
    background job (which starts with SIGINT ignored), so that a job's cleanup runs (staged
    folders, temporary files) and it exits 130 instead of dying mid-write."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
