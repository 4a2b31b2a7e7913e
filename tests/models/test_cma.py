"""The CMA model (Chi et al. 2019): CMA positions, identity at initialisation, TSN segments, fusion."""

import keras
import numpy as np
import pytest

from keras_twostream.backbones import Backbone, adapt_input_channels
from keras_twostream.backbones.resnet import resnet_block_specs
from keras_twostream.layers.cross_modality_attention import CrossModalityAttention
from keras_twostream.models.cma import (
    CMA,
    CMA3D,
    build_cma,
    build_cma_3d,
    build_non_local,
    default_cma_blocks,
)

SIZE, K, L, CLASSES = 64, 2, 2, 3


def tiny(**kwargs):
    kwargs = {"backbone": "tiny", "image_size": SIZE, "num_segments": K, "flow_length": L, **kwargs}
    return build_cma(CLASSES, **kwargs)


def inputs(batch=2, segments=K, seed=0):
    rng = np.random.RandomState(seed)
    return {
        "rgb": rng.rand(batch, segments, SIZE, SIZE, 3).astype("float32"),
        "flow": rng.randn(batch, segments, SIZE, SIZE, 2 * L).astype("float32"),
    }


def activate_cma_blocks(model, seed=0):
    """Gives every attention block a non-zero normalisation scale (as after training)."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, CrossModalityAttention):
            gamma = layer.output_norm.gamma
            gamma.assign(rng.uniform(0.5, 1.5, tuple(gamma.shape)).astype("float32"))


def predict(model, x):
    return {k: np.asarray(v) for k, v in model.predict(x, verbose=0).items()}


def test_default_positions_are_every_other_block_of_res3_and_res4():
    specs, stage_ends = resnet_block_specs("resnet50")
    names = [name for name, _ in specs]
    # Sect. 4.1: "5 CMA blocks in res3 and res4 to every other residual block" (as non-local nets).
    assert default_cma_blocks(names, stage_ends) == [
        "conv3_block2",
        "conv3_block4",
        "conv4_block2",
        "conv4_block4",
        "conv4_block6",
    ]
    specs, stage_ends = resnet_block_specs("resnet101")
    chosen = default_cma_blocks([name for name, _ in specs], stage_ends)
    assert chosen[:2] == ["conv3_block2", "conv3_block4"] and chosen[-1] == "conv4_block23"
    assert len(chosen) == 2 + 12
    model = tiny()
    assert model.cma_block_names == ["conv3_block1", "conv4_block1"]
    assert [layer.name for layer in model.cma_layers("temporal")] == [
        "flow_cma_conv3_block1",
        "flow_cma_conv4_block1",
    ]


def test_fresh_model_is_two_independent_streams_until_the_blocks_are_active():
    """CMA blocks start as identities (Sect. 3.2), so each branch ignores the other modality."""
    model = tiny()
    x = inputs()
    other = {"rgb": inputs(seed=1)["rgb"], "flow": inputs(seed=2)["flow"]}
    base = predict(model, x)
    np.testing.assert_array_equal(
        predict(model, {**x, "flow": other["flow"]})["spatial"], base["spatial"]
    )
    np.testing.assert_array_equal(
        predict(model, {**x, "rgb": other["rgb"]})["temporal"], base["temporal"]
    )
    activate_cma_blocks(model)
    base = predict(model, x)
    assert not np.allclose(
        predict(model, {**x, "flow": other["flow"]})["spatial"], base["spatial"], atol=1e-4
    )
    assert not np.allclose(
        predict(model, {**x, "rgb": other["rgb"]})["temporal"], base["temporal"], atol=1e-4
    )


def test_each_block_attends_between_the_same_layers_of_both_branches():
    """The RGB CMA block of a position takes the flow map of that position as keys and values."""
    model = tiny()
    for name in model.cma_block_names:
        rgb_x, rgb_y = model.get_layer(f"rgb_cma_{name}").input
        flow_x, flow_y = model.get_layer(f"flow_cma_{name}").input
        assert rgb_x is flow_y and flow_x is rgb_y  # both read the maps before either block
        assert rgb_x.shape[1:] == flow_x.shape[1:]
        assert tuple(rgb_x.shape[1:3]) == {"conv3_block1": (8, 8), "conv4_block1": (4, 4)}[name]


def test_segments_share_weights_and_average_logits_eq6():
    """Eq. (6): the K-segment output is the softmax of the mean over segments of the K=1 logits,
    and a segment's RGB frame attends over the flow of the same segment."""
    model = tiny(num_segments=3)
    activate_cma_blocks(model)
    x = inputs(segments=3)
    out = predict(model, x)
    single = tiny(num_segments=1)
    single.set_weights(model.get_weights())
    heads = keras.Model(
        single.inputs, {b: single.get_layer(f"{b}_consensus").output for b in ("rgb", "flow")}
    )
    per_segment = [
        heads.predict({k: v[:, s : s + 1] for k, v in x.items()}, verbose=0) for s in range(3)
    ]
    for branch, output in (("rgb", "spatial"), ("flow", "temporal")):
        logits = np.mean([p[branch] for p in per_segment], axis=0)
        expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        np.testing.assert_allclose(out[output], expected, atol=1e-5)
    # Shuffling the flow segments alone re-pairs RGB and flow snippets: the RGB output changes.
    shuffled = {**x, "flow": x["flow"][:, ::-1]}
    assert not np.allclose(predict(model, shuffled)["spatial"], out["spatial"], atol=1e-5)


