"""Every route and every error of the HTTP API, with REST (v1) and HTTP API (v2) events, plus
direct invocation, against the tiny fixture model.
"""

from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest
from conftest import (
    SERVING_EVENT_BUILDERS,
    SERVING_LABELS,
    SERVING_LOW_CONFIDENCE,
    SERVING_MODEL_VERSION,
    SERVING_SENTENCES,
    SERVING_SERVED,
    serving_v1_event,
    serving_v2_event,
)

from lambda_handler import logs
from lambda_handler.service import RELOAD_INTERVAL_SECONDS, Service
from lambda_handler.settings import Settings
from lambda_handler.validation import MAX_ABSTRACT_CHARS, MAX_ID_CHARS, MAX_TITLE_CHARS

FORMATS = pytest.mark.parametrize("fmt", ["v1", "v2"])
CODES = [code for code, *_ in SERVING_LABELS]
NAMES = {code: name for code, name, _ in SERVING_LABELS}
THRESHOLDS = {code: threshold for code, _, threshold in SERVING_LABELS}
TITLE = "Image segmentation"
ABSTRACT = "We train convolutional neural networks for object detection in images."
MODEL = {"name": "tiny-test-lstm", "version": SERVING_MODEL_VERSION, **SERVING_SERVED}


@pytest.fixture(autouse=True)
def info_logs():
    logs.configure("INFO")


def call(
    service: Service, fmt: str, method: str = "POST", path: str = "/classify", body=None, **kw
):
    """Send an event of format `fmt` ("v1", "v2" or "direct"); return (status, JSON, response)."""
    event = body if fmt == "direct" else SERVING_EVENT_BUILDERS[fmt](method, path, body, **kw)
    answer = service.handle(event, None)
    assert set(answer) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert answer["isBase64Encoded"] is False
    data = json.loads(answer["body"]) if answer["body"] else None
    if answer["statusCode"] >= 400:
        assert set(data) >= {"error", "message"} and data["message"]
        assert answer["headers"]["Content-Type"] == "application/json; charset=utf-8"
    return answer["statusCode"], data, answer


def reference_scores(service: Service, system, papers: list[tuple[str, str]]) -> np.ndarray:
    return system.predict(papers)


def expected_labels(scores: np.ndarray, top_k: int = 5, threshold: float | None = None) -> list:
    """The decision rule, written independently: pass threshold, best first, top always, cap."""
    ranked = sorted(range(len(CODES)), key=lambda i: -scores[i])
    chosen = [
        i
        for rank, i in enumerate(ranked)
        if rank == 0 or scores[i] >= (THRESHOLDS[CODES[i]] if threshold is None else threshold)
    ]
    return [CODES[i] for i in chosen[:top_k]]


# --- POST /classify -------------------------------------------------------------------------


