"""Property-based tests: arbitrary JSON bodies and event shapes never raise and never get a 5xx.

200 examples per property in the default run; the reliability marker could run more.
"""

from __future__ import annotations

import json

import pytest
from conftest import SERVING_EVENT_BUILDERS, SERVING_LABELS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_handler import logs

N_LABELS = len(SERVING_LABELS)
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
words = st.sampled_from(
    ["robot", "image", "the", "of", "language", "neural", "2024", "graph", "Ünïcode", "-", "."]
)
sentences = st.lists(words, min_size=1, max_size=12).map(" ".join)
# Weighted towards valid values so that many examples reach the model, not only validation.
abstracts = st.one_of(sentences, sentences, sentences, st.text(max_size=60), json_values)
top_ks = st.one_of(
    st.integers(min_value=1, max_value=N_LABELS),
    st.integers(min_value=-1, max_value=N_LABELS + 1),
    json_values,
)
thresholds = st.one_of(
    st.floats(min_value=0, max_value=1), st.floats(min_value=-0.5, max_value=1.5), json_values
)
documents = st.fixed_dictionaries(
    {},
    optional={"id": st.text(max_size=5) | json_values, "title": abstracts, "abstract": abstracts},
)
single_bodies = st.fixed_dictionaries(
    {"abstract": abstracts},
    optional={"title": abstracts, "top_k": top_ks, "threshold": thresholds, "id": json_values},
)
batch_bodies = st.fixed_dictionaries(
    {"documents": st.lists(documents, max_size=5) | json_values},
    optional={"top_k": top_ks, "threshold": thresholds, "extra": json_values},
)
options = {
    "top_k": st.integers(min_value=1, max_value=N_LABELS),
    "threshold": st.floats(min_value=0, max_value=1),
}
valid_documents = st.fixed_dictionaries(
    {"abstract": sentences}, optional={"id": st.text(max_size=5), "title": sentences}
)
valid_single_bodies = st.fixed_dictionaries(
    {"abstract": sentences}, optional={"title": sentences, "id": st.text(max_size=5), **options}
)
valid_batch_bodies = st.fixed_dictionaries(
    {"documents": st.lists(valid_documents, min_size=1, max_size=5)}, optional=options
)
bodies = st.one_of(
    valid_single_bodies, valid_batch_bodies, single_bodies, batch_bodies, json_values
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "post"]) | st.text(
    max_size=6
)
paths = st.sampled_from(["/classify", "/labels", "/health", "/", "/prod/classify", ""]) | st.text(
    max_size=12
)
json_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", ""]
)
content_types = st.one_of(
    json_types, json_types, json_types, st.sampled_from(["text/plain", "text/csv"]), st.text()
)


@pytest.fixture(scope="module", autouse=True)
def quiet_logs():
    """One log line per example would only slow the run down."""
    logs.configure("WARNING")
    yield
    logs.configure("INFO")


def check_answer(answer: object, body: object = None) -> int:
    """The shape every answer must have; returns the status."""
    assert isinstance(answer, dict)
    status = answer["statusCode"]
    assert isinstance(status, int) and 200 <= status < 500, answer
    assert isinstance(answer["headers"], dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in answer["headers"].items())
    assert isinstance(answer["body"], str)
    if status >= 400:
        data = json.loads(answer["body"])
        assert isinstance(data["error"], str) and isinstance(data["message"], str)
        assert "Traceback" not in answer["body"]
    elif answer["headers"].get("Content-Type", "").startswith("text/html"):
        assert status == 200 and answer["body"].startswith("<!doctype html>")  # the page at /
    elif status == 200:
        data = json.loads(answer["body"])
        for result in data.get("results", []):
            scores = [item["score"] for item in result["labels"]]
            assert 1 <= len(scores) <= N_LABELS
            assert scores == sorted(scores, reverse=True)
            if isinstance(body, dict) and type(body.get("top_k")) is int:
                assert len(scores) <= body["top_k"]
    return status


@PROPERTY_SETTINGS
@given(
    fmt=st.sampled_from(["v1", "v2"]),
    body=bodies,
    encode=st.sampled_from(["json", "base64", "text"]),
    raw=st.text(max_size=40),
    content_type=content_types,
)
def test_arbitrary_classify_bodies_never_5xx(serving_service, fmt, body, encode, raw, content_type):
    text = raw if encode == "text" else json.dumps(body)
    event = SERVING_EVENT_BUILDERS[fmt](
        "POST", "/classify", text, {"Content-Type": content_type}, base64_body=encode == "base64"
    )
    check_answer(serving_service.handle(event, None), body)


@PROPERTY_SETTINGS
@given(body=bodies)
def test_arbitrary_direct_invocations_never_5xx(serving_service, body):
    check_answer(serving_service.handle(body, None), body)


@PROPERTY_SETTINGS
@given(
    fmt=st.sampled_from(["v1", "v2"]),
    method=methods,
    path=paths,
    body=st.none() | st.text(max_size=40) | bodies.map(json.dumps),
    base64_body=st.booleans(),
    headers=st.dictionaries(st.text(max_size=15), st.text(max_size=15) | json_values, max_size=3),
    damage=st.dictionaries(
        st.sampled_from(
            [
                "body",
                "headers",
                "isBase64Encoded",
                "requestContext",
                "rawPath",
                "httpMethod",
                "path",
            ]
        ),
        json_values,
        max_size=2,
    ),
)
def test_arbitrary_event_envelopes_never_5xx(
    serving_service, fmt, method, path, body, base64_body, headers, damage
):
    event = SERVING_EVENT_BUILDERS[fmt](method, path, body, headers, base64_body=base64_body)
    if base64_body and body is not None and len(body) % 3 == 1:
        event["body"] = body  # sometimes claim base64 for a body that is not
    event.update(damage)
    check_answer(serving_service.handle(event, None))


@PROPERTY_SETTINGS
@given(event=json_values)
def test_arbitrary_events_never_raise(serving_service, event):
    check_answer(serving_service.handle(event, object()))
