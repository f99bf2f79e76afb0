"""Unit tests of the export's building blocks that need no TensorFlow: the ONNX graph checks,
the parity gate, the manifest and the artifact parsers."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import ExportError
from export.artifacts import parse_labels
from export.graph import all_nodes, check_graph, onnx_predictor, onnx_session
from export.manifest import build_manifest, summarize_metrics, verify_model_dir
from export.parity import (
    ParityReport,
    check_parity,
    length_batches,
    measure_parity,
    single_positions,
)
from export.quantize import (
    MAX_WEIGHT,
    MIN_FLOAT16_TABLE,
    check_weight_range,
    quantize,
    tables_in_float16,
)
from export.reference import Reference, ReferenceError
from lambda_handler.files import sha256_file
from lambda_handler.labels import Label, float32_decimal
from lambda_handler.manifest import CHECKSUM_KEY, REQUIRED_FILES, with_checksum
from train.thresholds import predict_sets

HIDDEN = 3


def toy_model(
    input_name: str = "tokens",
    time_dim: str | int = "time",
    recurrent: str = "LSTM",
    opset: int = 17,
    loop: bool = False,
) -> onnx.ModelProto:
    """A valid ONNX graph `tokens [batch, time]` → recurrent op → `probabilities [batch, 3]`.

    `loop=True` routes the logits through an identity `Loop`, as an unrolled recurrence would.
    """
    gates = {"LSTM": 4, "GRU": 3}[recurrent]
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=(1, gates * HIDDEN, 1)).astype(np.float32), "W"),
        numpy_helper.from_array(
            rng.normal(size=(1, gates * HIDDEN, HIDDEN)).astype(np.float32), "R"
        ),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "feature_axis"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "direction_axis"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "once"),
    ]
    nodes = [
        helper.make_node("Cast", [input_name], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["ids", "feature_axis"], ["features"]),
        helper.make_node("Transpose", ["features"], ["time_major"], perm=[1, 0, 2]),
        helper.make_node(recurrent, ["time_major", "W", "R"], ["", "last"], hidden_size=HIDDEN),
        helper.make_node("Squeeze", ["last", "direction_axis"], ["logits"]),
    ]
    if loop:
        body = helper.make_graph(
            [
                helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                helper.make_node("Identity", ["value_in"], ["value_out"]),
            ],
            "identity_body",
            [
                helper.make_tensor_value_info("step", TensorProto.INT64, []),
                helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("value_in", TensorProto.FLOAT, None),
            ],
            [
                helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info("value_out", TensorProto.FLOAT, None),
            ],
        )
        nodes.append(helper.make_node("Loop", ["once", "", "logits"], ["looped"], body=body))
    nodes.append(helper.make_node("Sigmoid", ["looped" if loop else "logits"], ["probabilities"]))
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info(input_name, TensorProto.INT32, ["batch", time_dim])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", HIDDEN])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def test_toy_model_passes_and_runs_at_any_shape() -> None:
    model = toy_model()
    check_graph(model, HIDDEN)
    predict = onnx_predictor(onnx_session(model.SerializeToString()))
    for shape in ((1, 1), (4, 9)):
        assert predict(np.ones(shape, dtype=np.int32)).shape == (shape[0], HIDDEN)


@pytest.mark.parametrize(
    ("model", "n_labels", "message"),
    [
        (toy_model(loop=True), HIDDEN, "ONNX graph holds Loop ops instead of native LSTM ops"),
        (toy_model(recurrent="GRU"), HIDDEN, "ONNX graph holds no native LSTM op"),
        (toy_model(opset=16), HIDDEN, "ONNX opset is 16, the model directory needs >= 17"),
        (
            toy_model(input_name="input_1"),
            HIDDEN,
            "ONNX graph maps ['input_1'] to ['probabilities'], "
            "expected ['tokens'] to ['probabilities']",
        ),
        (
            toy_model(time_dim=200),
            HIDDEN,
            "ONNX tokens has shape [None, 200], expected [None, None] (None = dynamic)",
        ),
        (
            toy_model(),
            HIDDEN + 1,
            "ONNX probabilities has shape [None, 3], expected [None, 4] (None = dynamic)",
        ),
    ],
    ids=["loop", "gru", "opset-16", "input-name", "static-time", "label-count"],
)
def test_check_graph_refuses_unservable_graphs(
    model: onnx.ModelProto, n_labels: int, message: str
) -> None:
    with pytest.raises(ExportError) as raised:
        check_graph(model, n_labels)
    assert str(raised.value).startswith(message)


def test_check_graph_reports_checker_errors_in_one_line() -> None:
    model = toy_model()
    model.graph.node[0].input[0] = "undefined"
    with pytest.raises(ExportError, match=r"^onnx.checker rejected the converted model: [^\n]+$"):
        check_graph(model, HIDDEN)


def test_all_nodes_walks_into_subgraphs() -> None:
    scan = helper.make_graph([helper.make_node("Scan", [], [])], "inner", [], [])
    branch = helper.make_node("If", ["cond"], [], then_branch=scan, else_branch=scan)
    graph = helper.make_graph([helper.make_node("Relu", [], []), branch], "outer", [], [])
    assert [node.op_type for node in all_nodes(graph)] == ["Relu", "If", "Scan", "Scan"]


def test_int8_lstm_weights_keep_to_seven_bits_so_no_cpu_saturates() -> None:
    """8-bit weights would be refused: without VNNI, x86 saturates uint8-by-int8 pair sums."""
    int8 = onnx.load_from_string(quantize(toy_model().SerializeToString()))
    [lstm] = [node for node in int8.graph.node if node.op_type == "DynamicQuantizeLSTM"]
    weights = {t.name: t for t in int8.graph.initializer if t.name in lstm.input[1:3]}
    assert len(weights) == 2
    assert max(np.abs(numpy_helper.to_array(t)).max() for t in weights.values()) == MAX_WEIGHT
    recurrent = weights[lstm.input[2]]
    values = numpy_helper.to_array(recurrent).copy()
    values.flat[0] = 127
    recurrent.CopyFrom(numpy_helper.from_array(values, recurrent.name))
    with pytest.raises(ExportError, match=r"reach 127 > 64: CPUs without VNNI would saturate"):
        check_weight_range(int8.graph)


def test_int8_lstm_weights_that_are_not_stored_constants_are_refused() -> None:
    """A weight computed at run time has no range to check: one ExportError line, no KeyError."""
    int8 = onnx.load_from_string(quantize(toy_model().SerializeToString()))
    [lstm] = [node for node in int8.graph.node if node.op_type == "DynamicQuantizeLSTM"]
    recurrent = lstm.input[2]
    kept = [t for t in int8.graph.initializer if t.name != recurrent]
    del int8.graph.initializer[:]
    int8.graph.initializer.extend(kept)
    with pytest.raises(ExportError, match=r"are not a stored initializer, so their range"):
        check_weight_range(int8.graph)


def test_int8_lstm_weight_range_is_checked_inside_subgraphs_too() -> None:
    int8 = onnx.load_from_string(quantize(toy_model().SerializeToString()))
    [lstm] = [node for node in int8.graph.node if node.op_type == "DynamicQuantizeLSTM"]
    recurrent = next(t for t in int8.graph.initializer if t.name == lstm.input[2])
    values = numpy_helper.to_array(recurrent).copy()
    values.flat[0] = 127
    body = helper.make_graph(
        [lstm], "body", [], [], initializer=[numpy_helper.from_array(values, recurrent.name)]
    )
    branch = helper.make_node("If", ["cond"], [], then_branch=body, else_branch=body)
    outer = helper.make_graph(
        [branch],
        "outer",
        [],
        [],
        initializer=[t for t in int8.graph.initializer if t.name != recurrent.name],
    )
    with pytest.raises(ExportError, match=r"reach 127 > 64"):
        check_weight_range(outer)


def test_shipped_int8_model_keeps_to_seven_bits() -> None:
    shipped = Path(__file__).resolve().parents[1] / "lambda_handler" / "model"
    manifest = json.loads((shipped / "manifest.json").read_text(encoding="utf-8"))
    if manifest["served"].get("lstm_precision") != "int8":
        pytest.skip("the shipped LSTM is not quantized")
    check_weight_range(onnx.load(shipped / "model.onnx").graph)


def embedding_model(rows: int = MIN_FLOAT16_TABLE // 8, scale: float = 1.0) -> onnx.ModelProto:
    """`tokens [batch, time]` → two lookups in one `[rows, 8]` table → `probabilities`: the
    shape of the BiLSTM's graph, which looks its table up for each direction."""
    table = np.random.default_rng(1).normal(scale=scale, size=(rows, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "tokens"], ["forward"], name="lookup_forward"),
        helper.make_node("Neg", ["tokens"], ["reversed"]),  # any index computation
        helper.make_node("Abs", ["reversed"], ["backward_ids"]),
        helper.make_node("Gather", ["table", "backward_ids"], ["backward"], name="lookup_back"),
        helper.make_node("Add", ["forward", "backward"], ["both"]),
        helper.make_node("ReduceMean", ["both"], ["probabilities"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "embedding",
        [helper.make_tensor_value_info("tokens", TensorProto.INT32, ["batch", "time"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 8])],
        initializer=[numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run_model(model: onnx.ModelProto, tokens: np.ndarray) -> np.ndarray:
    return onnx_predictor(onnx_session(model.SerializeToString()))(tokens)


def test_the_embedding_table_is_stored_in_float16_and_looked_up_as_float32() -> None:
    model = embedding_model()
    table = numpy_helper.to_array(model.graph.initializer[0])
    tokens = np.array([[0, 5, 9], [3, 3, 1000]], dtype=np.int32)
    assert tables_in_float16(model.graph) == ["table"]
    onnx.checker.check_model(model, full_check=True)
    [stored] = model.graph.initializer
    assert stored.data_type == TensorProto.FLOAT16
    assert np.array_equal(numpy_helper.to_array(stored), table.astype(np.float16))
    assert [node.op_type for node in model.graph.node].count("Cast") == 2
    rounded = table.astype(np.float16).astype(np.float32)
    expected = (rounded[tokens] + rounded[np.abs(-tokens)]).mean(axis=1)
    scores = run_model(model, tokens)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert not np.array_equal(rounded, table)  # the test would pass unrounded otherwise


@pytest.mark.parametrize(
    "change",
    [
        "small",
        "too-large-values",
        "nan",
        "other-reader",
        "index-too",
        "in-subgraph",
        "graph-input",
        "graph-output",
        "tensor-name-taken",
        "node-name-taken",
    ],
)
def test_tables_float16_cannot_serve_exactly_as_meant_stay_float32(change: str) -> None:
    model = embedding_model(rows=4 if change == "small" else MIN_FLOAT16_TABLE // 8)
    graph = model.graph
    table = numpy_helper.to_array(graph.initializer[0]).copy()
    if change in ("too-large-values", "nan"):
        table[3, 2] = 70_000.0 if change == "too-large-values" else np.nan
        graph.initializer[0].CopyFrom(numpy_helper.from_array(table, "table"))
    elif change == "other-reader":
        graph.node.append(helper.make_node("Shape", ["table"], ["table_shape"]))
    elif change == "index-too":
        graph.node.append(helper.make_node("Gather", ["tokens", "table"], ["odd"]))
    elif change == "in-subgraph":
        body = helper.make_graph(
            [helper.make_node("Identity", ["table"], ["inner"])], "body", [], []
        )
        graph.node.append(helper.make_node("If", ["flag"], [], then_branch=body, else_branch=body))
    elif change == "graph-input":
        graph.input.append(helper.make_tensor_value_info("table", TensorProto.FLOAT, None))
    elif change == "graph-output":
        graph.output.append(helper.make_tensor_value_info("table", TensorProto.FLOAT, None))
    elif change == "tensor-name-taken":
        graph.node.append(helper.make_node("Neg", ["forward"], ["forward/float16"]))
    else:
        graph.node.append(
            helper.make_node("Neg", ["forward"], ["negated"], name="forward/to_float32")
        )
    before = model.SerializeToString()
    assert tables_in_float16(graph) == []
    assert model.SerializeToString() == before


def test_quantize_ships_int8_lstm_weights_and_a_float16_embedding() -> None:
    """The export's int8 graph is both steps: `DynamicQuantizeLSTM` and the float16 table."""
    model = toy_model()
    lookup = embedding_model().graph
    model.graph.initializer.extend(lookup.initializer)
    gather = helper.make_node("Gather", ["table", "tokens"], ["embedded"])
    pooled = helper.make_node("ReduceMax", ["embedded"], ["pooled"], axes=[1, 2], keepdims=0)
    model.graph.node.insert(0, gather)
    model.graph.node.insert(1, pooled)
    model.graph.node[-1].input[0] = "offset"
    model.graph.node.insert(
        len(model.graph.node) - 1, helper.make_node("Add", ["logits", "pooled"], ["offset"])
    )
    onnx.checker.check_model(model, full_check=True)
    int8 = onnx.load_from_string(quantize(model.SerializeToString()))
    onnx.checker.check_model(int8, full_check=True)
    op_types = [node.op_type for node in int8.graph.node]
    assert "DynamicQuantizeLSTM" in op_types and "Cast" in op_types
    looked_up = {node.input[0] for node in int8.graph.node if node.op_type == "Gather"}
    [table] = [t for t in int8.graph.initializer if t.name in looked_up]
    assert table.data_type == TensorProto.FLOAT16
    tokens = np.array([[1, 2, 3]], dtype=np.int32)
    fp32, served = run_model(model, tokens), run_model(int8, tokens)
    assert served.shape == fp32.shape == (1, HIDDEN)
    np.testing.assert_allclose(served, fp32, atol=0.05)


def test_shipped_int8_model_stores_its_embedding_in_float16() -> None:
    shipped = Path(__file__).resolve().parents[1] / "lambda_handler" / "model"
    manifest = json.loads((shipped / "manifest.json").read_text(encoding="utf-8"))
    if manifest["served"].get("lstm_precision") != "int8":
        pytest.skip("the shipped LSTM is not quantized")
    graph = onnx.load(shipped / "model.onnx").graph
    looked_up = {node.input[0] for node in graph.node if node.op_type == "Gather"}
    tables = [
        t for t in graph.initializer if t.name in looked_up and np.prod(t.dims) >= MIN_FLOAT16_TABLE
    ]
    assert [t.data_type for t in tables] == [TensorProto.FLOAT16]


def test_length_batches_sort_and_pre_pad_each_batch_to_its_longest() -> None:
    sequences = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10], [11]]
    batches = [batch.tolist() for batch in length_batches(sequences, batch_size=2)]
    assert batches == [[[4], [11]], [[0, 5, 6], [1, 2, 3]], [[7, 8, 9, 10]]]
    assert next(length_batches(sequences, 2)).dtype == np.int32


def test_singles_span_shortest_to_longest() -> None:
    assert single_positions(5, 3).tolist() == [0, 2, 4]
    assert single_positions(5, 99).tolist() == [0, 1, 2, 3, 4]
    assert single_positions(5, 0).tolist() == []


def test_a_paper_agrees_only_if_it_agrees_alone_too_and_counts_once() -> None:
    # The longest paper flips only when run alone: one paper of 50 disagrees (not one of 54 runs).
    def flips_alone(batch: np.ndarray) -> np.ndarray:
        return fake_model(batch) + np.float32(0.5) * (len(batch) == 1 and batch.shape[1] == 9)

    report = measure_parity(fake_model, flips_alone, SEQUENCES, [0.5] * 3, batch_size=8, singles=4)
    assert report.papers == 50 and report.label_set_agreement == pytest.approx(49 / 50)


def test_served_label_sets_apply_thresholds_and_always_keep_the_top_label() -> None:
    probabilities = np.array([[0.2, 0.3, 0.1], [0.6, 0.7, 0.1]], dtype=np.float32)
    chosen = predict_sets(probabilities, np.array([0.5, 0.5, 0.05], dtype=np.float32))
    assert chosen.tolist() == [[False, True, True], [True, True, True]]


def fake_model(batch: np.ndarray) -> np.ndarray:
    """A deterministic stand-in model: scores from the mean token id, 3 labels."""
    mean = np.where(batch > 0, batch, 0).sum(axis=1, keepdims=True) / np.maximum(
        (batch > 0).sum(axis=1, keepdims=True), 1
    )
    return (1 / (1 + np.exp(-(mean - [[5.0, 6.0, 7.0]])))).astype(np.float32)


SEQUENCES = [[(i * 7 + j) % 11 + 1 for j in range(i % 9 + 1)] for i in range(50)] + [[], []]


def test_identical_models_pass_the_gate() -> None:
    report = measure_parity(fake_model, fake_model, SEQUENCES, [0.5] * 3, batch_size=8, singles=4)
    assert report == ParityReport(
        papers=50,
        single_papers=4,
        empty_papers_skipped=2,
        batch_size=8,
        max_abs_diff=0.0,
        label_set_agreement=1.0,
    )
    check_parity(report)


def test_gate_measures_the_largest_difference_and_label_flips() -> None:
    def shifted(batch: np.ndarray) -> np.ndarray:  # +0.25 for papers ending in token 6
        return fake_model(batch) + np.float32(0.25) * (batch[:, -1:] == 6)

    report = measure_parity(fake_model, shifted, SEQUENCES, [0.5] * 3, batch_size=8, singles=0)
    assert report.max_abs_diff == pytest.approx(0.25, abs=1e-6)
    thresholds = np.full(3, 0.5)
    alone = [np.array([sequence]) for sequence in SEQUENCES if sequence]
    flipped = [
        not np.array_equal(
            predict_sets(fake_model(a), thresholds), predict_sets(shifted(a), thresholds)
        )
        for a in alone
    ]
    assert 0 < np.mean(flipped) < 1
    assert report.label_set_agreement == pytest.approx(1 - np.mean(flipped))


@pytest.mark.parametrize(
    ("max_abs_diff", "agreement", "message"),
    [
        (2e-4, 1.0, "max |Δprob| 2.00e-04 > 1e-04"),
        (float("nan"), 1.0, "max |Δprob| nan > 1e-04"),
        (0.0, 0.998, "label sets agree for 99.80% of papers < 99.9%"),
        (
            1.0,
            0.5,
            "max |Δprob| 1.00e+00 > 1e-04; label sets agree for 50.00% of papers < 99.9%",
        ),
    ],
)
def test_gate_fails_with_every_missed_target(
    max_abs_diff: float, agreement: float, message: str
) -> None:
    report = ParityReport(1000, 8, 0, 64, max_abs_diff, agreement)
    with pytest.raises(ExportError) as raised:
        check_parity(report)
    assert str(raised.value) == f"parity gate failed on 1000 test papers: {message}"


def test_gate_accepts_targets_met_exactly() -> None:
    check_parity(ParityReport(1000, 8, 0, 64, 1e-4, 0.999))


def test_summary_drops_per_label_tables_only() -> None:
    by_archive = {"cs": {"p_at_1": 0.8}, "hep-th": {"p_at_1": 0.9}}  # hep-th is a label too
    metrics = {
        "rule": "global",
        "thresholds": [0.5, 0.4],
        "test": {"micro_f1": 0.7, "papers": 10, "per_label": {"hep-th": {"f1": 0.1}}},
        "breakdown": {"by_archive": by_archive},
    }
    assert summarize_metrics(metrics) == {
        "rule": "global",
        "test": {"micro_f1": 0.7, "papers": 10},
        "breakdown": {"by_archive": by_archive},
    }


def write_model_dir(directory: Path) -> dict[str, object]:
    """Stand-ins for the required model files and their manifest; returns the manifest."""
    directory.mkdir()
    for name in REQUIRED_FILES:
        (directory / name).write_text("onnx" if name == "model.onnx" else "{}")
    manifest = build_manifest(
        directory,
        created=datetime(2026, 11, 25, 20, 0, 1, 999, tzinfo=UTC),
        opset=17,
        training_data={"sha256": "ab" * 32, "rows": {"test": 3}},
        metrics={},
        served={},
        gates={},
        versions={},
    )
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_manifest_names_the_version_and_hashes_every_file(tmp_path: Path) -> None:
    manifest = write_model_dir(tmp_path / "model")
    onnx_sha = sha256_file(tmp_path / "model" / "model.onnx")
    assert manifest["model"] == {
        "name": "arxiv-classifier",
        "version": f"2026.11.25-{onnx_sha[:8]}",
    }
    assert manifest["created"] == "2026-11-25T20:00:01Z"
    assert manifest["files"]["model.onnx"] == {"sha256": onnx_sha, "bytes": 4}
    assert list(manifest["files"]) == list(REQUIRED_FILES)  # no combiner.npz: none was written
    verified = verify_model_dir(tmp_path / "model")
    assert (verified.name, verified.version) == ("arxiv-classifier", manifest["model"]["version"])
    assert {name: (e.sha256, e.size) for name, e in verified.files.items()} == {
        name: (entry["sha256"], entry["bytes"]) for name, entry in manifest["files"].items()
    }


def tamper(directory: Path) -> None:
    """Same size, other bytes."""
    (directory / "model.onnx").write_text("ONNX")


def remove(directory: Path) -> None:
    """Delete a listed file."""
    (directory / "labels.json").unlink()


def rewrite_manifest(**changes: object):
    """Damage that overwrites top-level manifest keys (and recomputes its checksum)."""

    def apply(directory: Path) -> None:
        path = directory / "manifest.json"
        manifest = {**json.loads(path.read_text()), **changes}
        del manifest[CHECKSUM_KEY]
        path.write_text(json.dumps(with_checksum(manifest)))

    return apply


def rename_model(directory: Path) -> None:
    """A changed byte in the manifest itself."""
    path = directory / "manifest.json"
    path.write_text(path.read_text().replace('"arxiv-classifier"', '"arxiv-classifies"'))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (tamper, r"\S+/model: model.onnx sha256 \S+ does not match manifest.json .*"),
        (remove, r"\S+/model: labels.json is missing from the model directory"),
        (
            rename_model,
            r"\S+/model: manifest.json does not match its own manifest_sha256: .*",
        ),
        (
            rewrite_manifest(format_version=1),
            r"\S+/model: manifest.json format_version is 1; this function reads only .*",
        ),
        (
            rewrite_manifest(files={"../model.onnx": {}}),
            r"\S+/model: manifest.json lists an invalid file name '../model.onnx'",
        ),
        (
            rewrite_manifest(io={}),
            r"\S+/model: manifest.json io must name the model's 'input' and 'output'",
        ),
        (
            lambda d: (d / "manifest.json").unlink(),
            r"\S+/model: no model: manifest.json is missing from the model directory",
        ),
    ],
    ids=[
        "tampered",
        "missing-file",
        "manifest-changed",
        "format-version",
        "unsafe-name",
        "no-io",
        "no-manifest",
    ],
)
def test_verify_refuses_a_damaged_directory(tmp_path: Path, damage, message: str) -> None:
    write_model_dir(tmp_path / "model")
    damage(tmp_path / "model")
    with pytest.raises(ExportError, match=f"^{message}$"):
        verify_model_dir(tmp_path / "model")


