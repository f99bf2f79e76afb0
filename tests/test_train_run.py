"""`train/run.py` end to end: the real sample data, every CLI error path, interrupted runs."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_rows, write_kaggle_csv

from lambda_handler.year_prior import YearPrior

REPO = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(REPO / "train" / "run.py")]
SAMPLE = os.environ.get("ARXIV_SAMPLE_CSV")


# As a user runs the CLIs: no data list, and TensorFlow's C++ log level left to the code (CI sets
# 2, which lets through lines TensorFlow logs as errors at run time on some machines: "oneDNN
# supports DT_INT64 only on platforms with AVX-512", seen here on 2026-12-07).
USER_ENV = {k: v for k, v in os.environ.items() if k not in {"ARXIV_DATA", "TF_CPP_MIN_LOG_LEVEL"}}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = USER_ENV | (env or {})
    return subprocess.run(
        [*RUN, *args], capture_output=True, text=True, env=environment, timeout=600
    )


@pytest.mark.slow
@pytest.mark.skipif(
    not SAMPLE, reason="set ARXIV_SAMPLE_CSV to the Kaggle sample CSV (.ci/run does)"
)
def test_end_to_end_on_the_kaggle_sample(tmp_path):
    artifacts, reports = tmp_path / "artifacts", tmp_path / "reports"
    result = run_cli(
        "--data", SAMPLE, "--epochs", "1", "--vocab-size", "3000", "--min-label-count", "5",
        "--artifacts", str(artifacts), "--reports", str(reports), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows read: 1,000" in result.stdout and "duplicates merged: 7" in result.stdout
    # TensorFlow's C++ start-up lines say nothing a user can act on.
    assert "oneDNN" not in result.stderr and "absl" not in result.stderr, result.stderr[:500]

    names = {p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*") if p.is_file()}
    assert names == {
        "lstm.keras", "tokenizer.json", "labels.json", "data.json", "test_split.jsonl.gz",
        "baseline.json", "baseline.npz", "combiner.json", "predictions.npz",
    } | ({"combiner.npz"} if json.loads((artifacts / "combiner.json").read_text())["kind"]
         == "stacked" else set())  # fmt: skip
    labels = json.loads((artifacts / "labels.json").read_text())
    assert labels["decision_rule"]["always_top_label"] is True
    low = labels["low_confidence"]  # offered or not, the validation figures behind the choice
    assert low["validation"]["papers"] > 0 and 0 <= low["validation"]["auroc"] <= 1
    assert labels["labels"][0].keys() == {"code", "name", "archive", "threshold", "support"}
    names_by_code = {label["code"]: label["name"] for label in labels["labels"]}
    assert names_by_code["cs.CV"] == "Computer Vision and Pattern Recognition"
    assert all(0 < label["threshold"] < 1 for label in labels["labels"])
    # float32 as served, written as the shortest decimal that reads back as that float32
    assert all(
        label["threshold"] == float(str(np.float32(label["threshold"])))
        for label in labels["labels"]
    )

    metrics = json.loads((reports / "metrics.json").read_text())
    for model in ("baseline", "lstm", "served"):
        test = metrics["models"][model]["test"]
        for key in (
            "micro_f1",
            "macro_f1",
            "samples_f1",
            "micro_precision",
            "micro_recall",
            "p_at_1",
            "p_at_3",
        ):
            assert 0 <= test[key] <= 1
        assert set(test["per_label"]) == set(names_by_code)
    assert metrics["models"]["baseline"]["test"]["p_at_1"] > 0.5  # it learned something
    served = metrics["models"]["served"]
    assert {row["name"] for row in served["combiners"]} >= {"lstm alone", "baseline alone"}
    assert served["combiner"] in {row["name"] for row in served["combiners"] if row["chosen"]}
    assert "outside_cs_stat" in served["breakdown"] and served["breakdown"]["by_archive"]
    assert served["low_confidence"]["test"]["papers"] == metrics["data"]["counts"]["test"]
    assert metrics["data"]["counts"]["rows_read"] == 1000
    for plot in ("training_curves.png", "per_label_f1.png"):
        assert (reports / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (reports / "report.md").read_text()
    assert "| micro-F1 |" in report and "cs.CV" in report and "## Combiners" in report
    settings_block = report.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(settings_block) == metrics["run"]["settings"]
    data_json = json.loads((artifacts / "data.json").read_text())
    assert data_json == metrics["data"] and len(data_json["run_id"]) == 16
    assert data_json["files"][0]["sha256"] == hashlib.sha256(Path(SAMPLE).read_bytes()).hexdigest()

    # Train → export → serve on the same real papers: the runtime must encode and pad exactly
    # as training did, and the exported model must answer through the handler.
    model_dir = tmp_path / "model"
    exported = subprocess.run(
        [sys.executable, str(REPO / "export" / "run.py"), "--artifacts", str(artifacts),
         "--reports", str(reports), "--out", str(model_dir)],
        capture_output=True, text=True, timeout=600, env=USER_ENV,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "oneDNN" not in exported.stderr and "absl" not in exported.stderr
    assert_runtime_encodes_like_training(artifacts, model_dir, Path(SAMPLE))


def assert_runtime_encodes_like_training(artifacts: Path, model_dir: Path, sample: Path) -> None:
    """Runtime tokenization and batching == training's, paper by paper, on the sample CSV."""
    import numpy as np

    from lambda_handler.model import Classifier
    from lambda_handler.service import Service
    from lambda_handler.settings import Settings
    from lambda_handler.text import Tokenizer, shipped_stopwords, words
    from train.data import read_csv
    from train.lstm import padded_batch

    frame = read_csv(sample)
    training_tokenizer = Tokenizer.load(artifacts / "tokenizer.json")
    assert training_tokenizer.stopwords == shipped_stopwords()
    runtime = Classifier.load(model_dir)
    training_side, runtime_side = [], []
    for title, abstract in zip(frame["titles"], frame["summaries"], strict=True):
        training_side.append(training_tokenizer.ids(words(title, abstract, shipped_stopwords())))
        # the LSTM reads the first max_length of a paper's ids (the baseline reads them all)
        runtime_side.append(runtime.encode(title, abstract).ids[: runtime.tokenizer.max_length])
    assert runtime_side == training_side and len(runtime_side) == 1000
    batch = list(range(64))
    scores_runtime = runtime.predict_lstm([runtime_side[i] for i in batch])
    tokens_training = padded_batch(training_side, np.array(batch))
    scores_direct = runtime.session.run(None, {"tokens": tokens_training})[0]
    # The fp32 network is padding-invariant; the int8 one quantizes each run's activations with
    # that run's own range, so sub-batches of 4 and one padded batch of 64 differ a little.
    np.testing.assert_allclose(scores_runtime, scores_direct, atol=0.02)
    assert np.mean(scores_runtime.argmax(1) == scores_direct.argmax(1)) >= 0.95

    service = Service.from_settings(Settings(model_dir=model_dir))
    event = {"title": frame["titles"][0], "abstract": frame["summaries"][0], "top_k": 3}
    answer = service.handle(event, None)
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 200 and 1 <= len(body["results"][0]["labels"]) <= 3
    # The low-confidence line chosen in training reaches the answers unchanged.
    trained = json.loads((artifacts / "labels.json").read_text())["low_confidence"]
    assert json.loads((model_dir / "labels.json").read_text())["low_confidence"] == trained
    offered = trained["top_score_below"] is not None
    assert ("low_confidence" in body["results"][0]) == offered


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (None, "no such file"),
        (b"", "the file is empty"),
        (b"titles,summaries\nT,a\n", "missing column(s) terms"),
        (bytes(range(256)) * 50, "not a"),
        (b'titles,summaries,terms\nT,"open quote,x\n', "not a valid CSV"),
    ],
)
def test_bad_data_exits_non_zero_with_one_line(tmp_path, contents, message):
    path = tmp_path / "input.csv"
    if contents is not None:
        path.write_bytes(contents)
    result = run_cli(
        "--data", str(path), "--artifacts", str(tmp_path / "a"), "--reports", str(tmp_path / "r")
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {path}: ")
    assert message in result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "r").exists()


