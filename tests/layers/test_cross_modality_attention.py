"""CrossModalityAttention (Chi et al. 2019, Eqs. 1-5) against a NumPy reference on fixed weights."""

import keras
import numpy as np
import pytest
from keras.src.testing import TestCase

from keras_twostream.layers.cross_modality_attention import CrossModalityAttention

BACKEND = keras.backend.backend()


# --- NumPy reference ------------------------------------------------------------------------------
def _max_pool_same(y, pool):
    """Spatial max-pool, window = stride = pool, TF/XLA "same" padding (extra pad at the end)."""
    y = np.asarray(y, np.float64)
    *lead, h, w, c = y.shape
    out_h, out_w = -(-h // pool), -(-w // pool)
    pad_h, pad_w = (out_h - 1) * pool + pool - h, (out_w - 1) * pool + pool - w
    padded = np.pad(
        y,
        [(0, 0)] * len(lead)
        + [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)],
        constant_values=-np.inf,
    )
    windows = padded.reshape(*lead, out_h, pool, out_w, pool, c)
    return windows.max(axis=(-4, -2))


def _reference(layer, x, y=None, training=False):
    """Eqs. (1)-(5) in float64 from the layer's weights; returns (output, attention)."""
    y = x if y is None else y
    w = {
        v.path.split("/", 1)[1]: np.asarray(keras.ops.convert_to_numpy(v), np.float64)
        for v in layer.weights
    }
    x64 = np.asarray(x, np.float64)
    if layer.pool_size is not None:
        y = _max_pool_same(y, layer.pool_size)
    y64 = np.asarray(y, np.float64)
    batch, d = x64.shape[0], w["query/kernel"].shape[-1]

    def dense(t, name):  # a 1x1 convolution
        kernel = w[f"{name}/kernel"]
        return t @ kernel.reshape(-1, kernel.shape[-1]) + w.get(f"{name}/bias", 0.0)

    q = dense(x64, "query").reshape(batch, -1, d)
    k = dense(y64, "key").reshape(batch, -1, d)
    v = dense(y64, "value").reshape(batch, -1, d)
    logits = q @ k.transpose(0, 2, 1) / np.sqrt(d)
    attention = np.exp(logits - logits.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    z = (attention @ v).reshape(x64.shape[:-1] + (d,))
    o = dense(z, "output")
    axes = tuple(range(o.ndim - 1))
    mean, var = (
        (o.mean(axes), o.var(axes))
        if training
        else (w["output_norm/moving_mean"], w["output_norm/moving_variance"])
    )
    o = w["output_norm/gamma"] * (o - mean) / np.sqrt(var + layer.epsilon) + w["output_norm/beta"]
    return o + x64, attention


def _randomize(layer, seed=0):
    """Non-zero normalisation scale and random moving statistics, so every term of Eq. (5) counts."""
    rng = np.random.RandomState(seed)
    for v in layer.weights:
        shape = tuple(v.shape)
        if v.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif v.path.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        v.assign(value.astype("float32"))


def _rand(*shape, seed=0):
    return np.random.RandomState(seed).normal(size=shape).astype("float32")


# --- Keras layer contract -------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*shuffle=True.*:UserWarning")
class CrossModalityAttentionLayerTest(TestCase):
    def test_layer_2d_cross_modality(self):
        self.run_layer_test(
            CrossModalityAttention,
            init_kwargs={"inter_channels": 4},
            input_shape={"x_shape": (2, 6, 6, 8), "y_shape": (2, 5, 4, 6)},
            expected_output_shape=(2, 6, 6, 8),
            expected_num_trainable_weights=9,  # q, k, v (kernel+bias), W_out, gamma, beta
            expected_num_non_trainable_weights=2,  # moving mean and variance
            supports_masking=False,
            run_training_check=False,  # its fit step passes one input; fit is tested below
        )

    def test_layer_3d_non_local(self):
        self.run_layer_test(
            CrossModalityAttention,
            init_kwargs={"pool_size": None, "use_bias": False},
            input_shape=(2, 3, 4, 4, 6),
            expected_output_shape=(2, 3, 4, 4, 6),
            expected_num_trainable_weights=6,
            expected_num_non_trainable_weights=2,
            supports_masking=False,
            run_mixed_precision_check=False,  # checked on the 2-D block above
        )


# --- Exact properties -----------------------------------------------------------------------------
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(
    "x_shape, y_shape",
    [((2, 7, 5, 8), (2, 9, 6, 6)), ((2, 3, 5, 4, 8), (2, 2, 6, 6, 10))],
    ids=["2d", "3d"],
)
def test_fresh_block_returns_x_exactly(x_shape, y_shape, training):
    """Sect. 3.2: BN after W_out with zero-initialised scale makes a new block an identity."""
    x, y = _rand(*x_shape), _rand(*y_shape, seed=1) * 100.0
    layer = CrossModalityAttention()
    out = np.asarray(layer(x, y, training=training))
    assert np.array_equal(out, x)


@pytest.mark.parametrize(
    "x_shape, y_shape, kwargs, training",
    [
        ((2, 5, 6, 8), (2, 7, 5, 6), {}, False),  # odd sizes: "same" pooling keeps every position
        (
            (2, 5, 6, 8),
            (2, 7, 5, 6),
            {"pool_size": 3, "inter_channels": 3},
            False,
        ),  # asymmetric padding
        ((2, 4, 4, 8), (2, 4, 4, 4), {"pool_size": None}, False),
        ((2, 4, 4, 8), (2, 6, 6, 4), {}, True),  # training mode: batch statistics in the BN
        (
            (2, 3, 4, 5, 6),
            (2, 2, 5, 4, 4),
            {},
            False,
        ),  # 3-D: pool in space only, attend over space-time
    ],
    ids=["2d", "2d-pool3", "2d-nopool", "2d-training", "3d"],
)
def test_matches_numpy_reference(x_shape, y_shape, kwargs, training):
    x, y = _rand(*x_shape), _rand(*y_shape, seed=1)
    layer = CrossModalityAttention(**kwargs)
    layer.build(x_shape, y_shape)
    _randomize(layer)
    out, scores = layer(x, y, training=training, return_attention_scores=True)
    expected, attention = _reference(layer, x, y, training=training)
    np.testing.assert_allclose(np.asarray(scores), attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-4)


def test_self_attention_is_the_non_local_block():
    x = _rand(2, 5, 5, 8)
    layer = CrossModalityAttention()
    layer.build(x.shape)
    _randomize(layer, seed=3)
    out = np.asarray(layer(x))
    np.testing.assert_array_equal(out, np.asarray(layer(x, x)))
    np.testing.assert_allclose(out, _reference(layer, x)[0], rtol=1e-4, atol=1e-4)


def test_output_depends_on_y_once_the_scale_is_non_zero():
    x, y = _rand(2, 4, 4, 8), _rand(2, 4, 4, 6, seed=1)
    other_y = _rand(2, 4, 4, 6, seed=2)
    layer = CrossModalityAttention()
    # Fresh: gamma = 0, y has no influence at all.
    np.testing.assert_array_equal(np.asarray(layer(x, y)), np.asarray(layer(x, other_y)))
    layer.output_norm.gamma.assign(np.ones(8, "float32"))
    a, b = np.asarray(layer(x, y)), np.asarray(layer(x, other_y))
    assert not np.allclose(a, b, atol=1e-3)
    assert not np.allclose(a, x, atol=1e-3)


def test_attention_rows_are_distributions_over_pooled_y():
    x, y = _rand(3, 6, 5, 8), _rand(3, 7, 7, 4, seed=1) * 5.0
    layer = CrossModalityAttention(pool_size=2)
    _, scores = layer(x, y, return_attention_scores=True)
    scores = np.asarray(scores)
    assert scores.shape == (3, 6 * 5, 4 * 4)  # ceil(7 / 2) = 4 along each pooled axis
    assert scores.dtype == np.float32 and (scores >= 0).all()
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    # Symbolic shapes agree with the eager ones, with unknown sizes left unknown.
    out_s, scores_s = layer(
        keras.Input((6, 5, 8)), keras.Input((7, 7, 4)), return_attention_scores=True
    )
    assert tuple(out_s.shape) == (None, 6, 5, 8) and tuple(scores_s.shape) == (None, 30, 16)
    _, free = layer(
        keras.Input((None, None, 8)), keras.Input((None, 7, 4)), return_attention_scores=True
    )
    assert tuple(free.shape) == (None, None, None)


def test_gradient_reaches_y_only_through_the_scaled_branch():
    """With gamma = 0 only gamma and beta get gradients; with gamma != 0 every weight and y do."""
    x, y = _rand(2, 4, 4, 8), _rand(2, 4, 4, 6, seed=1)
    x_in, y_in = keras.Input((4, 4, 8)), keras.Input((4, 4, 6))
    layer = CrossModalityAttention(name="cma")
    model = keras.Model([x_in, y_in], layer(x_in, y_in))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = {v.path: np.asarray(v).copy() for v in layer.trainable_weights}
    model.fit([x, y], np.zeros_like(x) + 1.0, epochs=1, batch_size=2, verbose=0)
    moved = {
        v.path for v in layer.trainable_weights if not np.array_equal(before[v.path], np.asarray(v))
    }
    assert moved == {"cma/output_norm/gamma", "cma/output_norm/beta"}
    layer.output_norm.gamma.assign(np.ones(8, "float32"))
    before = {v.path: np.asarray(v).copy() for v in layer.trainable_weights}
    model.fit([x, y], np.zeros_like(x) + 1.0, epochs=1, batch_size=2, verbose=0)
    assert all(not np.array_equal(before[v.path], np.asarray(v)) for v in layer.trainable_weights)


def test_keras_and_savedmodel_round_trip(tmp_path):
    x, y = _rand(2, 6, 6, 8), _rand(2, 5, 5, 4, seed=1)
    x_in, y_in = keras.Input((6, 6, 8), name="x"), keras.Input((5, 5, 4), name="y")
    layer = CrossModalityAttention(inter_channels=3, pool_size=2, name="cma")
    out, scores = layer(x_in, y_in, return_attention_scores=True)
    model = keras.Model({"x": x_in, "y": y_in}, {"out": out, "scores": scores})
    _randomize(layer, seed=5)
    expected = model.predict({"x": x, "y": y}, verbose=0)
    assert not np.allclose(expected["out"], x, atol=1e-3)

    path = tmp_path / "cma.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.get_layer("cma"), CrossModalityAttention)
    assert reloaded.get_layer("cma").get_config() == layer.get_config()
    got = reloaded.predict({"x": x, "y": y}, verbose=0)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-6)

    if BACKEND == "tensorflow":
        import tensorflow as tf

        export_dir = str(tmp_path / "cma_savedmodel")
        model.export(export_dir, verbose=False)
        served_model = tf.saved_model.load(export_dir)
        served = served_model.serve({"x": x, "y": y})
        for key in expected:
            np.testing.assert_allclose(np.asarray(served[key]), expected[key], atol=1e-5)


def test_bad_arguments_name_the_argument():
    for kwargs, match in [
        ({"inter_channels": 0}, "inter_channels"),
        ({"pool_size": 1.5}, "pool_size"),
        ({"momentum": 1.0}, "momentum"),
        ({"epsilon": 0}, "epsilon"),
        ({"synchronized": "yes"}, "synchronized"),
    ]:
        with pytest.raises(ValueError, match=match):
            CrossModalityAttention(**kwargs)
    layer = CrossModalityAttention()
    with pytest.raises(ValueError, match="same rank"):
        layer(_rand(2, 4, 4, 8), _rand(2, 2, 4, 4, 8))
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
        CrossModalityAttention()(_rand(2, 4, 8))
