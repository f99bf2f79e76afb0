"""Model loading, verification and inference in lambda_handler (model.py, manifest.py, service.py).

The fixture model is a real ONNX BiLSTM whose weights are also evaluated by a numpy reference
(conftest.ServingNetwork), so scores are checked against independent arithmetic.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    SERVING_LABELS,
    SERVING_MODEL_VERSION,
    SERVING_SENTENCES,
    SERVING_SERVED,
    reload_app,
    serving_v2_event,
    write_serving_manifest,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_handler.combiner import Combiner
from lambda_handler.manifest import CHECKSUM_KEY, ModelError, with_checksum
from lambda_handler.model import Classifier, word_id_table
from lambda_handler.service import Service
from lambda_handler.settings import DEFAULT_MODEL_DIR, MAX_THREADS, Settings
from lambda_handler.text import PAD_ID, Tokenizer, pad, shipped_stopwords, words

REPO = Path(__file__).resolve().parents[1]
ABSTRACT = "We train convolutional neural networks for object detection in images."


@pytest.fixture(scope="module")
def classifier(serving_model_dir: Path) -> Classifier:
    return Classifier.load(serving_model_dir)


def health(service: Service) -> tuple[int, dict]:
    answer = service.handle(serving_v2_event("GET", "/health"))
    return answer["statusCode"], json.loads(answer["body"])


# --- inference ------------------------------------------------------------------------------


def test_single_paper_runs_unpadded_and_matches_the_numpy_reference(classifier, serving_network):
    encoded = classifier.encode("Image segmentation", ABSTRACT)
    ids = encoded.ids
    assert ids == classifier.tokenizer.encode("Image segmentation", ABSTRACT)
    assert encoded.words == classifier.tokenizer.words("Image segmentation", ABSTRACT)
    scores = classifier.predict_lstm([ids])
    assert scores.shape == (1, len(SERVING_LABELS)) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, serving_network.predict([ids]), atol=1e-5)
    # Unpadded is not the same as padded to the tokenizer's max_length: the forward LSTM reads
    # the padding first. Proves that the single path really does not pad.
    padded = pad([ids], classifier.tokenizer.max_length)
    assert np.abs(scores - serving_network.predict(padded)).max() > 1e-4


def test_batch_is_pre_padded_to_its_longest_member_only(classifier, serving_network):
    papers = [
        ("Robots", "Reinforcement learning agents for robot navigation and grasping."),
        ("", "Gaussian processes."),
        ("Translation", "Transformer language models."),
    ]
    sequences = [classifier.encode(title, abstract).ids for title, abstract in papers]
    assert len({len(s) for s in sequences}) == 3
    scores = classifier.predict_lstm(sequences)
    expected = serving_network.predict(pad(sequences))  # text.pad: PAD_ID pre-padding
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert [len(s) for s in sequences] == [7, 2, 4]
    np.testing.assert_allclose(scores[0], classifier.predict_lstm([sequences[0]])[0], atol=1e-6)
    assert pad(sequences)[1][0] == PAD_ID


def test_a_large_batch_runs_by_length_in_sub_batches_padded_to_their_own_longest(
    classifier, serving_network
):
    from lambda_handler.model import SUB_BATCH

    sequences = [[5, 9, 12, 3, 7, 30, 2][:n] for n in (7, 1, 4, 6, 2, 5, 3, 7, 1)]
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    expected = np.zeros((len(sequences), len(SERVING_LABELS)))
    for start in range(0, len(order), SUB_BATCH):
        rows = order[start : start + SUB_BATCH]
        expected[rows] = serving_network.predict(pad([sequences[i] for i in rows]))
    np.testing.assert_allclose(classifier.predict_lstm(sequences), expected, atol=1e-5)
    # The fixture network is not padding-invariant: one run padded to the longest differs.
    assert np.abs(expected - serving_network.predict(pad(sequences))).max() > 1e-4


def test_the_lstm_reads_the_first_max_length_ids_of_any_sequence(classifier):
    long = classifier.encode("", " ".join(SERVING_SENTENCES * 4)).ids
    length = classifier.tokenizer.max_length
    assert len(long) > length
    np.testing.assert_array_equal(
        classifier.predict_lstm([long, long[:9]]),
        classifier.predict_lstm([long[:length], long[:9]]),
    )
    assert (
        np.abs(classifier.predict_lstm([long[-length:]]) - classifier.predict_lstm([long])).max()
        > 1e-4
    )


def test_batch_rows_equal_single_runs_when_lengths_are_equal(classifier):
    sequences = [[5, 9, 12, 3], [7, 7, 2, 30], [1, 1, 1, 39]]
    batch = classifier.predict_lstm(sequences)
    for row, sequence in zip(batch, sequences, strict=True):
        np.testing.assert_allclose(row, classifier.predict_lstm([sequence])[0], atol=1e-6)


def test_served_scores_combine_the_lstm_and_the_baseline_as_the_fixture_does(
    classifier, serving_system
):
    papers = [
        ("Image segmentation", ABSTRACT),
        ("", "Transformer language models for machine translation."),
        ("Robots", "Reinforcement learning agents for robot navigation and grasping."),
    ]
    long = " ".join(SERVING_SENTENCES * 4)  # more words than the LSTM reads (max_length)
    assert len(classifier.tokenizer.words("", long)) > classifier.tokenizer.max_length
    papers.append(("", long))
    scores = classifier.predict([classifier.encode(title, abstract) for title, abstract in papers])
    np.testing.assert_allclose(scores, serving_system.predict(papers), atol=1e-5)
    length = classifier.tokenizer.max_length
    lstm_only = classifier.predict_lstm([classifier.encode(t, a).ids[:length] for t, a in papers])
    assert np.abs(scores - lstm_only).max() > 1e-2  # the combiner really changes the scores


@pytest.mark.parametrize(("kind", "lstm_weight"), [("lstm", 1.0), ("baseline", 0.0), ("mean", 0.3)])
def test_each_combiner_kind_serves_the_models_it_names(
    make_serving_model_dir, serving_system, monkeypatch, kind, lstm_weight
):
    """Training may choose any kind; a simple one ships without combiner.npz."""
    combiner = Combiner(kind, serving_system.combiner.labels, lstm_weight)
    model_dir = make_serving_model_dir()
    document, arrays = combiner.to_files()
    assert arrays is None
    (model_dir / "combiner.json").write_text(json.dumps(document))
    (model_dir / "combiner.npz").unlink()
    served = {**SERVING_SERVED, "combiner": kind, "combiner_detail": combiner.describe()}
    write_serving_manifest(model_dir, served=served)
    loaded = Classifier.load(model_dir)
    papers = [("Image segmentation", ABSTRACT), ("", "Reinforcement learning for robots.")]
    expected = replace(serving_system, combiner=combiner).predict(papers)
    with monkeypatch.context() as patch:
        if kind == "baseline":  # the LSTM is not even run
            patch.setattr(Classifier, "predict_lstm", None)
        scores = loaded.predict([loaded.encode(title, abstract) for title, abstract in papers])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    service = Service.from_settings(Settings(model_dir=model_dir))
    answer = json.loads(service.handle({"abstract": ABSTRACT})["body"])
    assert answer["model"]["combiner"] == kind


def test_baseline_scores_from_vocabulary_ids_equal_those_from_words(classifier):
    """When the vocabulary holds every baseline word, the baseline reads the papers' vocabulary
    ids (all of them, not the LSTM's first max_length) instead of looking their words up again;
    it must score exactly as from the words, alone and in a batch."""
    from dataclasses import replace

    # The fixture's vocabulary lacks some baseline words: that classifier scores from words.
    assert set(classifier.baseline.words) - set(classifier.tokenizer.vocabulary)
    assert word_id_table(classifier.tokenizer, classifier.baseline) is None
    stopwords = classifier.tokenizer.stopwords
    documents = [words(sentence, "", stopwords) for sentence in SERVING_SENTENCES]
    wide = replace(classifier, tokenizer=Tokenizer.fit(documents, 1000, stopwords, max_length=3))
    table = word_id_table(wide.tokenizer, wide.baseline)
    assert table is not None and table[PAD_ID] == table[1] == -1
    papers = [
        (SERVING_SENTENCES[0], SERVING_SENTENCES[1]),
        ("", "Zyxwv image quuxification segmentation image segmentation"),  # unknown words
        ("", "stopwords only the and of? no: unknown-words"),
        ("Graph", " ".join(SERVING_SENTENCES)),  # far longer than max_length
        ("Object", "detection"),  # a bigram across the title and abstract
        ("", "detection and video"),  # starts with the previous paper's bigram's second word
    ]
    encoded = [wide.encode(title, abstract) for title, abstract in papers]
    assert len(encoded[3].ids) > wide.tokenizer.max_length
    from_words = wide.baseline.predict_proba([paper.words for paper in encoded])
    np.testing.assert_array_equal(wide.predict_baseline(encoded), from_words)
    for paper, expected in zip(encoded, from_words, strict=True):
        np.testing.assert_array_equal(wide.predict_baseline([paper])[0], expected)
    assert np.ptp(from_words, axis=0).max() > 0.1  # the papers really score differently


@pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "manifest.json").is_file(), reason="no committed model"
)
def test_committed_model_scores_its_baseline_from_vocabulary_ids_as_from_words():
    shipped = Classifier.load(DEFAULT_MODEL_DIR)
    assert word_id_table(shipped.tokenizer, shipped.baseline) is not None  # the fast path
    sample = os.environ.get("ARXIV_SAMPLE_CSV")
    if sample:
        from bench.papers import read_papers

        papers = [(paper.title, paper.abstract) for paper in read_papers(Path(sample))[:256]]
    else:
        papers = [("", sentence) for sentence in SERVING_SENTENCES]
    encoded = [shipped.encode(title, abstract) for title, abstract in papers]
    encoded = [paper for paper in encoded if paper is not None]
    from_words = shipped.baseline.predict_proba([paper.words for paper in encoded])
    for start in range(0, len(encoded), 64):
        batch = encoded[start : start + 64]
        np.testing.assert_array_equal(shipped.predict_baseline(batch), from_words[start:][:64])


def test_encode_refuses_an_abstract_without_content_words(classifier):
    assert classifier.encode("Image segmentation", "The of and, 2024 -- 3.5 !") is None
    assert classifier.encode("", "the and of") is None
    assert classifier.encode("", "   ") is None
    # unknown words are content words (out-of-vocabulary id), so they are classified
    assert classifier.encode("", "Zyxwv quuxification").ids == [1, 1]
    assert (
        classifier.encode("Image", "segmentation").ids[-1]
        == classifier.tokenizer.encode("", "segmentation")[0]
    )


def test_choose_applies_thresholds_top_label_sorting_and_top_k(classifier):
    thresholds = classifier.thresholds  # 0.5 0.45 0.5 0.6 0.4 0.55
    np.testing.assert_allclose(thresholds, [t for *_, t in SERVING_LABELS])
    scores = np.array([0.51, 0.44, 0.9, 0.59, 0.41, 0.2], dtype=np.float32)
    assert classifier.choose(scores, 6).tolist() == [2, 0, 4]
    assert classifier.choose(scores, 2).tolist() == [2, 0]
    assert classifier.choose(scores, 6, threshold=0.0).tolist() == [2, 3, 0, 1, 4, 5]
    assert classifier.choose(scores, 6, threshold=1.0).tolist() == [2]
    # the top label is returned even below its own threshold, before labels that pass theirs
    low = np.array([0.3, 0.1, 0.1, 0.45, 0.41, 0.0], dtype=np.float32)
    assert classifier.choose(low, 6).tolist() == [3, 4]
    # a score exactly at the threshold passes
    exact = np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.9], dtype=np.float32)
    assert classifier.choose(exact, 6).tolist() == [5, 0]
    # equal scores keep label order, the top label's too
    tied = np.array([0.5] * 4 + [0.7] * 4 + [0.5] * 4 + [0.7] * 4 + [0.1], dtype=np.float32)
    assert classifier.choose(tied, 20, threshold=0.5).tolist() == [
        *range(4, 8),
        *range(12, 16),
        *range(4),
        *range(8, 12),
    ]
    assert classifier.choose(tied, 20, threshold=0.9).tolist() == [4]
    # a NaN score is never chosen in place of the best number
    assert classifier.choose(np.array([0.2, np.nan, 0.9, 0.1]), 4, threshold=0.5).tolist() == [2]
    assert classifier.choose(np.array([np.nan, 0.4, 0.9]), 3, threshold=0.95).tolist() == [2]


def test_session_threads_default_to_one_and_follow_ort_num_threads(serving_model_dir):
    one = Classifier.load(serving_model_dir).session.get_session_options()
    assert (one.intra_op_num_threads, one.inter_op_num_threads) == (1, 1)
    settings = Settings.from_env({"MODEL_DIR": str(serving_model_dir), "ORT_NUM_THREADS": "2"})
    two = Classifier.load(settings.model_dir, settings.ort_threads).session.get_session_options()
    assert (two.intra_op_num_threads, two.inter_op_num_threads) == (2, 2)


def test_settings_from_env_defaults_and_bad_values():
    defaults = Settings.from_env({})
    assert defaults.model_dir == DEFAULT_MODEL_DIR == REPO / "lambda_handler" / "model"
    assert (defaults.model_s3_uri, defaults.ort_threads, defaults.log_level) == (None, 1, "INFO")
    assert defaults.warnings == ()
    bad = Settings.from_env({"ORT_NUM_THREADS": "zero", "LOG_LEVEL": "chatty"})
    assert (bad.ort_threads, bad.log_level) == (1, "INFO")
    assert len(bad.warnings) == 2 and "ORT_NUM_THREADS" in bad.warnings[0]
    assert Settings.from_env({"ORT_NUM_THREADS": "0"}).ort_threads == 1
    for odd in ("1_0", "\u0663", "-2", "2.0"):  # int() would take the first two
        odd_one = Settings.from_env({"ORT_NUM_THREADS": odd})
        assert odd_one.ort_threads == 1 and "not a positive integer" in odd_one.warnings[0]
    for huge in ("2147483648", "9" * 5000):  # onnxruntime refused 2**31 at load: a 503
        capped = Settings.from_env({"ORT_NUM_THREADS": huge})
        assert capped.ort_threads == MAX_THREADS and "more than" in capped.warnings[0]
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"
    s3 = Settings.from_env({"MODEL_S3_URI": " s3://b/p ", "MODEL_CACHE_DIR": "/x"})
    assert (s3.model_s3_uri, s3.model_cache_dir) == ("s3://b/p", Path("/x"))


def test_healthy_service_reports_its_version(serving_service):
    status, body = health(serving_service)
    assert status == 200
    assert body == {
        "status": "ok",
        "model": {"name": "tiny-test-lstm", "version": SERVING_MODEL_VERSION, **SERVING_SERVED},
        "labels": len(SERVING_LABELS),
    }


# --- refusing to serve ----------------------------------------------------------------------


def load_failure(model_dir: Path, capsys) -> tuple[Service, dict, str]:
    """Service from a broken directory: its /health body and the load log line."""
    capsys.readouterr()
    service = Service.from_settings(Settings(model_dir=model_dir))
    log = capsys.readouterr().out
    status, body = health(service)
    assert status == 503
    assert body["status"] == "unavailable" and body["error"] == "model_unavailable"
    classify = service.handle({"abstract": ABSTRACT})
    assert classify["statusCode"] == 503
    assert json.loads(classify["body"])["error"] == "model_unavailable"
    record = json.loads(log.splitlines()[0])
    assert record["level"] == "ERROR" and record["event"] == "model_load_failed"
    assert record["source"] == str(model_dir)
    return service, body, record["message"]


def test_one_flipped_byte_in_model_onnx_refuses_to_serve(make_serving_model_dir, capsys):
    model_dir = make_serving_model_dir()
    data = bytearray((model_dir / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (model_dir / "model.onnx").write_bytes(bytes(data))
    service, body, log_message = load_failure(model_dir, capsys)
    assert "model.onnx sha256" in body["message"] and "does not match" in body["message"]
    assert "refusing to serve" in log_message and "model.onnx sha256" in log_message
    assert service.classifier is None
    with pytest.raises(ModelError, match=r"model\.onnx sha256"):
        Classifier.load(model_dir)


def test_missing_tokenizer_refuses_to_serve(make_serving_model_dir, capsys):
    model_dir = make_serving_model_dir()
    (model_dir / "tokenizer.json").unlink()
    _, body, log_message = load_failure(model_dir, capsys)
    assert "tokenizer.json is missing" in body["message"]
    assert "tokenizer.json is missing" in log_message


def test_wrong_manifest_version_refuses_to_serve(make_serving_model_dir, capsys):
    model_dir = make_serving_model_dir()
    write_serving_manifest(model_dir, format_version=1)
    _, body, _ = load_failure(model_dir, capsys)
    assert "format_version is 1" in body["message"]


def test_missing_model_directory_answers_no_model(tmp_path, capsys):
    _, body, _ = load_failure(tmp_path / "absent", capsys)
    assert "no model" in body["message"]
    (tmp_path / "empty").mkdir()
    _, body, _ = load_failure(tmp_path / "empty", capsys)
    assert "no model: manifest.json is missing" in body["message"]


def resealed(manifest: dict) -> dict:
    """`manifest` (as read, checksum included) with its checksum recomputed."""
    return with_checksum({k: v for k, v in manifest.items() if k != CHECKSUM_KEY})


def rewrite(model_dir: Path, name: str, data: bytes, **manifest_overrides: object) -> None:
    (model_dir / name).write_bytes(data)
    write_serving_manifest(model_dir, **manifest_overrides)


def test_a_model_without_a_low_confidence_line_answers_without_the_flag(make_serving_model_dir):
    model_dir = make_serving_model_dir()
    labels = json.loads((model_dir / "labels.json").read_text())
    labels["low_confidence"] = {"top_score_below": None, "validation": {"auroc": 0.55}}
    rewrite(model_dir, "labels.json", json.dumps(labels).encode())
    service = Service.from_settings(Settings(model_dir=model_dir))
    assert service.classifier is not None and service.classifier.low_confidence_below is None
    answer = json.loads(service.handle({"abstract": "image segmentation"})["body"])
    assert answer["results"][0].keys() == {"labels"}


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("size", "bytes but manifest.json says"),
        ("garbage_onnx", "cannot be loaded by onnxruntime"),
        ("io_input", "manifest.json io.input is 'ids'"),
        ("io_output", "manifest.json io.output is 'scores'"),
        ("labels_count", "combiner.json lists 6 labels that differ from the 5 of labels.json"),
        ("combiner_order", "combiner.json lists 6 labels that differ from the 6 of labels.json"),
        ("combiner_kind", "unknown combiner kind 'median'"),
        ("combiner_shape", "stacked weights (6, 6) and bias (6,) do not fit 6 labels"),
        ("combiner_arrays_missing", "a stacked combiner needs its arrays file"),
        (
            "combiner_pickle",
            "combiner.json/combiner.npz: it holds pickled (object) data, which is never loaded",
        ),
        ("baseline_labels", "baseline.npz scores 5 labels; labels.json lists 6"),
        ("baseline_words", "grams must hold word ids in [0, 5) or -1"),
        ("baseline_tampered", "baseline.npz sha256"),
        ("labels_threshold", "threshold of cs.CV must be a number in [0, 1]"),
        ("labels_json", "labels.json is not valid JSON"),
        (
            "labels_low_confidence",
            "labels.json low_confidence.top_score_below must be null or a number in (0, 1)",
        ),
        ("tokenizer_settings", "tokenizer padding is 'post'"),
        ("vocabulary_too_big", "model.onnx failed a test prediction"),
        ("unsafe_name", "invalid file name '../escape.txt'"),
        ("manifest_json", "manifest.json is not valid JSON"),
        ("manifest_sha", "sha256 of labels.json is not 64"),
        ("manifest_unlisted", "does not list labels.json"),
        ("manifest_changed", "manifest.json does not match its own manifest_sha256"),
        ("manifest_precision", "served.lstm_precision is 'int9'; expected one of int8, fp32"),
        (
            "onnx_input_type",
            "model.onnx input 'tokens' is tensor(float) with shape ['batch', 'time']; "
            "expected int32 [batch, time]",
        ),
        (
            "onnx_label_count",
            "model.onnx gives float32 scores of shape (1, 5) for 1 paper(s); expected float32 "
            "(1, 6) for the 6 labels in labels.json",
        ),
        ("onnx_raw_logits", "model.onnx gives scores outside [0, 1] (or NaN)"),
        ("combiner_nan", "stacked weights and bias must be finite"),
        ("combiner_labels_type", "labels must be a list of label codes"),
        ("combiner_weight_bool", "lstm_weight must be a number"),
        ("combiner_weight_range", "lstm_weight must lie in [0, 1], got 1.5"),
        ("combiner_json", "combiner.json/combiner.npz: not valid JSON (Expecting value: line 1"),
        ("baseline_json", "baseline.json/baseline.npz: not valid JSON (Expecting ',' delimiter"),
        ("combiner_json_missing", "combiner.json is missing from the model directory"),
    ],
)
def test_invalid_model_directories_are_refused_with_a_clear_reason(
    make_serving_model_dir, capsys, breakage, expected
):
    model_dir = make_serving_model_dir()
    labels = json.loads((model_dir / "labels.json").read_text())
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    manifest = json.loads((model_dir / "manifest.json").read_text())
    if breakage == "size":
        manifest["files"]["labels.json"]["bytes"] += 1
        (model_dir / "manifest.json").write_text(json.dumps(resealed(manifest)))
    elif breakage == "garbage_onnx":
        rewrite(model_dir, "model.onnx", b"not an onnx model")
    elif breakage == "io_input":
        write_serving_manifest(model_dir, io={"input": "ids", "output": "probabilities"})
    elif breakage == "io_output":
        write_serving_manifest(model_dir, io={"input": "tokens", "output": "scores"})
    elif breakage == "labels_count":
        labels["labels"].pop()
        rewrite(model_dir, "labels.json", json.dumps(labels).encode())
    elif breakage == "combiner_order":
        combiner = json.loads((model_dir / "combiner.json").read_text())
        combiner["labels"] = combiner["labels"][::-1]
        rewrite(model_dir, "combiner.json", json.dumps(combiner).encode())
    elif breakage == "combiner_kind":
        combiner = json.loads((model_dir / "combiner.json").read_text())
        combiner["kind"] = "median"
        rewrite(model_dir, "combiner.json", json.dumps(combiner).encode())
    elif breakage == "combiner_shape":
        buffer = io.BytesIO()
        np.savez(buffer, weights=np.zeros((6, 6), np.float32), bias=np.zeros(6, np.float32))
        rewrite(model_dir, "combiner.npz", buffer.getvalue())
    elif breakage == "combiner_arrays_missing":
        (model_dir / "combiner.npz").unlink()
        write_serving_manifest(model_dir)
    elif breakage == "combiner_pickle":
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"weights": 1}], dtype=object), allow_pickle=True)
        rewrite(model_dir, "combiner.npz", buffer.getvalue())
    elif breakage == "baseline_labels":
        arrays = dict(np.load(model_dir / "baseline.npz"))
        arrays["intercept"], arrays["dense"] = arrays["intercept"][:5], arrays["dense"][:, :5]
        keep = arrays["label_ids"] < 5
        arrays["label_ids"], arrays["values"] = arrays["label_ids"][keep], arrays["values"][keep]
        n_features = len(arrays["idf"])
        rows = np.repeat(np.arange(n_features), np.diff(arrays["indptr"]))
        counts = np.bincount(rows[keep], minlength=n_features)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        arrays["indptr"] = indptr.astype(np.int32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        rewrite(model_dir, "baseline.npz", buffer.getvalue())
    elif breakage == "baseline_words":
        baseline = json.loads((model_dir / "baseline.json").read_text())
        baseline["words"] = baseline["words"][:5]
        rewrite(model_dir, "baseline.json", json.dumps(baseline).encode())
    elif breakage == "baseline_tampered":
        data = bytearray((model_dir / "baseline.npz").read_bytes())
        data[len(data) // 2] ^= 0x01
        (model_dir / "baseline.npz").write_bytes(bytes(data))
    elif breakage == "labels_threshold":
        labels["labels"][0]["threshold"] = 1.5
        rewrite(model_dir, "labels.json", json.dumps(labels).encode())
    elif breakage == "labels_low_confidence":
        labels["low_confidence"] = {"top_score_below": 1.5}
        rewrite(model_dir, "labels.json", json.dumps(labels).encode())
    elif breakage == "labels_json":
        rewrite(model_dir, "labels.json", b"{")
    elif breakage == "tokenizer_settings":
        tokenizer["padding"] = "post"
        rewrite(model_dir, "tokenizer.json", json.dumps(tokenizer).encode())
    elif breakage == "vocabulary_too_big":
        bigger = Tokenizer.from_dict(tokenizer)
        bigger = Tokenizer((*bigger.vocabulary, "extra1", "extra2"), bigger.stopwords)
        rewrite(model_dir, "tokenizer.json", json.dumps(bigger.to_dict()).encode())
    elif breakage == "unsafe_name":
        manifest["files"]["../escape.txt"] = manifest["files"]["labels.json"]
        (model_dir / "manifest.json").write_text(json.dumps(resealed(manifest)))
    elif breakage == "manifest_json":
        (model_dir / "manifest.json").write_text("{nope")
    elif breakage == "manifest_sha":
        manifest["files"]["labels.json"]["sha256"] = "ABC"
        (model_dir / "manifest.json").write_text(json.dumps(resealed(manifest)))
    elif breakage == "manifest_changed":  # a changed byte in the manifest itself
        manifest["model"]["version"] = manifest["model"]["version"].replace("2026", "2126")
        (model_dir / "manifest.json").write_text(json.dumps(manifest))
    elif breakage == "manifest_precision":
        write_serving_manifest(model_dir, served={**SERVING_SERVED, "lstm_precision": "int9"})
    elif breakage == "manifest_unlisted":
        del manifest["files"]["labels.json"]
        (model_dir / "manifest.json").write_text(json.dumps(resealed(manifest)))
    elif breakage.startswith("onnx_"):
        rewrite(model_dir, "model.onnx", broken_graph(model_dir / "model.onnx", breakage))
    elif breakage == "combiner_nan":
        arrays = dict(np.load(model_dir / "combiner.npz"))
        arrays["weights"][0, 0] = np.nan
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        rewrite(model_dir, "combiner.npz", buffer.getvalue())
    elif breakage in ("combiner_labels_type", "combiner_weight_bool", "combiner_weight_range"):
        combiner = json.loads((model_dir / "combiner.json").read_text())
        field, value = {
            "combiner_labels_type": ("labels", [1, 2, 3, 4, 5, 6]),
            "combiner_weight_bool": ("lstm_weight", True),
            "combiner_weight_range": ("lstm_weight", 1.5),
        }[breakage]
        combiner[field] = value
        rewrite(model_dir, "combiner.json", json.dumps(combiner).encode())
    elif breakage == "combiner_json":
        rewrite(model_dir, "combiner.json", b'{"kind": ')
    elif breakage == "baseline_json":
        rewrite(model_dir, "baseline.json", b"[1, 2")
    elif breakage == "combiner_json_missing":
        (model_dir / "combiner.json").unlink()
    with pytest.raises(ModelError) as caught:
        Classifier.load(model_dir)
    assert expected in str(caught.value)
    assert str(model_dir) not in str(caught.value)  # messages reach callers: no local paths
    _, body, log_message = load_failure(model_dir, capsys)
    assert expected in body["message"] and expected in log_message


def broken_graph(path: Path, breakage: str) -> bytes:
    """model.onnx with a float input (cast to int32 inside), five outputs instead of six, or
    its final Sigmoid removed so that it serves raw logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(path)
    graph = model.graph
    if breakage == "onnx_input_type":
        graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
        for node in graph.node:
            node.input[:] = ["tokens_int32" if name == "tokens" else name for name in node.input]
        graph.node.insert(0, helper.make_node("Cast", ["tokens"], ["tokens_int32"], to=6))
    elif breakage == "onnx_label_count":
        [final] = [node for node in graph.node if "probabilities" in node.output]
        final.output[0] = "all_probabilities"
        graph.initializer.extend(
            numpy_helper.from_array(np.array([value], dtype=np.int64), name)
            for name, value in (("first", 0), ("five", 5), ("label_axis", 1))
        )
        graph.node.append(
            helper.make_node(
                "Slice",
                ["all_probabilities", "first", "five", "label_axis"],
                ["probabilities"],
            )
        )
        graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5
    else:
        [sigmoid] = [node for node in graph.node if node.op_type == "Sigmoid"]
        sigmoid.op_type = "Identity"
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


# --- app.py import (cold start) -------------------------------------------------------------


def test_importing_app_never_raises_on_a_bad_model(monkeypatch, make_serving_model_dir, capsys):
    model_dir = make_serving_model_dir()
    (model_dir / "labels.json").write_text("changed")
    monkeypatch.setenv("MODEL_DIR", str(model_dir))
    monkeypatch.delenv("MODEL_S3_URI", raising=False)
    app = reload_app(monkeypatch)
    assert "model_load_failed" in capsys.readouterr().out
    answer = app.handler(serving_v2_event("GET", "/labels"), None)
    assert answer["statusCode"] == 503
    assert "labels.json is" in json.loads(answer["body"])["message"]


APP_SCRIPT = """
import ctypes, json, os, sys
from lambda_handler import app
answer = app.handler({'title': 'Robots', 'abstract': 'robot navigation agents'}, None)
heavy = ('tensorflow', 'keras', 'sklearn', 'pandas', 'nltk', 'boto3', 'botocore', 'torch')
blas = [line.split()[-1] for line in open('/proc/self/maps') if 'libscipy_openblas' in line]
print(json.dumps({
    'status': answer['statusCode'],
    'heavy': [module for module in heavy if module in sys.modules],
    'blas_threads': ctypes.CDLL(blas[0]).scipy_openblas_get_num_threads64_() if blas else None,
    'openblas_setting': os.environ.get('OPENBLAS_NUM_THREADS'),
    'body': json.loads(answer['body']),
}))
"""


def run_app(model_dir: Path, **env: str) -> dict:
    """Import lambda_handler.app in a fresh interpreter serving `model_dir`, answer one paper."""
    environment = {**os.environ, "MODEL_DIR": str(model_dir), "LOG_LEVEL": "ERROR", **env}
    environment.pop("MODEL_S3_URI", None)
    environment["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", APP_SCRIPT],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_app_serves_from_model_dir_without_heavy_or_aws_imports(serving_model_dir, monkeypatch):
    """And numpy's OpenBLAS runs one thread (app.py sets OPENBLAS_NUM_THREADS before numpy
    loads), so it starts no thread pool at cold start."""
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    result = run_app(serving_model_dir)
    assert result["status"] == 200
    assert result["heavy"] == []
    assert result["blas_threads"] is not None, "numpy's OpenBLAS (scipy-openblas) is not loaded"
    assert (result["openblas_setting"], result["blas_threads"]) == ("1", 1)
    assert result["body"]["results"][0]["labels"][0]["label"] in {c for c, *_ in SERVING_LABELS}


def test_an_operators_openblas_thread_count_wins(serving_model_dir):
    expected = min(2, len(os.sched_getaffinity(0)))  # OpenBLAS runs no more threads than CPUs
    result = run_app(serving_model_dir, OPENBLAS_NUM_THREADS="2")
    assert (result["openblas_setting"], result["blas_threads"]) == ("2", expected)


def test_warm_requests_neither_read_nor_load_the_model_again(serving_service, monkeypatch):
    """What keeps a warm request in the millisecond range (bench/run.py measures it): the
    model directory is read and the onnxruntime session created once, at cold start."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a warm request reloaded the model")

    monkeypatch.setattr("lambda_handler.model.read_model_dir", refuse)
    monkeypatch.setattr("lambda_handler.model.ort.InferenceSession", refuse)
    monkeypatch.setattr("lambda_handler.service.load_router", refuse)
    abstract = " ".join(["convolutional networks detect objects in images and video"] * 20)
    event = serving_v2_event("POST", "/classify", {"title": "Detection", "abstract": abstract})
    with contextlib.redirect_stdout(io.StringIO()):  # the request log lines
        answers = [serving_service.handle(event, None) for _ in range(50)]
    assert [answer["statusCode"] for answer in answers] == [200] * 50


@settings(max_examples=300, deadline=None)
@given(title=st.text(max_size=40), abstract=st.text(max_size=40))
def test_title_and_abstract_tokenize_independently(title, abstract):
    """What Classifier.encode relies on to tell whether the abstract adds any content word."""
    stopwords = shipped_stopwords()
    joined = words(title, abstract, stopwords)
    assert joined == words(title, "", stopwords) + words("", abstract, stopwords)


def test_low_confidence_means_a_top_score_strictly_below_the_line(classifier):
    from dataclasses import replace

    lined = replace(classifier, low_confidence_below=0.375)  # exact in float32 too
    scores = np.array([0.1, 0.375, 0.2], dtype=np.float32)
    assert not lined.is_low_confidence(scores)  # on the line: not below it
    assert lined.is_low_confidence(np.nextafter(scores, np.float32(0)))
    assert not replace(classifier, low_confidence_below=None).is_low_confidence(scores * 0)


def test_shipped_int8_model_moves_a_paper_little_with_its_batch_mates():
    """The int8 LSTM quantizes each run's activations with that run's range, so a paper's scores
    depend a little on its batch (README, "Speed against quality"): here they must stay within
    0.01 of its scores alone, with the same label set, on the export's reference papers."""
    from export.reference import REFERENCE_FILE, Reference
    from train.thresholds import predict_sets

    classifier = Classifier.load(DEFAULT_MODEL_DIR)
    if classifier.info.to_dict().get("lstm_precision") != "int8":
        pytest.skip("the shipped LSTM is not quantized: it scores a paper alike in any batch")
    reference = Reference.load(REPO / "reports" / REFERENCE_FILE)
    papers = [p for p in (classifier.encode(t, a) for t, a, _ in reference.papers) if p]
    alone = np.concatenate([classifier.predict([paper]) for paper in papers])
    batched = np.concatenate(
        [classifier.predict(papers[i : i + 32]) for i in range(0, len(papers), 32)]
    )
    assert len(papers) >= 500 and np.abs(alone - batched).max() <= 0.01
    same = predict_sets(alone, classifier.thresholds) == predict_sets(
        batched, classifier.thresholds
    )
    assert same.all(axis=1).mean() >= 0.99
