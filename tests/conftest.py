"""Shared fixtures: small Kaggle-format CSV files that the tests write themselves, and a tiny
model directory (ONNX LSTM, TF-IDF baseline, stacked combiner) for the serving tests
(`serving_*`, at the end)."""

from __future__ import annotations

import base64
import csv
import importlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from lambda_handler.combiner import Combiner
from lambda_handler.files import sha256_file, write_bytes_atomic, write_json_atomic
from lambda_handler.manifest import FORMAT_VERSION, with_checksum
from lambda_handler.text import Tokenizer, pad, shipped_stopwords, words
from lambda_handler.tfidf import TfidfScorer, ngrams
from lambda_handler.year_prior import YearPrior

TOPICS = {
    "cs.CV": "image segmentation convolutional pixels camera detection vision",
    "cs.CL": "language translation tokens corpus parsing speech text",
    "cs.LG": "gradient optimization training generalization neural learning",
    "math.OC": "convex optimization constraints duality solver programming",
}


def write_kaggle_csv(
    path: Path, rows: list[tuple[str, str, str]], extra_columns: bool = False
) -> Path:
    """Write rows (title, abstract, terms) as a Kaggle-format CSV."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["titles", "summaries", "terms"] + (["word_count"] if extra_columns else [])
        writer.writerow(header)
        for row in rows:
            writer.writerow(list(row) + (["1"] if extra_columns else []))
    return path


def synthetic_rows(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """Papers whose words reveal their categories, with ACM/MSC noise in the terms."""
    rng = random.Random(seed)
    codes = list(TOPICS)
    rows = []
    for i in range(n):
        chosen = rng.sample(codes, rng.choice([1, 1, 2]))
        vocabulary = " ".join(TOPICS[c] for c in chosen).split()
        abstract = " ".join(rng.choice(vocabulary) for _ in range(40)) + f" paper{i}"
        terms = [*chosen, "I.2.7"] if i % 5 == 0 else chosen
        rows.append((f"Study {i} of {chosen[0]}", abstract, repr(terms)))
    return rows


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    """400 synthetic papers in the Kaggle format."""
    return write_kaggle_csv(tmp_path / "papers.csv", synthetic_rows(400))


# --- Serving (lambda_handler) fixtures, prefixed `serving_` -------------------------------------
# A tiny but real model directory built without TensorFlow: an ONNX graph from onnx.helper
# (Gather embedding → bidirectional native LSTM → masked mean+max pooling → MatMul/Add →
# Sigmoid) with a seeded numpy reference of the same network, a seeded TF-IDF baseline and a
# seeded stacked combiner (`ServingSystem` recomputes the served scores), and a Service.

SERVING_LABELS = (
    ("cs.CV", "Computer Vision and Pattern Recognition", 0.5),
    ("cs.LG", "Machine Learning", 0.45),
    ("cs.CL", "Computation and Language", 0.5),
    ("cs.AI", "Artificial Intelligence", 0.6),
    ("stat.ML", "Machine Learning", 0.4),
    ("cs.RO", "Robotics", 0.55),
)
SERVING_SENTENCES = (
    "Convolutional neural networks for image segmentation and object detection.",
    "Transformer language models for machine translation and text summarization.",
    "Reinforcement learning agents for robot navigation and grasping.",
    "Stochastic gradient descent convergence for deep neural network training.",
    "Bayesian inference with Gaussian processes and variational approximations.",
    "Large language models answer questions about images and video.",
    "Graph neural networks learn molecular property prediction.",
)
# Of SERVING_SENTENCES, the first and the last score below this line (test_api_routes checks).
SERVING_LOW_CONFIDENCE = 0.75
SERVING_MODEL_NAME = "tiny-test-lstm"
SERVING_MODEL_VERSION = "2026.11.25-tiny"
SERVING_SERVED = {
    "combiner": "stacked",
    "combiner_detail": "stacked",
    "lstm_precision": "fp32",
    "year_prior": "2001..2004",
}
SERVING_FILES = (
    "model.onnx",
    "tokenizer.json",
    "labels.json",
    "baseline.json",
    "baseline.npz",
    "combiner.json",
    "combiner.npz",
    "year_prior.json",
)


@dataclass(frozen=True)
class ServingNetwork:
    """Weights of the tiny BiLSTM, and a numpy forward pass equal to the ONNX graph's."""

    embedding: np.ndarray  # [vocab, embed]
    w: np.ndarray  # [2, 4H, embed], ONNX gate order i, o, f, c
    r: np.ndarray  # [2, 4H, H]
    b: np.ndarray  # [2, 8H]
    dense_w: np.ndarray  # [4H, labels]
    dense_b: np.ndarray  # [labels]

    @property
    def hidden(self) -> int:
        return self.r.shape[-1]

    @classmethod
    def random(
        cls, vocab: int, n_labels: int, seed: int = 7, embed: int = 8, hidden: int = 6
    ) -> ServingNetwork:
        rng = np.random.default_rng(seed)

        def normal(*shape: int, scale: float) -> np.ndarray:
            return (rng.standard_normal(shape) * scale).astype(np.float32)

        return cls(
            embedding=normal(vocab, embed, scale=1.0),
            w=normal(2, 4 * hidden, embed, scale=0.6),
            r=normal(2, 4 * hidden, hidden, scale=0.4),
            b=normal(2, 8 * hidden, scale=0.2),
            dense_w=normal(4 * hidden, n_labels, scale=1.5),
            dense_b=normal(n_labels, scale=0.5),
        )

    def predict(self, tokens: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        """Probabilities for an already (pre-)padded int batch `[batch, time]`, in float64."""
        tokens = np.asarray(tokens, dtype=np.int64)
        x = self.embedding.astype(np.float64)[tokens]  # [B, T, E]
        forward = self._direction(x, 0, reverse=False)
        backward = self._direction(x, 1, reverse=True)
        sequence = np.concatenate([forward, backward], axis=-1)  # [B, T, 2H]
        mask = (tokens != 0).astype(np.float64)[..., None]
        count = np.maximum(mask.sum(axis=1), 1.0)
        mean = (sequence * mask).sum(axis=1) / count
        maximum = (sequence + (mask - 1.0) * 1e4).max(axis=1)
        logits = np.concatenate([mean, maximum], axis=-1) @ self.dense_w + self.dense_b
        return 1.0 / (1.0 + np.exp(-logits))

    def _direction(self, x: np.ndarray, d: int, reverse: bool) -> np.ndarray:
        def sigmoid(v: np.ndarray) -> np.ndarray:
            return 1.0 / (1.0 + np.exp(-v))

        h_size = self.hidden
        w, r = self.w[d].astype(np.float64), self.r[d].astype(np.float64)
        bias = self.b[d, : 4 * h_size].astype(np.float64) + self.b[d, 4 * h_size :]
        batch, steps, _ = x.shape
        h = np.zeros((batch, h_size))
        c = np.zeros((batch, h_size))
        out = np.zeros((batch, steps, h_size))
        for t in reversed(range(steps)) if reverse else range(steps):
            gates = x[:, t] @ w.T + h @ r.T + bias
            i, o, f, g = np.split(gates, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            out[:, t] = h
        return out


def build_serving_onnx(network: ServingNetwork) -> bytes:
    """The network as an opset-17 ONNX graph: `tokens` int32 [batch, time] → `probabilities`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    hidden = network.hidden
    n_labels = network.dense_b.shape[0]
    init = [
        numpy_helper.from_array(network.embedding, "embedding"),
        numpy_helper.from_array(network.w, "W"),
        numpy_helper.from_array(network.r, "R"),
        numpy_helper.from_array(network.b, "B"),
        numpy_helper.from_array(network.dense_w, "dense_w"),
        numpy_helper.from_array(network.dense_b, "dense_b"),
        numpy_helper.from_array(np.array([0], dtype=np.int32), "pad_id"),
        numpy_helper.from_array(np.array([0, 0, 2 * hidden], dtype=np.int64), "seq_shape"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_time"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis_feature"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(1e4, dtype=np.float32), "big"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "tokens"], ["embedded"], axis=0),
        helper.make_node("Transpose", ["embedded"], ["time_major"], perm=[1, 0, 2]),
        helper.make_node(
            "LSTM",
            ["time_major", "W", "R", "B"],
            ["lstm_y"],
            hidden_size=hidden,
            direction="bidirectional",
        ),
        helper.make_node("Transpose", ["lstm_y"], ["batch_major"], perm=[2, 0, 1, 3]),
        helper.make_node("Reshape", ["batch_major", "seq_shape"], ["sequence"]),
        helper.make_node("Equal", ["tokens", "pad_id"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["is_word"]),
        helper.make_node("Cast", ["is_word"], ["mask2"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask2", "axis_feature"], ["mask"]),
        helper.make_node("Mul", ["sequence", "mask"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis_time"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "axis_time"], ["raw_count"], keepdims=0),
        helper.make_node("Max", ["raw_count", "one"], ["count"]),
        helper.make_node("Div", ["total", "count"], ["mean"]),
        helper.make_node("Sub", ["mask", "one"], ["mask_minus_one"]),
        helper.make_node("Mul", ["mask_minus_one", "big"], ["penalty"]),
        helper.make_node("Add", ["sequence", "penalty"], ["penalised"]),
        helper.make_node("ReduceMax", ["penalised"], ["maximum"], axes=[1], keepdims=0),
        helper.make_node("Concat", ["mean", "maximum"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "dense_w"], ["product"]),
        helper.make_node("Add", ["product", "dense_b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_bilstm",
        [helper.make_tensor_value_info("tokens", TensorProto.INT32, ["batch", "time"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_labels])],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def serving_tokenizer() -> Tokenizer:
    """A Tokenizer fitted on a few sentences, with the shipped English stopwords."""
    stopwords = shipped_stopwords()
    documents = [words(sentence, "", stopwords) for sentence in SERVING_SENTENCES]
    return Tokenizer.fit(documents, vocab_size=40, stopwords=stopwords, max_length=50)


def serving_baseline() -> TfidfScorer:
    """A seeded TF-IDF scorer over the serving sentences' words and bigrams."""
    rng = np.random.default_rng(11)
    stopwords = shipped_stopwords()
    documents = [words(sentence, "", stopwords) for sentence in SERVING_SENTENCES]
    terms = sorted({gram for document in documents for gram in ngrams(document, 2)})
    return TfidfScorer.from_dense(
        terms,
        2,
        rng.uniform(1.0, 3.0, len(terms)),
        rng.normal(0.0, 2.0, (len(SERVING_LABELS), len(terms))),
        rng.normal(-1.0, 0.5, len(SERVING_LABELS)),
        prune_below=0.5,
    )


def serving_combiner() -> Combiner:
    """A seeded stacked combiner: near a mean of both logits, plus some label interaction."""
    n = len(SERVING_LABELS)
    rng = np.random.default_rng(13)
    weights = rng.normal(0.0, 0.1, (2 * n, n)) + np.vstack([np.eye(n), np.eye(n)]) * 0.5
    return Combiner(
        "stacked",
        tuple(code for code, *_ in SERVING_LABELS),
        1.0,
        weights.astype(np.float32),
        rng.normal(0.0, 0.2, n).astype(np.float32),
    )


def write_serving_manifest(directory: Path, **overrides: object) -> dict:
    """(Re)write manifest.json for the files in `directory`; `overrides` replace top-level keys."""
    files = {
        name: {"sha256": sha256_file(directory / name), "bytes": (directory / name).stat().st_size}
        for name in SERVING_FILES
        if (directory / name).exists()
    }
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": {"name": SERVING_MODEL_NAME, "version": SERVING_MODEL_VERSION},
        "created": "2026-11-25T20:00:00Z",
        "files": files,
        "io": {"input": "tokens", "output": "probabilities", "opset": 17},
        "served": SERVING_SERVED,
        **overrides,
    }
    manifest = with_checksum(manifest)
    write_json_atomic(directory / "manifest.json", manifest)
    return manifest


def build_serving_model_dir(directory: Path, network: ServingNetwork) -> Path:
    """Write model.onnx, tokenizer.json, labels.json and (last) manifest.json to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(directory / "model.onnx", build_serving_onnx(network))
    serving_tokenizer().save(directory / "tokenizer.json")
    labels = [
        {"code": code, "name": name, "archive": code.partition(".")[0], "threshold": threshold}
        for code, name, threshold in SERVING_LABELS
    ]
    write_json_atomic(
        directory / "labels.json",
        {
            "format_version": 1,
            "labels": labels,
            "low_confidence": {"top_score_below": SERVING_LOW_CONFIDENCE},
        },
    )
    document, arrays = serving_baseline().to_files()
    write_json_atomic(directory / "baseline.json", document)
    write_bytes_atomic(directory / "baseline.npz", arrays)
    document, arrays = serving_combiner().to_files()
    write_json_atomic(directory / "combiner.json", document)
    assert arrays is not None
    write_bytes_atomic(directory / "combiner.npz", arrays)
    write_json_atomic(directory / "year_prior.json", serving_year_prior().to_document())
    write_serving_manifest(directory)
    return directory


SERVING_YEARS = (2001, 2004)  # the fixture's year prior covers these years


def serving_year_prior() -> YearPrior:
    """A seeded year prior over the serving labels for SERVING_YEARS, strong enough to change
    a paper's top label."""
    years = SERVING_YEARS[1] - SERVING_YEARS[0] + 1
    shifts = np.random.default_rng(17).normal(0.0, 3.0, (years, len(SERVING_LABELS)))
    labels = tuple(code for code, *_ in SERVING_LABELS)
    return YearPrior(labels, SERVING_YEARS[0], shifts.astype(np.float32))


@pytest.fixture(scope="session")
def serving_network() -> ServingNetwork:
    """The tiny network's seeded weights, with `.predict` as the numpy reference."""
    return ServingNetwork.random(vocab=serving_tokenizer().size, n_labels=len(SERVING_LABELS))


@dataclass(frozen=True)
class ServingSystem:
    """The served system's scores recomputed from the fixture's parts, independently of
    `lambda_handler.model` (only the baseline and combiner arithmetic are shared)."""

    network: ServingNetwork
    tokenizer: Tokenizer
    baseline: TfidfScorer
    combiner: Combiner

    def lstm(self, sequences: Sequence[Sequence[int]], sub_batch: int = 4) -> np.ndarray:
        """The LSTM as the function batches it: ≤ sub_batch papers in one run, else sorted by
        length in groups of sub_batch, each pre-padded to its own longest."""
        if len(sequences) <= sub_batch:
            return self.network.predict(pad(sequences))
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        out = np.zeros((len(sequences), self.network.dense_b.shape[0]))
        for start in range(0, len(order), sub_batch):
            rows = order[start : start + sub_batch]
            out[rows] = self.network.predict(pad([sequences[i] for i in rows]))
        return out

    def predict(self, papers: Sequence[tuple[str, str]]) -> np.ndarray:
        """Served scores of (title, abstract) pairs."""
        documents = [self.tokenizer.words(title, abstract) for title, abstract in papers]
        lstm = self.lstm([self.tokenizer.ids(document) for document in documents])
        return self.combiner.combine(
            lstm.astype(np.float32), self.baseline.predict_proba(documents)
        )


@pytest.fixture(scope="session")
def serving_system(serving_network: ServingNetwork) -> ServingSystem:
    return ServingSystem(
        serving_network, serving_tokenizer(), serving_baseline(), serving_combiner()
    )


@pytest.fixture(scope="session")
def serving_model_dir(tmp_path_factory: pytest.TempPathFactory, serving_network) -> Path:
    """A valid model directory shared by the session: treat it as read-only."""
    return build_serving_model_dir(tmp_path_factory.mktemp("serving") / "model", serving_network)


@pytest.fixture
def make_serving_model_dir(tmp_path: Path, serving_model_dir: Path) -> Callable[..., Path]:
    """Factory: a private copy of the valid model directory under tmp_path, free to tamper with."""

    def make(name: str = "model") -> Path:
        return Path(shutil.copytree(serving_model_dir, tmp_path / name))

    return make


@pytest.fixture(scope="session")
def serving_service(serving_model_dir: Path):
    """A Service loaded from `serving_model_dir` (one ONNX session for the whole test run)."""
    from lambda_handler.service import Service
    from lambda_handler.settings import Settings

    return Service.from_settings(Settings(model_dir=serving_model_dir))


def reload_app(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """`lambda_handler.app` imported afresh, as at a cold start. The OPENBLAS_NUM_THREADS that
    it sets for numpy is undone after the test, with the test's other environment changes."""
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    return importlib.reload(importlib.import_module("lambda_handler.app"))


def serving_v1_event(
    method: str = "POST",
    path: str = "/classify",
    body: object = None,
    headers: dict[str, str] | None = None,
    *,
    base64_body: bool = False,
    stage: str = "prod",
    request_id: str = "apigw-v1-request",
) -> dict:
    """An API Gateway REST API (v1) proxy event; dict/list bodies are sent as JSON."""
    text, encoded = _serving_body(body, base64_body)
    headers = {"Content-Type": "application/json"} if headers is None else headers
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": request_id,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def serving_v2_event(
    method: str = "POST",
    path: str = "/classify",
    body: object = None,
    headers: dict[str, str] | None = None,
    *,
    base64_body: bool = False,
    stage: str = "$default",
    request_id: str = "apigw-v2-request",
) -> dict:
    """An API Gateway HTTP API (payload 2.0) event; a named stage prefixes rawPath."""
    text, encoded = _serving_body(body, base64_body)
    headers = {"content-type": "application/json"} if headers is None else headers
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "domainName": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "pytest",
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": stage,
            "timeEpoch": 1764100000000,
        },
        "isBase64Encoded": encoded,
    }
    if text is not None:
        event["body"] = text
    return event


