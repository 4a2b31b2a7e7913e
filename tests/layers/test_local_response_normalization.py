import keras
import numpy as np
import pytest
from keras.src.testing import TestCase

from keras_twostream.layers.local_response_normalization import LocalResponseNormalization


def lrn_reference(a, size, alpha, beta, k):
    """AlexNet Sect. 3.3, written as the paper's sum over clipped channel windows."""
    a = np.asarray(a, "float64")
    channels = a.shape[-1]
    out = np.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - size // 2), min(channels - 1, i + size // 2)
        energy = np.sum(a[..., lo : hi + 1] ** 2, axis=-1)
        out[..., i] = a[..., i] / (k + alpha * energy) ** beta
    return out


class LocalResponseNormalizationTest(TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            LocalResponseNormalization,
            init_kwargs={"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},
            input_shape=(2, 6, 6, 8),
            expected_output_shape=(2, 6, 6, 8),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )


@pytest.mark.parametrize(
    "size, alpha, beta, k",
    [(5, 1e-4, 0.75, 2.0), (3, 0.5, 1.0, 1.0), (1, 0.2, 0.5, 1.5), (7, 0.05, 0.75, 2.0)],
)
def test_matches_alexnet_formula(size, alpha, beta, k):
    rng = np.random.default_rng(0)
    # Large activations so that alpha * energy matters even for alpha=1e-4.
    x = rng.normal(scale=40.0, size=(2, 4, 3, 11)).astype("float32")
    layer = LocalResponseNormalization(size=size, alpha=alpha, beta=beta, k=k)
    got = keras.ops.convert_to_numpy(layer(x))
    expected = lrn_reference(x, size, alpha, beta, k)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The normaliser is not a no-op at these scales (the test can fail).
    assert np.max(np.abs(expected - x / k**beta)) > 1e-2


def test_window_is_clipped_at_channel_edges():
    # One channel lit: only its neighbours within size // 2 feel its energy.
    x = np.zeros((1, 8), "float32")
    x[0, 0] = 10.0
    x[0, 1:] = 1.0
    layer = LocalResponseNormalization(size=5, alpha=1.0, beta=1.0, k=1.0)
    got = keras.ops.convert_to_numpy(layer(x))[0]
    # Channel 0 sees channels 0..2, channel 2 sees 0..4, channel 3 sees 1..5.
    assert got[0] == pytest.approx(10.0 / (1 + 100 + 1 + 1))
    assert got[2] == pytest.approx(1.0 / (1 + 100 + 1 + 1 + 1 + 1))
    assert got[3] == pytest.approx(1.0 / (1 + 5))


def test_matches_tensorflow_lrn():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.nn.local_response_normalization is the TensorFlow peer")
    import tensorflow as tf

    x = np.random.default_rng(1).normal(scale=30.0, size=(2, 5, 5, 96)).astype("float32")
    got = keras.ops.convert_to_numpy(LocalResponseNormalization()(x))
    expected = tf.nn.local_response_normalization(
        x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75
    ).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_float16_inputs_do_not_overflow():
    x = np.full((1, 2, 2, 5), 300.0, "float16")  # 300**2 overflows float16 sums
    layer = LocalResponseNormalization(dtype="float16")
    got = keras.ops.convert_to_numpy(layer(x)).astype("float64")
    expected = lrn_reference(x, 5, 1e-4, 0.75, 2.0)
    np.testing.assert_allclose(got, expected, rtol=2e-3)


def test_gradient_matches_finite_differences():
    # JAX computes in float32 unless x64 is enabled; TensorFlow checks in float64.
    dtype = "float64" if keras.backend.backend() == "tensorflow" else "float32"
    x = np.random.default_rng(2).normal(scale=20.0, size=(1, 1, 1, 6)).astype(dtype)
    layer = LocalResponseNormalization(size=3, alpha=1e-3, beta=0.75, k=2.0, dtype=dtype)
    weights = np.arange(1, 7, dtype="float64")

    def objective(values):
        return float(np.sum(lrn_reference(values.astype("float64"), 3, 1e-3, 0.75, 2.0) * weights))

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            out = tf.reduce_sum(layer(tensor) * weights)
        grad = tape.gradient(out, tensor).numpy()
    else:
        import jax

        grad = np.asarray(jax.grad(lambda t: (layer(t) * weights).sum())(x))
    eps = 1e-4
    x = x.astype("float64")
    numeric = np.zeros_like(x)
    for i in range(6):
        step = np.zeros_like(x)
        step[..., i] = eps
        numeric[..., i] = (objective(x + step) - objective(x - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 4}, "size"),
        ({"size": 0}, "size"),
        ({"size": 2.0}, "size"),
        ({"alpha": -1.0}, "alpha"),
        ({"beta": -0.5}, "beta"),
        ({"k": 0.0}, "k > 0"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LocalResponseNormalization(**kwargs)


def test_rejects_unknown_channels():
    layer = LocalResponseNormalization()
    with pytest.raises(ValueError, match="known number of channels"):
        layer.build((None, 4, 4, None))


def test_config_round_trip():
    layer = LocalResponseNormalization(size=3, alpha=0.1, beta=0.5, k=1.5, name="norm")
    clone = LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.size, clone.alpha, clone.beta, clone.k, clone.name) == (3, 0.1, 0.5, 1.5, "norm")