LABEL = {
    "code": "cs.CV",
    "name": "Computer Vision",
    "archive": "cs",
    "threshold": 0.4,
    "support": 3,
}


def labels_json(*labels: dict, **fields: object) -> dict[str, object]:
    """A training labels.json document."""
    return {"format_version": 1, "labels": list(labels), **fields}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (labels_json(LABEL, format_version=2), "must be an object with format_version 1"),
        (labels_json(), "must list at least one label"),
        (labels_json(LABEL, LABEL), "lists a label code twice"),
        (
            labels_json({**LABEL, "support": True}),
            "support of cs.CV must be a non-negative integer, got True",
        ),
        (labels_json({**LABEL, "name": ""}), "label 0 needs a non-empty string 'code' and 'name'"),
        (labels_json({**LABEL, "archive": 3}), "archive of cs.CV must be a string"),
        (
            labels_json(LABEL, low_confidence={"top_score_below": 0}),
            "low_confidence.top_score_below must be null or a number in (0, 1)",
        ),
    ],
)
def test_labels_are_validated(document: dict, message: str) -> None:
    with pytest.raises(ExportError) as raised:
        parse_labels(document, Path("artifacts/labels.json"))
    assert str(raised.value).startswith("artifacts/labels.json")
    assert message in str(raised.value)


