"""Tests of SpatiotemporalAttention (Sect. 3.3 of the STPN paper) against a NumPy reference."""

import keras
import numpy as np
import pytest
from keras import ops
from keras.src.testing import TestCase

from keras_twostream.layers.spatiotemporal_attention import SpatiotemporalAttention


def numpy_stcb(inputs, hashes, signs, d, normalize=False):
    """Algorithm 1 in NumPy (float64): Count Sketch each input, multiply the FFTs, invert."""
    spectrum = 1.0
    for x, h, s in zip(inputs, hashes, signs, strict=True):
        sketch = np.zeros(x.shape[:-1] + (d,))
        for j in range(x.shape[-1]):
            sketch[..., h[j]] += s[j] * x[..., j]
        spectrum = spectrum * np.fft.rfft(sketch, n=d)
    z = np.fft.irfft(spectrum, n=d)
    if normalize:
        z = np.sign(z) * np.sqrt(np.abs(z))
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    return z


def stcb_params(layer):
    """Hashes and signs of a CompactBilinear layer, as NumPy arrays."""
    return (
        [np.asarray(ops.convert_to_numpy(h)) for h in layer.hashes],
        [np.asarray(ops.convert_to_numpy(s)) for s in layer.signs],
    )


def numpy_conv_same(x, kernel, bias):
    """Stride-1 'same' 2-D convolution (cross-correlation, as Keras) of [B, h, w, C]."""
    k = kernel.shape[0]
    pad = (k - 1) // 2
    padded = np.pad(x, ((0, 0), (pad, k - 1 - pad), (pad, k - 1 - pad), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            window = padded[:, i : i + k, j : j + k, :]  # [B, k, k, C]
            out[:, i, j] = np.einsum("bxyc,xycf->bf", window, kernel)
    return out + bias


def numpy_attention(layer, spatial, temporal):
    """The layer's computation in float64 from its own weights."""
    spatial = spatial.astype(np.float64)
    temporal = temporal.astype(np.float64)
    if temporal.ndim == 2:
        temporal = temporal[:, None, None, :]
    temporal_map = np.broadcast_to(temporal, spatial.shape[:3] + temporal.shape[-1:])
    if layer.fusion == "compact_bilinear":
        hashes, signs = stcb_params(layer.compact_bilinear)
        fused = numpy_stcb(
            [spatial, temporal],
            hashes,
            signs,
            layer.compact_bilinear.output_dim,
            layer.l2_normalize,
        )
    elif layer.fusion == "concat":
        fused = np.concatenate([spatial, temporal_map], axis=-1)
    elif layer.fusion == "sum":
        fused = spatial + temporal_map
    else:
        fused = temporal_map
    k1, b1 = (np.asarray(w, np.float64) for w in layer.hidden_conv.get_weights())
    k2, b2 = (np.asarray(w, np.float64) for w in layer.score_conv.get_weights())
    hidden = np.maximum(numpy_conv_same(fused, k1, b1), 0.0)
    scores = numpy_conv_same(hidden, k2, b2).reshape(len(spatial), -1)
    alpha = np.exp(scores - scores.max(-1, keepdims=True))
    alpha /= alpha.sum(-1, keepdims=True)
    attended = np.einsum("bl,blc->bc", alpha, spatial.reshape(len(spatial), -1, spatial.shape[-1]))
    return attended, alpha.reshape(spatial.shape[:3])


def randomize(layer, seed=0):
    """Replaces the convolution weights by larger random values, so scores are far from uniform."""
    rng = np.random.RandomState(seed)
    for conv in (layer.hidden_conv, layer.score_conv):
        conv.set_weights([rng.randn(*w.shape).astype("float32") * 0.3 for w in conv.get_weights()])


def maps(batch=2, size=3, cs=6, ct=6, seed=0):
    rng = np.random.RandomState(seed)
    spatial = rng.rand(batch, size, size, cs).astype("float32")
    return spatial, rng.rand(batch, size, size, ct).astype("float32")


@pytest.mark.parametrize("fusion", ["compact_bilinear", "concat", "sum", "temporal"])
@pytest.mark.parametrize("temporal_rank", [4, 2])
def test_matches_numpy_reference(fusion, temporal_rank):
    spatial, temporal = maps()
    if temporal_rank == 2:
        temporal = temporal[:, 0, 0]
    layer = SpatiotemporalAttention(fusion=fusion, fusion_dim=16, filters=4, kernel_size=3, seed=3)
    layer([spatial, temporal])
    randomize(layer)
    attended, scores = layer([spatial, temporal], return_attention_scores=True)
    ref_attended, ref_scores = numpy_attention(layer, spatial, temporal)
    np.testing.assert_allclose(np.asarray(scores), ref_scores, atol=1e-5)
    np.testing.assert_allclose(np.asarray(attended), ref_attended, atol=1e-5)
    np.testing.assert_allclose(np.asarray(scores).sum((1, 2)), 1.0, atol=1e-6)
    # The scores must actually depend on the location for the test to mean anything.
    assert np.ptp(ref_scores) > 1e-3


def test_compact_bilinear_with_normalization_matches_reference():
    spatial, temporal = maps(ct=5)
    layer = SpatiotemporalAttention(
        fusion_dim=32, filters=4, kernel_size=3, seed=1, signed_sqrt=True, l2_normalize=True
    )
    layer([spatial, temporal])
    randomize(layer, seed=1)
    attended, scores = layer([spatial, temporal], return_attention_scores=True)
    ref_attended, ref_scores = numpy_attention(layer, spatial, temporal)
    # The signed square root amplifies float32 rounding of sketch bins near zero.
    np.testing.assert_allclose(np.asarray(scores), ref_scores, atol=2e-4)
    np.testing.assert_allclose(np.asarray(attended), ref_attended, atol=2e-4)
    fused = layer.compact_bilinear([spatial, temporal])
    norms = np.linalg.norm(np.asarray(fused), axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_vector_equals_its_tiled_map():
    """A temporal vector is used at every location: the same as a map that repeats it."""
    spatial, temporal = maps(ct=4)
    vector = temporal[:, 0, 0]
    tiled = np.broadcast_to(vector[:, None, None, :], temporal.shape).copy()
    layer = SpatiotemporalAttention(fusion_dim=16, kernel_size=3, seed=0)
    np.testing.assert_allclose(
        np.asarray(layer([spatial, vector])), np.asarray(layer([spatial, tiled])), atol=1e-6
    )


def test_uniform_scores_give_average_pooling():
    """Zero score convolution: softmax is uniform and the pooling is global average pooling."""
    spatial, temporal = maps()
    layer = SpatiotemporalAttention(fusion="concat", kernel_size=3, seed=0)
    layer([spatial, temporal])
    layer.score_conv.set_weights([np.zeros(w.shape, "float32") for w in layer.score_conv.weights])
    attended, scores = layer([spatial, temporal], return_attention_scores=True)
    np.testing.assert_allclose(np.asarray(scores), np.full((2, 3, 3), 1 / 9), atol=1e-7)
    np.testing.assert_allclose(np.asarray(attended), spatial.mean(axis=(1, 2)), atol=1e-6)


def test_single_location_gets_all_the_weight():
    spatial, temporal = maps(size=1)
    attended, scores = SpatiotemporalAttention(seed=0)(
        [spatial, temporal], return_attention_scores=True
    )
    np.testing.assert_allclose(np.asarray(scores), 1.0)
    np.testing.assert_allclose(np.asarray(attended), spatial[:, 0, 0], atol=1e-6)


def test_paper_defaults():
    layer = SpatiotemporalAttention(seed=0)
    layer(list(maps(size=7, cs=8, ct=4)))
    assert layer.hidden_conv.filters == 64 and layer.hidden_conv.kernel_size == (7, 7)
    assert layer.score_conv.filters == 1 and layer.score_conv.kernel_size == (7, 7)
    assert layer.compact_bilinear.output_dim == 8  # fusion_dim=None: the spatial channels


class LayerTest(TestCase):
    def test_run_layer_test(self):
        self.run_layer_test(
            SpatiotemporalAttention,
            init_kwargs={"fusion_dim": 8, "filters": 4, "kernel_size": 3, "seed": 5},
            input_shape=[(2, 3, 3, 6), (2, 4)],
            expected_output_shape=(2, 6),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=4,  # hash and sign of each STCB input
            supports_masking=False,
            run_training_check=False,
        )


def test_keras_file_round_trip(tmp_path):
    spatial, temporal = maps()
    s_in, t_in = keras.Input((3, 3, 6)), keras.Input((3, 3, 6))
    attended, scores = SpatiotemporalAttention(fusion_dim=16, kernel_size=3, seed=None)(
        [s_in, t_in], return_attention_scores=True
    )
    model = keras.Model([s_in, t_in], [attended, scores])
    path = tmp_path / "attention.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    for a, b in zip(
        model.predict([spatial, temporal], verbose=0),
        reloaded.predict([spatial, temporal], verbose=0),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_mixed_precision_scores_are_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        spatial, temporal = maps()
        layer = SpatiotemporalAttention(fusion_dim=16, kernel_size=3, seed=0)
        attended, scores = layer([spatial, temporal], return_attention_scores=True)
        assert scores.dtype == "float32" and attended.dtype == "float16"
        np.testing.assert_allclose(np.asarray(scores).sum((1, 2)), 1.0, atol=1e-5)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fusion": "product"}, "fusion"),
        ({"fusion_dim": 0}, "fusion_dim"),
        ({"filters": -1}, "filters"),
        ({"kernel_size": 2.5}, "kernel_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpatiotemporalAttention(**kwargs)


@pytest.mark.parametrize(
    "fusion, shapes, match",
    [
        ("sum", [(2, 3, 3, 6), (2, 3, 3, 4)], "same number of channels"),
        ("concat", [(2, 3, 3, 6), (2, 2, 2, 4)], "height and width"),
        ("concat", [(2, 3, 3, 6)], r"\[spatial"),
        ("concat", [(2, 9, 6), (2, 4)], r"\[spatial"),
    ],
)
def test_invalid_input_shapes(fusion, shapes, match):
    inputs = [np.zeros(s, "float32") for s in shapes]
    with pytest.raises(ValueError, match=match):
        SpatiotemporalAttention(fusion=fusion, seed=0)(inputs)
