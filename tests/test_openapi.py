"""lambda_handler/openapi.json: a valid OpenAPI 3.1 document whose limits, fields, error codes
and examples are those of the code and the shipped model, served with the page at GET /."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from openapi_spec_validator import validate

from lambda_handler import api, pages, validation
from lambda_handler.api import Request
from lambda_handler.routes import ALLOWED_METHODS, Router
from lambda_handler.service import Service
from lambda_handler.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCUMENT = json.loads(pages.OPENAPI_FILE.read_text(encoding="utf-8"))
SCHEMAS = DOCUMENT["components"]["schemas"]
# The error schema of each status; 404 and 405 answer paths and methods the document lacks.
ERROR_SCHEMAS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "TooLarge",
    415: "UnsupportedMediaType",
    500: "InternalError",
    503: "ModelUnavailable",
}


def schema(name: str) -> dict:
    """A component schema that resolves its $refs against the document."""
    return {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}


def conforms(instance: object, name: str) -> None:
    jsonschema.validate(instance, schema(name), cls=jsonschema.Draft202012Validator)


def test_the_document_is_valid_openapi_3_1():
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1.")


def test_limits_and_fields_are_the_codes_constants():
    single, batch, document = SCHEMAS["SinglePaper"], SCHEMAS["Batch"], SCHEMAS["Document"]
    # A single paper may name `documents` only as null, which the code drops as absent.
    assert set(single["properties"]) == validation.SINGLE_FIELDS | {"documents"}
    assert single["properties"]["documents"]["type"] == "null"
    assert set(batch["properties"]) == validation.BATCH_FIELDS
    assert set(document["properties"]) == validation.DOCUMENT_FIELDS
    for fields in (single, document):
        assert fields["properties"]["abstract"]["maxLength"] == validation.MAX_ABSTRACT_CHARS
        assert fields["properties"]["title"]["maxLength"] == validation.MAX_TITLE_CHARS
        assert fields["properties"]["id"]["maxLength"] == validation.MAX_ID_CHARS
        assert fields["required"] == ["abstract"] and fields["additionalProperties"] is False
    assert batch["properties"]["documents"]["maxItems"] == validation.MAX_DOCUMENTS
    assert SCHEMAS["ClassifyResponse"]["properties"]["results"]["maxItems"] == (
        validation.MAX_DOCUMENTS
    )
    assert single["properties"]["top_k"]["default"] == validation.DEFAULT_TOP_K
    assert f"{api.MAX_BODY_BYTES:,} bytes" in DOCUMENT["info"]["description"]
    assert f"at most {validation.MAX_DOCUMENTS} papers" in DOCUMENT["info"]["description"]


def raised_error_codes() -> set[tuple[int, str]]:
    """(status, code) of every ApiError the function raises, read from its source."""
    found = set()
    for path in (REPO / "lambda_handler").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        found |= {(int(s), c) for s, c in re.findall(r'ApiError\(\s*(\d{3}),\s*"(\w+)"', text)}
    return found


def documented_error_codes() -> set[tuple[int, str]]:
    found = set()
    for status, name in ERROR_SCHEMAS.items():
        error = SCHEMAS[name]["properties"]["error"]
        codes = [error["const"]] if "const" in error else [o["const"] for o in error["oneOf"]]
        found |= {(status, code) for code in codes}
    return found


def test_every_error_the_code_raises_is_documented_under_its_status_and_no_other():
    raised = raised_error_codes() | {(500, "internal_error")}  # service.py's catch-all
    assert len(raised) > 12
    assert documented_error_codes() == raised


def test_each_operation_documents_the_error_statuses_it_can_answer():
    classify = DOCUMENT["paths"]["/classify"]["post"]["responses"]
    assert set(classify) == {"200", "400", "413", "415", "500", "503"}
    for status in ("400", "413", "415"):
        ref = classify[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/" + ERROR_SCHEMAS[int(status)])
    for path in ("/labels", "/health"):
        assert {"200", "500", "503"} <= set(DOCUMENT["paths"][path]["get"]["responses"])


def test_the_documents_paths_are_the_routers():
    documented = {path: sorted(item) for path, item in DOCUMENT["paths"].items()}
    routed = {
        path: sorted(m.lower() for m in ms if m != "OPTIONS")
        for path, ms in ALLOWED_METHODS.items()
    }
    assert documented == routed
    assert set(api.KNOWN_PATHS) == set(ALLOWED_METHODS)


def classify_examples() -> list[tuple[str, dict, dict]]:
    operation = DOCUMENT["paths"]["/classify"]["post"]
    requests = operation["requestBody"]["content"]["application/json"]["examples"]
    answers = operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert requests.keys() == answers.keys()
    return [(name, requests[name]["value"], answers[name]["value"]) for name in requests]


@pytest.fixture(scope="module")
def shipped_service() -> Service:
    service = Service.from_settings(Settings.from_env())  # the committed lambda_handler/model
    assert service.classifier is not None, service.failure
    return service


def test_examples_conform_and_are_what_the_shipped_model_answers(shipped_service: Service):
    """Real abstracts (infra/make_events.py's papers) and the shipped model's real answers."""
    for name, request, answer in classify_examples():
        conforms(request, "ClassifyRequest")
        conforms(answer, "ClassifyResponse")
        got = json.loads(shipped_service.handle(request, None)["body"])
        assert got["model"] == answer["model"], (
            f"{name}: refresh the examples for this model (python infra/openapi_examples.py)"
        )
        for mine, theirs in zip(answer["results"], got["results"], strict=True):
            assert [x["label"] for x in mine["labels"]] == [x["label"] for x in theirs["labels"]]
            for documented, served in zip(mine["labels"], theirs["labels"], strict=True):
                assert documented["score"] == pytest.approx(served["score"], abs=1e-5), name
    labels = DOCUMENT["paths"]["/labels"]["get"]["responses"]["200"]["content"]
    example = labels["application/json"]["example"]
    conforms(example, "LabelsResponse")
    served = json.loads(shipped_service.router.dispatch(get("/labels")).response.body)
    assert example["labels"] == served["labels"][: len(example["labels"])]


def test_served_answers_conform_to_their_schemas(shipped_service: Service):
    router = shipped_service.router
    for path, name in (("/labels", "LabelsResponse"), ("/health", "Health")):
        conforms(json.loads(router.dispatch(get(path)).response.body), name)
    conforms(
        json.loads(Router(None, "missing").dispatch(get("/health")).response.body),
        "HealthUnavailable",
    )
    conforms(
        json.loads(Router(None, "missing").dispatch(get("/labels")).response.body),
        "ModelUnavailable",
    )
    for body, status in (({"abstract": ""}, 400), ({"abstract": "x" * 20_001}, 413)):
        answer = router.dispatch(Request("direct", "POST", "/classify", {}, payload=body)).response
        conforms(json.loads(answer.body), ERROR_SCHEMAS[answer.status])
        assert answer.status == status


def get(path: str) -> Request:
    return Request("v2", "GET", path, {})


def test_openapi_json_is_served_as_written_even_without_a_model():
    response = Router(None, "the model is missing").dispatch(get("/openapi.json")).response
    assert response.status == 200 and json.loads(response.body) == DOCUMENT
    assert response.headers["Content-Type"] == api.JSON_CONTENT_TYPE
    assert api.route_path("/prod/openapi.json") == "/openapi.json"


def test_the_page_is_self_contained_and_its_policy_allows_only_itself():
    response = Router(None, "the model is missing").dispatch(get("/")).response
    html = response.body
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    for tag in ("script", "style"):
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        assert len(blocks) == 1
        assert policy[f"{tag}-src"] == f"'sha256-{pages._digest(blocks[0])}'"
    assert not re.search(r"<script[^>]*src|<link[^>]*stylesheet|@import|url\(", html)
    assert not re.search(r"https?://|//[a-z]", html.replace("http://www.w3.org", ""))
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", html)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_unknown_get_paths_still_answer_the_json_404(shipped_service: Service):
    for path in ("/index.html", "/openapi.yaml", "/static/app.js"):
        response = shipped_service.router.dispatch(get(path)).response
        assert response.status == 404 and json.loads(response.body)["error"] == "not_found"


def test_the_readme_links_to_the_document_instead_of_repeating_it():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## HTTP API") : readme.index("## Deploying to AWS")]
    assert "lambda_handler/openapi.json" in section and "/openapi.json" in section
    assert "| 413 |" not in section, "the error table lives in the document now"


def test_the_refresh_tool_rewrites_stale_examples_to_the_shipped_models_answers(
    shipped_service: Service,
):
    from infra.openapi_examples import refreshed

    stale = json.loads(json.dumps(DOCUMENT))
    classify = stale["paths"]["/classify"]["post"]["responses"]["200"]["content"]
    answer = classify["application/json"]["examples"]["single"]["value"]
    answer["model"]["version"] = "1999.01.01-00000000"
    answer["results"][0]["labels"][0]["score"] = 0.5
    health = stale["paths"]["/health"]["get"]["responses"]["200"]["content"]
    health["application/json"]["example"]["labels"] = 1
    assert stale != DOCUMENT
    assert refreshed(stale, shipped_service) == DOCUMENT


def test_the_refresh_tool_reads_the_committed_model_whatever_model_dir_says(
    monkeypatch, tmp_path, capsys
):
    from infra import openapi_examples

    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "another-model"))
    monkeypatch.setenv("MODEL_S3_URI", "s3://elsewhere/model")
    assert openapi_examples.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out
