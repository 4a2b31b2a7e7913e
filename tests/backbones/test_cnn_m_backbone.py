"""CNN-M-2048 (two-stream paper Fig. 1 / Sect. 5) against a NumPy reference and its layer table."""

import keras
import numpy as np
import pytest
from backbone_test_utils import assert_close_to_scale, randomize_weights, to_numpy

from keras_twostream.backbones import get_backbone
from keras_twostream.backbones.cnn_m import MIN_INPUT_SIZE, cnn_m_feature_sizes
from keras_twostream.backbones.weights import leaf_layers
from keras_twostream.layers.local_response_normalization import LocalResponseNormalization

# Layer table of the paper (Fig. 1; Chatfield et al. 2014, Table 1): (filters, kernel) per
# convolution, and the fully connected widths. full6 sees pool5's 6x6x512 map at 224x224.
CONVS = {
    "conv1": (96, 7),
    "conv2": (256, 5),
    "conv3": (512, 3),
    "conv4": (512, 3),
    "conv5": (512, 3),
}


def expected_params(channels, pool5_pixels=36):
    params, previous = 0, channels
    for filters, kernel in CONVS.values():
        params += kernel * kernel * previous * filters + filters
        previous = filters
    return params + (pool5_pixels * 512 * 4096 + 4096) + (4096 * 2048 + 2048)


# --- NumPy reference, written from the paper's description and Caffe's definitions ---
def np_conv(x, kernel, bias, stride, pad):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]  # [N, H', W', C, kh, kw]
    return np.einsum("nijcuv,uvcf->nijf", windows, kernel) + bias


def np_relu(x):
    return np.maximum(x, 0)


