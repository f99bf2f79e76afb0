"""End-to-end tests of export/run.py on a tiny Keras LSTM and a fake training run.

The fixture mirrors train/run.py's output (docs/model_format.md): the project's BiLSTM
(train/lstm.py) at toy size with seeded weights saved as `.keras`, the tokenizer, labels, a gzip
test split with a few dozen papers, data.json and reports/metrics.json.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
import tf2onnx
from conftest import SERVING_FILES
from keras import layers

import export.pipeline
from export.artifacts import MODELS, load_artifacts
from export.reference import REFERENCE_FILE, REFERENCE_PAPERS, Reference
from export.run import main
from lambda_handler.combiner import Combiner
from lambda_handler.files import sha256_file
from lambda_handler.manifest import FORMAT_VERSION
from lambda_handler.model import Classifier
from lambda_handler.text import Tokenizer, pad, shipped_stopwords, words
from lambda_handler.tfidf import TfidfScorer, ngrams
from lambda_handler.year_prior import YearPrior
from train import lstm
from train.thresholds import micro_f1, predict_sets

REPO = Path(__file__).resolve().parents[1]
TRAINED_RULES = {
    "decision_rule": {"name": "global", "always_top_label": True},
    "low_confidence": {"rule": "test", "validation": {"auroc": 0.8}, "top_score_below": 0.3},
}
LABELS = [
    {
        "code": "cs.CV",
        "name": "Computer Vision and Pattern Recognition",
        "archive": "cs",
        "threshold": 0.45,
    },
    {"code": "cs.LG", "name": "Machine Learning", "archive": "cs", "threshold": 0.5},
    {"code": "math.ST", "name": "Statistics Theory", "archive": "math", "threshold": 0.55},
    {"code": "quant-ph", "name": "Quantum Physics", "archive": "quant-ph", "threshold": 0.5},
]
WORDS = [
    "image",
    "segmentation",
    "convolutional",
    "network",
    "gradient",
    "estimator",
    "variance",
    "bayesian",
    "posterior",
    "qubit",
    "entanglement",
    "quantum",
    "circuit",
    "optical",
    "transformer",
    "attention",
    "multi-agent",
    "policy",
    "kernel",
    "regression",
    "sparse",
    "3d",
    "point-cloud",
    "detection",
    "video",
    "diffusion",
    "minimax",
    "hypothesis",
    "spectral",
    "hamiltonian",
]
PAPERS = 40
DATA = {
    "files": [
        {"path": "data/arxiv_data.csv", "sha256": "ab" * 32, "bytes": 123456, "counts": {}},
        {"path": "data/more.csv.gz", "sha256": "cd" * 32, "bytes": 789, "counts": {}},
    ],
    "counts": {"rows_read": 500, "duplicates_merged": 20, "papers_unique": 480, "test": PAPERS},
    "non_arxiv_codes_dropped": 12,
}
SUMMARIES = {  # what the manifest keeps of reports/metrics.json
    "baseline": {"rule": "per_label", "test": {"micro_f1": 0.61, "p_at_1": 0.8, "papers": PAPERS}},
    "lstm": {"rule": "global", "test": {"micro_f1": 0.66, "p_at_1": 0.83, "papers": PAPERS}},
    "served": {"rule": "global", "test": {"micro_f1": 0.68, "p_at_1": 0.85, "papers": PAPERS}},
}
OUT_FILES = {*SERVING_FILES, "manifest.json"}  # the fixture model directory's files


# Dates of the test papers, in turn: in the year prior's years (2001-2003), after them, none.
DATES = ("2001-03-04", "2002-11-30", "2003-07-01", "2024-02-02", None)


def make_papers(rng: np.random.Generator) -> list[dict[str, object]]:
    """Random papers of varied length, plus one with no content words at all."""
    papers = []
    for _ in range(PAPERS - 1):
        title = " ".join(rng.choice(WORDS, size=rng.integers(2, 6)))
        abstract = " ".join(rng.choice([*WORDS, "the", "of", "2024"], size=rng.integers(0, 45)))
        codes = rng.choice([label["code"] for label in LABELS], size=rng.integers(1, 3))
        date = DATES[len(papers) % len(DATES)]
        papers.append(
            {
                "title": title.title(),
                "abstract": abstract,
                "labels": sorted(set(codes)),
                "date": date,
            }
        )
    papers.append({"title": "The 2024", "abstract": "of the", "labels": ["cs.LG"], "date": None})
    return papers


def tiny_lstm(vocab_size: int, n_labels: int) -> keras.Model:
    """The project's LSTM (train/lstm.py) at toy size, with seeded weights."""
    keras.utils.set_random_seed(7)
    config = lstm.LSTMConfig(embedding_dim=8, units=4, seed=7)
    return lstm.build_model(vocab_size, n_labels, config)


