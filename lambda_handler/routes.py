"""Routing and the endpoints: POST /classify, GET /labels, GET /health, and the static
GET /openapi.json and GET / (`pages.py`).

The router is built once per container around a loaded classifier (or the reason there is
none); /labels and /health answers are serialised at that point. The static answers do not
need the model, so they are served even when it failed to load.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lambda_handler import pages
from lambda_handler.api import ApiError, Request, Response, json_response, read_json
from lambda_handler.model import Classifier
from lambda_handler.validation import ClassifyRequest, no_content_words, parse_classify

ALLOWED_METHODS: dict[str, tuple[str, ...]] = {
    "/classify": ("POST", "OPTIONS"),
    "/labels": ("GET", "OPTIONS"),
    "/health": ("GET", "OPTIONS"),
    "/openapi.json": ("GET", "OPTIONS"),
    "/": ("GET", "OPTIONS"),
}


@dataclass(frozen=True)
class Outcome:
    """A response plus what the request log line reports about it."""

    response: Response
    route: str
    documents: int = 0


class Router:
    """Answers requests from one classifier, or 503 for all of them when it failed to load."""

    def __init__(self, classifier: Classifier | None, failure: str | None = None) -> None:
        self.classifier = classifier
        self.failure = None if classifier else (failure or "not loaded")
        if classifier is None:
            message = f"the model is unavailable: {failure or 'not loaded'}"
            self._unavailable = ApiError(503, "model_unavailable", message).response()
            self._health = json_response(
                503, {"status": "unavailable", "error": "model_unavailable", "message": message}
            )
            return
        labels = classifier.labels
        self._model = classifier.info.to_dict()
        self._health = json_response(
            200, {"status": "ok", "model": self._model, "labels": len(labels)}
        )
        self._labels = json_response(
            200,
            {
                "model": self._model,
                "labels": [
                    {
                        "label": label.code,
                        "name": label.name,
                        "archive": label.archive,
                        "threshold": label.threshold,
                    }
                    for label in labels
                ],
                "low_confidence_below": classifier.low_confidence_below,
            },
        )

    def dispatch(self, request: Request) -> Outcome:
        """Route by path and method; a refused request becomes its JSON error response."""
        allowed = ALLOWED_METHODS.get(request.path)
        route = request.path if allowed else "unknown"
        try:
            response, documents = self._answer(request, allowed)
        except ApiError as error:
            return Outcome(error.response(), route)
        return Outcome(response, route, documents)

    def _answer(self, request: Request, allowed: tuple[str, ...] | None) -> tuple[Response, int]:
        """The response and the number of papers classified; raise ApiError to refuse."""
        path, method = request.path, request.method
        if allowed and method == "OPTIONS":
            return Response(204, headers={"Allow": ", ".join(allowed)}), 0
        if method == "GET" and path in pages.ROUTES:
            return pages.ROUTES[path](), 0
        if allowed is None:
            raise ApiError(404, "not_found", f"no route for {path[:200]}; try POST /classify")
        if method not in allowed:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{method[:20]} is not allowed on {path}; use {allowed[0]}",
                {"Allow": ", ".join(allowed)},
            )
        if self.classifier is None:
            return (self._health if path == "/health" else self._unavailable), 0
        if path == "/classify":
            if request.has_query:
                raise ApiError(
                    400,
                    "invalid_request",
                    "query parameters are not read here; send top_k and threshold in the JSON body",
                )
            request_body = parse_classify(read_json(request), len(self.classifier.labels))
            return self._classify(request_body), len(request_body.documents)
        return (self._labels if path == "/labels" else self._health), 0

    def _classify(self, request: ClassifyRequest) -> Response:
        """Tokenize, score all papers in one run, and apply the decision rule to each."""
        classifier = self.classifier
        assert classifier is not None
        papers = []
        for index, document in enumerate(request.documents):
            encoded = classifier.encode(document.title, document.abstract)
            if encoded is None:
                raise no_content_words(
                    f"documents[{index}].abstract" if request.is_batch else "abstract"
                )
            papers.append(encoded)
        scores = classifier.predict(papers, [document.year for document in request.documents])
        results = []
        for document, row in zip(request.documents, scores, strict=True):
            result: dict[str, object] = {} if document.id is None else {"id": document.id}
            results.append(result | paper_answer(classifier, row, request.top_k, request.threshold))
        return json_response(200, {"model": self._model, "results": results})


def paper_answer(
    classifier: Classifier, scores: np.ndarray, top_k: int, threshold: float | None
) -> dict[str, object]:
    """One paper's `labels` (and `low_confidence`) from its scores, as the API and bulk runs
    answer them."""
    values = scores.tolist()
    answer: dict[str, object] = {
        "labels": [
            {
                "label": classifier.labels[i].code,
                "name": classifier.labels[i].name,
                "score": round(values[i], 6),
            }
            for i in classifier.choose(scores, top_k, threshold).tolist()
        ]
    }
    if classifier.low_confidence_below is not None:
        answer["low_confidence"] = classifier.is_low_confidence(scores)
    return answer