@FORMATS
def test_classify_single_paper_matches_reference_and_decision_rule(
    serving_service, serving_system, fmt
):
    status, data, answer = call(serving_service, fmt, body={"title": TITLE, "abstract": ABSTRACT})
    assert status == 200
    assert data["model"] == MODEL
    assert len(data["results"]) == 1 and "id" not in data["results"][0]
    labels = data["results"][0]["labels"]
    scores = reference_scores(serving_service, serving_system, [(TITLE, ABSTRACT)])[0]
    assert [item["label"] for item in labels] == expected_labels(scores)
    assert [item["label"] for item in labels] == ["cs.CV", "cs.AI"]  # pinned fixture outcome
    for item in labels:
        assert item["name"] == NAMES[item["label"]]
        assert item["score"] == pytest.approx(scores[CODES.index(item["label"])], abs=2e-6)
    assert [item["score"] for item in labels] == sorted(
        (item["score"] for item in labels), reverse=True
    )
    assert answer["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert answer["headers"]["X-Request-Id"]


def test_classify_direct_invocation(serving_service, serving_system):
    status, data, _ = call(serving_service, "direct", body={"title": TITLE, "abstract": ABSTRACT})
    _, via_http, _ = call(serving_service, "v2", body={"title": TITLE, "abstract": ABSTRACT})
    assert status == 200 and data == via_http
    status, data, _ = call(
        serving_service, "direct", body={"documents": [{"id": "a", "abstract": ABSTRACT}]}
    )
    assert status == 200 and data["results"][0]["id"] == "a"


@FORMATS
def test_classify_batch_echoes_ids_and_matches_padded_reference(
    serving_service, serving_system, fmt
):
    papers = [
        ("Robots", "Reinforcement learning agents for robot navigation and grasping."),
        ("", "Gaussian processes with variational approximations."),
        (TITLE, ABSTRACT),
    ]
    documents = [{"id": f"p{i}", "title": t, "abstract": a} for i, (t, a) in enumerate(papers)]
    documents[1].pop("title")
    status, data, _ = call(serving_service, fmt, body={"documents": documents, "top_k": 3})
    assert status == 200
    assert [result["id"] for result in data["results"]] == ["p0", "p1", "p2"]
    scores = reference_scores(serving_service, serving_system, papers)
    for result, row in zip(data["results"], scores, strict=True):
        assert [item["label"] for item in result["labels"]] == expected_labels(row, top_k=3)
        for item in result["labels"]:
            assert item["score"] == pytest.approx(row[CODES.index(item["label"])], abs=2e-6)


@FORMATS
def test_batch_results_equal_single_results_for_equal_lengths(serving_service, fmt):
    papers = [("", "robot navigation agents grasping"), ("", "image segmentation object video")]
    sequences = [serving_service.classifier.tokenizer.encode(t, a) for t, a in papers]
    assert len(sequences[0]) == len(sequences[1])
    batch = call(
        serving_service, fmt, body={"documents": [{"abstract": a} for _, a in papers], "top_k": 6}
    )[1]
    for (_, abstract), result in zip(papers, batch["results"], strict=True):
        single = call(serving_service, fmt, body={"abstract": abstract, "top_k": 6})[1]
        assert single["results"][0] == result


@FORMATS
def test_top_k_and_threshold_options(serving_service, serving_system, fmt):
    scores = reference_scores(serving_service, serving_system, [(TITLE, ABSTRACT)])[0]
    body = {"title": TITLE, "abstract": ABSTRACT}
    every = call(serving_service, fmt, body={**body, "threshold": 0, "top_k": 6})[1]
    labels = [item["label"] for item in every["results"][0]["labels"]]
    assert labels == [CODES[i] for i in np.argsort(-scores)]
    capped = call(serving_service, fmt, body={**body, "threshold": 0.0, "top_k": 2})[1]
    assert [item["label"] for item in capped["results"][0]["labels"]] == labels[:2]
    whole = call(serving_service, fmt, body={**body, "threshold": 0.0, "top_k": 2.0})[1]
    assert whole == capped  # JSON Schema, like the contract, counts 2.0 as an integer
    default_cap = call(serving_service, fmt, body={**body, "threshold": 0})[1]
    assert len(default_cap["results"][0]["labels"]) == 5
    only_top = call(serving_service, fmt, body={**body, "threshold": 1})[1]
    assert [item["label"] for item in only_top["results"][0]["labels"]] == labels[:1]
    middle = call(serving_service, fmt, body={**body, "threshold": 0.3})[1]
    assert [item["label"] for item in middle["results"][0]["labels"]] == expected_labels(
        scores, threshold=0.3
    )
    nulls = call(serving_service, fmt, body={**body, "threshold": None, "top_k": None})[1]
    assert nulls == call(serving_service, fmt, body=body)[1]
    no_batch = call(serving_service, fmt, body={**body, "documents": None})[1]  # not a batch
    assert no_batch == call(serving_service, fmt, body=body)[1]


@FORMATS
def test_json_content_types_and_case_insensitive_headers(serving_service, fmt):
    body = {"abstract": ABSTRACT}
    for headers in (
        {},
        {"Content-Type": "application/json; charset=utf-8"},
        {"CONTENT-TYPE": "Application/JSON"},
        {"content-type": "application/vnd.api+json"},
        {"Content-Type": 'application/json; charset="UTF-8"'},
    ):
        status, _, _ = call(serving_service, fmt, body=body, headers=headers)
        assert status == 200, headers
    status, data, _ = call(serving_service, fmt, body=body, headers={"cOnTeNt-TyPe": "text/plain"})
    assert (status, data["error"]) == (415, "unsupported_media_type")
    # The body is read as UTF-8 only: another declared charset is refused, not misread.
    for charset in ("iso-8859-1", "utf-16"):
        headers = {"Content-Type": f"application/json; charset={charset}"}
        status, data, _ = call(serving_service, fmt, body=body, headers=headers)
        assert (status, data["error"]) == (415, "unsupported_media_type")
        assert f"charset '{charset}' is not supported" in data["message"]


@FORMATS
def test_base64_bodies_are_decoded(serving_service, fmt):
    body = {"title": TITLE, "abstract": ABSTRACT}
    plain = call(serving_service, fmt, body=body)[1]
    assert call(serving_service, fmt, body=body, base64_body=True)[1] == plain
    event = SERVING_EVENT_BUILDERS[fmt]("POST", "/classify", None)
    event["body"], event["isBase64Encoded"] = "%%%", True
    answer = serving_service.handle(event, None)
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["error"] == "invalid_base64"


@FORMATS
@pytest.mark.parametrize("path", ["/classify", "/classify/", "/api/v1/classify"])
def test_paths_with_stage_or_base_path_prefixes(serving_service, fmt, path):
    event = SERVING_EVENT_BUILDERS[fmt]("POST", path, {"abstract": ABSTRACT}, stage="prod")
    assert serving_service.handle(event, None)["statusCode"] == 200


@pytest.mark.parametrize("path", ["/", "/openapi.json", "/classify"])
def test_the_matched_route_wins_over_a_stage_prefixed_path(serving_service, path):
    # HTTP API: rawPath carries a named stage ("/prod/"), routeKey the route ("GET /")
    method = "POST" if path == "/classify" else "GET"
    body = {"abstract": ABSTRACT} if method == "POST" else None
    v2 = {**serving_v2_event(method, path, body, stage="prod"), "routeKey": f"{method} {path}"}
    assert v2["rawPath"] == f"/prod{path}"
    assert serving_service.handle(v2, None)["statusCode"] == 200
    # REST: path "/prod/" with the resource "/" it matched
    v1 = {**serving_v1_event(method, path, body), "path": f"/prod{path}"}
    assert serving_service.handle(v1, None)["statusCode"] == 200


def test_v2_named_stage_in_raw_path_and_v1_stage_free_path(serving_service):
    v2 = serving_v2_event("GET", "/health", stage="beta")
    assert v2["rawPath"] == "/beta/health"
    assert serving_service.handle(v2, None)["statusCode"] == 200
    v1 = serving_v1_event("GET", "/labels", stage="prod")
    assert v1["requestContext"]["path"] == "/prod/labels"
    assert serving_service.handle(v1, None)["statusCode"] == 200


# --- GET /labels, GET /health, OPTIONS ------------------------------------------------------


@FORMATS
def test_labels_lists_every_label_with_code_name_archive_and_threshold(serving_service, fmt):
    status, data, _ = call(serving_service, fmt, "GET", "/labels")
    assert status == 200
    assert data == {
        "model": MODEL,
        "labels": [
            {"label": c, "name": n, "archive": c.split(".")[0], "threshold": t}
            for c, n, t in SERVING_LABELS
        ],
        "low_confidence_below": SERVING_LOW_CONFIDENCE,
    }


@FORMATS
def test_low_confidence_flags_exactly_the_answers_whose_top_score_is_below_the_line(
    serving_service, serving_system, fmt
):
    papers = [("", sentence) for sentence in SERVING_SENTENCES]
    body = {"documents": [{"abstract": abstract} for _, abstract in papers]}
    status, data, _ = call(serving_service, fmt, body=body)
    top_scores = reference_scores(serving_service, serving_system, papers).max(axis=1)
    flags = [result["low_confidence"] for result in data["results"]]
    assert status == 200
    assert flags == [bool(score < SERVING_LOW_CONFIDENCE) for score in top_scores]
    assert any(flags) and not all(flags)  # the fixture's sentences fall on both sides


@FORMATS
def test_health_reports_status_and_version(serving_service, fmt):
    status, data, _ = call(serving_service, fmt, "GET", "/health")
    assert (status, data["status"], data["model"]) == (200, "ok", MODEL)


@FORMATS
@pytest.mark.parametrize(("path", "allow"), [("/classify", "POST"), ("/labels", "GET")])
def test_options_preflight_gets_204_with_allow(serving_service, fmt, path, allow):
    status, data, answer = call(serving_service, fmt, "OPTIONS", path, headers={})
    assert (status, data) == (204, None)
    assert answer["headers"]["Allow"] == f"{allow}, OPTIONS"


# --- errors ---------------------------------------------------------------------------------


@FORMATS
def test_unknown_path_is_404(serving_service, fmt):
    for path in ("/index.html", "/classifyx", "/v1/predict"):
        status, data, _ = call(serving_service, fmt, "GET", path)
        assert (status, data["error"]) == (404, "not_found")


@FORMATS
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", "/classify", "POST, OPTIONS"), ("POST", "/labels", "GET, OPTIONS"),
     ("DELETE", "/health", "GET, OPTIONS"), ("put", "/classify", "POST, OPTIONS")],
)  # fmt: skip
def test_wrong_method_is_405_with_allow_header(serving_service, fmt, method, path, allow):
    status, data, answer = call(serving_service, fmt, method, path, body={"abstract": ABSTRACT})
    assert (status, data["error"]) == (405, "method_not_allowed")
    assert answer["headers"]["Allow"] == allow