def test_data_comes_from_the_environment_when_no_flag(tmp_path):
    result = run_cli(
        "--artifacts", str(tmp_path / "a"), env={"ARXIV_DATA": str(tmp_path / "env.csv")}
    )
    assert (
        result.returncode == 2 and f"error: {tmp_path / 'env.csv'}: no such file" in result.stderr
    )


def test_several_files_are_read_from_flags_or_the_environment_and_each_is_checked(tmp_path):
    good = write_kaggle_csv(tmp_path / "good.csv", synthetic_rows(50))
    missing = tmp_path / "missing.csv"
    (tmp_path / "sub").mkdir()
    again = tmp_path / "sub" / ".." / "good.csv"  # the same file, spelled another way
    for args, env in (
        (["--data", str(good), "--data", str(missing), "--data", str(again)], None),
        ([], {"ARXIV_DATA": f"{good}{os.pathsep}{missing}{os.pathsep}{good}"}),
    ):  # a file named twice is read, and listed, once
        result = run_cli(*args, "--artifacts", str(tmp_path / "a"), env=env)
        assert result.returncode == 2, result.stderr
        assert f"Reading {good}, {missing}\n" in result.stdout
        assert result.stderr == f"error: {missing}: no such file\n"
    result = run_cli("--artifacts", str(tmp_path / "a"), env={"ARXIV_DATA": os.pathsep})
    assert result.returncode == 2
    assert result.stderr == f"error: $ARXIV_DATA ({os.pathsep!r}) names no file\n"
    result = run_cli("--data", str(tmp_path), "--artifacts", str(tmp_path / "a"))
    assert result.returncode == 2
    assert (
        result.stderr == f"error: {tmp_path} is a folder; pass each CSV file with its own --data\n"
    )


