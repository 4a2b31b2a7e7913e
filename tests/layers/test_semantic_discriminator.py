"""Tests of SemanticDiscriminator (D of Eqs. 9-11 of the MPA+SAL paper) against a NumPy reference."""

import keras
import numpy as np
import pytest
from keras.src.testing import TestCase

from keras_twostream.layers.semantic_discriminator import SemanticDiscriminator


def numpy_discriminator(layer, x):
    x = x.astype(np.float64)
    for dense in layer.hidden_layers:
        k, b = (np.asarray(w, np.float64) for w in dense.get_weights())
        z = x @ k + b
        x = np.where(z > 0, z, layer.negative_slope * z)
    k, b = (np.asarray(w, np.float64) for w in layer.logit.get_weights())
    logit = x @ k + b
    return 1.0 / (1.0 + np.exp(-logit)) if layer.output_probability else logit


def vectors(batch=4, dim=6, seed=0):
    return np.random.RandomState(seed).randn(batch, dim).astype("float32")


@pytest.mark.parametrize("hidden_units", [(8, 5), (), (3,)])
@pytest.mark.parametrize("output_probability", [False, True])
def test_matches_numpy_reference(hidden_units, output_probability):
    x = vectors()
    layer = SemanticDiscriminator(hidden_units=hidden_units, output_probability=output_probability)
    layer(x)
    rng = np.random.RandomState(0)
    layer.set_weights([rng.randn(*w.shape).astype("float32") for w in layer.get_weights()])
    out = np.asarray(layer(x))
    ref = numpy_discriminator(layer, x)
    assert out.shape == (4, 1)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert np.ptp(ref) > 1e-2


def test_probability_is_sigmoid_of_logit():
    x = vectors()
    logits = SemanticDiscriminator(hidden_units=(8,))
    probs = SemanticDiscriminator(hidden_units=(8,), output_probability=True)
    logits(x), probs(x)
    probs.set_weights(logits.get_weights())
    np.testing.assert_allclose(
        np.asarray(probs(x)), 1 / (1 + np.exp(-np.asarray(logits(x), np.float64))), atol=1e-6
    )


def test_can_learn_to_separate_real_from_fake():
    """A few Adam steps on Eq. (9)'s D objective separate two shifted Gaussians."""
    rng = np.random.RandomState(0)
    real, fake = rng.randn(64, 4) + 2.0, rng.randn(64, 4) - 2.0
    x = np.concatenate([real, fake]).astype("float32")
    y = np.concatenate([np.ones((64, 1)), np.zeros((64, 1))]).astype("float32")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, SemanticDiscriminator(hidden_units=(8,))(inputs))
    model.compile(keras.optimizers.Adam(0.05), keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(
        np.tile(x, (30, 1)), np.tile(y, (30, 1)), batch_size=128, epochs=1, verbose=0
    )  # 30 steps
    accuracy = np.mean((np.asarray(model(x)) > 0) == (y > 0.5))
    assert accuracy > 0.95


def test_dropout_only_in_training():
    x = vectors(batch=64, dim=16)
    layer = SemanticDiscriminator(hidden_units=(32,), dropout=0.5)
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(layer(x, training=False)))
    assert np.abs(np.asarray(layer(x, training=True)) - np.asarray(layer(x))).max() > 1e-4


def test_mixed_precision_output_is_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        out = SemanticDiscriminator(hidden_units=(8,))(vectors())
        assert out.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


class LayerTest(TestCase):
    def test_run_layer_test(self):
        self.run_layer_test(
            SemanticDiscriminator,
            init_kwargs={
                "hidden_units": [8, 4],
                "negative_slope": 0.1,
                "dropout": 0.1,
                "output_probability": False,
            },
            input_shape=(3, 6),
            expected_output_shape=(3, 1),
            expected_num_trainable_weights=6,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )


def test_keras_file_round_trip(tmp_path):
    x = vectors()
    inputs = keras.Input((6,))
    model = keras.Model(
        inputs, SemanticDiscriminator(hidden_units=(8,), negative_slope=0.3)(inputs)
    )
    path = tmp_path / "d.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), reloaded.predict(x, verbose=0), atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden_units": 8}, "hidden_units"),
        ({"hidden_units": (8, 0)}, "hidden_units"),
        ({"negative_slope": 1.0}, "negative_slope"),
        ({"dropout": -0.1}, "dropout"),
        ({"output_probability": 1}, "output_probability"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SemanticDiscriminator(**kwargs)


def test_invalid_input_shape():
    with pytest.raises(ValueError, match=r"\(batch, semantic_dim\)"):
        SemanticDiscriminator()(np.zeros((2, 3, 4), "float32"))
