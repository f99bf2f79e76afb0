"""Structured logging: one JSON object per line on stdout, which CloudWatch indexes as fields.

The logger does not propagate to the root logger, so the Lambda runtime's own handler does not
print each line a second time in its tab-separated text format.
"""

from __future__ import annotations

import logging
import sys

from lambda_handler.api import utf8_json

LOGGER_NAME = "lambda_handler"
logger = logging.getLogger(LOGGER_NAME)


class _CurrentStdoutHandler(logging.Handler):
    """Writes each message to whatever `sys.stdout` is at emit time (Lambda, tests, serve)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure(level: str) -> None:
    """Install the JSON-lines handler once and set the level (`LOG_LEVEL`)."""
    if not any(isinstance(h, _CurrentStdoutHandler) for h in logger.handlers):
        handler = _CurrentStdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(level)


def log_event(level: int, event: str, **fields: object) -> None:
    """Write `{"level", "event", **fields}` as one JSON line when `level` is enabled."""
    if logger.isEnabledFor(level):
        record = {"level": logging.getLevelName(level), "event": event, **fields}
        # utf8_json: a lone surrogate (say, in a direct caller's request id) is escaped, not a
        # line lost to an encoding error
        logger.log(level, utf8_json(record, default=str))