def test_output_folders_are_checked_before_the_data_is_read(tmp_path):
    # `--artifacts` is replaced whole at the end: a folder of other files (here the data's, or
    # a served model directory, which holds a labels.json too) is refused at once, and nothing
    # in it is touched; so is a reports path under a file.
    data = write_kaggle_csv(tmp_path / "papers.csv", synthetic_rows(50))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("labels.json", "manifest.json", "model.onnx"):
        (model_dir / name).write_text("served")
    for outputs, message in (
        (["--artifacts", str(tmp_path)], f"error: {tmp_path} holds other files and no data.json"),
        (["--artifacts", str(model_dir)], f"error: {model_dir} holds other files and no data.json"),
        (
            ["--artifacts", str(tmp_path / "a"), "--reports", str(data / "r")],
            f"error: cannot write to the folder {data / 'r'} ({data} is a file)",
        ),
    ):
        result = run_cli("--data", str(data), *outputs)
        assert result.returncode == 2
        assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
        assert "Reading" not in result.stdout
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "papers.csv"]
        assert sorted(p.name for p in model_dir.iterdir()) == [
            "labels.json",
            "manifest.json",
            "model.onnx",
        ]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--epochs", "0", "--epochs must be a positive integer"),
        ("--seed", "-1", "--seed must be an integer from 0 to 4294967295"),
        ("--seed", str(2**32), "--seed must be an integer from 0 to 4294967295"),
        ("--vocab-size", "2", "--vocab-size must be more than 2"),
        ("--learning-rate", "0", "--learning-rate must be between 0 and 1"),
        ("--dropout", "1", "--dropout must be at least 0 and below 1"),
        ("--spatial-dropout", "-0.1", "--spatial-dropout must be at least 0 and below 1"),
        ("--year-prior-until", "0", "--year-prior-until must be a positive integer"),
    ],
)
def test_invalid_option_is_a_usage_error(option, value, message):
    result = run_cli(option, value)
    assert result.returncode == 2 and message in result.stderr


