"""BN-Inception (Ioffe & Szegedy 2015; TSN's network) against its layer table and a NumPy reference."""

import numpy as np
import pytest
from backbone_test_utils import randomize_weights

from keras_twostream.backbones import get_backbone

# The modules of BN-Inception as TSN's Caffe definition lays them out (Ioffe & Szegedy 2015,
# Fig. 5 with 5x5 -> two 3x3): 1x1, 3x3 reduce, 3x3, double-3x3 reduce, double 3x3,
# pool, pool projection (None: a stride-2 module without 1x1 branch and a pass-through pool).
TABLE = {
    "3a": (64, 64, 64, 64, 96, "avg", 32),
    "3b": (64, 64, 96, 64, 96, "avg", 64),
    "3c": (None, 128, 160, 64, 96, "max", None),
    "4a": (224, 64, 96, 96, 128, "avg", 128),
    "4b": (192, 96, 128, 96, 128, "avg", 128),
    "4c": (160, 128, 160, 128, 160, "avg", 128),
    "4d": (96, 128, 192, 160, 192, "avg", 128),
    "4e": (None, 128, 192, 192, 256, "max", None),
    "5a": (352, 192, 320, 160, 224, "avg", 128),
    "5b": (352, 192, 320, 192, 224, "max", 128),
}
# Output depth of every module, as printed in Ioffe & Szegedy's Table 1.
DEPTHS = {
    "3a": 256, "3b": 320, "3c": 576, "4a": 576, "4b": 576,
    "4c": 608, "4d": 608, "4e": 1056, "5a": 1024, "5b": 1024,
}  # fmt: skip


def conv_params(k, cin, cout):
    return k * k * cin * cout + cout + 4 * cout  # kernel, bias, BN gamma/beta/mean/variance


def expected_params(channels):
    total = conv_params(7, channels, 64) + conv_params(1, 64, 64) + conv_params(3, 64, 192)
    cin = 192
    for module, (one, r3, o3, rd, od, _, proj) in TABLE.items():
        if one:
            total += conv_params(1, cin, one)
        total += conv_params(1, cin, r3) + conv_params(3, r3, o3)
        total += conv_params(1, cin, rd) + conv_params(3, rd, od) + conv_params(3, od, od)
        if proj:
            total += conv_params(1, cin, proj)
        cin = DEPTHS[module]
    return total


@pytest.fixture(scope="module")
def small_net():
    return get_backbone("bn_inception", input_shape=(64, 64, 3))


def test_layer_table_stage_shapes_and_parameter_count(small_net):
    assert small_net.count_params() == expected_params(3)
    channels = 10  # TSN's 5 stacked flow fields
    net = get_backbone("bn_inception", input_shape=(224, 224, channels), stream="temporal")
    shapes = {name: tuple(value.shape[1:]) for name, value in net.output.items()}
    assert shapes == {
        "conv2": (56, 56, 192),
        "inception3": (28, 28, 320),
        "inception4": (14, 14, 608),
        "inception5": (7, 7, 1024),  # STPN's "1024 x 7 x 7" inception5b map (Sect. 3.3)
        "features": (1024,),
    }
    for name, block in net.blocks:
        if name.startswith("inception_"):
            assert block.output.shape[-1] == DEPTHS[name.split("_")[1]], name
    assert net.count_params() == expected_params(channels)


# --- NumPy reference of one module, with TensorFlow's "same" padding -------------------------
def np_same_pad(x, k, stride, value=0.0):
    pads = []
    for n in x.shape[1:3]:
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=value)


def np_conv_bn_relu(x, layer, bn, stride=1):
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    k = kernel.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(np_same_pad(x, k, stride), (k, k), (1, 2))
    y = np.einsum("nijcuv,uvcf->nijf", windows[:, ::stride, ::stride], kernel) + bias
    gamma, beta, mean, variance = (np.asarray(w, np.float64) for w in bn.get_weights())
    y = gamma * (y - mean) / np.sqrt(variance + 1e-5) + beta  # Caffe's epsilon
    return np.maximum(y, 0)


def np_pool(x, kind, stride):
    if kind == "max":
        windows = np.lib.stride_tricks.sliding_window_view(
            np_same_pad(x, 3, stride, -np.inf), (3, 3), (1, 2)
        )
        return windows[:, ::stride, ::stride].max(axis=(-2, -1))
    ones = np.lib.stride_tricks.sliding_window_view(
        np_same_pad(np.ones_like(x), 3, stride), (3, 3), (1, 2)
    )[:, ::stride, ::stride]
    windows = np.lib.stride_tricks.sliding_window_view(np_same_pad(x, 3, stride), (3, 3), (1, 2))
    return windows[:, ::stride, ::stride].sum(axis=(-2, -1)) / ones.sum(axis=(-2, -1))


def np_module(x, block, module):
    one, _, _, _, _, pool, proj = TABLE[module]
    name, stride = f"inception_{module}", 1 if one else 2

    def cbr(y, suffix, s=1):
        return np_conv_bn_relu(
            y, block.get_layer(f"{name}_{suffix}"), block.get_layer(f"{name}_{suffix}_bn"), s
        )

    branches = [cbr(x, "1x1")] if one else []
    branches.append(cbr(cbr(x, "3x3_reduce"), "3x3", stride))
    y = cbr(cbr(x, "double_3x3_reduce"), "double_3x3_1")
    branches.append(cbr(y, "double_3x3_2", stride))
    y = np_pool(x, pool, stride)
    branches.append(cbr(y, "pool_proj") if proj else y)
    return np.concatenate(branches, axis=-1)


@pytest.mark.parametrize("module", ["3a", "3c", "5b"])  # avg pool, stride 2 pass-through, max pool
def test_module_matches_numpy_reference(small_net, module):
    block = dict(small_net.blocks)[f"inception_{module}"]
    randomize_weights(block, seed=1)
    x = np.random.default_rng(0).normal(size=(2, *block.input.shape[1:])).astype("float32")
    if module == "3a":  # the block opens with pool2 (3x3/2 max-pool)
        expected = np_module(np_pool(x.astype(np.float64), "max", 2), block, module)
    else:
        expected = np_module(x.astype(np.float64), block, module)
    got = np.asarray(block(x, training=False))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_stpn_on_bn_inception_fuses_1024_d_maps():
    from keras_twostream.models import build_stpn

    model = build_stpn(
        4, backbone="bn_inception", image_size=64, flow_length=1, fusion_dim=64, seed=0
    )
    assert model.get_layer("top_fusion").input_dims == [1024, 1024, 1024]
    rng = np.random.default_rng(0)
    x = {k: rng.random((1, *s)).astype("float32") for k, s in model._input_shapes.items()}
    out = np.asarray(model(x)["fused"])
    assert out.shape == (1, 4) and np.isclose(out.sum(), 1.0, atol=1e-5)
