"""lambda_handler.serve: the local HTTP server turning requests into v2 events for the handler."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import start_local_server

from lambda_handler.serve import build_event, make_server

REPO = Path(__file__).resolve().parents[1]
ABSTRACT = "We train convolutional neural networks for object detection in images."


@pytest.fixture(scope="module")
def base_url(serving_service):
    server = make_server(serving_service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def request(url: str, method: str = "GET", body: bytes | None = None, headers=None):
    """(status, headers, decoded JSON or None) for one request; HTTP errors included."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, head, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, head, raw = error.code, error.headers, error.read()
    return status, head, json.loads(raw) if raw else None


def test_classify_through_http_matches_the_handler(base_url, serving_service):
    payload = {"title": "Image segmentation", "abstract": ABSTRACT, "top_k": 3}
    status, head, body = request(
        f"{base_url}/classify",
        "POST",
        json.dumps(payload).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    assert head["Content-Type"] == "application/json; charset=utf-8" and head["X-Request-Id"]
    assert body == json.loads(serving_service.handle(payload)["body"])
    assert [item["label"] for item in body["results"][0]["labels"]] == ["cs.CV", "cs.AI"]


def test_get_routes_and_errors_over_http(base_url):
    assert request(f"{base_url}/health")[2]["status"] == "ok"
    assert len(request(f"{base_url}/labels")[2]["labels"]) == 6
    assert request(f"{base_url}/prod/health?x=1")[0] == 200
    status, _, body = request(f"{base_url}/nope")
    assert (status, body["error"]) == (404, "not_found")
    status, head, body = request(f"{base_url}/classify")
    assert (status, head["Allow"]) == (405, "POST, OPTIONS")
    status, _, body = request(f"{base_url}/classify", "POST", b"a,b", {"Content-Type": "text/csv"})
    assert (status, body["error"]) == (415, "unsupported_media_type")
    status, _, body = request(f"{base_url}/classify", "POST", b'{"a": 1}')  # urllib: form type
    assert (status, body["error"]) == (415, "unsupported_media_type")
    json_type = {"Content-Type": "application/json"}
    status, _, body = request(f"{base_url}/classify", "POST", b"{oops", json_type)
    assert (status, body["error"]) == (400, "invalid_json")
    status, _, body = request(f"{base_url}/classify", "POST", b'{"abstract": "\xff"}', json_type)
    assert (status, body["error"]) == (400, "invalid_json")  # sent base64-encoded, then refused
    status, head, body = request(f"{base_url}/classify", "OPTIONS")
    assert (status, head["Allow"], body) == (204, "POST, OPTIONS", None)
    for method in ("TRACE", "BREW"):  # any method reaches the function, as through API Gateway
        status, head, body = request(f"{base_url}/health", method)
        assert (status, body["error"], head["Allow"]) == (405, "method_not_allowed", "GET, OPTIONS")


def test_keep_alive_connection_serves_several_requests(base_url):
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for i in range(3):
            data = json.dumps({"documents": [{"id": str(i), "abstract": ABSTRACT}]})
            connection.request("POST", "/classify", data, {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["results"][0]["id"] == str(i)
    finally:
        connection.close()


def raw_exchange(base_url: str, data: bytes) -> tuple[int, dict[str, str], dict]:
    """Send raw bytes, read one reply: status, headers (lower-cased names), JSON body."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(data)
        reply = b""
        while b"\r\n\r\n" not in reply:
            received = raw.recv(65536)
            assert received, f"the server closed the connection after {reply!r}"
            reply += received
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers["content-length"]):
            body += raw.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(body)


POST = b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def test_oversized_request_is_refused_before_reading_it(base_url):
    status, headers, body = raw_exchange(base_url, POST + b"Content-Length: 7000000\r\n\r\n")
    assert (status, body["error"]) == (413, "payload_too_large")
    assert headers["content-type"].startswith("application/json") and headers["x-request-id"]


def test_a_chunked_body_is_read_and_classified(base_url):
    data = json.dumps({"abstract": ABSTRACT}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (data[:10], data[10:]))
    status, _, body = raw_exchange(
        base_url, POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    assert status == 200 and body["results"][0]["labels"]


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (POST + b"Content-Length: -1\r\n\r\n", 400, "invalid_request"),
        (POST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "invalid_request"),
        (POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "invalid_request"),
        (
            POST + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % (7 * 1024 * 1024),
            413,
            "payload_too_large",
        ),
    ],
    ids=["negative-length", "conflicting-lengths", "bad-chunk", "chunked-too-large"],
)
def test_what_never_reaches_the_function_still_answers_json(base_url, request_bytes, status, error):
    answer, headers, body = raw_exchange(base_url, request_bytes)
    assert (answer, body["error"]) == (status, error) and body["message"]
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["x-request-id"]


def test_build_event_is_an_http_api_v2_event():
    event = build_event(
        "POST",
        "/prod/classify?a=1",
        [("Content-Type", "x"), ("X-A", "1"), ("x-a", "2")],
        b"\xff",
        "127.0.0.1",
    )
    assert event["version"] == "2.0" and event["rawPath"] == "/prod/classify"
    assert event["rawQueryString"] == "a=1"
    assert event["headers"] == {"content-type": "x", "x-a": "1,2"}
    assert event["requestContext"]["http"]["method"] == "POST"
    assert (event["isBase64Encoded"], event["body"]) == (True, "/w==")
    assert "body" not in build_event("GET", "/health", [], b"", "127.0.0.1")
    doubled = build_event("POST", "//classify?top_k=2", [], b"{}", "127.0.0.1")  # no host
    assert (doubled["rawPath"], doubled["rawQueryString"]) == ("//classify", "top_k=2")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_main_binds_loopback_and_stops_on_a_signal(serving_model_dir, stop):
    """Even when started with SIGINT ignored, as a shell background job (`nohup … &`) is."""
    process, line = start_local_server(
        "--model-dir",
        str(serving_model_dir),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        match = re.search(r"serving http://([\d.]+):(\d+)/ \(model tiny-test-lstm", line)
        assert match, line
        assert match.group(1) == "127.0.0.1"
        status, _, body = request(f"http://127.0.0.1:{match.group(2)}/health")
        assert (status, body["status"]) == (200, "ok")
        process.send_signal(stop)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stderr.close()


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_a_usage_error(capsys, port):
    from lambda_handler.serve import main

    with pytest.raises(SystemExit) as stopped:
        main(["--port", port])
    assert stopped.value.code == 2 and "--port must be from 0 to 65535" in capsys.readouterr().err


def test_a_body_cut_short_by_the_client_is_refused_not_classified(base_url):
    host, port = base_url.removeprefix("http://").split(":")
    data = json.dumps({"abstract": ABSTRACT}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(POST + b"Content-Length: %d\r\n\r\n" % (len(data) + 50) + data)
        raw.shutdown(socket.SHUT_WR)  # no more bytes will come
        reply = b""
        while received := raw.recv(65536):
            reply += received
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400"
    assert (
        json.loads(body)["message"]
        == f"the body ended after {len(data)} of its {len(data) + 50} bytes"
    )
