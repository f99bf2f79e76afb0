"""int8 LSTM and the gates on the served system: what ships must answer as training measured.

`quantize` applies onnxruntime's dynamic quantization to the fp32 graph: the LSTM weights
become int8 per channel (`DynamicQuantizeLSTM`), in 7 bits so that every CPU computes the same
integers (see `MAX_WEIGHT`), and the embedding table is stored in float16 (see
`tables_in_float16`). The quantization gate combines each LSTM's scores with the
shipped baseline's and the combiner as the function does, so it compares int8 with fp32 *as
served*, thresholds included.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper

from export import ExportError
from export.canonical import canonical_form
from export.graph import FORBIDDEN_OPS, Predict, all_graphs, all_initializers, all_nodes
from export.parity import BATCH_SIZE
from lambda_handler.combiner import Combiner
from lambda_handler.text import pad
from train.thresholds import micro_f1, predict_sets

# Measured 2026-12-02 on the 165k-paper model's 16,588 test papers (served label sets equal to
# fp32's): LSTM per channel 99.67%; LSTM + MatMul + Gather per channel 99.49%; LSTM + MatMul
# per tensor 99.11%. The output layer stays fp32; the embedding table is stored in float16.
QUANTIZED_OPS = ("LSTM",)
PER_CHANNEL = True
QUANTIZED_LSTM_OP = "DynamicQuantizeLSTM"
# x86 CPUs without VNNI (AVX2 only, e.g. AMD Zen 3) multiply uint8 activations by int8 weights
# with vpmaddubsw, which saturates a pair's sum at 32,767; 255 * 127 * 2 overflows it, so 8-bit
# weights answered differently there (max |Δ| 0.028 on the served scores, measured 2026-12-03)
# than on the machine that exported them (its CPU features were not recorded). 7-bit weights
# (onnxruntime's `reduce_range`) keep 255 * 64 * 2 below it on every CPU.
MAX_WEIGHT = 64
# Tables smaller than this stay float32: only the embedding is worth a Cast per lookup.
MIN_FLOAT16_TABLE = 65_536
MIN_LABEL_SET_AGREEMENT = 0.995
MAX_MICRO_F1_DROP = 0.002


def quantize(fp32: bytes) -> bytes:
    """The served graph of `fp32`, in canonical form: int8 LSTM weights and a float16
    embedding table; refused unless its recurrence is `DynamicQuantizeLSTM`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch, "fp32.onnx"), Path(scratch, "int8.onnx")
        source.write_bytes(fp32)
        root.setLevel(logging.ERROR)  # its root-logger advice ("run pre-processing") is noise
        try:
            quantize_dynamic(
                source,
                target,
                op_types_to_quantize=list(QUANTIZED_OPS),
                weight_type=QuantType.QInt8,
                per_channel=PER_CHANNEL,
                reduce_range=True,
            )
        finally:
            root.setLevel(level)
        model = onnx.load(target)
    graph = model.graph
    op_types = {node.op_type for node in all_nodes(graph)}
    if QUANTIZED_LSTM_OP not in op_types or op_types.intersection(FORBIDDEN_OPS):
        raise ExportError(
            f"the quantized graph has no {QUANTIZED_LSTM_OP} op (or has a Loop/Scan): "
            f"{', '.join(sorted(op_types))}"
        )
    check_weight_range(graph)
    tables_in_float16(graph)
    return canonical_form(model).SerializeToString()


def tables_in_float16(graph: onnx.GraphProto) -> list[str]:
    """Store each large float32 table that only `Gather` nodes of `graph` read (the embedding)
    in float16, with a Cast back to float32 after each lookup; return the tables' names.

    The shipped 40,000-word table drops from 20.5 to 10.2 MB and the function's cold start by
    about 30 ms (model read, sha256 and session creation; 2026-12-07), while the served label
    sets stay those of float32 for 99.94% of test papers. int8 rows with a scale each were
    smaller still but cost a paper about 20 µs more in two extra ops per lookup. A table with
    values beyond float16's range, read by other ops or inside a subgraph, or whose lookups'
    new names are taken, stays float32. (Values below float16's precision are rounded: the
    quantization gate judges the result.)
    """
    read_inside_subgraphs = {
        name for part in list(all_graphs(graph))[1:] for node in part.node for name in node.input
    }
    overridable = {value.name for value in [*graph.input, *graph.output]}
    taken = {
        name for node in all_nodes(graph) for name in (node.name, *node.input, *node.output)
    } | {tensor.name for tensor in all_initializers(graph)}
    halved = []
    for table in graph.initializer:
        readers = [node for node in graph.node if table.name in node.input]
        if (
            table.data_type != onnx.TensorProto.FLOAT
            or np.prod(table.dims) < MIN_FLOAT16_TABLE
            or table.name in overridable | read_inside_subgraphs
            or not readers
            or any(node.op_type != "Gather" or node.input[0] != table.name for node in readers)
            or any(name in taken for node in readers for name in _cast_names(node.output[0]))
        ):
            continue
        values = onnx.numpy_helper.to_array(table)
        if not np.all(np.abs(values) <= np.finfo(np.float16).max):  # NaN fails too
            continue
        table.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float16), table.name))
        for output in [node.output[0] for node in readers]:
            _cast_to_float32(graph, output)
        halved.append(table.name)
    return halved