def np_lrn(a, size=5, alpha=1e-4, beta=0.75, k=2.0):
    out = np.empty_like(a)
    for i in range(a.shape[-1]):
        lo, hi = max(0, i - size // 2), min(a.shape[-1] - 1, i + size // 2)
        out[..., i] = a[..., i] / (k + alpha * np.sum(a[..., lo : hi + 1] ** 2, axis=-1)) ** beta
    return out


def np_caffe_max_pool(x, size=3, stride=2):
    """Caffe's pooling: ceil((n - size) / stride) + 1 windows, clipped at the border."""
    n, h, w, c = x.shape
    out_h = -(-(h - size) // stride) + 1
    out_w = -(-(w - size) // stride) + 1
    out = np.empty((n, out_h, out_w, c), x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * stride : i * stride + size, j * stride : j * stride + size]
            out[:, i, j] = patch.max(axis=(1, 2))
    return out


def np_cnn_m_2048(x, weights, stream):
    """Every stage output and full7 of CNN-M-2048 (inference: dropout is the identity)."""
    w = {name: [v.astype("float64") for v in values] for name, values in weights.items()}
    out = {}
    x = np_caffe_max_pool(np_lrn(np_relu(np_conv(x, *w["conv1"], stride=2, pad=0))))
    out["conv1"] = x
    x = np_relu(np_conv(x, *w["conv2"], stride=2, pad=1))
    if stream == "spatial":  # Sect. 5: no second normalisation in the temporal net
        x = np_lrn(x)
    out["conv2"] = x = np_caffe_max_pool(x)
    out["conv3"] = x = np_relu(np_conv(x, *w["conv3"], stride=1, pad=1))
    out["conv4"] = x = np_relu(np_conv(x, *w["conv4"], stride=1, pad=1))
    out["conv5"] = x = np_caffe_max_pool(np_relu(np_conv(x, *w["conv5"], stride=1, pad=1)))
    x = x.reshape(len(x), -1)
    x = np_relu(x @ w["full6"][0] + w["full6"][1])
    out["features"] = np_relu(x @ w["full7"][0] + w["full7"][1])
    return out


def test_cnn_m_2048_at_224_follows_the_layer_table():
    spatial = get_backbone("cnn_m_2048", input_shape=(224, 224, 3))
    shapes = {name: tuple(t.shape) for name, t in spatial.output.items()}
    assert shapes == {
        "conv1": (None, 54, 54, 96),
        "conv2": (None, 13, 13, 256),  # Caffe rounds pool2 up: 26 -> 13
        "conv3": (None, 13, 13, 512),
        "conv4": (None, 13, 13, 512),
        "conv5": (None, 6, 6, 512),  # pool5 of the 13x13x512 conv5 map
        "features": (None, 2048),
    }
    assert spatial.count_params() == expected_params(3) == 90_420_864
    layers = {layer.name: layer for layer in leaf_layers(spatial)}
    for name, (filters, kernel) in CONVS.items():
        assert layers[name].kernel.shape[0] == kernel and layers[name].filters == filters
    assert (layers["conv1"].strides, layers["conv2"].strides) == ((2, 2), (2, 2))
    assert layers["conv3"].strides == layers["conv4"].strides == layers["conv5"].strides == (1, 1)
    assert (layers["full6"].units, layers["full7"].units) == (4096, 2048)
    lrns = [layer for layer in layers.values() if isinstance(layer, LocalResponseNormalization)]
    assert [layer.name for layer in lrns] == ["norm1", "norm2"]
    assert all((n.size, n.alpha, n.beta, n.k) == (5, 1e-4, 0.75, 2.0) for n in lrns)
    assert cnn_m_feature_sizes(224) == {
        "conv1": 109,
        "pool1": 54,
        "conv2": 26,
        "pool2": 13,
        "conv5": 13,
        "pool5": 6,
    }


def test_temporal_stream_drops_second_normalisation():
    temporal = get_backbone(
        "cnn_m_2048", input_shape=(224, 224, 20), stream="temporal", dropout=0.9
    )
    names = [layer.name for layer in leaf_layers(temporal)]
    assert "norm1" in names and "norm2" not in names
    assert temporal.count_params() == expected_params(20)
    head = dict(temporal.blocks)["head"]
    assert head.get_layer("full6_dropout").rate == head.get_layer("full7_dropout").rate == 0.9


@pytest.mark.parametrize("stream, channels", [("spatial", 3), ("temporal", 4)])
def test_cnn_m_2048_matches_numpy_reference(stream, channels):
    # 67x75: pool1 rounds up on both axes, pool2 pads the even width only, so
    # Caffe's rounding, the paddings and non-square maps are all exercised.
    backbone = get_backbone(
        "cnn_m_2048", input_shape=(67, 75, channels), stream=stream, dropout=0.5
    )
    randomize_weights(backbone, seed=11)
    weights = {
        layer.name: [np.asarray(v) for v in layer.get_weights()]
        for layer in leaf_layers(backbone)
        if layer.weights
    }
    x = np.random.default_rng(1).uniform(-128, 128, (2, 67, 75, channels)).astype("float32")
    got = to_numpy(backbone(x, training=False))
    expected = np_cnn_m_2048(x.astype("float64"), weights, stream)
    assert {k: v.shape[1:] for k, v in expected.items()} == {
        "conv1": (15, 17, 96),
        "conv2": (3, 4, 256),
        "conv3": (3, 4, 512),
        "conv4": (3, 4, 512),
        "conv5": (1, 2, 512),
        "features": (2048,),
    }
    for key in expected:
        assert_close_to_scale(got[key], expected[key], rtol=2e-4)
    # The LRN layers do change the result at this input scale (the test can fail).
    first = np_caffe_max_pool(np_relu(np_conv(x, *weights["conv1"], stride=2, pad=0)))
    assert np.max(np.abs(first - expected["conv1"])) > 0.1 * np.max(np.abs(first))


def test_cnn_m_2048_input_size_errors():
    with pytest.raises(ValueError, match=f"at least {MIN_INPUT_SIZE} pixels"):
        get_backbone("cnn_m_2048", input_shape=(MIN_INPUT_SIZE - 1, 224, 3))
    backbone = get_backbone("cnn_m_2048", input_shape=(MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3))
    assert tuple(backbone.output["conv5"].shape) == (None, 1, 1, 512)
    with pytest.raises(ValueError, match="fixed height and width"):
        get_backbone("cnn_m_2048", input_shape=(None, 224, 3))


def test_cnn_m_2048_has_no_imagenet_weights():
    with pytest.raises(ValueError, match="no keras.applications ImageNet weights"):
        get_backbone("cnn_m_2048", input_shape=(224, 224, 3), weights="imagenet")


def test_stream_is_validated():
    with pytest.raises(ValueError, match="stream"):
        get_backbone("cnn_m_2048", input_shape=(224, 224, 3), stream="flow")


def test_dropout_is_the_identity_at_inference():
    backbone = get_backbone("cnn_m_2048", input_shape=(64, 64, 3), dropout=0.9)
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    a = keras.ops.convert_to_numpy(backbone(x, training=False)["features"])
    b = keras.ops.convert_to_numpy(backbone.predict(x, verbose=0)["features"])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
