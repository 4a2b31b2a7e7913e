"""Tests of the semantic autoencoder and its frozen encoder (Eq. 8 of the MPA+SAL paper)."""

import keras
import numpy as np
import pytest

from keras_twostream.models.semantic_autoencoder import SemanticAutoencoder, train_semantic_encoder

NUM_CLASSES, SEMANTIC_DIM = 7, 6


@pytest.fixture(scope="module")
def trained():
    return train_semantic_encoder(
        NUM_CLASSES, SEMANTIC_DIM, epochs=200, seed=3, return_autoencoder=True
    )


@pytest.fixture
def encoder(trained):
    return trained[0]


def test_structure_is_three_fully_connected_layers():
    autoencoder = SemanticAutoencoder(NUM_CLASSES, SEMANTIC_DIM, hidden_dim=5, seed=0)
    dense = [w for w in autoencoder.weights if "kernel" in w.path]
    assert [tuple(w.shape) for w in dense] == [(7, 5), (5, 6), (6, 7)]
    labels = np.eye(NUM_CLASSES, dtype="float32")
    np.testing.assert_allclose(np.asarray(autoencoder(labels)).sum(-1), 1.0, atol=1e-6)
    # The decoder's input is the encoder's output: S = encoder(y) (Eq. 8).
    k3, b3 = autoencoder.get_layer("fc3").get_weights()
    logits = np.asarray(autoencoder.encoder(labels)) @ k3 + b3
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(
        np.asarray(autoencoder(labels)), expected / expected.sum(-1, keepdims=True), atol=1e-6
    )


def test_reconstructs_every_label(trained):
    encoder, autoencoder = trained
    labels = np.eye(NUM_CLASSES, dtype="float32")
    reconstructed = np.asarray(autoencoder(labels))
    np.testing.assert_array_equal(reconstructed.argmax(-1), np.arange(NUM_CLASSES))
    assert reconstructed.max(-1).min() > 0.5  # confidently, not by a hair
    assert autoencoder.encoder is encoder
    semantics = np.asarray(encoder(labels))
    assert semantics.shape == (NUM_CLASSES, SEMANTIC_DIM)
    assert np.all(np.abs(semantics) < 1.0)  # tanh
    assert not encoder.trainable and not encoder.trainable_weights
    # Distinct labels get distinct semantics.
    distances = np.linalg.norm(semantics[:, None] - semantics[None], axis=-1)
    assert distances[~np.eye(NUM_CLASSES, dtype=bool)].min() > 1e-2


def test_training_reconstructs_and_is_deterministic():
    a = train_semantic_encoder(5, 4, epochs=150, seed=1)
    b = train_semantic_encoder(5, 4, epochs=150, seed=1)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_too_small_code_raises():
    with pytest.raises(ValueError, match="semantic_dim"):
        train_semantic_encoder(10, 1, epochs=1, seed=0)


def test_encoder_does_not_move_inside_fit(encoder):
    """The frozen encoder's weights stay bit for bit while a model around it trains."""
    before = [np.array(w) for w in encoder.get_weights()]
    labels = keras.Input((NUM_CLASSES,))
    head = keras.layers.Dense(3, name="head")
    model = keras.Model(labels, head(encoder(labels)))
    model.compile(keras.optimizers.SGD(0.5, momentum=0.9), "mse")
    head_before = [np.array(w) for w in head.get_weights()]
    x = np.eye(NUM_CLASSES, dtype="float32")
    model.fit(x, np.random.RandomState(0).randn(NUM_CLASSES, 3), epochs=3, verbose=0)
    for w0, w1 in zip(before, encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)
    assert any(
        np.abs(w0 - w1).max() > 0 for w0, w1 in zip(head_before, head.get_weights(), strict=True)
    )


def test_keras_file_round_trip(tmp_path, encoder):
    autoencoder = SemanticAutoencoder(4, 3, seed=2, name="ae")
    x = np.eye(4, dtype="float32")
    path = tmp_path / "ae.keras"
    autoencoder.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, SemanticAutoencoder) and reloaded.semantic_dim == 3
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(autoencoder(x)), atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(reloaded.encoder(x)), np.asarray(autoencoder.encoder(x)), atol=1e-6
    )
    # The frozen encoder inside another model stays frozen after a round trip.
    labels = keras.Input((NUM_CLASSES,))
    model = keras.Model(labels, keras.layers.Dense(2)(encoder(labels)))
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert len(reloaded.trainable_weights) == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0, "semantic_dim": 4}, "num_classes"),
        ({"num_classes": 4, "semantic_dim": 2.5}, "semantic_dim"),
        ({"num_classes": 4, "semantic_dim": 4, "hidden_dim": -1}, "hidden_dim"),
        ({"num_classes": 4, "semantic_dim": 4, "seed": -1}, "seed"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SemanticAutoencoder(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match", [({"epochs": 0}, "epochs"), ({"learning_rate": 0}, "learning_rate")]
)
def test_invalid_training_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_semantic_encoder(4, 4, **kwargs)