def test_fused_is_the_weighted_sum_of_the_branch_probabilities():
    model = tiny()
    activate_cma_blocks(model)
    x = inputs()
    out = predict(model, x)
    np.testing.assert_allclose(
        out["fused"], (5 * out["spatial"] + out["temporal"]) / 6, atol=1e-6
    )  # Sect. 5.2
    model.set_fusion_weights(model.fusion_weights_for("temporal"))
    out = predict(model, x)
    np.testing.assert_allclose(out["fused"], (out["spatial"] + 5 * out["temporal"]) / 6, atol=1e-6)


def _cma_params(channels):
    d = channels // 2
    return 3 * (channels * d + d) + d * channels + 4 * channels  # q, k, v, W_out, BN (4 vectors)


def test_parameters_are_two_backbones_heads_and_the_cma_blocks():
    model = tiny(non_local=True)
    rgb = Backbone("tiny", input_shape=(SIZE, SIZE, 3)).count_params()
    flow = Backbone("tiny", input_shape=(SIZE, SIZE, 2 * L)).count_params()
    heads = 2 * (64 * CLASSES + CLASSES)
    blocks = 2 * (
        _cma_params(16) + _cma_params(32)
    )  # conv3 (16 channels), conv4 (32), both branches
    non_local = _cma_params(16) + _cma_params(32)  # RGB branch only (Table 4)
    assert model.count_params() == rgb + flow + heads + blocks + non_local + 2  # + 2 fusion weights
    names = [layer.name for layer in model.layers if "nonlocal" in layer.name]
    assert names == ["rgb_nonlocal_conv3_block1", "rgb_nonlocal_conv4_block1"]
    nl = model.get_layer("rgb_nonlocal_conv3_block1")
    assert nl.input.shape == (None, 8, 8, 16)  # a single input: self-attention (non-local block)


def test_branches_partition_the_variables():
    model = tiny(non_local=True)
    rgb = {id(v) for v in model.branch_variables("spatial", trainable_only=False)}
    flow = {id(v) for v in model.branch_variables("temporal", trainable_only=False)}
    fusion = {id(v) for v in model.get_layer("fused").weights}
    assert not rgb & flow
    assert rgb | flow | fusion == {id(v) for v in model.variables}  # seed generators included
    assert {id(v) for v in model.trainable_variables} == {
        id(v) for b in ("spatial", "temporal") for v in model.branch_variables(b)
    }


