"""AWS Lambda entry point (`lambda_handler.app.handler`).

The model is fetched, verified and loaded once per container, here at import (cold start);
a model that cannot be served is logged and answered with 503, never raised from the import.
Only a package built for another CPU architecture raises here (`build_check`): nothing in it
could answer.
"""

from __future__ import annotations

import os

from lambda_handler.build_check import check_architecture

# Before numpy is imported: wheels of another CPU fail in one clear line rather than in numpy's.
check_architecture()
# numpy's OpenBLAS starts a thread per CPU as it loads, for matrix products far larger than the
# function's; one thread takes 15-30 ms off the cold start (measured 2026-12-07). An operator's
# own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from lambda_handler.service import Service  # noqa: E402
from lambda_handler.settings import Settings  # noqa: E402

SERVICE = Service.from_settings(Settings.from_env())


def handler(event: object, context: object) -> dict[str, object]:
    """Answer an API Gateway (REST v1 / HTTP API v2) proxy event or a direct invocation."""
    return SERVICE.handle(event, context)
