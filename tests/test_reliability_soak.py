"""Soak: 100,000 in-process requests through the handler, a seeded mix of single papers,
batches and invalid requests in all three event formats. Every answer must have the status its
request calls for, and the process may grow by at most 10 MB of RSS after a warm-up.

Uses the conftest fixture model (a real ONNX BiLSTM, tiny), so the run takes seconds; the code
path (event parsing, validation, tokenization, onnxruntime, decision rule, JSON, log line) is
the production one. The requests run in a fresh process (this file run as a script), which
logs at INFO as deployed, into /dev/null.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERVING_EVENT_BUILDERS, SERVING_LABELS, SERVING_SENTENCES

from bench.figures import record
from lambda_handler.text import shipped_stopwords, words
from lambda_handler.validation import MAX_ABSTRACT_CHARS, MAX_DOCUMENTS

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
REQUESTS = 100_000
WARMUP = 5_000
MAX_RSS_GROWTH_MB = 10.0
CONTENT_WORDS = sorted(
    {word for sentence in SERVING_SENTENCES for word in words(sentence, "", shipped_stopwords())}
)
UNKNOWN_WORDS = ["zyxwv", "quuxification", "hyperbolicity", "Schrödinger", "multi-agent"]


def rss_mb() -> float:
    """Resident set size of this process now (VmRSS), in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def text(rng: random.Random, low: int = 1, high: int = 60) -> str:
    """Content words (some out of vocabulary) mixed with stopwords, numbers and punctuation."""
    pool = CONTENT_WORDS * 4 + UNKNOWN_WORDS + ["the", "of", "2024", ",", "."]
    return " ".join(rng.choice(pool) for _ in range(rng.randint(low, high))) + " robot"


def options(rng: random.Random) -> dict[str, object]:
    chosen: dict[str, object] = {}
    if rng.random() < 0.3:
        chosen["top_k"] = rng.randint(1, len(SERVING_LABELS))
    if rng.random() < 0.2:
        chosen["threshold"] = round(rng.random(), 3)
    return chosen


def single(rng: random.Random) -> dict[str, object]:
    body: dict[str, object] = {"abstract": text(rng), **options(rng)}
    if rng.random() < 0.7:
        body["title"] = text(rng, 0, 8)
    return body


def batch(rng: random.Random) -> dict[str, object]:
    documents = [{"id": str(i), "abstract": text(rng)} for i in range(rng.randint(1, 16))]
    return {"documents": documents, **options(rng)}


def envelope(rng: random.Random, body: object, method: str = "POST", path: str = "/classify"):
    """The body in a v1, v2 or direct-invocation event (direct only for POST /classify)."""
    formats = ["v1", "v2", "direct"] if (method, path) == ("POST", "/classify") else ["v1", "v2"]
    fmt = rng.choice(formats)
    if fmt == "direct":
        return body
    return SERVING_EVENT_BUILDERS[fmt](method, path, body, base64_body=rng.random() < 0.1)


def v2(body: object, headers: dict[str, str] | None = None) -> dict:
    return SERVING_EVENT_BUILDERS["v2"]("POST", "/classify", body, headers)


LONG_ABSTRACT = {"abstract": "a" * (MAX_ABSTRACT_CHARS + 1)}
TOO_MANY = {"documents": [{"abstract": "robot"}] * (MAX_DOCUMENTS + 1)}
INVALID = (  # (name, event maker, expected status)
    ("invalid JSON", lambda rng: v2("{oops"), 400),
    ("unknown field", lambda rng: envelope(rng, {"abstract": "robot", "abstact": "x"}), 400),
    ("no content words", lambda rng: envelope(rng, {"abstract": "the of and 2024"}), 400),
    ("empty abstract", lambda rng: envelope(rng, {"abstract": "   "}), 400),
    ("bad top_k", lambda rng: envelope(rng, {"abstract": "robot", "top_k": 0}), 400),
    ("bad threshold", lambda rng: envelope(rng, {"abstract": "robot", "threshold": 2}), 400),
    ("abstract too long", lambda rng: envelope(rng, LONG_ABSTRACT), 413),
    ("too many documents", lambda rng: envelope(rng, TOO_MANY), 413),
    ("wrong method", lambda rng: envelope(rng, None, "GET", "/classify"), 405),
    ("unknown path", lambda rng: envelope(rng, None, "GET", "/nope"), 404),
    (
        "wrong content type",
        lambda rng: v2({"abstract": "robot"}, {"content-type": "text/csv"}),
        415,
    ),
    ("not an object", lambda rng: ["abstract", "robot"], 400),
    ("health", lambda rng: envelope(rng, None, "GET", "/health"), 200),
    ("labels", lambda rng: envelope(rng, None, "GET", "/labels"), 200),
)