def small_reference() -> Reference:
    return Reference(
        model_version="2026.12.02-0123abcd",
        labels=("cs.CV", "hep-th"),
        batch_size=2,
        papers=(
            ("A title", "An abstract", "1995-08-30"),
            ("", "Another, with ü and 'quotes'", None),
            ("T", "x", "2026-01-02"),
        ),
        scores=np.array([[0.1, 0.9], [1 / 3, 2 / 3], [0.5, 4e-8]], dtype=np.float32),
        label_sets=(("hep-th",), ("hep-th", "cs.CV"), ("cs.CV",)),
    )


def test_reference_round_trips_scores_to_seven_decimals(tmp_path: Path) -> None:
    reference = small_reference()
    reference.save(tmp_path / "r.json.gz")
    loaded = Reference.load(tmp_path / "r.json.gz")
    np.testing.assert_allclose(loaded.scores, reference.scores, rtol=0, atol=5e-8 + 1e-9)
    assert loaded.scores[2, 1] == 0  # 4e-8 rounds to 0 at 7 decimals
    assert loaded.scores.dtype == np.float64
    assert (loaded.papers, loaded.label_sets) == (reference.papers, reference.label_sets)
    assert [list(rows) for rows in loaded.batches()] == [[0, 1], [2]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"no reference file .*: run python export/run.py"),
        (b"not gzip", r"is not gzipped JSON"),
        (gzip.compress(b'{"format_version": 1}'), r"is not a format 2 reference file"),
        (gzip.compress(b'{"format_version": 2, "labels": []}'), r"is malformed: KeyError"),
        (
            gzip.compress(
                json.dumps(
                    {
                        "format_version": 2,
                        "model_version": "v",
                        "labels": ["cs.CV"],
                        "batch_size": 1,
                        "papers": [{"title": "t", "abstract": "a", "date": 2019}],
                        "scores": [[0.5]],
                        "label_sets": [["cs.CV"]],
                    }
                ).encode()
            ),
            r"is malformed: TypeError: a paper's date must be a string or null",
        ),
    ],
)
def test_bad_reference_files_fail_in_one_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "r.json.gz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ReferenceError, match=message):
        Reference.load(path)


