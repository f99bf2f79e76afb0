"""AWS Lambda entry point (`lambda_handler.app.handler`).

The model is fetched, verified and loaded once per container, here at import (cold start);
a model that cannot be served is logged and answered with 503, never raised from the import.
"""

from __future__ import annotations

from lambda_handler.service import Service
from lambda_handler.settings import Settings

SERVICE = Service.from_settings(Settings.from_env())


def handler(event: object, context: object) -> dict[str, object]:
    """Answer an API Gateway (REST v1 / HTTP API v2) proxy event or a direct invocation."""
    return SERVICE.handle(event, context)
