"""Local HTTP server for the Lambda handler, like `sam local start-api` without Docker.

Each HTTP request becomes an API Gateway HTTP API (v2) event for the same `Service.handle`
that Lambda calls, so curl, a browser or a load test exercises the real code path:

    python -m lambda_handler.serve --port 3000 [--host 127.0.0.1] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import time
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

from lambda_handler.api import JSON_CONTENT_TYPE
from lambda_handler.service import Service
from lambda_handler.settings import Settings

MAX_REQUEST_BYTES = 6 * 1024 * 1024  # Lambda's limit for a synchronous invocation payload


def build_event(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str
) -> dict[str, object]:
    """The HTTP API (payload format 2.0) event API Gateway would send for this request."""
    # The request target is a path and a query (`//classify` included), never a URL with a
    # host: urlsplit would read `//classify` as a host named classify.
    path, _, query = target.partition("?")
    path = path.partition("#")[0]
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    path = path or "/"
    event: dict[str, object] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query.partition("#")[0],
        "headers": merged,
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": client,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if body:
        event["body"] = text
    return event


def make_server(service: Service, host: str = "127.0.0.1", port: int = 3000) -> ThreadingHTTPServer:
    """A threaded HTTP server answering every request through `service` (port 0: any free port)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "arxiv-classifier-local"
        disable_nagle_algorithm = True  # headers and body go out in two writes
        timeout = 30

        def _forward(self) -> None:
            lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            if len(lengths) > 1:
                self.close_connection = True
                return self._reply_error(
                    400, "invalid_request", "conflicting Content-Length headers"
                )
            if chunked:
                body = self._read_chunked()
                if body is None:
                    return None
            else:
                try:
                    length = int(next(iter(lengths), "0") or "0")
                    if length < 0:
                        raise ValueError
                except ValueError:
                    self.close_connection = True
                    return self._reply_error(400, "invalid_request", "invalid Content-Length")
                if length > MAX_REQUEST_BYTES:
                    self.close_connection = True
                    return self._too_large()
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the client closed its side early
                    self.close_connection = True
                    return self._reply_error(
                        400,
                        "invalid_request",
                        f"the body ended after {len(body)} of its {length} bytes",
                    )
            event = build_event(
                self.command, self.path, list(self.headers.items()), body, self.client_address[0]
            )
            context = SimpleNamespace(aws_request_id=str(uuid.uuid4()))
            answer = service.handle(event, context)
            payload = answer.get("body") or ""
            data = (
                base64.b64decode(payload)
                if answer.get("isBase64Encoded")
                else str(payload).encode("utf-8")
            )
            self._send(int(answer.get("statusCode", 500)), dict(answer.get("headers") or {}), data)

        def _read_chunked(self) -> bytes | None:
            """A chunked body, up to MAX_REQUEST_BYTES; None once an error has been answered."""
            parts, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size < 0:
                        raise ValueError
                except ValueError:
                    self.close_connection = True
                    self._reply_error(400, "invalid_request", "malformed chunked body")
                    return None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields are ignored
                    return b"".join(parts)
                total += size
                if total > MAX_REQUEST_BYTES:
                    self.close_connection = True
                    self._too_large()
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)  # the CRLF after each chunk

        def _too_large(self) -> None:
            self._reply_error(
                413, "payload_too_large", f"the request is over {MAX_REQUEST_BYTES} bytes"
            )

        def _reply_error(self, status: int, code: str, message: str) -> None:
            """A JSON error like the function's own, for what never reaches the function."""
            data = json.dumps({"error": code, "message": message}).encode("utf-8")
            headers = {"Content-Type": JSON_CONTENT_TYPE}
            self._send(status, {**headers, "X-Request-Id": str(uuid.uuid4())}, data)

        def _send(self, status: int, headers: dict[str, object], data: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None):
            """http.server's own errors (unknown method, bad request line, huge headers) as
            JSON, so that every answer of this server is JSON with a request id."""
            self.close_connection = True
            error = "not_implemented" if code == 501 else "invalid_request"
            self._reply_error(code, error, message or explain or "bad request")

        def __getattr__(self, name: str) -> object:
            """`do_<METHOD>` for every method, TRACE or made-up ones included: the function
            answers them (405 with an Allow header) as behind API Gateway."""
            if name.startswith("do_"):
                return self._forward
            raise AttributeError(name)

        def log_message(self, format: str, *args: object) -> None:
            """Silenced: the service already logs one JSON line per request."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    """Load the model as Lambda would (MODEL_DIR / MODEL_S3_URI) and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m lambda_handler.serve", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port (default 3000; 0 = any)")
    parser.add_argument("--model-dir", type=Path, help="model directory (default MODEL_DIR)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be from 0 to 65535, got {args.port}")
    settings = Settings.from_env()
    if args.model_dir is not None:
        settings = replace(settings, model_dir=args.model_dir, model_s3_uri=None)
    service = Service.from_settings(settings)
    try:
        server = make_server(service, args.host, args.port)
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    state = (
        f"model {service.classifier.info.name} {service.classifier.info.version}"
        if service.classifier
        else f"model unavailable, requests get 503 until a later try loads it: {service.failure}"
    )
    print(f"serving http://{host}:{port}/ ({state}); Ctrl-C stops", file=sys.stderr, flush=True)
    # Both handlers explicitly: a shell background job (`nohup … &`) starts with SIGINT ignored.
    signal.signal(signal.SIGTERM, _stop)  # `kill` stops it as cleanly as Ctrl-C
    signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
