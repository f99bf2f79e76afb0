"""What a servable ONNX graph looks like (docs/model_format.md), and how to run one.

The Lambda function runs the graph with onnxruntime alone, so the export refuses anything it
would not serve well: a recurrence unrolled into `Loop`/`Scan` instead of native `LSTM` ops,
fixed batch or sequence sizes, or inputs and outputs under other names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from export import ExportError, first_line

INPUT_NAME = "tokens"
OUTPUT_NAME = "probabilities"
MIN_OPSET = 17
RECURRENT_OP = "LSTM"
FORBIDDEN_OPS = ("Loop", "Scan")

Predict = Callable[[np.ndarray], np.ndarray]


def check_graph(model: onnx.ModelProto, n_labels: int) -> None:
    """Raise `ExportError` unless `model` passes onnx.checker and matches the serving contract."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(
            f"onnx.checker rejected the converted model: {first_line(error)}"
        ) from None
    opset = opset_version(model)
    if opset < MIN_OPSET:
        raise ExportError(f"ONNX opset is {opset}, the model directory needs >= {MIN_OPSET}")
    _check_io(model.graph, n_labels)
    op_types = {node.op_type for node in all_nodes(model.graph)}
    forbidden = sorted(op_types.intersection(FORBIDDEN_OPS))
    if forbidden:
        raise ExportError(
            f"ONNX graph holds {', '.join(forbidden)} ops instead of native {RECURRENT_OP} ops "
            "(does the model mask padding, e.g. mask_zero=True?)"
        )
    if RECURRENT_OP not in op_types:
        raise ExportError(f"ONNX graph holds no native {RECURRENT_OP} op")


def opset_version(model: onnx.ModelProto) -> int:
    """Version of the default ONNX operator set the model imports (0 when none)."""
    versions = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    return max(versions, default=0)


def all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and every subgraph inside it (If branches, Loop and Scan bodies), outer first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from all_graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from all_graphs(subgraph)


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of `graph`, including those inside subgraphs."""
    for part in all_graphs(graph):
        yield from part.node


def all_initializers(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every initializer of `graph` and of its subgraphs, which nodes inside them may use."""
    for part in all_graphs(graph):
        yield from part.initializer


def _check_io(graph: onnx.GraphProto, n_labels: int) -> None:
    """One int32 input `[batch, time]` and one float32 output `[batch, n_labels]`, batch dynamic."""
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    input_names, output_names = [v.name for v in inputs], [v.name for v in graph.output]
    if input_names != [INPUT_NAME] or output_names != [OUTPUT_NAME]:
        raise ExportError(
            f"ONNX graph maps {input_names} to {output_names}, "
            f"expected ['{INPUT_NAME}'] to ['{OUTPUT_NAME}']"
        )
    _check_tensor(inputs[0], onnx.TensorProto.INT32, [None, None])
    _check_tensor(graph.output[0], onnx.TensorProto.FLOAT, [None, n_labels])


def _check_tensor(value: onnx.ValueInfoProto, dtype: int, shape: list[int | None]) -> None:
    """Check element type and shape; `None` in `shape` marks a dimension that must be dynamic."""
    tensor = value.type.tensor_type
    if tensor.elem_type != dtype:
        actual, expected = (onnx.TensorProto.DataType.Name(t) for t in (tensor.elem_type, dtype))
        raise ExportError(f"ONNX {value.name} has type {actual}, expected {expected}")
    dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
    if dims != shape:
        raise ExportError(f"ONNX {value.name} has shape {dims}, expected {shape} (None = dynamic)")


def onnx_session(model: bytes | Path) -> onnxruntime.InferenceSession:
    """A CPU inference session, from serialized bytes or a file, as the Lambda function opens it."""
    source = str(model) if isinstance(model, Path) else model
    return onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])


def onnx_predictor(session: onnxruntime.InferenceSession) -> Predict:
    """Probabilities `[batch, n_labels]` for a pre-padded int32 batch of token ids."""

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    return predict
