"""The function's per-container state: load the model once, then answer events.

`Service.from_settings` never raises: any failure to obtain or verify the model is logged and
turns requests into 503s until a later try succeeds. `handle` never raises either: unexpected
faults become a 500 carrying only the request id, with the traceback kept for the logs.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from dataclasses import dataclass, field

from lambda_handler import bulk, logs
from lambda_handler.api import ApiError, json_response, parse_event
from lambda_handler.manifest import ModelError
from lambda_handler.model import Classifier
from lambda_handler.routes import Outcome, Router
from lambda_handler.settings import Settings

# How often a container whose model failed to load tries again on a request. The cause may pass
# (an S3 hiccup, an upload in progress), and without a retry the container would answer 503
# until Lambda retires it; the interval keeps a lasting failure from slowing every request. A
# bulk batch always tries again: Step Functions already spaces its retries.
RELOAD_INTERVAL_SECONDS = 30.0


class ModelUnavailable(RuntimeError):
    """A bulk batch reached a container whose model did not load (again). Lambda names the
    error by this class, and the state machine retries the batch a little later."""


@dataclass
class Service:
    """A router over the loaded model (or its load failure), plus the cold-start flag."""

    router: Router
    cold_start: bool = field(default=True)
    settings: Settings | None = None  # where the model came from, to load it again
    last_load: float = field(default_factory=time.monotonic)  # when the model was last loaded

    @property
    def classifier(self) -> Classifier | None:
        """The loaded model, or None when it failed to load."""
        return self.router.classifier

    @property
    def failure(self) -> str | None:
        """Why the model is unavailable (None when it loaded)."""
        return self.router.failure

    @classmethod
    def from_settings(cls, settings: Settings) -> Service:
        """Fetch (S3) and load the model the settings name; log one line saying how it went."""
        logs.configure(settings.log_level)
        for warning in settings.warnings:
            logs.log_event(logging.WARNING, "bad_setting", message=warning)
        return cls(load_router(settings), settings=settings)

    def handle(self, event: object, context: object = None) -> dict[str, object]:
        """Answer one Lambda event with an API Gateway proxy response; never raises. A Step
        Functions Distributed Map batch goes to `handle_batch` instead."""
        if bulk.is_batch_event(event):
            return self.handle_batch(event, context)  # type: ignore[arg-type]
        started = time.perf_counter()
        cold, self.cold_start = self.cold_start, False
        self.retry_load()
        request_id = _request_id(event, context)
        source, method, route, gateway_id = "unknown", "", "-", None
        try:
            request = parse_event(event)
            source, method, route = request.source, request.method, request.path
            gateway_id = request.gateway_request_id
            outcome = self.router.dispatch(request)
        except ApiError as error:
            outcome = Outcome(error.response(), route)
        except Exception:
            logs.log_event(
                logging.ERROR,
                "internal_error",
                request_id=request_id,
                route=route,
                traceback=traceback.format_exc(),
            )
            body = {
                "error": "internal_error",
                "message": f"internal error; quote request id {request_id}",
                "request_id": request_id,
            }
            outcome = Outcome(json_response(500, body), route)
        response = outcome.response.to_proxy(request_id)
        logs.log_event(
            logging.INFO,
            "request",
            request_id=request_id,
            source=source,
            method=method,
            route=outcome.route,
            status=outcome.response.status,
            documents=outcome.documents,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            cold_start=cold,
            **(
                {"gateway_request_id": gateway_id}
                if gateway_id and gateway_id != request_id
                else {}
            ),
        )
        return response

    def handle_batch(self, event: dict, context: object = None) -> dict[str, object]:
        """`{"results": [...]}`, one per item (bulk.py). Raises when the model is unavailable
        or the event is no batch, so that Step Functions retries the batch or counts it
        failed instead of recording answers that are not there."""
        started = time.perf_counter()
        cold, self.cold_start = self.cold_start, False
        self.retry_load(force=True)
        if self.classifier is None:
            raise ModelUnavailable(f"the model is unavailable: {self.failure}")
        answer = bulk.handle_batch(self.classifier, event)
        results = answer["results"]
        logs.log_event(
            logging.INFO,
            "batch",
            request_id=_request_id(event, context),
            items=len(results),
            failed=sum("error" in result for result in results),
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            cold_start=cold,
        )
        return answer

    def retry_load(self, force: bool = False) -> None:
        """Load the model again if it failed to load, and either `force` is set or
        `RELOAD_INTERVAL_SECONDS` have passed since the last try."""
        if self.classifier is not None or self.settings is None:
            return
        if force or time.monotonic() - self.last_load >= RELOAD_INTERVAL_SECONDS:
            self.router = load_router(self.settings)
            self.last_load = time.monotonic()  # after the try: a slow one counts from its end


def load_router(settings: Settings) -> Router:
    """A router over the model the settings name, or over why it cannot be loaded; logs one
    line saying how it went."""
    source = settings.model_s3_uri or str(settings.model_dir)
    started = time.perf_counter()
    try:
        if settings.model_s3_uri:
            classifier = _load_from_s3(settings)
        else:
            classifier = Classifier.load(settings.model_dir, settings.ort_threads)
    except ModelError as error:
        return _failed(str(error), source)
    except Exception as error:
        return _failed(
            f"unexpected {type(error).__name__} while loading the model",
            source,
            traceback=traceback.format_exc(),
        )
    logs.log_event(
        logging.INFO,
        "model_loaded",
        source=source,
        model=classifier.info.to_dict(),
        labels=len(classifier.labels),
        vocabulary=classifier.tokenizer.size,
        threads=settings.ort_threads,
        load_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return Router(classifier)


def _load_from_s3(settings: Settings) -> Classifier:
    """The model at MODEL_S3_URI, through the local cache; a cached copy that no longer loads
    (changed after it was checked) is checked file by file against S3 and repaired, once."""
    from lambda_handler.s3_model import FETCH_SECONDS, fetch_model_within

    uri, cache = settings.model_s3_uri or "", settings.model_cache_dir
    deadline = time.monotonic() + FETCH_SECONDS  # one budget for both fetches
    model_dir = fetch_model_within(FETCH_SECONDS, uri, cache)
    try:
        return Classifier.load(model_dir, settings.ort_threads)
    except ModelError as first:
        try:
            remaining = deadline - time.monotonic()
            model_dir = fetch_model_within(remaining, uri, cache, trust_marker=False)
            return Classifier.load(model_dir, settings.ort_threads)
        except ModelError as second:
            if str(second) == str(first):
                raise
            raise ModelError(f"{first}; checked against S3 again: {second}") from None


def _failed(reason: str, source: str, **details: object) -> Router:
    logs.log_event(
        logging.ERROR,
        "model_load_failed",
        message=f"refusing to serve (requests get 503 until a later try loads it): {reason}",
        reason=reason,
        source=source,
        **details,
    )
    return Router(None, reason)


def _request_id(event: object, context: object) -> str:
    """The Lambda request id, else API Gateway's, else a fresh UUID."""
    candidate = getattr(context, "aws_request_id", None)
    if isinstance(candidate, str) and candidate:
        return candidate
    if isinstance(event, dict):
        request_context = event.get("requestContext")
        if isinstance(request_context, dict):
            candidate = request_context.get("requestId")
            if isinstance(candidate, str) and candidate:
                return candidate[:128]
    return str(uuid.uuid4())