def test_flow_branch_gets_the_cross_modality_initialisation(tmp_path):
    """Sect. 4.1: the Flow branch's first convolution is the mean of the RGB kernel, replicated."""
    pretrained = Backbone("tiny", input_shape=(SIZE, SIZE, 3))
    path = str(tmp_path / "tiny_rgb.weights.h5")
    pretrained.save_weights(path)
    kernel = np.asarray(pretrained.get_layer("tiny_stem").get_layer("conv1_conv").kernel)
    model = tiny(spatial_weights=path, temporal_weights=path)
    rgb_kernel = model.get_layer("rgb_backbone_stem").get_layer("conv1_conv").kernel
    flow_kernel = model.get_layer("flow_backbone_stem").get_layer("conv1_conv").kernel
    np.testing.assert_array_equal(np.asarray(rgb_kernel), kernel)
    np.testing.assert_array_equal(np.asarray(flow_kernel), adapt_input_channels(kernel, 2 * L))


def test_config_round_trip_rebuilds_the_same_architecture():
    model = tiny(cma_blocks=["conv4_block1"], pool_size=None, dropout=0.5, fusion_weights=(1, 1))
    clone = CMA.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.cma_block_names == ["conv4_block1"]
    assert clone.get_layer("rgb_cma_conv4_block1").pool_size is None
    assert clone.count_params() == model.count_params()


def test_cma_3d_one_block_after_res4():
    """Sect. 5.6: one 3-D CMA block after res4 of each branch; queries attend over space-time."""
    model = build_cma_3d(CLASSES, num_segments=4, image_size=32)
    layers = [layer for layer in model.layers if isinstance(layer, CrossModalityAttention)]
    assert sorted(layer.name for layer in layers) == ["flow_cma_res4", "rgb_cma_res4"]
    assert model.get_layer("rgb_cma_res4").input[0].shape == (None, 4, 2, 2, 32)  # (B, T, H, W, C)
    rng = np.random.RandomState(0)
    x = {
        "rgb": rng.rand(2, 4, 32, 32, 3).astype("float32"),
        "flow": rng.randn(2, 4, 32, 32, 2).astype("float32"),
    }
    other = {**x, "flow": rng.randn(2, 4, 32, 32, 2).astype("float32")}
    np.testing.assert_array_equal(predict(model, x)["spatial"], predict(model, other)["spatial"])
    activate_cma_blocks(model)
    assert not np.allclose(
        predict(model, x)["spatial"], predict(model, other)["spatial"], atol=1e-5
    )
    # Training "the CMA block and all layers behind it": everything up to res4 frozen.
    partial = build_cma_3d(CLASSES, num_segments=4, image_size=32, train_from_cma=True)
    trainable = {layer.name for layer in partial.layers if layer.trainable_weights}
    assert "rgb_cma_res4" in trainable and "rgb_res5_1_conv" in trainable
    assert not any(name.startswith(("rgb_res4", "rgb_stem", "flow_res2")) for name in trainable)
    assert isinstance(CMA3D.from_config(partial.get_config()), CMA3D)


def test_bad_arguments_and_inputs_name_what_was_expected():
    for kwargs, match in [
        ({"num_classes": 1}, "num_classes"),
        ({"image_size": 0}, "image_size"),
        ({"num_segments": 2.0}, "num_segments"),
        ({"dropout": 1.0}, "dropout"),
        ({"fusion_weights": (1.0,)}, "fusion_weights"),
        ({"non_local": "yes"}, "non_local"),
        ({"cma_blocks": "conv3_block1"}, "cma_blocks"),
        ({"cma_blocks": ["conv9_block1"]}, "conv9_block1"),
        ({"cma_blocks": ["head"]}, "head"),
    ]:
        arguments = {"num_classes": CLASSES, "backbone": "tiny", "image_size": SIZE, **kwargs}
        with pytest.raises(ValueError, match=match):
            build_cma(**arguments)
    with pytest.raises(ValueError, match="default CMA positions"):  # e.g. VGG-16's block1..block5
        default_cma_blocks(["block1", "block2"], {"block1": "block1", "block2": "block2"})
    with pytest.raises(ValueError, match="cma_stages"):
        build_cma_3d(CLASSES, num_segments=4, image_size=32, cma_stages=["res6"])
    model = tiny()
    with pytest.raises(ValueError, match="'flow'"):
        model({"rgb": inputs()["rgb"], "flow": np.zeros((2, K, SIZE, SIZE, 3), "float32")})