BAD_BODIES = [
    # (body, status, error code, words expected in the message)
    ("{not json", 400, "invalid_json", "not valid JSON"),
    ('{"abstract": NaN}', 400, "invalid_json", "NaN"),
    ("", 400, "invalid_json", "empty"),
    ("[1, 2]", 400, "invalid_request", "JSON object"),
    ('"text"', 400, "invalid_request", "JSON object"),
    ({}, 400, "invalid_request", "abstract is required"),
    ({"title": "x"}, 400, "invalid_request", "abstract is required"),
    ({"abstract": 42}, 400, "invalid_request", "abstract must be a string"),
    ({"abstract": ABSTRACT, "title": ["x"]}, 400, "invalid_request", "title must be a string"),
    ({"abstract": ABSTRACT, "id": 7}, 400, "invalid_request", "id must be a string"),
    ({"abstract": ABSTRACT, "id": "i" * 257}, 400, "invalid_request", "id has 257 characters"),
    ({"abstact": ABSTRACT}, 400, "invalid_request", "unknown field(s) 'abstact'"),
    ({"abstract": ABSTRACT, "documents": []}, 400, "invalid_request",
     "unknown field(s) 'abstract'"),
    ({"abstract": ""}, 400, "empty_abstract", "abstract is empty"),
    ({"abstract": " \n\t\u00a0 "}, 400, "empty_abstract", "abstract is empty"),
    ({"title": "Robots", "abstract": "the of and, 2024!"}, 400, "no_content_words", "no content"),
    ({"abstract": "нейронная сеть"}, 400, "no_content_words", "outside the Latin alphabet"),
    ('{"abstract": "neural\x00net"}', 400, "invalid_json",
     "Invalid control character at line 1 column 21"),
    ({"abstract": ABSTRACT, "x" * 300_000: 1}, 400, "invalid_request",
     f"unknown field(s) {'x' * 50!r}; expected"),
    ({"abstract": ABSTRACT, "top_k": True}, 400, "invalid_top_k", "from 1 to 6"),
    ({"abstract": ABSTRACT, "top_k": 0}, 400, "invalid_top_k", "integer"),
    ({"abstract": ABSTRACT, "top_k": 7}, 400, "invalid_top_k", "integer"),
    ({"abstract": ABSTRACT, "top_k": 2.5}, 400, "invalid_top_k", "integer"),
    ({"abstract": ABSTRACT, "top_k": "3"}, 400, "invalid_top_k", "integer"),
    ({"abstract": ABSTRACT, "threshold": -0.01}, 400, "invalid_threshold", "from 0 to 1"),
    ({"abstract": ABSTRACT, "threshold": 1.5}, 400, "invalid_threshold", "from 0 to 1"),
    ({"abstract": ABSTRACT, "threshold": "0.5"}, 400, "invalid_threshold", "number"),
    ({"abstract": ABSTRACT, "threshold": False}, 400, "invalid_threshold", "number"),
    ('{"abstract": "x y z", "threshold": 1e400}', 400, "invalid_threshold", "number"),
    ('{"abstract": "x y z", "threshold": Infinity}', 400, "invalid_json", "Infinity"),
    ({"documents": []}, 400, "invalid_request", "non-empty list"),
    ({"documents": {"abstract": "x"}}, 400, "invalid_request", "non-empty list"),
    ({"documents": ["x"]}, 400, "invalid_request", "documents[0] must be an object"),
    ({"documents": [{"abstract": ABSTRACT}, {"abstract": " "}]}, 400, "empty_abstract",
     "documents[1].abstract is empty"),
    ({"documents": [{"abstract": ABSTRACT}, {"abstract": "and the"}]}, 400, "no_content_words",
     "documents[1].abstract has no content"),
    ({"documents": [{"abstract": "and the"}]}, 400, "no_content_words",
     "documents[0].abstract has no content"),
    ({"documents": [{"abstract": ABSTRACT, "top_k": 1}]}, 400, "invalid_request",
     "unknown field(s) 'top_k' in documents[0]"),
    ({"abstract": "x" * 20_001}, 413, "abstract_too_long", "limit is 20000"),
    ({"title": "x " * 501, "abstract": ABSTRACT}, 413, "title_too_long", "limit is 1000"),
    ({"documents": [{"title": "x" * 1001, "abstract": ABSTRACT}]}, 413, "title_too_long",
     "documents[0].title has 1001 characters"),
    ('{"abstract": "x y z", "abstract": "the"}', 400, "invalid_json", "'abstract' appears twice"),
    ('{"documents": [{"abstract": "a", "title": "b", "title": "c"}]}', 400, "invalid_json",
     "'title' appears twice"),
    ('{"abstract": "x y z", "top_k": ' + "9" * 5000 + "}", 400, "invalid_top_k", "integer"),
    ('{"abstract": "x y z", "id": -' + "9" * 5000 + "}", 400, "invalid_request",
     "id must be a string"),
    ({"documents": [{"abstract": "a b"}] * 65}, 413, "too_many_documents", "at most 64"),
    ('{"abstract": ' * 50_000, 400, "invalid_json", "not valid JSON"),
    ("[" * 200_000 + "]" * 200_000, 400, "invalid_json", "nested too deeply"),
]  # fmt: skip


