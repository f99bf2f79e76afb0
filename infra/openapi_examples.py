"""Refresh the answers shown in lambda_handler/openapi.json from the shipped model.

    python infra/openapi_examples.py           # rewrite the examples after an export
    python infra/openapi_examples.py --check   # exit 1 when they are not the model's answers

The document's /classify request examples stay as written (real abstracts); their answers, the
/labels example (its first labels) and the /health example become what the committed model
in lambda_handler/model/ answers, so a reader sees real scores. tests/test_openapi.py holds
the examples to the shipped model and fails, asking for this refresh, when it changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambda_handler.api import Request
from lambda_handler.files import write_bytes_atomic
from lambda_handler.pages import OPENAPI_FILE
from lambda_handler.service import Service
from lambda_handler.settings import Settings

JSON = "application/json"


def refreshed(document: dict, service: Service) -> dict:
    """`document` with its answer examples replaced by `service`'s answers (in place)."""
    router = service.router

    def body_of(request: Request) -> dict:
        return json.loads(router.dispatch(request).response.body)

    classify = document["paths"]["/classify"]["post"]
    requests = classify["requestBody"]["content"][JSON]["examples"]
    answers = classify["responses"]["200"]["content"][JSON]["examples"]
    for name, request in requests.items():
        direct = Request("direct", "POST", "/classify", {}, payload=request["value"])
        answers[name]["value"] = body_of(direct)
    labels = document["paths"]["/labels"]["get"]["responses"]["200"]["content"][JSON]
    shown = len(labels["example"]["labels"])
    labels["example"] = body_of(Request("v2", "GET", "/labels", {}))
    labels["example"]["labels"] = labels["example"]["labels"][:shown]
    health = document["paths"]["/health"]["get"]["responses"]["200"]["content"][JSON]
    health["example"] = body_of(Request("v2", "GET", "/health", {}))
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args(argv)
    # The committed model, whatever MODEL_DIR or MODEL_S3_URI say: the document ships with it.
    service = Service.from_settings(Settings())
    if service.classifier is None:
        print(f"error: the shipped model does not load: {service.failure}", file=sys.stderr)
        return 2
    current = OPENAPI_FILE.read_text(encoding="utf-8")
    text = json.dumps(refreshed(json.loads(current), service), indent=2, ensure_ascii=False)
    text += "\n"
    if args.check:
        stale = text != current
        print(f"{OPENAPI_FILE}: {'stale' if stale else 'up to date'}")
        return int(stale)
    write_bytes_atomic(OPENAPI_FILE, text.encode("utf-8"))
    print(f"wrote {OPENAPI_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