def requests(seed: int, count: int) -> Iterator[tuple[str, object, int, int]]:
    """(kind, event, expected status, expected results): 60% single papers, 15% batches, 25%
    other routes and invalid requests."""
    rng = random.Random(seed)
    for _ in range(count):
        draw = rng.random()
        if draw < 0.60:
            yield "single", envelope(rng, single(rng)), 200, 1
        elif draw < 0.75:
            body = batch(rng)
            yield "batch", envelope(rng, body), 200, len(body["documents"])
        else:
            name, make, status = rng.choice(INVALID)
            yield name, make(rng), status, 0


def run(service, seed: int, count: int, statuses: Counter) -> list[str]:
    """Send `count` requests; return a description of every unexpected answer."""
    unexpected = []
    for index, (kind, event, status, results) in enumerate(requests(seed, count)):
        answer = service.handle(event, None)
        statuses[(kind, answer["statusCode"])] += 1
        if answer["statusCode"] != status:
            unexpected.append(f"#{index} {kind}: {answer['statusCode']} {answer['body'][:200]}")
        elif results and len(json.loads(answer["body"])["results"]) != results:
            unexpected.append(f"#{index} {kind}: not {results} results: {answer['body'][:200]}")
    return unexpected


def soak(model_dir: Path) -> dict[str, object]:
    """Warm up, then send REQUESTS requests; statuses, unexpected answers and RSS growth."""
    from lambda_handler.service import Service
    from lambda_handler.settings import Settings

    out = sys.stdout
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # the log lines
        service = Service.from_settings(Settings(model_dir=model_dir, log_level="INFO"))
        statuses: Counter = Counter()
        unexpected = run(service, seed=1, count=WARMUP, statuses=statuses)
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        unexpected += run(service, seed=2, count=REQUESTS, statuses=statuses)
        seconds = time.perf_counter() - started
        gc.collect()
        after = rss_mb()
    kinds: Counter = Counter()
    for (kind, status), count in statuses.items():
        kinds[kind if kind in ("single", "batch") else "other routes and invalid"] += count
        kinds["5xx"] += count if status >= 500 else 0
    result = {
        "unexpected": unexpected,
        "kinds": kinds,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "seconds": seconds,
    }
    print(json.dumps(result), file=out)
    return result


def test_soak_100k_requests_every_status_as_expected_and_rss_flat(serving_model_dir):
    """In a fresh process, so that pytest's log capture (which keeps every record) stays out."""
    done = subprocess.run(
        [sys.executable, __file__, str(serving_model_dir)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    growth = result["rss_after_mb"] - result["rss_before_mb"]
    kinds = result["kinds"]
    mix = ", ".join(f"{kind} {count:,}" for kind, count in sorted(kinds.items()) if kind != "5xx")
    record("soak", "requests after warm-up", REQUESTS, note=f"({WARMUP:,} warm-up before)")
    record("soak", "mix (warm-up included)", mix)
    record("soak", "unexpected statuses", len(result["unexpected"]))
    record("soak", "5xx answers", kinds.get("5xx", 0))
    record(
        "soak",
        "RSS growth after warm-up",
        round(growth, 2),
        "MB",
        f"from {result['rss_before_mb']:.0f} MB",
    )
    record("soak", "throughput", round(REQUESTS / result["seconds"]), "requests/s", "fixture model")
    assert not result["unexpected"], "\n".join(result["unexpected"][:20])
    assert growth <= MAX_RSS_GROWTH_MB, f"RSS grew by {growth:.1f} MB over {REQUESTS:,} requests"


if __name__ == "__main__":
    soak(Path(sys.argv[1]))
