"""Write the sample Lambda events in infra/events/ and the status each one must get.

    python infra/make_events.py           # (re)write infra/events/*.json and expected.json
    python infra/make_events.py --check   # exit 1 when the files differ from this script

Every event is an API Gateway proxy event as the service sends it (HTTP API payload 2.0 or
REST API v1, with requestContext, headers and the body as a string) or a direct invocation,
built from the papers and request bodies below. File names say what a file shows:
`<envelope>-<what>.json`, and error events `<envelope>-error-<status>-<reason>.json`.
expected.json maps each file name to the status code (and, for errors, the `error` code)
that lambda_handler.app.handler must answer with; tests/test_infra*.py check both.

Use them with `sam local invoke ClassifyFunction -e events/<file>` (Docker) or with
`python -I -S infra/invoke_local.py <build dir>/ClassifyFunction infra/events/<file>`.
Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

EVENTS_DIR = Path(__file__).resolve().parent / "events"
EXPECTED_FILE = "expected.json"

# Fixed identifiers so that regenerating gives byte-identical files.
ACCOUNT_ID = "123456789012"
API_ID = "k3x9q2m7ab"
REGION = "us-east-1"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
SOURCE_IP = "203.0.113.42"
USER_AGENT = "curl/8.5.0"
REQUEST_TIME_EPOCH_MS = 1_795_636_800_000  # 2026-11-25T16:00:00Z
REQUEST_TIME_V2 = "25/Nov/2026:16:00:00 +0000"
REST_STAGE = "Prod"  # the stage name SAM gives a REST API
MAX_DOCUMENTS = 64  # lambda_handler.validation.MAX_DOCUMENTS
MAX_ABSTRACT_CHARS = 20_000  # lambda_handler.validation.MAX_ABSTRACT_CHARS

# Real arXiv papers (title, abstract and categories are arXiv's CC0 metadata).
PAPERS = [
    {
        "id": "1706.03762",
        "title": "Attention Is All You Need",
        "abstract": (
            "The dominant sequence transduction models are based on complex recurrent or "
            "convolutional neural networks in an encoder-decoder configuration. The best "
            "performing models also connect the encoder and decoder through an attention "
            "mechanism. We propose a new simple network architecture, the Transformer, based "
            "solely on attention mechanisms, dispensing with recurrence and convolutions "
            "entirely. Experiments on two machine translation tasks show these models to be "
            "superior in quality while being more parallelizable and requiring significantly "
            "less time to train. Our model achieves 28.4 BLEU on the WMT 2014 English-to-German "
            "translation task, improving over the existing best results, including ensembles "
            "by over 2 BLEU. On the WMT 2014 English-to-French translation task, our model "
            "establishes a new single-model state-of-the-art BLEU score of 41.8 after training "
            "for 3.5 days on eight GPUs, a small fraction of the training costs of the best "
            "models from the literature. We show that the Transformer generalizes well to other "
            "tasks by applying it successfully to English constituency parsing both with large "
            "and limited training data."
        ),
    },
    {
        "id": "1512.03385",
        "title": "Deep Residual Learning for Image Recognition",
        "abstract": (
            "Deeper neural networks are more difficult to train. We present a residual learning "
            "framework to ease the training of networks that are substantially deeper than "
            "those used previously. We explicitly reformulate the layers as learning residual "
            "functions with reference to the layer inputs, instead of learning unreferenced "
            "functions. We provide comprehensive empirical evidence showing that these residual "
            "networks are easier to optimize, and can gain accuracy from considerably increased "
            "depth. On the ImageNet dataset we evaluate residual nets with a depth of up to 152 "
            "layers---8x deeper than VGG nets but still having lower complexity. An ensemble of "
            "these residual nets achieves 3.57% error on the ImageNet test set. This result won "
            "the 1st place on the ILSVRC 2015 classification task."
        ),
    },
    {
        "id": "1412.6980",
        "title": "Adam: A Method for Stochastic Optimization",
        "abstract": (
            "We introduce Adam, an algorithm for first-order gradient-based optimization of "
            "stochastic objective functions, based on adaptive estimates of lower-order "
            "moments. The method is straightforward to implement, is computationally "
            "efficient, has little memory requirements, is invariant to diagonal rescaling of "
            "the gradients, and is well suited for problems that are large in terms of data "
            "and/or parameters. The method is also appropriate for non-stationary objectives "
            "and problems with very noisy and/or sparse gradients. The hyper-parameters have "
            "intuitive interpretations and typically require little tuning."
        ),
    },
    {
        "id": "quant-ph/9508027",
        "title": (
            "Polynomial-Time Algorithms for Prime Factorization and Discrete Logarithms on a "
            "Quantum Computer"
        ),
        "abstract": (
            "A digital computer is generally believed to be an efficient universal computing "
            "device; that is, it is believed able to simulate any physical computing device "
            "with an increase in computation time of at most a polynomial factor. This may not "
            "be true when quantum mechanics is taken into consideration. This paper considers "
            "factoring integers and finding discrete logarithms, two problems which are "
            "generally thought to be hard on a classical computer and have been used as the "
            "basis of several proposed cryptosystems. Efficient randomized algorithms are "
            "given for these two problems on a hypothetical quantum computer."
        ),
    },
    {
        "id": "math/0211159",
        "title": "The entropy formula for the Ricci flow and its geometric applications",
        "abstract": (
            "We present a monotonic expression for the Ricci flow, valid in all dimensions and "
            "without curvature assumptions. It is interpreted as an entropy for a certain "
            "canonical ensemble. Several geometric applications are given. In particular, "
            "Ricci flow, considered on the space of riemannian metrics modulo diffeomorphism "
            "and scaling, has no nontrivial periodic orbits (that is, other than fixed "
            "points)."
        ),
    },
]
ATTENTION, RESNET, ADAM, SHOR, PERELMAN = PAPERS


def single_request() -> dict:
    return {**ATTENTION, "top_k": 3}


def batch_request() -> dict:
    documents = [{key: paper[key] for key in ("id", "title", "abstract")} for paper in PAPERS]
    return {"documents": documents, "top_k": 2, "threshold": 0.3}


def too_many_documents() -> dict:
    """One more paper than a request may hold; titles and first sentences keep the file small."""
    documents = [
        {
            "id": f"{paper['id']}#{n}",
            "title": paper["title"],
            "abstract": paper["abstract"].split(". ")[0] + ".",
        }
        for n in range(MAX_DOCUMENTS // len(PAPERS) + 1)
        for paper in PAPERS
    ][: MAX_DOCUMENTS + 1]
    return {"documents": documents}


def abstract_too_long() -> dict:
    """An abstract one character over the limit (a pasted full text), ~20 kB on disk."""
    text = (RESNET["abstract"] + " ") * (MAX_ABSTRACT_CHARS // len(RESNET["abstract"]) + 1)
    return {"title": RESNET["title"], "abstract": text[: MAX_ABSTRACT_CHARS + 1]}


def dumps(payload: object) -> str:
    return json.dumps(payload, ensure_ascii=False)


# --- envelopes ------------------------------------------------------------------------------


def request_id(name: str) -> str:
    """A stable UUID-style request id per event (REST APIs' form)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def short_request_id(name: str) -> str:
    """A stable id in the form of HTTP APIs' requestId (and REST's extendedRequestId)."""
    return base64.b64encode(hashlib.sha256(name.encode()).digest()[:11]).decode("ascii")[:15] + "="


def http_headers(body: str | None, content_type: str | None) -> dict[str, str]:
    """The headers curl and API Gateway's edge put on a request, names lower-cased (v2)."""
    headers = {
        "accept": "application/json",
        "host": DOMAIN,
        "user-agent": USER_AGENT,
        "x-amzn-trace-id": "Root=1-6925d2c0-3f1d5a2b7c9e4f6a8b0c1d2e",
        "x-forwarded-for": SOURCE_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if body is not None:
        headers["content-length"] = str(len(body.encode("utf-8")))
    if content_type is not None:
        headers["content-type"] = content_type
    return dict(sorted(headers.items()))


def http_api_v2(
    name: str,
    method: str,
    path: str,
    body: str | None = None,
    content_type: str | None = "application/json",
    base64_body: bool = False,
    route: str | None = None,
) -> dict:
    """An HTTP API (payload format 2.0) event. `route` defaults to the request's own route;
    a 404/405 event names the catch-all `$default` route that would deliver it."""
    route_key = route or f"{method} {path}"
    event: dict = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": http_headers(body, content_type if body is not None else None),
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": DOMAIN,
            "domainPrefix": API_ID,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": SOURCE_IP,
                "userAgent": USER_AGENT,
            },
            "requestId": short_request_id(name),
            "routeKey": route_key,
            "stage": "$default",
            "time": REQUEST_TIME_V2,
            "timeEpoch": REQUEST_TIME_EPOCH_MS,
        },
        "isBase64Encoded": base64_body,
    }
    if body is not None:
        event["body"] = body
    return event