def test_model_options_reach_the_lstm_config():
    pipeline = pytest.importorskip("train.pipeline")
    from train.run import parse_args

    args = ["--units", "80", "--learning-rate", "0.0025", "--dropout", "0.3"]
    config = pipeline.Settings.from_args(parse_args([*args, "--spatial-dropout", "0.2"])).lstm
    assert (config.units, config.learning_rate, config.dropout, config.spatial_dropout) == (
        80, 0.0025, 0.3, 0.2,
    )  # fmt: skip
    assert pipeline.Settings.from_args(parse_args([])).lstm == pipeline.lstm.LSTMConfig()
    sigmoid = pipeline.Settings.from_args(parse_args(["--lstm-output", "sigmoid"])).lstm
    assert (pipeline.lstm.LSTMConfig().output, sigmoid.output) == ("softmax", "sigmoid")
    assert pipeline.Settings.from_args(parse_args([])).year_prior_until == 2019
    until = pipeline.Settings.from_args(parse_args(["--year-prior-until", "2024"]))
    assert until.year_prior_until == 2024


@pytest.mark.parametrize(
    ("stage", "failure"),
    [("jsonl_gz", KeyboardInterrupt), ("render_reports", ValueError)],
    ids=["interrupted while writing artifacts", "a report that cannot be drawn"],
)
def test_failed_run_leaves_previous_artifacts_intact(tmp_path, monkeypatch, stage, failure):
    pipeline = pytest.importorskip("train.pipeline")
    from train.data import prepare
    from train.lstm import LSTMConfig

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "lstm.keras").write_bytes(b"previous model")
    (artifacts / "data.json").write_bytes(b"previous data")  # marks a previous run's output
    path = write_kaggle_csv(tmp_path / "papers.csv", synthetic_rows(200))
    splits = prepare(path, seed=1, min_label_count=5)
    settings = pipeline.Settings(
        vocab_size=200,
        lstm=LSTMConfig(embedding_dim=4, units=2, epochs=1),
        artifacts=artifacts,
        reports=tmp_path / "reports",
        verbose=0,
    )

    def fail(*args):
        raise failure

    monkeypatch.setattr(pipeline, stage, fail)
    with pytest.raises(failure):
        pipeline.run([path], splits, settings)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert sorted(p.name for p in artifacts.iterdir()) == ["data.json", "lstm.keras"]
    assert (artifacts / "lstm.keras").read_bytes() == b"previous model"
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_a_run_on_dated_papers_fits_a_year_prior_and_reports_the_figures_without_it(tmp_path):
    """Papers with a `date` column up to the year prior's last year (2019) shape it; later and
    undated ones do not, and the report gives the served figures without any year."""
    dates = ("2001-05-01", "2010-10-10", "2025-06-01", "")
    path = tmp_path / "dated.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["titles", "summaries", "terms", "id", "date"])
        for i, row in enumerate(synthetic_rows(300)):
            writer.writerow([*row, f"x{i}", dates[i % len(dates)]])
    artifacts, reports = tmp_path / "artifacts", tmp_path / "reports"
    result = run_cli(
        "--data", str(path), "--epochs", "1", "--vocab-size", "500", "--min-label-count", "5",
        "--artifacts", str(artifacts), "--reports", str(reports), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "year prior: 2001..2019" in result.stdout
    prior = YearPrior.from_bytes((artifacts / "year_prior.json").read_bytes())
    labels = json.loads((artifacts / "labels.json").read_text())["labels"]
    assert prior.labels == tuple(label["code"] for label in labels)
    assert np.any(prior.shifts[0] != 0) and np.all(prior.shifts[1:9] == 0)  # 2002-2009: none
    served = json.loads((reports / "metrics.json").read_text())["models"]["served"]
    without = served["without_years"]
    assert 0 <= without["micro_f1"] <= 1 and 0 <= without["outside_cs_stat"]["p_at_1"] <= 1
    report = (reports / "report.md").read_text()
    expected = (
        "Without any year, as for a caller that sends none, the same test papers score "
        f"micro-F1 {without['micro_f1']:.4f}"
    )
    assert expected in report
