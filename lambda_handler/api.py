"""API Gateway proxy protocol: turn REST (v1), HTTP API (v2) and direct-invocation events into
one `Request`, read JSON bodies, and build proxy responses and JSON errors.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 1 << 20
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
KNOWN_PATHS = ("/classify", "/labels", "/health", "/openapi.json", "/")


class ApiError(Exception):
    """A request the function refuses, answered as `{"error": code, "message": text}`."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return json_response(
            self.status, {"error": self.code, "message": self.message}, self.headers
        )


@dataclass(frozen=True)
class Response:
    """An HTTP answer; `to_proxy` gives the dict API Gateway expects from a proxy integration."""

    status: int
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_proxy(self, request_id: str) -> dict[str, object]:
        headers = {**self.headers, "X-Request-Id": request_id}
        if self.body:
            headers.setdefault("Content-Type", JSON_CONTENT_TYPE)
        return {
            "statusCode": self.status,
            "headers": headers,
            "body": self.body,
            "isBase64Encoded": False,
        }


def json_response(
    status: int, payload: object, headers: Mapping[str, str] | None = None
) -> Response:
    """A compact UTF-8 JSON response (ASCII-escaped when the payload holds a lone surrogate)."""
    return Response(status, utf8_json(payload, separators=(",", ":")), dict(headers or {}))


def utf8_json(payload: object, **options: Any) -> str:
    """`payload` as JSON text (`json.dumps` with `options`) that encodes as UTF-8:
    ASCII-escaped when it holds a lone surrogate (e.g. an echoed id "\\ud800": valid JSON in,
    valid UTF-8 out)."""
    text = json.dumps(payload, ensure_ascii=False, **options)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(payload, ensure_ascii=True, **options)
    return text


@dataclass(frozen=True)
class Request:
    """What the router needs from any event: method, route path, headers and body."""

    source: str  # "v1", "v2" or "direct"
    method: str
    path: str  # see route_path
    headers: Mapping[str, str]  # names lower-cased
    body: str | None = None
    is_base64: bool = False
    payload: object = None  # a direct invocation's event, used as the classify body
    gateway_request_id: str | None = None
    has_query: bool = False  # the URL carried query parameters


def parse_event(event: object) -> Request:
    """Recognise the event's format; raise ApiError(400) for an unusable HTTP envelope."""
    if not isinstance(event, dict):
        raise ApiError(400, "invalid_event", "the event must be a JSON object")
    context = event.get("requestContext")
    context = context if isinstance(context, dict) else {}
    gateway_id = context.get("requestId") if isinstance(context.get("requestId"), str) else None
    http = context.get("http")
    if event.get("version") == "2.0" or "rawPath" in event or "routeKey" in event:
        http = http if isinstance(http, dict) else {}
        method = http.get("method")
        # The matched route ("GET /") names the route whatever stage prefixes the path.
        route_key = event.get("routeKey")
        routed = route_key.partition(" ")[2] if isinstance(route_key, str) else ""
        path = (
            routed if routed in KNOWN_PATHS else _first_str(event.get("rawPath"), http.get("path"))
        )
        source = "v2"
    elif "httpMethod" in event or "requestContext" in event:
        method = _first_str(event.get("httpMethod"), context.get("httpMethod"))
        resource = event.get("resource")
        path = (
            resource
            if resource in KNOWN_PATHS
            else _first_str(event.get("path"), context.get("path"), resource)
        )
        source = "v1"
    else:
        return Request("direct", "POST", "/classify", {}, payload=event)
    if not isinstance(method, str) or not method:
        raise ApiError(400, "invalid_event", "the HTTP event has no method")
    if path is None:
        raise ApiError(400, "invalid_event", "the HTTP event has no path")
    body = event.get("body")
    if body is not None and not isinstance(body, str):
        raise ApiError(400, "invalid_event", "the HTTP event's body must be a string")
    return Request(
        source=source,
        method=method.upper(),
        path=route_path(path),
        headers=_lower_headers(event),
        body=body,
        is_base64=event.get("isBase64Encoded") is True,
        gateway_request_id=gateway_id,
        has_query=bool(
            event.get("rawQueryString")
            or event.get("queryStringParameters")
            or event.get("multiValueQueryStringParameters")
        ),
    )