SERVING_EVENT_BUILDERS = {"v1": serving_v1_event, "v2": serving_v2_event}


def _serving_body(body: object, base64_body: bool) -> tuple[str | None, bool]:
    if body is None:
        return None, False
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    if base64_body:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        return base64.b64encode(raw).decode("ascii"), True
    return (data.decode("utf-8") if isinstance(data, bytes) else data), False


def start_local_server(*args: str, **popen: object) -> tuple[subprocess.Popen, str]:
    """`python -m lambda_handler.serve --port 0 ARGS` as a user starts it, and the line it
    prints once listening."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "LOG_LEVEL": "WARNING"}
    env.pop("MODEL_DIR", None), env.pop("MODEL_S3_URI", None)
    command = [sys.executable, "-m", "lambda_handler.serve", "--port", "0", *args]
    process = subprocess.Popen(
        command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        **popen,
    )  # fmt: skip
    return process, process.stderr.readline()


@pytest.fixture(scope="session")
def shipped_server() -> Iterator[str]:
    """The local server with the committed model, on a free loopback port: its base URL."""
    process, line = start_local_server()
    try:
        found = re.search(r"serving (http://127\.0\.0\.1:\d+)/ \(model arxiv-classifier ", line)
        assert found, f"the server did not start with the shipped model: {line!r}"
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stderr.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API server (moto's ThreadedMotoServer) on 127.0.0.1 and a free port."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    """Fake credentials and the endpoint in the environment, reached through
    AWS_ENDPOINT_URL_S3 as in Lambda (no patching); an S3 client for test setup."""
    boto3 = pytest.importorskip("boto3")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "MODEL_S3_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def bucket(s3) -> str:
    """A new, empty bucket on the moto server."""
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
