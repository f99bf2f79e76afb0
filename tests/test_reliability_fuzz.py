"""Fuzz: thousands of hypothesis-generated events against the handler and the local HTTP server.

Extends tests/test_api_properties.py (whose strategies and answer check it reuses) with more
examples and more kinds of input: any Unicode (lone surrogates, NUL, right-to-left marks,
combining marks, emoji), random bytes, huge strings around every size limit, Python values a
direct caller could pass, and all three event formats. Every answer must be a well-formed
response below 500, and nothing may raise.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections import Counter

import pytest
from conftest import SERVING_EVENT_BUILDERS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api_properties import (
    check_answer,
    content_types,
    json_values,
    quiet_logs,  # noqa: F401  (autouse: no log line per example)
    sentences,
)
from test_serve import base_url  # noqa: F401  (the local server on a free loopback port)

from bench.figures import record
from lambda_handler.api import MAX_BODY_BYTES
from lambda_handler.validation import (
    MAX_ABSTRACT_CHARS,
    MAX_DOCUMENTS,
    MAX_ID_CHARS,
    MAX_TITLE_CHARS,
)

pytestmark = pytest.mark.reliability


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


EDGE_STRINGS = [
    "\x00", "robot\x00vision", "\x01\x1f\x7f", "\u202eevil\u202c robot", "\u200f\u200e",
    "e\u0301cole", "\u0301" * 64, "robot\u0301\u0302\u0303", "🧪🔬🤖", "👩‍🔬 robot",
    "\ufeffrobot", "\uffff\ufffe", "\ud800", "\udfff robot", "robot\ud83d", "ﬁnite ﬂow",
    "㎒ ㍱", "\uff12\uff10\uff12\uff14 \uff52\uff4f\uff42\uff4f\uff54", "Ⅻ ⅻ",
    "مرحبا بالعالم", "שלום עולם", "İstanbul ǅ ß Σ",
    "\u2028\u2029", "\r\n\t", 'quote " backslash \\ slash /', "</script><b>", "",
]  # fmt: skip
any_text = st.text(st.characters(exclude_categories=()), max_size=80)  # surrogates included
tricky = st.one_of(
    st.sampled_from(EDGE_STRINGS),
    any_text,
    st.lists(st.sampled_from(EDGE_STRINGS) | sentences, min_size=1, max_size=6).map(" ".join),
)
# Text that still has content words (so that many examples reach the model), and text that may not.
abstracts = st.one_of(st.tuples(sentences, tricky).map(" ".join), tricky, json_values)
documents = st.fixed_dictionaries(
    {}, optional={"id": tricky | json_values, "title": abstracts, "abstract": abstracts}
)
fuzz_bodies = st.one_of(
    st.fixed_dictionaries(
        {"abstract": abstracts},
        optional={"title": abstracts, "id": tricky, "top_k": json_values, "threshold": json_values},
    ),
    st.fixed_dictionaries(
        {"documents": st.lists(documents, max_size=MAX_DOCUMENTS + 2) | json_values},
        optional={"top_k": json_values, "threshold": json_values},
    ),
    st.dictionaries(tricky, json_values, max_size=4),
    json_values,
)
python_leaves = st.one_of(
    st.none(), st.binary(max_size=20), st.integers(), st.floats(), st.complex_numbers(), tricky
)
python_values = st.recursive(
    python_leaves,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.frozensets(st.integers(), max_size=3),
        st.lists(inner, max_size=3),
        st.dictionaries(st.integers() | tricky, inner, max_size=3),
    ),
    max_leaves=8,
)
formats = st.sampled_from(["v1", "v2", "direct"])

EXAMPLES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_examples():
    """Record how many examples each property ran, once the module is done."""
    yield
    for name, count in sorted(EXAMPLES.items()):
        record("fuzz", name, count, "examples")
    record("fuzz", "all properties", sum(EXAMPLES.values()), "examples", "zero exceptions, no 5xx")


def send(service, fmt: str, body: object, encoding: str = "json", content_type=None) -> dict:
    """POST /classify in event format `fmt`; `body` is sent as JSON, base64 JSON or as is."""
    if fmt == "direct":
        return service.handle(body, None)
    text = body if encoding == "raw" else json.dumps(body, ensure_ascii=encoding != "utf8")
    headers = None if content_type is None else {"Content-Type": content_type}
    event = SERVING_EVENT_BUILDERS[fmt](
        "POST", "/classify", text, headers, base64_body=encoding == "base64"
    )
    return service.handle(event, None)


@fuzz_settings(5000)
@given(
    fmt=formats,
    body=fuzz_bodies,
    encoding=st.sampled_from(["json", "utf8", "base64"]),
    content_type=st.none() | content_types,
)
def test_fuzzed_bodies_in_every_format_never_raise_or_5xx(
    serving_service, fmt, body, encoding, content_type
):
    EXAMPLES["fuzzed JSON bodies, v1/v2/direct"] += 1
    check_answer(send(serving_service, fmt, body, encoding, content_type), body)


@fuzz_settings(2000)
@given(
    fmt=st.sampled_from(["v1", "v2"]),
    data=st.binary(max_size=300),
    as_base64=st.booleans(),
    claim_base64=st.booleans(),
)
def test_random_bytes_bodies_never_raise_or_5xx(
    serving_service, fmt, data, as_base64, claim_base64
):
    """Bytes sent base64-encoded, or decoded to text however they decode (lone surrogates too)."""
    EXAMPLES["random bytes bodies"] += 1
    text = (
        base64.b64encode(data).decode("ascii")
        if as_base64
        else data.decode("utf-8", "surrogateescape")
    )
    event = SERVING_EVENT_BUILDERS[fmt]("POST", "/classify", text)
    event["isBase64Encoded"] = claim_base64
    check_answer(serving_service.handle(event, None))


FIELD_LIMITS = {"abstract": MAX_ABSTRACT_CHARS, "title": MAX_TITLE_CHARS, "id": MAX_ID_CHARS}
OVER_LIMIT = {"abstract": "abstract_too_long", "title": "title_too_long", "id": "invalid_request"}


@fuzz_settings(150)
@given(
    fmt=formats,
    unit=st.sampled_from(["robot ", "é", "👩‍🔬", "\u0301", "the ", "\x00", "\ud800", "ﬁ"]),
    offset=st.sampled_from([-1, 0, 1, 300_000]),
    field=st.sampled_from(["abstract", "title", "id", "batch"]),
    encoding=st.sampled_from(["json", "utf8", "base64"]),
)
def test_huge_strings_around_every_limit_never_raise_or_5xx(
    serving_service, fmt, unit, offset, field, encoding
):
    """Each field one character under, at and over its own limit (and far over): accepted up
    to the limit, refused with that field's error beyond it, 413 for a body over 1 MiB."""
    EXAMPLES["huge strings"] += 1
    length = FIELD_LIMITS.get(field, MAX_ABSTRACT_CHARS) + offset
    huge = (unit * (length // len(unit) + 1))[:length]
    if field == "batch":
        body: dict = {"documents": [{"abstract": "robot " + huge[:1000]}] * MAX_DOCUMENTS}
    else:
        body = {"abstract": "robot vision", field: huge}
    answer = send(serving_service, fmt, body, encoding)
    check_answer(answer, body)
    size = len(json.dumps(body, ensure_ascii=encoding != "utf8").encode("utf-8", "surrogatepass"))
    error = json.loads(answer["body"]).get("error") if answer["statusCode"] >= 400 else None
    if fmt != "direct" and size > MAX_BODY_BYTES:
        assert (answer["statusCode"], error) == (413, "payload_too_large")
    elif field != "batch" and offset > 0:
        assert error == OVER_LIMIT[field], (field, length, error)
    elif field == "abstract":  # within its limit: classified, or it has no content words
        assert error in (None, "no_content_words"), error
    elif field != "batch":
        assert answer["statusCode"] == 200, error


@fuzz_settings(2000)
@given(event=python_values | st.dictionaries(tricky, python_values, max_size=5), body=python_values)
def test_direct_calls_with_any_python_values_never_raise(serving_service, event, body):
    """What a Python caller (the CLI, a test) could pass: tuples, bytes, sets, complex, int keys."""
    EXAMPLES["Python values, direct calls"] += 1
    check_answer(serving_service.handle(event, None))
    check_answer(serving_service.handle({"abstract": body, "title": body}, None))


@fuzz_settings(400)
@given(
    method=st.sampled_from(["POST", "GET", "PUT", "OPTIONS", "HEAD", "DELETE"]),
    path=st.sampled_from(["/classify", "/prod/classify", "/health", "/labels", "/", "/x/../y"]),
    body=fuzz_bodies.map(lambda body: json.dumps(body).encode("ascii")) | st.binary(max_size=200),
    content_type=content_types.filter(lambda value: value.isprintable() and value.isascii()),
)
def test_local_server_answers_fuzzed_requests(base_url, method, path, body, content_type):  # noqa: F811
    """The real HTTP path of `python -m lambda_handler.serve` (bytes in, bytes out)."""
    EXAMPLES["HTTP requests to the local server"] += 1
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body, {"Content-Type": content_type})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    assert 200 <= response.status < 500
    if response.getheader("Content-Type", "").startswith("text/html"):
        assert (method, path, payload[:15]) == ("GET", "/", b"<!doctype html>")  # the page
    elif payload and method != "HEAD":
        assert isinstance(json.loads(payload), dict)


@pytest.mark.parametrize("fmt", ["v2", "direct"])
def test_an_echoed_id_with_a_lone_surrogate_still_gives_utf8(serving_service, fmt):
    body = {"documents": [{"id": "\ud800", "abstract": "robot navigation"}]}
    answer = send(serving_service, fmt, body)
    assert answer["statusCode"] == 200
    answer["body"].encode("utf-8")
