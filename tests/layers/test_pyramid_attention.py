"""Tests of PyramidAttention (Figure 3, Eqs. 6-7 of the MPA+SAL paper) against a NumPy reference."""

import keras
import numpy as np
import pytest
from keras.src.testing import TestCase

from keras_twostream.layers.pyramid_attention import PyramidAttention


def numpy_avg_pool_same(x, s):
    """Average pooling, window = stride = s, 'same' padding that excludes the padded cells."""
    b, h, w, c = x.shape
    oh, ow = -(-h // s), -(-w // s)
    top, left = (oh * s - h) // 2, (ow * s - w) // 2
    out = np.zeros((b, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = max(i * s - top, 0), max(j * s - left, 0)
            r1, c1 = min(i * s - top + s, h), min(j * s - left + s, w)
            out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return out, top, left


def numpy_pyramid_attention(layer, f):
    """Eqs. (6)-(7) in float64 from the layer's weights, with an explicit per-pixel upsampling."""
    f = f.astype(np.float64)
    b, h, w, _ = f.shape
    beta = np.asarray(
        layer.beta.numpy() if hasattr(layer.beta, "numpy") else layer.beta, np.float64
    )
    merged = 0.0
    for t, (s, conv) in enumerate(zip(layer.scales, layer.branch_convs, strict=True)):
        k, bias = (np.asarray(v, np.float64) for v in conv.get_weights())
        pooled, top, left = numpy_avg_pool_same(f, s)
        branch = np.maximum(np.einsum("bijc,cf->bijf", pooled, k[0, 0]) + bias, 0.0)
        # Upsampling: pixel (r, q) takes the bin whose pooling window contains it.
        rows = (np.arange(h) + top) // s
        cols = (np.arange(w) + left) // s
        merged = merged + beta[t] * branch[:, rows][:, :, cols]
    k, bias = (np.asarray(v, np.float64) for v in layer.tau.get_weights())
    h_att = 1.0 / (1.0 + np.exp(-(np.einsum("bijc,cf->bijf", merged, k[0, 0]) + bias)))
    out = (1.0 + h_att) * f if layer.residual else h_att * f
    return out, h_att


def randomize(layer, seed=0):
    rng = np.random.RandomState(seed)
    layer.set_weights([rng.randn(*w.shape).astype("float32") * 0.5 for w in layer.get_weights()])


def feature_map(shape=(2, 7, 5, 6), seed=0):
    return np.random.RandomState(seed).rand(*shape).astype("float32")


@pytest.mark.parametrize("scales", [(1, 2, 4), (3, 8), (2,)])
@pytest.mark.parametrize("residual", [False, True])
def test_matches_numpy_reference(scales, residual):
    f = feature_map()  # odd sizes: 'same' pooling pads, and the upsampling must re-align
    layer = PyramidAttention(scales=scales, filters=3, residual=residual)
    layer(f)
    randomize(layer)
    out, h = layer(f, return_attention_scores=True)
    ref_out, ref_h = numpy_pyramid_attention(layer, f)
    np.testing.assert_allclose(np.asarray(h), ref_h, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), ref_out, atol=1e-5)
    assert np.ptp(ref_h) > 1e-2  # the attention depends on location and channel


def test_zero_tau_kernel_gives_half_of_the_input():
    """tau's kernel and bias zero: h = sigmoid(0) = 0.5 everywhere, so h . f = 0.5 f."""
    f = feature_map()
    layer = PyramidAttention(filters=4)
    layer(f)
    randomize(layer)
    layer.tau.set_weights([np.zeros(w.shape, "float32") for w in layer.tau.get_weights()])
    out, h = layer(f, return_attention_scores=True)
    np.testing.assert_allclose(np.asarray(h), 0.5)
    np.testing.assert_allclose(np.asarray(out), 0.5 * f, atol=1e-7)
    residual = PyramidAttention(filters=4, residual=True)
    residual(f)
    residual.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(residual(f)), 1.5 * f, atol=1e-6)


def test_coarse_branch_is_constant_within_each_pooling_bin():
    """With only a scale-2 branch, h is constant on each 2x2 block of an even map."""
    f = feature_map((1, 4, 6, 3))
    layer = PyramidAttention(scales=(2,), filters=2)
    layer(f)
    randomize(layer)
    _, h = layer(f, return_attention_scores=True)
    h = np.asarray(h)
    blocks = h.reshape(1, 2, 2, 3, 2, 3)  # [B, H/2, 2, W/2, 2, C]
    np.testing.assert_allclose(
        blocks, np.broadcast_to(blocks[:, :, :1, :, :1], blocks.shape), atol=1e-7
    )
    assert np.ptp(h) > 1e-3


def test_global_scale_ignores_the_layout():
    """A scale covering the whole map pools globally: permuting pixels permutes the output alike."""
    f = feature_map((2, 3, 3, 4))
    layer = PyramidAttention(scales=(8,), filters=2)
    layer(f)
    randomize(layer)
    perm = np.random.RandomState(1).permutation(9)
    shuffled = f.reshape(2, 9, 4)[:, perm].reshape(f.shape)
    out = np.asarray(layer(f)).reshape(2, 9, 4)[:, perm].reshape(f.shape)
    np.testing.assert_allclose(np.asarray(layer(shuffled)), out, atol=1e-6)


def test_beta_weights_the_branches():
    """beta = (1, 0): only the first extractor counts, so the second's weights are irrelevant."""
    f = feature_map()
    layer = PyramidAttention(scales=(1, 2), filters=3)
    layer(f)
    randomize(layer)
    layer.beta.assign(np.array([1.0, 0.0], "float32"))
    before = np.asarray(layer(f))
    layer.branch_convs[1].set_weights([w * 3.0 + 1.0 for w in layer.branch_convs[1].get_weights()])
    np.testing.assert_allclose(np.asarray(layer(f)), before, atol=1e-7)
    layer.beta.assign(np.array([1.0, 0.5], "float32"))
    assert np.abs(np.asarray(layer(f)) - before).max() > 1e-4


def test_defaults():
    layer = PyramidAttention()
    layer(feature_map((1, 4, 4, 16)))
    assert layer.scales == (1, 2, 4)
    assert [c.filters for c in layer.branch_convs] == [4, 4, 4]  # channels // 4
    np.testing.assert_allclose(np.asarray(layer.beta), 1 / 3)
    assert layer.tau.filters == 16 and layer.tau.kernel_size == (1, 1)


class LayerTest(TestCase):
    def test_run_layer_test(self):
        self.run_layer_test(
            PyramidAttention,
            init_kwargs={"scales": [1, 3], "filters": 2, "activation": "sigmoid", "residual": True},
            input_shape=(2, 5, 5, 4),
            expected_output_shape=(2, 5, 5, 4),
            expected_num_trainable_weights=7,  # 2 branch convs x (kernel, bias), beta, tau (kernel, bias)
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )


def test_keras_file_round_trip(tmp_path):
    f = feature_map()
    inputs = keras.Input(f.shape[1:])
    out, h = PyramidAttention(scales=(1, 2, 4), filters=3, name="mpa")(
        inputs, return_attention_scores=True
    )
    model = keras.Model(inputs, [out, h])
    randomize(model.get_layer("mpa"))
    path = tmp_path / "mpa.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.get_layer("mpa").scales == (1, 2, 4)
    for a, b in zip(model.predict(f, verbose=0), reloaded.predict(f, verbose=0), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_unknown_spatial_size_in_a_model():
    inputs = keras.Input((None, None, 6))
    model = keras.Model(inputs, PyramidAttention(scales=(1, 3), filters=2)(inputs))
    for shape in [(1, 7, 5, 6), (2, 4, 9, 6)]:
        assert model(feature_map(shape)).shape == shape


def test_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        out, h = PyramidAttention(filters=2)(feature_map(), return_attention_scores=True)
        assert out.dtype == "float16" and h.dtype == "float16"
        assert np.all(np.isfinite(np.asarray(out, "float32")))
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scales": 2}, "scales"),
        ({"scales": ()}, "scales"),
        ({"scales": (1, 0)}, "scales"),
        ({"scales": (2, 2)}, "distinct"),
        ({"filters": 0}, "filters"),
        ({"residual": "yes"}, "residual"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PyramidAttention(**kwargs)


def test_invalid_input_shape():
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
        PyramidAttention()(np.zeros((2, 9, 6), "float32"))