def route_path(path: str) -> str:
    """The route a path names, whatever stage or base-path prefix precedes it.

    `/classify`, `/prod/classify` (a v2 stage in rawPath) and `/api/v1/classify/` (a custom
    domain's base path) all give `/classify`; other paths come back normalised, for a 404.
    """
    path = "/" + path.strip("/")
    last = path[path.rfind("/") :]
    return last if last in KNOWN_PATHS else path


def read_json(request: Request) -> object:
    """The request's JSON body, checked for content type, size, base64 and syntax."""
    if request.source == "direct":
        return request.payload
    media_type, *parameters = request.headers.get("content-type", "").split(";")
    media_type = media_type.strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {media_type[:100]!r} is not supported; send application/json",
        )
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise ApiError(
                415,
                "unsupported_media_type",
                f"charset {charset[:40]!r} is not supported; send UTF-8 JSON",
            )
    body = request.body
    if not body:
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
    data: str | bytes
    if request.is_base64:
        if len(body) > (MAX_BODY_BYTES + 2) // 3 * 4:
            raise _too_large()
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(
                400, "invalid_base64", "the body is marked base64-encoded but is not valid base64"
            ) from None
        size = len(data)
    else:
        data = body
        size = len(body) if len(body) > MAX_BODY_BYTES else _utf8_size(body)
    if size > MAX_BODY_BYTES:
        raise _too_large()
    try:
        # One rule on both paths: the body is UTF-8, and a leading UTF-8 byte-order mark is
        # ignored (RFC 8259 §8.1). json.loads would guess UTF-16/32 for bytes by itself.
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return strict_json(text.removeprefix("\ufeff"))
    except (ValueError, RecursionError) as error:
        detail = "not UTF-8" if isinstance(error, UnicodeDecodeError) else json_problem(error)
        raise ApiError(
            400, "invalid_json", f"the request body is not valid JSON: {detail}"
        ) from None


def strict_json(text: str) -> object:
    """`json.loads` as every input path reads JSON (request bodies, JSON Lines records): no
    NaN or Infinity, no key twice in one object, and huge integers as floats. Raises
    ValueError or RecursionError; `json_problem` says what was wrong in one line."""
    return json.loads(
        text, parse_constant=_reject_constant, parse_int=_parse_int, object_pairs_hook=_unique_keys
    )


def _too_large() -> ApiError:
    return ApiError(
        413, "payload_too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes (1 MiB)"
    )


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _parse_int(digits: str) -> int | float:
    """An integer, or a float (±inf when huge) past Python's 4,300-digit conversion limit, so a
    huge `top_k` is refused as out of range rather than as invalid JSON."""
    return int(digits) if len(digits) <= 100 else float(digits)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """An object, refused when it names a key twice: which copy counts would be a guess."""
    fields = dict(pairs)
    if len(fields) < len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {twice[:50]!r} appears twice in one object")
    return fields


def json_problem(error: BaseException, record: bool = False) -> str:
    """One line on why `strict_json` refused its text; for a JSON Lines `record`, which is one
    line, the position is its column only."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, json.JSONDecodeError):
        # Some messages end in " at" already ("Invalid control character at").
        where = f"column {error.colno}" if record else f"line {error.lineno} column {error.colno}"
        return f"{error.msg.removesuffix(' at')} at {where}"
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def _first_str(*values: object) -> str | None:
    return next((value for value in values if isinstance(value, str)), None)


def _lower_headers(event: Mapping[str, object]) -> dict[str, str]:
    """Header names lower-cased (they are case-insensitive); v1 multi-value headers too."""
    headers: dict[str, str] = {}
    multi = event.get("multiValueHeaders")
    if isinstance(multi, dict):
        for name, values in multi.items():
            strings = isinstance(values, list) and all(isinstance(v, str) for v in values)
            if isinstance(name, str) and strings and values:
                headers[name.lower()] = ",".join(values)
    single = event.get("headers")
    if isinstance(single, dict):
        for name, value in single.items():
            if isinstance(name, str) and isinstance(value, str):
                headers[name.lower()] = value
    return headers
