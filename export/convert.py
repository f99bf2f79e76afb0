"""Convert the Keras LSTM to ONNX with tf2onnx.

tf2onnx's `from_keras` does not understand Keras 3 models, so the model's inference pass
(`train.lstm.inference`, which rolls token ids rather than embeddings for a leaner graph) is
wrapped in a `tf.function` with a `[batch, time]` int32 signature and that function is
converted. The parity gate compares the result with the Keras model itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
import tf2onnx

import train.lstm  # also registers the custom layers that load_model must rebuild
from export import ExportError, first_line
from export.canonical import canonical_form
from export.graph import INPUT_NAME, OUTPUT_NAME, Predict

DYNAMIC_DIMS = {INPUT_NAME: ("batch", "time"), OUTPUT_NAME: ("batch",)}


def load_keras_model(path: Path, n_labels: int, vocab_size: int) -> keras.Model:
    """Load the trained model and check that it fits the labels and the tokenizer."""
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file; report them all alike
        raise ExportError(f"cannot load Keras model {path}: {first_line(error)}") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(f"{path}: expected one input and one output")
    width = model.outputs[0].shape[-1]
    if width != n_labels:
        raise ExportError(f"{path} outputs {width} probabilities but labels.json lists {n_labels}")
    for layer in model.layers:
        if isinstance(layer, keras.layers.Embedding) and layer.input_dim < vocab_size:
            raise ExportError(
                f"{path}: embedding {layer.name} has {layer.input_dim} rows "
                f"but the tokenizer emits {vocab_size} ids"
            )
    return model


def serving_function(model: keras.Model) -> tf.types.experimental.PolymorphicFunction:
    """The inference pass of `model` on int32 `tokens [batch, time]`, output `probabilities`."""
    return tf.function(
        lambda tokens: {OUTPUT_NAME: train.lstm.inference(model, tokens)},
        input_signature=[tf.TensorSpec([None, None], tf.int32, name=INPUT_NAME)],
    )


def to_onnx(function: tf.types.experimental.PolymorphicFunction, opset: int) -> onnx.ModelProto:
    """Convert a serving function, in canonical form; the dict output names the ONNX output."""
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    logging.getLogger("tf2onnx.rewriter.rnn_utils").addFilter(_drop_expected_bi_rnn_notice)
    if opset not in tf2onnx.constants.OPSET_TO_IR_VERSION:
        newest = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
        raise ExportError(f"tf2onnx {tf2onnx.__version__} converts to opset {newest} at most")
    model, _ = tf2onnx.convert.from_function(
        function, input_signature=function.input_signature, opset=opset
    )
    _name_dynamic_dims(model.graph)
    return canonical_form(model)


def _drop_expected_bi_rnn_notice(record: logging.LogRecord) -> bool:
    """tf2onnx warns that the backward LSTM is not half of a bidirectional RNN; by design it
    is not (each direction reads its own copy of the ids), so the warning would only alarm."""
    return "isn't the part of bi-rnn" not in record.getMessage()


def _name_dynamic_dims(graph: onnx.GraphProto) -> None:
    """Replace tf2onnx's `unk__N` names of the dynamic dimensions by `batch` and `time`."""
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, DYNAMIC_DIMS.get(value.name, ()), strict=False):
            if not dim.HasField("dim_value"):
                dim.dim_param = name


def keras_predictor(model: keras.Model) -> Predict:
    """Probabilities `[batch, n_labels]` from the Keras model as trained, for the parity gate."""
    call = tf.function(
        lambda tokens: model(tokens, training=False),
        input_signature=[tf.TensorSpec([None, None], tf.int32)],
    )

    def predict(batch: np.ndarray) -> np.ndarray:
        return call(batch).numpy()

    return predict


def library_versions() -> dict[str, str]:
    """Versions of the conversion toolchain, recorded in the manifest."""
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