def _cast_names(output: str) -> tuple[str, str]:
    """The float16 lookup's new output name and its Cast's node name."""
    return f"{output}/float16", f"{output}/to_float32"


def _cast_to_float32(graph: onnx.GraphProto, output: str) -> None:
    """Rename the node output `output` and insert a Cast right after it, under the old name."""
    position = next(i for i, node in enumerate(graph.node) if output in node.output)
    node = graph.node[position]
    renamed, cast_name = _cast_names(output)
    node.output[list(node.output).index(output)] = renamed
    cast = onnx.helper.make_node(
        "Cast", [renamed], [output], name=cast_name, to=onnx.TensorProto.FLOAT
    )
    graph.node.insert(position + 1, cast)


def check_weight_range(graph: onnx.GraphProto) -> None:
    """Refuse int8 LSTM weights beyond ±`MAX_WEIGHT`, which some CPUs would saturate, and
    weights that are not stored constants, whose range cannot be checked."""
    initializers = {tensor.name: tensor for tensor in all_initializers(graph)}
    for node in all_nodes(graph):
        if node.op_type != QUANTIZED_LSTM_OP:
            continue
        for name in node.input[1:3]:  # the input and the recurrent weights
            if name not in initializers:
                raise ExportError(
                    f"{node.name}: int8 weights {name!r} are not a stored initializer, so "
                    "their range cannot be checked"
                )
            weights = onnx.numpy_helper.to_array(initializers[name]).astype(np.int16)
            largest = int(np.abs(weights).max(initial=0))
            if largest > MAX_WEIGHT:
                raise ExportError(
                    f"{node.name}: int8 weights {name} reach {largest} > "
                    f"{MAX_WEIGHT}: CPUs without VNNI would saturate them and answer differently"
                )


def scores_in_order(
    predict: Predict, sequences: Sequence[Sequence[int]], batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """`predict` over length-sorted, pre-padded batches, returned in input order."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: np.ndarray | None = None
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = np.asarray(pad([sequences[i] for i in rows]), dtype=np.int32)
        scores = predict(batch)
        if out is None:
            out = np.zeros((len(sequences), scores.shape[1]), dtype=np.float32)
        out[rows] = scores
    assert out is not None
    return out


@dataclass(frozen=True)
class QuantizationReport:
    """int8 against fp32 ONNX, both served with the same baseline, combiner and thresholds."""

    papers: int
    lstm_max_abs_diff: float
    label_set_agreement: float
    served_micro_f1_fp32: float
    served_micro_f1_int8: float

    @property
    def micro_f1_drop(self) -> float:
        return self.served_micro_f1_fp32 - self.served_micro_f1_int8

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "micro_f1_drop": self.micro_f1_drop}


def measure_quantization(
    fp32: np.ndarray,
    int8: np.ndarray,
    baseline_scores: np.ndarray,
    combiner: Combiner,
    thresholds: np.ndarray,
    targets: np.ndarray,
    offsets: np.ndarray | None = None,
) -> QuantizationReport:
    """Compare the served label sets with the fp32 and the int8 LSTM on the same papers (with
    their year `offsets`, when the model has a year prior)."""
    sets = [
        predict_sets(combiner.combine(lstm, baseline_scores, offsets), thresholds)
        for lstm in (fp32, int8)
    ]
    return QuantizationReport(
        papers=len(targets),
        lstm_max_abs_diff=float(np.max(np.abs(fp32 - int8))),
        label_set_agreement=float(np.mean(np.all(sets[0] == sets[1], axis=1))),
        served_micro_f1_fp32=micro_f1(targets, sets[0]),
        served_micro_f1_int8=micro_f1(targets, sets[1]),
    )


def check_quantization(report: QuantizationReport) -> None:
    """Raise `ExportError` naming every missed target."""
    misses = []
    if report.label_set_agreement < MIN_LABEL_SET_AGREEMENT:
        misses.append(
            f"label sets agree for {report.label_set_agreement:.2%} of papers "
            f"< {MIN_LABEL_SET_AGREEMENT:.1%}"
        )
    # Rounded, so that a drop of exactly the limit passes whatever the subtraction's float error
    # (0.7 - 0.698 is 0.0020000000000000018); NaN still fails.
    if not round(report.micro_f1_drop, 9) <= MAX_MICRO_F1_DROP:
        misses.append(f"served micro-F1 drops by {report.micro_f1_drop:.4f} > {MAX_MICRO_F1_DROP}")
    if misses:
        raise ExportError(
            f"quantization gate failed on {report.papers} test papers: {'; '.join(misses)} "
            "(export with --precision fp32 to ship the unquantized LSTM)"
        )


@dataclass(frozen=True)
class EndToEndReport:
    """The staged model directory, run by the function's own Classifier, against training."""

    papers: int
    papers_without_content_words: int
    label_set_agreement: float
    max_abs_diff: float
    micro_f1: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check_end_to_end(report: EndToEndReport) -> None:
    if report.label_set_agreement < MIN_LABEL_SET_AGREEMENT:
        raise ExportError(
            f"end-to-end gate failed: the staged model reproduces training's label sets for "
            f"{report.label_set_agreement:.2%} of {report.papers} test papers "
            f"< {MIN_LABEL_SET_AGREEMENT:.1%}"
        )