@FORMATS
@pytest.mark.parametrize(("body", "status", "code", "words"), BAD_BODIES)
def test_bad_classify_bodies(serving_service, fmt, body, status, code, words):
    got_status, data, answer = call(serving_service, fmt, body=body)
    assert (got_status, data["error"]) == (status, code), data
    assert words in data["message"]
    assert "Traceback" not in answer["body"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(body, status, code) for body, status, code, _ in BAD_BODIES if not isinstance(body, str)]
    + [
        ([1, 2], 400, "invalid_event"),
        ("text", 400, "invalid_event"),
        (None, 400, "invalid_event"),
    ],
)
def test_bad_direct_invocations_get_the_same_4xx_shape(serving_service, body, status, code):
    got_status, data, _ = call(serving_service, "direct", body=body)
    assert (got_status, data["error"]) == (status, code)


@FORMATS
def test_body_limit_is_one_mebibyte(serving_service, fmt):
    filler = " " * ((1 << 20) - len('{"abstract": "robots"}'))
    at_limit = '{"abstract": "robots"' + filler + "}"
    assert len(at_limit.encode()) == 1 << 20
    assert call(serving_service, fmt, body=at_limit)[0] == 200
    over = at_limit + " "
    status, data, _ = call(serving_service, fmt, body=over)
    assert (status, data["error"]) == (413, "payload_too_large")
    # measured in bytes, not characters: 2-byte characters over the limit
    wide = '{"abstract": "' + "é" * ((1 << 19) + 10) + '"}'
    assert call(serving_service, fmt, body=wide)[1]["error"] == "payload_too_large"
    assert call(serving_service, fmt, body=over, base64_body=True)[0] == 413