def masked_lstm(vocab_size: int, n_labels: int) -> keras.Model:
    """An LSTM over a `mask_zero` embedding, which tf2onnx unrolls into a Loop."""
    keras.utils.set_random_seed(7)
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = layers.Embedding(vocab_size, 8, mask_zero=True)(tokens)
    x = layers.Bidirectional(layers.LSTM(4))(x)
    return keras.Model(tokens, layers.Dense(n_labels, activation="sigmoid")(x))


def full_metrics() -> dict[str, object]:
    """reports/metrics.json as train/run.py writes it: summaries plus per-label tables."""
    thresholds = [label["threshold"] for label in LABELS]
    per_label = {label["code"]: {"f1": 0.5, "support": 3} for label in LABELS}
    models = {
        name: {
            **summary,
            "thresholds": thresholds,
            "rules": [{"name": summary["rule"], "test_micro_f1": 0.6}],
            "test": {**summary["test"], "per_label": per_label},
        }
        for name, summary in SUMMARIES.items()
    }
    return {"data": DATA, "models": models, "lstm_history": {"loss": [0.5, 0.4]}}


def write_training_run(
    root: Path, build_model: Callable[[int, int], keras.Model] = tiny_lstm
) -> Path:
    """Write `root/artifacts` and `root/reports` the way train/run.py does; returns `root`."""
    rng = np.random.default_rng(3)
    papers = make_papers(rng)
    artifacts, reports = root / "artifacts", root / "reports"
    artifacts.mkdir(parents=True)
    reports.mkdir()
    stopwords = shipped_stopwords()
    tokenizer = Tokenizer.fit(
        (words(p["title"], p["abstract"], stopwords) for p in papers),
        vocab_size=24,
        stopwords=stopwords,
        max_length=30,
    )
    tokenizer.save(artifacts / "tokenizer.json")
    network = build_model(tokenizer.size, len(LABELS))
    network.save(artifacts / "lstm.keras")
    labels = [{**label, "support": 10 + i} for i, label in enumerate(LABELS)]
    (artifacts / "labels.json").write_text(
        json.dumps({"format_version": 1, "labels": labels, **TRAINED_RULES})
    )
    # The baseline and the combiner as training saves them, and training's test-split scores.
    documents = [words(p["title"], p["abstract"], stopwords) for p in papers]
    terms = sorted({gram for document in documents for gram in ngrams(document, 2)})
    baseline = TfidfScorer.from_dense(
        terms,
        2,
        rng.uniform(1, 3, len(terms)),
        rng.normal(0, 2, (len(LABELS), len(terms))),
        rng.normal(-1, 0.5, len(LABELS)),
        prune_below=0.3,
    )
    document, arrays = baseline.to_files()
    (artifacts / "baseline.json").write_text(json.dumps(document))
    (artifacts / "baseline.npz").write_bytes(arrays)
    n = len(LABELS)
    combiner = Combiner(
        "stacked",
        tuple(label["code"] for label in LABELS),
        1.0,
        (np.vstack([np.eye(n), np.eye(n)]) * 0.5 + rng.normal(0, 0.1, (2 * n, n))).astype(
            np.float32
        ),
        rng.normal(0, 0.2, n).astype(np.float32),
    )
    document, arrays = combiner.to_files()
    (artifacts / "combiner.json").write_text(json.dumps(document))
    (artifacts / "combiner.npz").write_bytes(arrays)
    prior = YearPrior(
        combiner.labels, 2001, rng.normal(0, 2, (3, n)).astype(np.float32)
    )  # strong enough to change label sets, so the gates fail without the papers' years
    (artifacts / "year_prior.json").write_text(json.dumps(prior.to_document()))
    lstm_scores = lstm.predict(network, [tokenizer.ids(document) for document in documents])
    baseline_scores = baseline.predict_proba(documents)
    offsets = prior.offsets([int(paper["date"][:4]) if paper["date"] else None for paper in papers])
    np.savez(
        artifacts / "predictions.npz",
        lstm_test=lstm_scores,
        baseline_test=baseline_scores,
        served_test=combiner.combine(lstm_scores, baseline_scores, offsets),
    )
    with gzip.open(artifacts / "test_split.jsonl.gz", "wt", encoding="utf-8") as lines:
        lines.writelines(json.dumps(paper) + "\n" for paper in papers)
    (artifacts / "data.json").write_text(json.dumps(DATA))
    (reports / "metrics.json").write_text(json.dumps(full_metrics()))
    return root


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` with its bytes, to prove a directory was left untouched."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def leftovers(out: Path) -> list[str]:
    """Staging or retired directories that an export left beside `out`."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def export_args(run: Path, out: Path) -> list[str]:
    """CLI arguments exporting the training run at `run` to `out`."""
    return [
        "--artifacts",
        str(run / "artifacts"),
        "--reports",
        str(run / "reports"),
        "--out",
        str(out),
    ]


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The CLI's error lines on stderr, which must hold no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("export: error:")]


@pytest.fixture(scope="module")
def training_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake training run shared by the module's tests (copy it before changing it)."""
    return write_training_run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def run_copy(training_run: Path, tmp_path: Path) -> Path:
    """A private copy of the training run, for tests that break it."""
    return Path(shutil.copytree(training_run, tmp_path / "run"))


@pytest.fixture
def previous_model(tmp_path: Path) -> Path:
    """An existing model directory that a failed export must leave byte-identical."""
    out = tmp_path / "deploy" / "model"
    out.mkdir(parents=True)
    (out / "model.onnx").write_bytes(b"previous model")
    (out / "manifest.json").write_text('{"format_version": 1}')
    return out


@pytest.fixture(scope="module")
def exported(training_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run `python export/run.py` from the repo root over an old model; returns the new dir."""
    out = tmp_path_factory.mktemp("deploy") / "model"
    out.mkdir()
    (out / "stale.txt").write_text("from the previous export")
    (out / "manifest.json").write_text("{}")  # what makes it a previous export, to replace
    completed = subprocess.run(
        [sys.executable, "export/run.py", *export_args(training_run, out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert re.search(
        r"export: wrote .* \(model version \d{4}\.\d\d\.\d\d-[0-9a-f]{8}\)", completed.stderr
    )
    assert "bi-rnn" not in completed.stderr  # tf2onnx's expected notice is filtered out
    return out


def test_export_replaces_the_model_directory(exported: Path) -> None:
    assert {p.name for p in exported.iterdir()} == OUT_FILES
    assert leftovers(exported) == []


def test_manifest_records_files_run_and_toolchain(exported: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    files = {
        name: {"sha256": sha256_file(exported / name), "bytes": (exported / name).stat().st_size}
        for name in OUT_FILES - {"manifest.json"}
    }
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["files"] == files
    created = datetime.strptime(manifest["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 600
    onnx_sha = files["model.onnx"]["sha256"]
    assert manifest["model"] == {
        "name": "arxiv-classifier",
        "version": f"{created:%Y.%m.%d}-{onnx_sha[:8]}",
    }
    assert manifest["io"] == {"input": "tokens", "output": "probabilities", "opset": 17}
    assert manifest["training_data"] == {
        "files": [
            {"name": Path(f["path"]).name, "sha256": f["sha256"], "bytes": f["bytes"]}
            for f in DATA["files"]
        ],
        "rows": DATA["counts"],
    }
    assert manifest["metrics"] == SUMMARIES
    assert manifest["served"] == {
        "combiner": "stacked",
        "combiner_detail": "stacked logistic layer over both models' logits (4 labels)",
        "lstm_precision": "int8",
        "year_prior": "2001..2003",
    }
    assert manifest["versions"] == {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    parity = manifest["gates"]["parity"]
    assert (parity["papers"], parity["empty_papers_skipped"], parity["single_papers"]) == (39, 1, 8)
    assert 0 <= parity["max_abs_diff"] <= 1e-4
    assert parity["label_set_agreement"] == 1.0
    quantization = manifest["gates"]["quantization"]
    assert quantization["papers"] == 39 and quantization["label_set_agreement"] >= 0.995
    assert quantization["micro_f1_drop"] <= 0.002
    assert 0 < quantization["lstm_max_abs_diff"] < 0.05  # int8 really differs, but little
    end_to_end = manifest["gates"]["end_to_end"]
    assert end_to_end["papers"] == 39 and end_to_end["label_set_agreement"] >= 0.995


def test_both_gates_score_the_served_system_with_the_papers_years(
    exported: Path, training_run: Path
) -> None:
    """The quantization gate's fp32 micro-F1 and the end-to-end gate's are those of training's
    served scores, which carry the year prior; without the years they would differ."""
    artifacts = load_artifacts(training_run / "artifacts", training_run / "reports")
    kept = [  # as the gates: papers with at least one content word
        i for i, p in enumerate(artifacts.papers) if artifacts.tokenizer.encode(p.title, p.abstract)
    ]
    assert 0 < len(kept) < len(artifacts.papers)
    codes = [label.code for label in artifacts.labels]
    targets = np.array([[code in artifacts.papers[i].labels for code in codes] for i in kept])
    served = artifacts.predictions["served"][kept]
    dated = micro_f1(targets, predict_sets(served, artifacts.served_thresholds))
    lstm_scores, baseline_scores = (artifacts.predictions[name][kept] for name in MODELS[:2])
    undated = micro_f1(
        targets,
        predict_sets(
            artifacts.combiner.combine(lstm_scores, baseline_scores), artifacts.served_thresholds
        ),
    )
    assert undated != pytest.approx(dated, abs=1e-3)  # the fixture's years change the answer
    gates = json.loads((exported / "manifest.json").read_text())["gates"]
    assert gates["quantization"]["served_micro_f1_fp32"] == pytest.approx(dated, abs=1e-6)
    assert gates["end_to_end"]["micro_f1"] == pytest.approx(dated, abs=1e-6)


def test_labels_and_tokenizer_follow_the_contract(exported: Path, training_run: Path) -> None:
    labels = json.loads((exported / "labels.json").read_text())
    assert labels == {  # training's rules, low-confidence line included, copied unchanged
        "format_version": 1,
        "labels": [{**label, "support": 10 + i} for i, label in enumerate(LABELS)],
        **TRAINED_RULES,
    }
    trained = Tokenizer.load(training_run / "artifacts" / "tokenizer.json")
    assert Tokenizer.load(exported / "tokenizer.json") == trained


def test_reference_holds_test_papers_with_the_scores_the_function_gives(
    exported: Path, training_run: Path
) -> None:
    """reports/served_reference.json.gz: what the built package is held to (test_infra_build)."""
    reference = Reference.load(training_run / "reports" / REFERENCE_FILE)
    manifest = json.loads((exported / "manifest.json").read_text())
    assert reference.model_version == manifest["model"]["version"]
    with gzip.open(training_run / "artifacts" / "test_split.jsonl.gz", "rt") as lines:
        papers = [json.loads(line) for line in lines]
    assert 0 < len(reference.papers) <= REFERENCE_PAPERS
    assert reference.papers == tuple(
        (p["title"], p["abstract"], p["date"]) for p in papers[: len(reference.papers)]
    )
    assert any(date for _, _, date in reference.papers)
    assert reference.labels == tuple(label["code"] for label in LABELS)
    assert reference.batch_size == 64
    classifier = Classifier.load(exported)
    for rows in reference.batches():
        encoded = [classifier.encode(*reference.papers[i][:2]) for i in rows]
        dates = [reference.papers[i][2] for i in rows]
        scores = classifier.predict(encoded, [int(d[:4]) if d else None for d in dates])
        expected = reference.scores[rows.start : rows.stop]
        np.testing.assert_allclose(scores, expected, rtol=0, atol=5e-8 + 1e-9)
        for row, codes in zip(scores, reference.label_sets[rows.start : rows.stop], strict=True):
            chosen = classifier.choose(row, len(LABELS))
            assert codes == tuple(reference.labels[i] for i in chosen)


@pytest.fixture(scope="module")
def exported_fp32(training_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same training run exported with `--precision fp32`."""
    out = tmp_path_factory.mktemp("deploy-fp32") / "model"
    assert main([*export_args(training_run, out), "--precision", "fp32"]) == 0
    return out


@pytest.mark.parametrize(
    ("precision", "recurrent_op", "tolerance"),
    [("int8", "DynamicQuantizeLSTM", 0.05), ("fp32", "LSTM", 1e-5)],
)
def test_onnx_graph_has_native_recurrence_and_dynamic_shapes(
    exported: Path,
    exported_fp32: Path,
    training_run: Path,
    precision: str,
    recurrent_op: str,
    tolerance: float,
) -> None:
    directory = exported if precision == "int8" else exported_fp32
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["served"]["lstm_precision"] == precision
    assert (manifest["gates"]["quantization"] is None) == (precision == "fp32")
    model = onnx.load(directory / "model.onnx")
    ops_used = {node.op_type for node in model.graph.node}
    assert recurrent_op in ops_used
    assert not ops_used & {"Loop", "Scan"}
    [tokens], [probabilities] = model.graph.input, model.graph.output
    assert tokens.name == "tokens"
    assert tokens.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert [d.dim_param for d in tokens.type.tensor_type.shape.dim] == ["batch", "time"]
    assert probabilities.name == "probabilities"
    dims = [(d.dim_param, d.dim_value) for d in probabilities.type.tensor_type.shape.dim]
    assert dims == [("batch", 0), ("", len(LABELS))]

    keras_model = keras.saving.load_model(training_run / "artifacts" / "lstm.keras")
    vocab_size = Tokenizer.load(training_run / "artifacts" / "tokenizer.json").size
    session = onnxruntime.InferenceSession(str(directory / "model.onnx"))
    rng = np.random.default_rng(0)
    for batch, time in ((3, 7), (1, 30), (5, 1)):
        ids = rng.integers(1, vocab_size, size=(batch, time))
        tokens_batch = np.asarray(pad([row[: rng.integers(1, time + 1)] for row in ids]), np.int32)
        expected = keras_model(tokens_batch, training=False).numpy()
        [actual] = session.run(["probabilities"], {"tokens": tokens_batch})
        assert actual.shape == (batch, len(LABELS))
        np.testing.assert_allclose(actual, expected, atol=tolerance)


def shift_first_label(model: onnx.ModelProto, by: float) -> None:
    """Move the first label's output weights by `by`, in place. One label only: shifting every
    label's logits alike would leave a softmax output as it was."""
    [kernel] = [t for t in model.graph.initializer if list(t.dims) == [16, len(LABELS)]]
    values = onnx.numpy_helper.to_array(kernel).copy()
    values[:, 0] += np.float32(by)
    kernel.CopyFrom(onnx.numpy_helper.from_array(values, kernel.name))


def perturbed(convert: Callable[..., onnx.ModelProto]) -> Callable[..., onnx.ModelProto]:
    """A converter whose first label's output weights are off by 0.01, so ONNX no longer
    matches Keras."""

    def convert_and_perturb(*args: object, **kwargs: object) -> onnx.ModelProto:
        model = convert(*args, **kwargs)
        shift_first_label(model, 0.01)
        return model

    return convert_and_perturb


def assert_refused(
    run: Path, previous_model: Path, capsys: pytest.CaptureFixture[str], pattern: str
) -> None:
    """The export of `run` exits 1 with one error line matching `pattern`, leaving the previous
    model directory byte-identical and no staging folder behind."""
    before = snapshot(previous_model)
    assert main(export_args(run, previous_model)) == 1
    [error] = error_lines(capsys)
    assert re.fullmatch(pattern, error), error
    assert snapshot(previous_model) == before
    assert leftovers(previous_model) == []


def test_parity_failure_exits_and_keeps_previous_model(
    training_run: Path,
    previous_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(export.pipeline, "to_onnx", perturbed(export.pipeline.to_onnx))
    assert_refused(
        training_run,
        previous_model,
        capsys,
        r"export: error: parity gate failed on 39 test papers: max \|Δprob\| \S+ > 1e-04"
        r"(; label sets agree for \S+% of papers < 99\.9%)?",
    )


def test_interrupted_export_keeps_previous_model(
    training_run: Path, previous_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(previous_model)
    staged = []

    def crash(directory: Path, **_: object) -> None:
        staged.extend(sorted(p.name for p in directory.iterdir()))
        raise KeyboardInterrupt

    monkeypatch.setattr(export.pipeline, "build_manifest", crash)
    assert main(export_args(training_run, previous_model)) == 130  # one line, no traceback
    assert staged == sorted(OUT_FILES - {"manifest.json"})
    assert snapshot(previous_model) == before
    assert leftovers(previous_model) == []


def test_masked_lstm_unrolled_to_loop_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_training_run(tmp_path / "run", masked_lstm)
    out = tmp_path / "model"
    assert main(export_args(run, out)) == 1
    assert error_lines(capsys) == [
        "export: error: ONNX graph holds Loop ops instead of native LSTM ops "
        "(does the model mask padding, e.g. mask_zero=True?)"
    ]
    assert not out.exists()


def test_quantization_gate_failure_exits_and_keeps_previous_model(
    training_run: Path,
    previous_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An int8 graph that answers differently (a label's output weights off by 2) is refused."""
    real_quantize = export.pipeline.quantize

    def bad_quantize(fp32: bytes) -> bytes:
        model = onnx.load_from_string(fp32)
        shift_first_label(model, 2.0)
        return real_quantize(model.SerializeToString())

    monkeypatch.setattr(export.pipeline, "quantize", bad_quantize)
    assert_refused(
        training_run,
        previous_model,
        capsys,
        r"export: error: quantization gate failed on 39 test papers: .+ "
        r"\(export with --precision fp32 to ship the unquantized LSTM\)",
    )


@pytest.mark.parametrize("breakage", ["another paper's scores", "years dropped"])
def test_end_to_end_gate_failure_exits_and_keeps_previous_model(
    run_copy: Path,
    previous_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    breakage: str,
) -> None:
    """Training's expected label sets that the staged directory does not reproduce are refused:
    other papers' scores, or the right ones served without the dated papers' years, which
    training's served scores used."""
    if breakage == "years dropped":
        real = Classifier.predict
        monkeypatch.setattr(
            Classifier, "predict", lambda self, papers, years=None: real(self, papers)
        )
    else:
        path = run_copy / "artifacts" / "predictions.npz"
        arrays = dict(np.load(path))
        arrays["served_test"] = arrays["served_test"][::-1].copy()
        np.savez(path, **arrays)
    assert_refused(
        run_copy,
        previous_model,
        capsys,
        r"export: error: end-to-end gate failed: the staged model reproduces training's label "
        r"sets for \S+% of 39 test papers < 99\.5%",
    )


def rewrite_json(relative: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    """A breakage that rewrites one JSON file of the training run through `change`."""

    def apply(run: Path) -> None:
        path = run / relative
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return apply


def truncate(relative: str) -> Callable[[Path], None]:
    """A breakage that cuts a JSON file in half."""

    def apply(run: Path) -> None:
        path = run / relative
        path.write_text(path.read_text()[: path.stat().st_size // 2])

    return apply


def scale_predictions(name: str, factor: float) -> Callable[[Path], None]:
    """A breakage that multiplies one of training's saved test-split score arrays."""

    def apply(run: Path) -> None:
        path = run / "artifacts" / "predictions.npz"
        with np.load(path) as saved:
            arrays = {key: saved[key] for key in saved.files}
        arrays[name] = arrays[name] * np.float32(factor)
        np.savez(path, **arrays)

    return apply


LABELS_DIFFER = (
    r"\S+/artifacts: the combiner's, the baseline's or the year prior's labels differ from "
    r"labels.json"
)


def rewrite_test_split(change: Callable[[dict], object]) -> Callable[[Path], None]:
    """A breakage that rewrites every paper of the training run's test split through `change`."""

    def apply(run: Path) -> None:
        path = run / "artifacts" / "test_split.jsonl.gz"
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            papers = [change(json.loads(line)) for line in lines]
        with gzip.open(path, "wt", encoding="utf-8") as lines:
            lines.writelines(json.dumps(paper) + "\n" for paper in papers)

    return apply


def without(relative: str) -> Callable[[Path], None]:
    """A breakage that deletes a file or directory of the training run."""

    def apply(run: Path) -> None:
        path = run / relative
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

    return apply


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (
            without("artifacts"),
            r"artifacts directory \S+/artifacts not found \(run train/run.py first\)",
        ),
        (
            without("artifacts/test_split.jsonl.gz"),
            r"\S+/test_split.jsonl.gz not found \(run train/run.py first\)",
        ),
        (
            without("reports/metrics.json"),
            r"\S+/reports/metrics.json not found \(run train/run.py first\)",
        ),
        (truncate("artifacts/labels.json"), r"\S+/labels.json is not valid JSON: .*"),
        (truncate("artifacts/tokenizer.json"), r"\S+/tokenizer.json is not valid JSON: .*"),
        (
            rewrite_json("artifacts/tokenizer.json", lambda t: {**t, "padding": "post"}),
            r"\S+/tokenizer.json: tokenizer padding is 'post', expected 'pre'",
        ),
        (
            rewrite_json(
                "artifacts/labels.json",
                lambda d: {
                    **d,
                    "labels": [{**d["labels"][0], "threshold": "high"}, *d["labels"][1:]],
                },
            ),
            r"\S+/labels.json threshold of cs.CV must be a number in \[0, 1\]",
        ),
        (
            rewrite_json("artifacts/labels.json", lambda d: {**d, "labels": d["labels"][:-1]}),
            LABELS_DIFFER,
        ),
        (  # the same labels in another order: their scores would be served under wrong codes
            rewrite_json("artifacts/combiner.json", lambda c: {**c, "labels": c["labels"][::-1]}),
            LABELS_DIFFER,
        ),
        (
            rewrite_json("artifacts/year_prior.json", lambda c: {**c, "labels": c["labels"][::-1]}),
            LABELS_DIFFER,
        ),
        (
            rewrite_json("artifacts/year_prior.json", lambda c: {**c, "last_year": 2002}),
            r"\S+/year_prior.json: shifts must have one row per year 2001..2002 \(2\), got shape "
            r"\(3, 4\)",
        ),
        (
            rewrite_test_split(lambda paper: {**paper, "date": "2019-13-01"}),
            r"\S+/test_split.jsonl.gz line 1: date must be an ISO date such as 2019-05-01 "
            r"\(or a year such as 2019\), or null",
        ),
        (
            without("artifacts/baseline.npz"),
            r"\S+/baseline.npz not found \(run train/run.py first\)",
        ),
        (
            rewrite_json("artifacts/combiner.json", lambda c: {**c, "kind": "median"}),
            r"\S+/combiner.json: unknown combiner kind 'median'; expected one of .+",
        ),
        (
            lambda run: (run / "artifacts" / "predictions.npz").write_bytes(b"PK not really"),
            r"\S+/predictions.npz: it holds pickled \(object\) data, which is never loaded",
        ),
        (
            rewrite_json(
                "artifacts/tokenizer.json",
                lambda t: {**t, "vocabulary": [*t["vocabulary"], "extra"]},
            ),
            r"\S+/lstm.keras: embedding embedding has 24 rows but the tokenizer emits 25 ids",
        ),
        (
            lambda run: (run / "artifacts" / "lstm.keras").write_bytes(b"not a zip"),
            r"cannot load Keras model \S+/lstm.keras: .+",
        ),
        (
            rewrite_json("reports/metrics.json", lambda m: {"models": {"lstm": {}}}),
            r"\S+/metrics.json: models.baseline is missing",
        ),
        (
            rewrite_json(
                "reports/metrics.json",
                lambda m: {**m, "data": {**m["data"], "counts": {"rows_read": 1}}},
            ),
            r"\S+/metrics.json is from another training run than \S+/artifacts \(its data or "
            r"run_id differ from data.json\); pass the --reports of that run",
        ),
        (  # the same data and seed, another run (other settings, or interrupted between writes)
            rewrite_json(
                "reports/metrics.json",
                lambda m: {**m, "data": {**m["data"], "run_id": "0123456789abcdef"}},
            ),
            r"\S+/metrics.json is from another training run than \S+/artifacts \(its data or "
            r"run_id differ from data.json\); pass the --reports of that run",
        ),
        (
            rewrite_json(
                "reports/metrics.json",
                lambda m: {
                    **m,
                    "models": {**m["models"], "lstm": {**m["models"]["lstm"], "thresholds": 5}},
                },
            ),
            r"\S+/metrics.json: models.lstm.thresholds must be 4 numbers from 0 to 1, one per "
            r"label",
        ),
        (
            lambda run: (run / "artifacts" / "labels.json").write_bytes(b'{"x": "\xe9"}'),
            r"\S+/labels.json is not UTF-8 text",
        ),
        (
            lambda run: (run / "artifacts" / "test_split.jsonl.gz").write_bytes(
                gzip.compress(b'{"title": "caf\xe9"}\n')
            ),
            r"\S+/test_split.jsonl.gz is not UTF-8 text",
        ),
        (
            scale_predictions("baseline_test", np.nan),
            r"the baseline scores the test papers up to inf away from training's predictions.npz "
            r"\(tolerance 1e-05\): they are not of the same run",
        ),
        (
            scale_predictions("baseline_test", 0.5),
            r"the baseline scores the test papers up to 0\.\d+ away from training's "
            r"predictions.npz \(tolerance 1e-05\): they are not of the same run",
        ),
    ],
    ids=[
        "no-artifacts",
        "no-test-split",
        "no-metrics",
        "labels-json",
        "tokenizer-json",
        "tokenizer-setting",
        "label-threshold",
        "label-count",
        "combiner-label-order",
        "year-prior-label-order",
        "year-prior-rows",
        "test-split-date",
        "no-baseline-weights",
        "combiner-kind",
        "predictions-npz",
        "embedding-rows",
        "corrupt-model",
        "metrics-model",
        "metrics-of-another-run",
        "metrics-of-another-run-same-data",
        "lstm-thresholds",
        "labels-not-utf8",
        "test-split-not-utf8",
        "baseline-scores-nan",
        "baseline-scores-of-another-run",
    ],
)
def test_bad_training_run_fails_in_one_line(
    run_copy: Path,
    tmp_path: Path,
    breakage: Callable[[Path], None],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    breakage(run_copy)
    out = tmp_path / "model"
    assert main(export_args(run_copy, out)) == 1
    [error] = error_lines(capsys)
    assert re.fullmatch(f"export: error: {message}", error)
    assert not out.exists()


@pytest.mark.parametrize("problem", ["out-under-a-file", "out-holds-other-files", "opset-too-new"])
def test_what_would_fail_late_fails_first_in_one_line(
    training_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    (tmp_path / "file").write_text("not a directory")
    if problem == "out-under-a-file":
        args, message = export_args(training_run, tmp_path / "file" / "model"), "is a file"
    elif problem == "out-holds-other-files":  # it would be replaced whole: never
        args = export_args(training_run, tmp_path)
        message = f"{tmp_path} holds other files and no manifest.json"
    else:
        args = [*export_args(training_run, tmp_path / "model"), "--opset", "19"]
        message = "converts to opset 18 at most"
    assert main(args) == 1
    [error] = error_lines(capsys)
    assert message in error
    assert not (tmp_path / "model").exists()
    assert (tmp_path / "file").read_text() == "not a directory"


def test_shipped_baseline_scores_refuse_nan_on_either_side() -> None:
    from types import SimpleNamespace

    from export import ExportError
    from export.pipeline import shipped_baseline_scores

    good = np.full((3, 2), 0.5, dtype=np.float32)
    for shipped, trained in ((good * np.nan, good), (good, good * np.nan)):
        artifacts = SimpleNamespace(
            papers=[SimpleNamespace(title="t", abstract="a b")] * 3,
            tokenizer=SimpleNamespace(words=lambda title, abstract: ["a", "b"]),
            baseline=SimpleNamespace(predict_proba=lambda documents, scores=shipped: scores),
            predictions={"baseline": trained},
        )
        with pytest.raises(ExportError, match="up to inf away"):
            shipped_baseline_scores(artifacts, [0, 1, 2])  # type: ignore[arg-type]
    artifacts.baseline = SimpleNamespace(predict_proba=lambda documents: good)
    artifacts.predictions = {"baseline": good}
    np.testing.assert_array_equal(shipped_baseline_scores(artifacts, [0, 1, 2]), good)


def test_default_folders_are_the_repositorys_wherever_the_export_runs(monkeypatch, tmp_path):
    # As train/run.py's: run from elsewhere right after training, it finds that training run.
    from export.run import parse_args

    monkeypatch.chdir(tmp_path)
    args = parse_args([])
    assert (args.artifacts, args.reports, args.out) == (
        REPO / "artifacts", REPO / "reports", REPO / "lambda_handler" / "model",
    )  # fmt: skip