def test_reference_refuses_scores_that_do_not_fit_its_papers() -> None:
    good = small_reference()
    with pytest.raises(ReferenceError, match=r"shape \(2, 2\), expected \(3, 2\)"):
        Reference(**{**vars(good), "scores": good.scores[:2]})


@pytest.mark.parametrize(
    ("agreement", "int8_f1", "misses"),
    [
        (0.995, 0.698, []),  # both exactly at their limits: passes
        (0.9949, 0.698, ["label sets agree for 99.49% of papers < 99.5%"]),
        (0.999, 0.6979, ["served micro-F1 drops by 0.0021 > 0.002"]),
        (
            0.99,
            0.69,
            ["label sets agree for 99.00% of papers < 99.5%", "served micro-F1 drops by 0.0100"],
        ),
    ],
)
def test_the_quantization_gate_checks_agreement_and_the_micro_f1_drop(agreement, int8_f1, misses):
    from export.quantize import QuantizationReport, check_quantization

    report = QuantizationReport(
        papers=1000,
        lstm_max_abs_diff=0.01,
        label_set_agreement=agreement,
        served_micro_f1_fp32=0.7,
        served_micro_f1_int8=int8_f1,
    )
    if not misses:
        check_quantization(report)
        return
    with pytest.raises(ExportError) as failed:
        check_quantization(report)
    message = str(failed.value)
    assert message.startswith("quantization gate failed on 1000 test papers: ")
    assert all(miss in message for miss in misses) and message.count(";") == len(misses) - 1


@pytest.mark.parametrize(
    ("given", "written"),
    [
        (0.3199999928474426, 0.32),
        (0.32, 0.32),
        (np.float32(0.41), 0.41),
        (1e-08, 1e-08),
        (1.0, 1.0),
    ],
)
def test_thresholds_are_written_as_the_shortest_decimal_of_their_float32(given, written):
    assert float32_decimal(given) == written
    assert np.float32(written) == np.float32(given)  # the served value is unchanged
    document = Label("cs.CV", "Computer Vision", given, "cs", 3).to_dict()
    assert json.dumps(document["threshold"]) == json.dumps(written)