@FORMATS
def test_a_five_megabyte_body_is_refused_without_decoding_it(serving_service, fmt, monkeypatch):
    body = '{"abstract": "' + "robots " * (5_000_000 // 7) + '"}'

    def no_decoding(*args, **kwargs):
        raise AssertionError("a body far over the limit was base64-decoded")

    monkeypatch.setattr("lambda_handler.api.base64.b64decode", no_decoding)
    for base64_body in (False, True):
        status, data, _ = call(serving_service, fmt, body=body, base64_body=base64_body)
        assert (status, data["error"]) == (413, "payload_too_large"), base64_body


@FORMATS
def test_fields_at_their_limits_are_accepted_and_one_more_character_is_not(serving_service, fmt):
    def sized(limit: int) -> str:
        return ("robot image " * (limit // 12 + 1))[:limit]

    at_limits = {
        "abstract": sized(MAX_ABSTRACT_CHARS),
        "title": sized(MAX_TITLE_CHARS),
        "id": "i" * MAX_ID_CHARS,
    }
    status, data, _ = call(serving_service, fmt, body=at_limits)
    assert status == 200 and data["results"][0]["id"] == at_limits["id"]
    for field, code in (
        ("abstract", "abstract_too_long"), ("title", "title_too_long"), ("id", "invalid_request")
    ):  # fmt: skip
        over = {**at_limits, field: at_limits[field] + "x"}
        assert call(serving_service, fmt, body=over)[1]["error"] == code, field


@FORMATS
def test_64_documents_are_accepted(serving_service, fmt):
    body = {
        "documents": [{"id": str(i), "abstract": f"robot agents {'image ' * i}"} for i in range(64)]
    }
    status, data, _ = call(serving_service, fmt, body=body)
    assert status == 200 and len(data["results"]) == 64


def test_invalid_http_envelopes_are_400(serving_service):
    for event in (
        {"version": "2.0", "rawPath": "/classify", "requestContext": {}},
        {"httpMethod": "POST", "requestContext": {}},
        {"httpMethod": 5, "path": "/classify"},
        {**serving_v1_event("POST", "/classify"), "body": {"abstract": "x"}},
    ):
        answer = serving_service.handle(event, None)
        assert answer["statusCode"] == 400
        assert json.loads(answer["body"])["error"] == "invalid_event"


def test_query_parameters_on_classify_are_refused_not_ignored(serving_service):
    # ?top_k=1 would otherwise answer as if it were not there
    v2 = serving_v2_event("POST", "/classify", {"abstract": ABSTRACT})
    v1 = serving_v1_event("POST", "/classify", {"abstract": ABSTRACT})
    for event, key, value in (
        (v2, "rawQueryString", "top_k=1"),
        (v1, "queryStringParameters", {"top_k": "1"}),
        (v1, "multiValueQueryStringParameters", {"top_k": ["1"]}),
    ):
        answer = serving_service.handle({**event, key: value}, None)
        data = json.loads(answer["body"])
        assert (answer["statusCode"], data["error"]) == (400, "invalid_request")
        assert "query parameters" in data["message"] and "JSON body" in data["message"]
    empty = {**v1, "queryStringParameters": None, "multiValueQueryStringParameters": None}
    for event in (v2, empty):
        assert serving_service.handle(event, None)["statusCode"] == 200
    health = {**serving_v2_event("GET", "/health", None), "rawQueryString": "nocache=1"}
    assert serving_service.handle(health, None)["statusCode"] == 200


def test_v1_headers_may_be_null_and_multi_value(serving_service):
    event = serving_v1_event("POST", "/classify", {"abstract": ABSTRACT}, headers={})
    event["headers"], event["multiValueHeaders"] = None, {"Content-Type": ["text/csv"]}
    assert serving_service.handle(event, None)["statusCode"] == 415
    event["multiValueHeaders"] = None
    assert serving_service.handle(event, None)["statusCode"] == 200


# --- model unavailable, internal errors, request ids and logs ------------------------------


@pytest.fixture(scope="module")
def broken_service(tmp_path_factory) -> Service:
    return Service.from_settings(Settings(model_dir=tmp_path_factory.mktemp("none") / "missing"))


@pytest.mark.parametrize("fmt", ["v1", "v2", "direct"])
def test_every_request_gets_503_when_the_model_is_unavailable(broken_service, fmt):
    requests = [("POST", "/classify", {"abstract": ABSTRACT}), ("GET", "/labels", None),
                ("GET", "/health", None), ("POST", "/classify", "{bad json")]  # fmt: skip
    for method, path, body in requests if fmt != "direct" else requests[:1]:
        status, data, _ = call(broken_service, fmt, method, path, body)
        assert status == 503
        assert data["error"] == "model_unavailable"
        assert "no model" in data["message"]
    if fmt != "direct":
        assert call(broken_service, fmt, "GET", "/health")[1]["status"] == "unavailable"
        assert call(broken_service, fmt, "OPTIONS", "/classify", headers={})[0] == 204
        # Routing does not depend on the model: a wrong route or method is still the caller's.
        assert call(broken_service, fmt, "GET", "/nowhere")[1]["error"] == "not_found"
        assert call(broken_service, fmt, "POST", "/labels")[1]["error"] == "method_not_allowed"


def test_a_failed_load_is_retried_on_requests_at_most_once_per_interval(
    tmp_path, serving_model_dir, capsys
):
    # A container that cold-started while the model was missing (an upload in progress) must
    # not answer 503 for the rest of its life: once the interval has passed, a request retries.
    model_dir = tmp_path / "model"
    service = Service.from_settings(Settings(model_dir=model_dir))
    assert call(service, "v2", "GET", "/health")[0] == 503
    shutil.copytree(serving_model_dir, model_dir)
    capsys.readouterr()
    assert call(service, "v2", "GET", "/health")[0] == 503  # within the interval: no new try
    assert "model_loaded" not in capsys.readouterr().out
    service.last_load -= RELOAD_INTERVAL_SECONDS
    status, data, _ = call(service, "v2", "POST", "/classify", {"abstract": ABSTRACT})
    assert status == 200 and data["results"][0]["labels"]
    assert '"event": "model_loaded"' in capsys.readouterr().out


@FORMATS
def test_internal_fault_is_500_with_request_id_only(serving_service, monkeypatch, capsys, fmt):
    def explode(self, papers, years=None):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(type(serving_service.classifier), "predict", explode)
    context = types.SimpleNamespace(aws_request_id="lambda-req-500")
    event = SERVING_EVENT_BUILDERS[fmt]("POST", "/classify", {"abstract": ABSTRACT})
    capsys.readouterr()
    answer = serving_service.handle(event, context)
    out = capsys.readouterr().out
    assert answer["statusCode"] == 500
    body = json.loads(answer["body"])
    assert body == {
        "error": "internal_error",
        "message": "internal error; quote request id lambda-req-500",
        "request_id": "lambda-req-500",
    }
    assert "secret" not in answer["body"] and "Traceback" not in answer["body"]
    records = [json.loads(line) for line in out.splitlines()]
    fault = next(r for r in records if r["event"] == "internal_error")
    assert "secret internal detail" in fault["traceback"]
    assert records[-1]["status"] == 500 and records[-1]["request_id"] == "lambda-req-500"


def test_request_id_comes_from_context_then_event_then_is_generated(serving_service):
    event = serving_v2_event("GET", "/health", request_id="gw-123")
    context = types.SimpleNamespace(aws_request_id="lambda-456")
    assert serving_service.handle(event, context)["headers"]["X-Request-Id"] == "lambda-456"
    assert serving_service.handle(event, None)["headers"]["X-Request-Id"] == "gw-123"
    generated = serving_service.handle({"abstract": ABSTRACT}, object())["headers"]["X-Request-Id"]
    assert len(generated) == 36 and generated.count("-") == 4


def test_one_structured_log_line_per_request_with_cold_start(serving_model_dir, capsys):
    service = Service.from_settings(Settings(model_dir=serving_model_dir))
    capsys.readouterr()
    context = types.SimpleNamespace(aws_request_id="req-1")
    service.handle(
        serving_v1_event("POST", "/classify", {"documents": [{"abstract": ABSTRACT}] * 3}), context
    )
    service.handle(serving_v2_event("GET", "/nope"), None)
    service.handle({"abstract": ""}, None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["event"] == "request" and first["request_id"] == "req-1"
    assert (first["route"], first["method"], first["source"]) == ("/classify", "POST", "v1")
    assert (first["status"], first["documents"], first["cold_start"]) == (200, 3, True)
    assert isinstance(first["latency_ms"], float) and first["latency_ms"] > 0
    assert (second["route"], second["status"], second["cold_start"]) == ("unknown", 404, False)
    assert first["gateway_request_id"] == "apigw-v1-request"
    assert second["request_id"] == "apigw-v2-request" and "gateway_request_id" not in second
    assert (third["source"], third["status"], third["documents"]) == ("direct", 400, 0)


def test_a_lone_surrogate_in_a_request_id_is_logged_escaped_not_lost(serving_service, capsys):
    event = serving_v2_event("GET", "/health")
    event["requestContext"]["requestId"] = "req-\udc80"
    capsys.readouterr()
    serving_service.handle(event, None)
    [line] = capsys.readouterr().out.splitlines()
    line.encode("utf-8")  # what a real stdout would have refused
    assert json.loads(line)["request_id"] == "req-\udc80"


def test_log_level_warning_silences_request_lines(serving_service, capsys):
    logs.configure("WARNING")
    capsys.readouterr()
    serving_service.handle(serving_v2_event("GET", "/health"), None)
    assert capsys.readouterr().out == ""


def test_response_body_is_compact_utf8_json(serving_service):
    answer = serving_service.handle(serving_v2_event("GET", "/labels"), None)
    assert ": " not in answer["body"] and answer["body"].startswith('{"model":')


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_a_body_that_is_not_utf8_is_invalid_json_on_both_paths(serving_service, encoding):
    body = json.dumps({"abstract": ABSTRACT}).encode(encoding)
    status, data, _ = call(serving_service, "v2", body=body, base64_body=True)
    assert (status, data["error"]) == (400, "invalid_json")
    # UTF-16-BE of ASCII text is valid UTF-8 (with NULs), so it fails as JSON instead.
    if encoding == "utf-16-be":
        assert data["message"].startswith("the request body is not valid JSON: Expecting value")
    else:
        assert data["message"] == "the request body is not valid JSON: not UTF-8"


@pytest.mark.parametrize("base64_body", [False, True])
def test_a_utf8_byte_order_mark_is_ignored_on_both_paths(serving_service, base64_body):
    body = "\ufeff" + json.dumps({"abstract": ABSTRACT})
    status, data, _ = call(serving_service, "v2", body=body, base64_body=base64_body)
    assert status == 200 and data["results"][0]["labels"]
