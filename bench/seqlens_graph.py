"""The trained padding-invariant BiLSTM as a hand-built ONNX graph: same weights, same function.

The export converts `train.lstm.inference` with tf2onnx: two unidirectional LSTM ops (forward
over a post-padded copy of the ids, backward over the pre-padded ids), each running every
padding step of a batch, plus the index, mask and shape ops tf2onnx emits. The same function
is also one bidirectional ONNX `LSTM` with `sequence_lens` over the post-padded ids (its
reverse direction starts at each row's last word, and no direction runs past a row's length).
This module builds that graph from the Keras weights, for bench/alternatives.py to measure
against the export; it is not converted by tf2onnx, so it does not ship.
"""

from __future__ import annotations

import numpy as np

INPUT, OUTPUT = "tokens", "probabilities"


def onnx_gates(keras_weights: np.ndarray) -> np.ndarray:
    """Keras orders LSTM gates i, f, c, o along the last axis; ONNX orders them i, o, f, c."""
    i, f, c, o = np.split(keras_weights, 4, axis=-1)
    return np.concatenate([i, o, f, c], axis=-1)


def lstm_weights(keras_model) -> dict[str, np.ndarray]:
    """ONNX W, R, B ([2, 4H, E], [2, 4H, H], [2, 8H]) of the forward and backward LSTMs."""
    layer = keras_model.get_layer("bilstm")
    w, r, b = [], [], []
    for lstm in (layer.forward_lstm, layer.backward_lstm):
        kernel, recurrent, bias = lstm.get_weights()
        w.append(onnx_gates(kernel).T)
        r.append(onnx_gates(recurrent).T)
        b.append(np.concatenate([onnx_gates(bias), np.zeros_like(bias)]))
    return {"W": np.stack(w), "R": np.stack(r), "B": np.stack(b)}


def sequence_lens_graph(keras_model, opset: int = 17) -> bytes:
    """Serialized ONNX model: `tokens` int32 [batch, time] (pre-padded) → `probabilities`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    embedding = keras_model.get_layer("embedding").get_weights()[0]
    dense_w, dense_b = keras_model.get_layer("probabilities").get_weights()
    weights = lstm_weights(keras_model)
    hidden = weights["R"].shape[-1]
    constants = {
        "embedding": embedding, **weights, "dense_w": dense_w, "dense_b": dense_b,
        "pad_id": np.array(0, np.int32), "one": np.array(1, np.int64),
        "zero": np.array(0, np.int64), "axis_time": np.array([1], np.int64),
        "axis_feature": np.array([2], np.int64), "column": np.array([-1, 1], np.int64),
        "states_shape": np.array([0, 0, 2 * hidden], np.int64),
        "one_f": np.array(1.0, np.float32), "big": np.array(1e4, np.float32),
    }  # fmt: skip
    initializers = [
        numpy_helper.from_array(
            value.astype(np.float32) if value.dtype.kind == "f" else value, name
        )
        for name, value in constants.items()
    ]
    node = helper.make_node
    nodes = [
        # lengths [B] and, per row, index (t + padding) % T: the post-padded copy of the ids
        node("Equal", [INPUT, "pad_id"], ["is_pad"]),
        node("Not", ["is_pad"], ["is_word"]),
        node("Cast", ["is_word"], ["words"], to=TensorProto.INT64),
        node("ReduceSum", ["words", "axis_time"], ["lengths"], keepdims=0),
        node("Shape", [INPUT], ["shape"]),
        node("Gather", ["shape", "one"], ["steps"], axis=0),
        node("Range", ["zero", "steps", "one"], ["positions"]),
        node("Sub", ["steps", "lengths"], ["padding"]),
        node("Reshape", ["padding", "column"], ["padding_column"]),
        node("Add", ["positions", "padding_column"], ["shifted"]),
        node("Mod", ["shifted", "steps"], ["rolled_index"]),
        node("GatherElements", [INPUT, "rolled_index"], ["post_padded"], axis=1),
        # one bidirectional LSTM that stops at each row's length
        node("Gather", ["embedding", "post_padded"], ["embedded"], axis=0),
        node("Transpose", ["embedded"], ["time_major"], perm=[1, 0, 2]),
        node("Cast", ["lengths"], ["sequence_lens"], to=TensorProto.INT32),
        node(
            "LSTM",
            ["time_major", "W", "R", "B", "sequence_lens"],
            ["lstm_y"],
            hidden_size=hidden,
            direction="bidirectional",
        ),
        node("Transpose", ["lstm_y"], ["batch_major"], perm=[2, 0, 1, 3]),
        node("Reshape", ["batch_major", "states_shape"], ["states"]),
        # mean and max over the first `length` steps, then the dense layer
        node("Reshape", ["lengths", "column"], ["length_column"]),
        node("Less", ["positions", "length_column"], ["valid"]),
        node("Cast", ["valid"], ["valid_f"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["valid_f", "axis_feature"], ["mask"]),
        node("Mul", ["states", "mask"], ["masked"]),
        node("ReduceSum", ["masked", "axis_time"], ["total"], keepdims=0),
        node("ReduceSum", ["mask", "axis_time"], ["raw_count"], keepdims=0),
        node("Max", ["raw_count", "one_f"], ["count"]),
        node("Div", ["total", "count"], ["mean"]),
        node("Sub", ["mask", "one_f"], ["mask_minus_one"]),
        node("Mul", ["mask_minus_one", "big"], ["penalty"]),
        node("Add", ["states", "penalty"], ["penalised"]),
        node("ReduceMax", ["penalised"], ["maximum"], axes=[1], keepdims=0),
        node("Concat", ["mean", "maximum"], ["features"], axis=1),
        node("MatMul", ["features", "dense_w"], ["product"]),
        node("Add", ["product", "dense_b"], ["logits"]),
        node("Sigmoid", ["logits"], [OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes,
        "padding_invariant_bilstm_sequence_lens",
        [helper.make_tensor_value_info(INPUT, TensorProto.INT32, ["batch", "time"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", dense_b.shape[0]])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # onnxruntime 1.16 (the Lambda package) reads IR ≤ 9
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