def rest_api_v1(
    name: str,
    method: str,
    path: str,
    body: str | None = None,
    content_type: str | None = "application/json",
    resource: str | None = None,
) -> dict:
    """A REST API (v1) proxy event; `resource` is the API resource that matched, e.g. the
    greedy `/{proxy+}` that would deliver an unknown path."""
    resource = resource or path
    lower = http_headers(body, content_type if body is not None else None)
    headers = {key.title(): value for key, value in lower.items()}
    path_parameters = {"proxy": path.lstrip("/")} if "{proxy+}" in resource else None
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": DOMAIN,
            "domainPrefix": API_ID,
            "extendedRequestId": short_request_id(name),
            "httpMethod": method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": SOURCE_IP,
                "user": None,
                "userAgent": USER_AGENT,
                "userArn": None,
            },
            "path": f"/{REST_STAGE}{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id(name),
            "requestTime": REQUEST_TIME_V2,
            "requestTimeEpoch": REQUEST_TIME_EPOCH_MS,
            "resourceId": "a1b2c3",
            "resourcePath": resource,
            "stage": REST_STAGE,
        },
        "body": body,
        "isBase64Encoded": False,
    }


# --- the catalogue ---------------------------------------------------------------------------

EventMaker = Callable[[str], dict]


def v2(method: str, path: str, body: str | None = None, **options: object) -> EventMaker:
    return lambda name: http_api_v2(name, method, path, body, **options)


