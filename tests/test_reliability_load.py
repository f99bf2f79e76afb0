"""Load: `python -m lambda_handler.serve` in a subprocess on a free loopback port, under a
bounded load from a few keep-alive client threads. Every request must get its 200.

The load is bounded in count (REQUESTS) and time (TIME_LIMIT_S) and goes to 127.0.0.1 only. The
server serves the committed model (lambda_handler/model/) when there is one, else the conftest
fixture model; the figures say which.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import SERVING_SENTENCES

from bench.figures import record
from bench.papers import SAMPLE_ENV, read_papers
from lambda_handler.settings import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
REQUESTS = 4000
TIME_LIMIT_S = 60.0
CLIENTS = 4
BATCH = 8


@dataclass
class Tally:
    """What the client threads saw, shared under a lock."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def abstracts() -> list[str]:
    """Real abstracts from $ARXIV_SAMPLE_CSV when set, else the fixture's sentences."""
    if os.environ.get(SAMPLE_ENV):
        return [paper.abstract for paper in read_papers(Path(os.environ[SAMPLE_ENV]))]
    return list(SERVING_SENTENCES)


def model_dir(serving_model_dir: Path) -> Path:
    return (
        DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / "manifest.json").is_file() else serving_model_dir
    )


@pytest.fixture
def server(serving_model_dir: Path, tmp_path: Path):
    """(port, pid, model dir) of a local server subprocess; stopped with SIGTERM afterwards."""
    served = model_dir(serving_model_dir)
    stderr = tmp_path / "serve.stderr"
    with open(stderr, "w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "lambda_handler.serve", "--host", HOST, "--port", "0",
             "--model-dir", str(served)],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "LOG_LEVEL": "INFO"},
            stdout=subprocess.DEVNULL, stderr=errors,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (
            match := re.search(r"serving http://([\d.]+):(\d+)/ \(model ", stderr.read_text())
        ):
            assert process.poll() is None and time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
        assert match.group(1) == HOST
        yield int(match.group(2)), process.pid, served
        process.terminate()
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in stderr.read_text(), stderr.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def server_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def client(
    port: int, seed: int, budget: itertools.count, deadline: float, texts: list[str], tally: Tally
) -> None:
    """Send requests over one keep-alive connection until the budget or the time runs out."""
    rng = random.Random(seed)
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Content-Type": "application/json"}
    try:
        while next(budget) < REQUESTS and time.monotonic() < deadline:
            draw = rng.random()
            if draw < 0.1:
                method, path, body, expected = "GET", "/health", None, 0
            elif draw < 0.3:
                documents = [{"abstract": rng.choice(texts)} for _ in range(BATCH)]
                method, path, body, expected = "POST", "/classify", {"documents": documents}, BATCH
            else:
                method, path, body, expected = (
                    "POST",
                    "/classify",
                    {"abstract": rng.choice(texts)},
                    1,
                )
            began = time.perf_counter()
            try:
                connection.request(method, path, body and json.dumps(body), headers)
                response = connection.getresponse()
                payload = json.loads(response.read())
                problem = None if response.status == 200 else f"{response.status} {payload}"
                if not problem and expected and len(payload["results"]) != expected:
                    problem = f"{len(payload['results'])} results for {expected} papers"
            except (OSError, http.client.HTTPException, ValueError) as error:
                problem = f"{type(error).__name__}: {error}"
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=30)
            elapsed = time.perf_counter() - began
            with tally.lock:
                tally.latencies.append(elapsed)
                if problem:
                    tally.errors.append(f"{method} {path}: {problem}"[:300])
    finally:
        connection.close()


def test_local_server_under_bounded_load_answers_every_request(server):
    port, pid, served = server
    texts, tally, budget = abstracts(), Tally(), itertools.count()
    rss_before = server_rss_mb(pid)
    started, deadline = time.perf_counter(), time.monotonic() + TIME_LIMIT_S
    threads = [
        threading.Thread(target=client, args=(port, seed, budget, deadline, texts, tally))
        for seed in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIME_LIMIT_S + 60)
    seconds = time.perf_counter() - started
    latencies = np.asarray(tally.latencies) * 1000
    done = len(latencies)

    model = "committed model" if served == DEFAULT_MODEL_DIR else "conftest fixture model"
    mix = f"{CLIENTS} keep-alive clients; 70% one abstract, 20% batches of {BATCH}, 10% /health"
    record("load", "requests", done, note=f"in {seconds:.1f} s; {mix}")
    record("load", "throughput", round(done / seconds), "requests/s", f"{model}, 1 ORT thread")
    record("load", "latency p50", round(float(np.percentile(latencies, 50)), 2), "ms")
    record("load", "latency p99", round(float(np.percentile(latencies, 99)), 2), "ms")
    record("load", "errors", len(tally.errors))
    record("load", "server RSS", round(server_rss_mb(pid)), "MB", f"{rss_before:.0f} MB before")
    assert not any(thread.is_alive() for thread in threads)
    assert not tally.errors, "\n".join(tally.errors[:20])
    assert done >= min(REQUESTS, 500), f"only {done} requests in {TIME_LIMIT_S} s"


def test_keep_alive_answers_take_milliseconds_not_a_delayed_ack(server):
    port = server[0]
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    body = json.dumps({"abstract": SERVING_SENTENCES[0]})
    times = []
    try:
        for _ in range(21):
            began = time.perf_counter()
            connection.request("POST", "/classify", body, {"Content-Type": "application/json"})
            assert connection.getresponse().read()
            times.append(time.perf_counter() - began)
    finally:
        connection.close()
    assert sorted(times)[10] < 0.02, f"median {sorted(times)[10] * 1000:.0f} ms"