def test_attention_map_of_a_query_and_its_figure(tmp_path):
    """Fig. 5: the weights of the last RGB CMA block for one query, over the pooled flow map."""
    from keras_twostream.visualization.cma import cma_attention_map, plot_cma_attention

    model = tiny()
    activate_cma_blocks(model)
    x = inputs()
    attention = cma_attention_map(model, x, query=(0.9, 0.1), sample=1, segment=1)
    assert attention.layer == "rgb_cma_conv4_block1" and attention.query_grid == (4, 4)
    assert attention.query == (3, 0) and attention.key_grid == (2, 2) == attention.weights.shape
    np.testing.assert_allclose(attention.weights.sum(), 1.0, atol=1e-5)
    # The same row recomputed in NumPy from the block's inputs (sample 1, segment 1 -> row 3).
    layer = model.get_layer("rgb_cma_conv4_block1")
    rgb_map, flow_map = (
        m[1 * K + 1] for m in keras.Model(model.input, layer.input).predict(x, verbose=0)
    )
    w = {v.path.split("/", 1)[1]: keras.ops.convert_to_numpy(v) for v in layer.weights}
    query = rgb_map[3, 0] @ w["query/kernel"][0, 0] + w["query/bias"]
    pooled = flow_map.reshape(2, 2, 2, 2, -1).max(axis=(1, 3)).reshape(4, -1)  # 2x2 max-pool of 4x4
    logits = (pooled @ w["key/kernel"][0, 0] + w["key/bias"]) @ query / np.sqrt(query.size)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(attention.weights.ravel(), expected, rtol=1e-4, atol=1e-6)

    path = tmp_path / "fig5.png"
    figure = plot_cma_attention(
        x["rgb"][1, 1], attention, flow=x["flow"][1, 1], path=path, title="t"
    )
    assert len(figure.axes) == 3 and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="query"):
        cma_attention_map(model, x, query=(2.0, 0.5))
    with pytest.raises(ValueError, match="segment"):
        cma_attention_map(model, x, segment=K)
    with pytest.raises(ValueError, match="frame"):
        plot_cma_attention(x["flow"][0, 0], attention)


def test_non_local_baseline_of_table4():
    # Table 4 rows 4-6: non-local blocks in both ResNet-50 branches at the CMA positions ("the
    # same numbers and locations as that of the CMA blocks"), and no cross-modality exchange.
    model = build_non_local(
        CLASSES, backbone="tiny", image_size=SIZE, num_segments=K, flow_length=L
    )
    cma = tiny()
    assert model.cma_block_names == cma.cma_block_names
    attention = [layer.name for layer in model.layers if isinstance(layer, CrossModalityAttention)]
    assert sorted(attention) == sorted(
        f"{branch}_nonlocal_{block}" for block in cma.cma_block_names for branch in ("rgb", "flow")
    )
    assert model.cma_layers("spatial") == [] and model.cma_layers("temporal") == []
    # A fresh non-local block is an identity (zero-initialised output scale): the model equals
    # the plain two-stream ResNet (no attention blocks at all) with the same backbone weights.
    plain = CMA(
        CLASSES, backbone="tiny", image_size=SIZE, num_segments=K, flow_length=L,
        cross_modality=False, non_local=False,
    )  # fmt: skip
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    x = inputs()
    for key, value in predict(model, x).items():
        np.testing.assert_allclose(value, predict(plain, x)[key], atol=1e-5, err_msg=key)
    # Active (trained) non-local blocks change the outputs but never mix the modalities: the
    # RGB output does not move when only the flow input changes, unlike in the CMA model.
    activate_cma_blocks(model)
    activate_cma_blocks(cma, seed=1)
    changed = {**x, "flow": x["flow"] + 1.0}
    np.testing.assert_allclose(
        predict(model, changed)["spatial"], predict(model, x)["spatial"], atol=1e-6
    )
    assert not np.allclose(predict(cma, changed)["spatial"], predict(cma, x)["spatial"], atol=1e-6)
    assert not np.allclose(predict(model, x)["spatial"], predict(plain, x)["spatial"], atol=1e-4)
    assert model.fusion_weights == (1.0, 1.0)
    with pytest.raises(ValueError, match="non_local"):
        tiny(non_local="flow")