def v1(method: str, path: str, body: str | None = None, **options: object) -> EventMaker:
    return lambda name: rest_api_v1(name, method, path, body, **options)


def direct(payload: dict) -> EventMaker:
    return lambda name: payload


def step_functions_batch(records: list[object], **options: object) -> EventMaker:
    """A batch of the bulk state machine's Distributed Map (infra/statemachine/bulk.asl.json):
    `Items` of `{"index", "record"}` from its ItemSelector, `BatchInput` from its ItemBatcher."""
    items = [{"index": index, "record": record} for index, record in enumerate(records)]
    return lambda name: {"Items": items, "BatchInput": options}


def batch_results(results: int, errors: int) -> dict:
    """A bulk answer `{"results": [...]}` (no HTTP status): one result per item, `errors` of
    them error results, the others with labels."""
    return {"batch_results": results, "batch_errors": errors}


def raises(error_type: str) -> dict:
    """A function error of this type, as Lambda reports it (a batch the function refuses)."""
    return {"raises": error_type}


def ok(results: int | None = None) -> dict:
    """200, with the number of results a classify answer must hold."""
    return {"status": 200} | ({"results": results} if results is not None else {})


def error(status: int, code: str) -> dict:
    return {"status": status, "error": code}


def page(content_type: str) -> dict:
    """200 with a body of this media type instead of JSON."""
    return {"status": 200, "content_type": content_type}


