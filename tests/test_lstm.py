"""The BiLSTM: shape, padding-blind pooling, length batches and a short fit that learns."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from train.lstm import (  # noqa: E402
    LSTMConfig,
    build_model,
    inference,
    length_batches,
    padded_batch,
    predict,
    train,
    training_targets,
)
from train.thresholds import best_global_micro_f1  # noqa: E402

TINY = LSTMConfig(embedding_dim=8, units=4, epochs=3, batch_size=16, learning_rate=0.02)


def test_model_maps_token_batches_to_label_probabilities():
    model = build_model(vocab_size=50, n_labels=3, config=TINY)
    out = model(np.array([[0, 0, 5, 6], [7, 8, 9, 10]], dtype=np.int32)).numpy()
    assert out.shape == (2, 3) and np.all((out > 0) & (out < 1))
    assert not any(
        "mask" in str(layer.get_config()) and layer.get_config().get("mask_zero")
        for layer in model.layers
    )


def test_scores_do_not_depend_on_padding_or_batch_neighbours():
    model = build_model(vocab_size=50, n_labels=3, config=TINY)
    words = np.array([[5, 6, 7, 8]], dtype=np.int32)
    alone = model(words).numpy()
    padded = model(np.array([[0, 0, 0, 5, 6, 7, 8]], dtype=np.int32)).numpy()
    batch = model(
        np.array([[0, 0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15]], dtype=np.int32)
    ).numpy()
    np.testing.assert_allclose(padded, alone, atol=1e-6)
    np.testing.assert_allclose(batch[:1], alone, atol=1e-6)
    assert np.abs(model(np.array([[5, 6, 7, 9]], dtype=np.int32)).numpy() - alone).max() > 1e-6


def test_inference_pass_for_the_export_equals_the_model_on_padded_batches():
    model = build_model(vocab_size=50, n_labels=3, config=TINY)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 50, size=(6, 9)).astype(np.int32)
    for row, padding in enumerate([0, 1, 3, 5, 8, 0]):
        tokens[row, :padding] = 0
    expected = model(tokens, training=False).numpy()
    np.testing.assert_allclose(inference(model, tokens).numpy(), expected, atol=1e-6)
    # a different word changes the answer, so equality above is not vacuous
    tokens[0, -1] = 1 + tokens[0, -1] % 49
    assert np.abs(inference(model, tokens).numpy()[0] - expected[0]).max() > 1e-6


def test_model_survives_a_keras_save_and_load(tmp_path):
    model = build_model(vocab_size=50, n_labels=3, config=TINY)
    tokens = np.array([[0, 5, 6], [7, 8, 9]], dtype=np.int32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(tokens).numpy(), model(tokens).numpy(), atol=1e-6)


def test_length_batches_cover_every_index_once_and_group_similar_lengths():
    lengths = [5, 100, 6, 98, 7, 99]
    batches = length_batches(lengths, 3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    assert [sorted(lengths[i] for i in b) for b in batches] == [[5, 6, 7], [98, 99, 100]]
    shuffled = length_batches(lengths, 2, np.random.default_rng(0))
    assert sorted(np.concatenate(shuffled).tolist()) == list(range(6))


def test_padded_batch_pre_pads_and_never_returns_zero_width():
    sequences = [[4, 5, 6], [7], []]
    np.testing.assert_array_equal(padded_batch(sequences, np.array([0, 1])), [[4, 5, 6], [0, 0, 7]])
    assert padded_batch(sequences, np.array([2])).shape == (1, 1)


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_short_training_learns_a_token_rule_and_predict_keeps_order(output):
    rng = np.random.default_rng(0)
    sequences, targets = [], np.zeros((400, 2), dtype=np.float32)
    for i in range(400):
        words = [
            int(t)
            for t in rng.choice([t for t in range(2, 30) if t not in (9, 17)], rng.integers(3, 12))
        ]
        words.insert(int(rng.integers(0, len(words))), 9 if i % 2 else 17)
        sequences.append(words)
        targets[i, i % 2] = 1
    config = LSTMConfig(
        embedding_dim=8, units=8, epochs=6, batch_size=16, learning_rate=0.02, output=output
    )
    model, history = train(
        sequences[:320],
        targets[:320],
        sequences[320:],
        targets[320:],
        30,
        config,
        best_global_micro_f1,
        verbose=0,
    )
    assert history["loss"][-1] < history["loss"][0]
    probabilities = predict(model, sequences[320:])
    if output == "softmax":
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert best_global_micro_f1(targets[320:], probabilities) > 0.9
    single = model(np.array([sequences[330]], dtype=np.int32)).numpy()[0]
    np.testing.assert_allclose(predict(model, [sequences[330]])[0], single, atol=1e-6)
    np.testing.assert_allclose(probabilities[10], single, atol=1e-5)  # padded inside a batch


def test_softmax_targets_share_each_papers_mass_and_refuse_unlabelled_papers():
    targets = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
    np.testing.assert_allclose(training_targets(targets, "softmax"), [[0.5, 0, 0.5], [0, 1, 0]])
    np.testing.assert_array_equal(training_targets(targets, "sigmoid"), targets)
    with pytest.raises(ValueError, match="at least one label"):
        training_targets(np.array([[1, 0], [0, 0]], dtype=np.float32), "softmax")