def catalogue() -> dict[str, tuple[EventMaker, dict]]:
    """File name -> (event builder taking the file name, expected answer)."""
    single, batch = dumps(single_request()), dumps(batch_request())
    n_batch = len(batch_request()["documents"])
    single_b64 = base64.b64encode(single.encode("utf-8")).decode("ascii")
    wrong_types = dumps({"title": ["Attention", "Is All You Need"], "abstract": 1706.03762})
    empty_abstract = dumps({"title": ATTENTION["title"], "abstract": " \n "})
    form = "application/x-www-form-urlencoded"
    return {
        # HTTP API (payload format 2.0): what the deployed API sends. The 404/405 events arrive
        # only through a catch-all `$default` route, which template.yaml does not declare.
        "v2-classify-single.json": (v2("POST", "/classify", single), ok(1)),
        "v2-classify-batch.json": (v2("POST", "/classify", batch), ok(n_batch)),
        "v2-classify-base64-body.json": (
            v2("POST", "/classify", single_b64, base64_body=True),
            ok(1),
        ),
        "v2-labels.json": (v2("GET", "/labels"), ok()),
        "v2-health.json": (v2("GET", "/health"), ok()),
        "v2-openapi.json": (v2("GET", "/openapi.json"), ok()),
        "v2-page.json": (v2("GET", "/"), page("text/html")),
        "v2-error-400-invalid-json.json": (
            v2("POST", "/classify", single[:-40]),
            error(400, "invalid_json"),
        ),
        "v2-error-400-bad-base64.json": (
            v2("POST", "/classify", single, base64_body=True),
            error(400, "invalid_base64"),
        ),
        "v2-error-400-wrong-types.json": (
            v2("POST", "/classify", wrong_types),
            error(400, "invalid_request"),
        ),
        "v2-error-400-empty-abstract.json": (
            v2("POST", "/classify", empty_abstract),
            error(400, "empty_abstract"),
        ),
        "v2-error-400-bad-top-k.json": (
            v2("POST", "/classify", dumps({**ADAM, "top_k": 0})),
            error(400, "invalid_top_k"),
        ),
        "v2-error-400-bad-threshold.json": (
            v2("POST", "/classify", dumps({**SHOR, "threshold": 1.5})),
            error(400, "invalid_threshold"),
        ),
        "v2-error-404-unknown-path.json": (
            v2("POST", "/predict", single, route="$default"),
            error(404, "not_found"),
        ),
        "v2-error-405-wrong-method.json": (
            v2("GET", "/classify", route="$default"),
            error(405, "method_not_allowed"),
        ),
        "v2-error-413-abstract-too-long.json": (
            v2("POST", "/classify", dumps(abstract_too_long())),
            error(413, "abstract_too_long"),
        ),
        "v2-error-413-too-many-documents.json": (
            v2("POST", "/classify", dumps(too_many_documents())),
            error(413, "too_many_documents"),
        ),
        "v2-error-415-wrong-content-type.json": (
            v2("POST", "/classify", single, content_type=form),
            error(415, "unsupported_media_type"),
        ),
        # REST API (v1) proxy events, e.g. from an existing API with a /{proxy+} resource.
        "v1-classify-single.json": (v1("POST", "/classify", single), ok(1)),
        "v1-classify-batch.json": (v1("POST", "/classify", batch), ok(n_batch)),
        "v1-labels.json": (v1("GET", "/labels"), ok()),
        "v1-health.json": (v1("GET", "/health"), ok()),
        "v1-error-400-invalid-json.json": (
            v1("POST", "/classify", "{'title': 'single quotes are not JSON'}"),
            error(400, "invalid_json"),
        ),
        "v1-error-404-unknown-path.json": (
            v1("GET", "/categories", resource="/{proxy+}"),
            error(404, "not_found"),
        ),
        "v1-error-405-wrong-method.json": (
            v1("PUT", "/classify", single, resource="/{proxy+}"),
            error(405, "method_not_allowed"),
        ),
        "v1-error-415-wrong-content-type.json": (
            v1("POST", "/classify", ATTENTION["abstract"], content_type="text/plain"),
            error(415, "unsupported_media_type"),
        ),
        # Direct invocation (aws lambda invoke, Step Functions): the event is the classify body.
        "direct-classify-single.json": (direct({**PERELMAN, "top_k": 2}), ok(1)),
        # A bulk run's batch (Step Functions Distributed Map): one result per item, a bad
        # record an error result; options the function refuses fail the whole batch.
        "sfn-batch.json": (
            step_functions_batch(
                [*PAPERS, {"id": "empty", "abstract": " "}], top_k=3, threshold=None
            ),
            batch_results(len(PAPERS) + 1, errors=1),
        ),
        "sfn-batch-error-refused-options.json": (
            step_functions_batch([SHOR], top_k=21, threshold=None),
            raises("InvalidBatchOptions"),
        ),
    }


def problems(expectation: dict, response: object, raised: str | None = None) -> list[str]:
    """How a handler's answer differs from an expected.json entry (empty: it fits): its
    response, or the type of the exception it raised instead."""
    if "raises" in expectation or raised is not None:
        expected = expectation.get("raises")
        if raised != expected:
            got = f"raised {raised}" if raised else "answered"
            return [f"{got}, expected {f'to raise {expected}' if expected else 'an answer'}"]
        return []
    if "batch_results" in expectation:
        return batch_problems(expectation, response)
    if not isinstance(response, dict) or not isinstance(response.get("body"), str):
        return [f"not a proxy response with a string body: {str(response)[:200]}"]
    found: list[str] = []
    status = response.get("statusCode")
    if status != expectation["status"]:
        found.append(f"status {status}, expected {expectation['status']}")
    media_type = expectation.get("content_type", "application/json")
    headers = response.get("headers")
    content_type = str(headers.get("Content-Type", "")) if isinstance(headers, dict) else ""
    if content_type.split(";")[0] != media_type:
        found.append(f"content type {content_type!r}, expected {media_type}")
    if media_type != "application/json":
        return found
    try:
        body = json.loads(response["body"])
    except ValueError:
        return [*found, f"body is not JSON: {response['body'][:200]}"]
    if "error" in expectation and body.get("error") != expectation["error"]:
        found.append(f"error {body.get('error')!r}, expected {expectation['error']!r}")
    if "results" in expectation:
        results = body.get("results")
        if not isinstance(results, list) or len(results) != expectation["results"]:
            found.append(f"results {results!r:.200}, expected {expectation['results']} of them")
        elif not all(result.get("labels") for result in results):
            found.append("a result holds no labels; the top label is always returned")
    return found


def batch_problems(expectation: dict, response: object) -> list[str]:
    """How a bulk batch's answer differs from its expected.json entry."""
    results = response.get("results") if isinstance(response, dict) else None
    if not isinstance(results, list) or len(results) != expectation["batch_results"]:
        return [f"results {str(response)[:200]}, expected {expectation['batch_results']} of them"]
    indices = [result.get("index") for result in results]
    # The Map's item indices run across the whole input: a later batch starts above 0.
    if indices and (
        not all(isinstance(i, int) for i in indices)
        or indices != list(range(indices[0], indices[0] + len(indices)))
    ):
        return ["results are not one per item, in order"]
    errors = sum("error" in result for result in results)
    if errors != expectation["batch_errors"]:
        return [f"{errors} error results, expected {expectation['batch_errors']}"]
    if not all(result.get("labels") for result in results if "error" not in result):
        return ["a result holds no labels; the top label is always returned"]
    return []


def render() -> dict[str, str]:
    """File name -> exact file text, expected.json included."""
    files, expected = {}, {}
    for name, (make, expectation) in catalogue().items():
        files[name] = json.dumps(make(name), indent=2, ensure_ascii=False) + "\n"
        expected[name] = expectation
    files[EXPECTED_FILE] = json.dumps(expected, indent=2, sort_keys=True) + "\n"
    return files


def stale_files(directory: Path = EVENTS_DIR) -> list[str]:
    """Names of files that are missing, different or extra compared with `render()`."""
    wanted = render()
    present = {path.name for path in directory.glob("*.json")}
    differ = [
        name
        for name, text in wanted.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    return sorted(differ + sorted(present - wanted.keys()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {EVENTS_DIR.name}/{name}", file=sys.stderr)
        return 1 if stale else 0
    EVENTS_DIR.mkdir(exist_ok=True)
    for path in EVENTS_DIR.glob("*.json"):
        path.unlink()
    for name, text in render().items():
        (EVENTS_DIR / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(render())} files to {EVENTS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
