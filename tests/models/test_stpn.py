"""Tests of the Spatiotemporal Pyramid Network (Wang et al., CVPR 2017)."""

import inspect
import types

import keras
import numpy as np
import pandas as pd
import pytest
from keras import ops

from keras_twostream.backbones import Backbone
from keras_twostream.layers import CompactBilinear
from keras_twostream.models.stpn import ABLATIONS, STPN, build_stpn

BACKEND = keras.backend.backend()
FLOW_LENGTH = 1  # 2 flow channels keep the tiny models cheap


def tiny(image_size=32, **kwargs):
    kwargs = {
        "num_classes": 4,
        "backbone": "tiny",
        "image_size": image_size,
        "flow_length": FLOW_LENGTH,
        "fusion_dim": 64,
        "seed": 7,
        **kwargs,
    }
    return build_stpn(**kwargs)


def inputs_for(model, batch=2, seed=0):
    rng = np.random.RandomState(seed)
    return {
        key: rng.rand(batch, *shape).astype("float32") for key, shape in model._input_shapes.items()
    }


def numpy_stcb(inputs, layer):
    """Algorithm 1 in NumPy (float64) with the layer's own hashes and signs and options."""
    d = layer.output_dim
    spectrum = 1.0
    for x, h, s in zip(inputs, layer.hashes, layer.signs, strict=True):
        h, s = np.asarray(ops.convert_to_numpy(h)), np.asarray(ops.convert_to_numpy(s))
        x = np.asarray(x, np.float64)
        sketch = np.zeros(x.shape[:-1] + (d,))
        for j in range(x.shape[-1]):
            sketch[..., h[j]] += s[j] * x[..., j]
        spectrum = spectrum * np.fft.rfft(sketch, n=d)
    z = np.fft.irfft(spectrum, n=d)
    if layer.signed_sqrt:
        z = np.sign(z) * np.sqrt(np.abs(z))
    if layer.l2_normalize:
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    return z


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --- Ablations (Tables 3-6) ------------------------------------------------------------------------
def _layer_types(model):
    return {layer.name: type(layer) for layer in model.layers}


# The rows of Tables 3-6 as the paper describes them, written out here (not read from ABLATIONS,
# so a wrong ABLATIONS row fails): the streams fused at the top ("top": S = spatial, T = temporal,
# A = attention-pooled spatial), how (Table 3), with which STCB output dimension, the flow paths
# and their fusion (Table 4), and the representation that feeds the attention (Table 5).
BOTH, FLOW_ONLY, SPATIAL_ONLY = ("S", "T"), ("T",), ("S",)
STCB = "compact_bilinear"


def _row(top, fusion=None, dim=None, paths=1, temporal=None, attention=None):
    return dict(
        top=top, fusion=fusion, dim=dim, paths=paths, temporal=temporal, attention=attention
    )


PAPER_ROWS = {
    # Table 3: "Accuracy of various fusion methods" of the two streams (one path, no attention).
    "table3_average": _row(BOTH, "average"),
    "table3_concat": _row(BOTH, "concat"),
    "table3_sum": _row(BOTH, "sum"),
    "table3_compact_bilinear_1024": _row(BOTH, STCB, 1024),
    "table3_compact_bilinear_2048": _row(BOTH, STCB, 2048),
    "table3_compact_bilinear_4096": _row(BOTH, STCB, 4096),
    "table3_compact_bilinear_8192": _row(BOTH, STCB, 8192),
    # Table 4: "merging multi-path temporal chunks ... with optical flow data only".
    "table4_concat_1path": _row(FLOW_ONLY),
    "table4_concat_3path": _row(FLOW_ONLY, paths=3, temporal="concat"),
    "table4_concat_5path": _row(FLOW_ONLY, paths=5, temporal="concat"),
    "table4_sum_3path": _row(FLOW_ONLY, paths=3, temporal="sum"),
    "table4_sum_5path": _row(FLOW_ONLY, paths=5, temporal="sum"),
    "table4_compact_bilinear_3path": _row(FLOW_ONLY, paths=3, temporal=STCB),
    "table4_compact_bilinear_5path": _row(FLOW_ONLY, paths=5, temporal=STCB),
    # Table 5: the spatial network's accuracy, average pooling or attention pooling fed by the
    # temporal representation alone or merged with the spatial one.
    "table5_average_pooling": _row(SPATIAL_ONLY),
    "table5_temporal": _row(("A",), attention="temporal"),
    "table5_concat": _row(("A",), attention="concat"),
    "table5_sum": _row(("A",), attention="sum"),
    "table5_compact_bilinear": _row(("A",), attention=STCB),
    # Table 6: A = the two-stream average; B + ST (compact bilinear, d = 4096) fusion; C + 3-path
    # compact bilinear temporal fusion; D + compact bilinear attention (the final architecture).
    "table6_a": _row(BOTH, "average"),
    "table6_b": _row(BOTH, STCB, 4096),
    "table6_c": _row(BOTH, STCB, 4096, paths=3, temporal=STCB),
    "table6_d": _row(("S", "T", "A"), STCB, 4096, paths=3, temporal=STCB, attention=STCB),
}


def test_ablations_name_exactly_the_paper_rows_on_bn_inception():
    assert set(ABLATIONS) == set(PAPER_ROWS)
    # Tables 3-6 are BN-Inception's: Table 3 fuses "the spatial and the temporal representations
    # (both 1024-dimensional)" and Table 6 A (91.7%) is Table 2's BN-Inception two-stream.
    assert {row["backbone"] for row in ABLATIONS.values()} == {"bn_inception"}


@pytest.mark.parametrize("row", sorted(PAPER_ROWS))
def test_ablation_rows_build_the_papers_variant(row):
    paper = PAPER_ROWS[row]
    # The attention needs more than one location: 64x64 inputs give 2x2 res5 maps. The row's
    # STCB dimension is the builder's (not the tiny models' 64): it is what Table 3 varies.
    model = build_stpn(
        num_classes=4,
        image_size=64 if paper["attention"] else 32,
        flow_length=FLOW_LENGTH,
        seed=7,
        **{**ABLATIONS[row], "backbone": "tiny"},
    )
    types = _layer_types(model)
    uses_rgb = "S" in paper["top"] or paper["attention"] is not None
    uses_flow = "T" in paper["top"] or paper["attention"] is not None
    assert set(model._input_shapes) == {
        name for name, used in (("rgb", uses_rgb), ("flow", uses_flow)) if used
    }
    if uses_flow:
        assert model._input_shapes["flow"][0] == paper["paths"]
    # Table 4: the layer merging the flow paths.
    fusion_type = {
        STCB: CompactBilinear,
        "concat": keras.layers.Concatenate,
        "sum": keras.layers.Add,
    }
    if paper["temporal"] is None:
        assert "temporal_fusion" not in types
    else:
        assert types["temporal_fusion"] is fusion_type[paper["temporal"]]
    # Table 5: the attention pooling and the representation that guides it.
    if paper["attention"] is None:
        assert "spatiotemporal_attention" not in types
    else:
        assert model.get_layer("spatiotemporal_attention").fusion == paper["attention"]
    # Table 3: the top fusion of the streams.
    out = model(inputs_for(model))
    if paper["fusion"] == "average":
        assert set(model.output_names) == {"spatial", "temporal", "fused"}
        np.testing.assert_allclose(
            np.asarray(out["fused"]),
            (np.asarray(out["spatial"]) + np.asarray(out["temporal"])) / 2,
            atol=1e-6,
        )
    else:
        assert set(model.output_names) == {"fused"}
        if paper["fusion"] is None:  # a single stream: no top fusion
            assert "top_fusion" not in types
        else:
            top_layer = model.get_layer("top_fusion")
            if paper["fusion"] == STCB:
                assert isinstance(top_layer, CompactBilinear)
                assert top_layer.output_dim == paper["dim"]
                assert top_layer.input_dims == [64] * len(paper["top"])  # tiny: 64 channels
            else:
                assert type(top_layer) is fusion_type[paper["fusion"]]
                assert len(top_layer.input) == len(paper["top"])
    for key, value in out.items():
        value = np.asarray(value)
        assert value.shape == (2, 4), key
        assert np.all(np.isfinite(value)), key
        np.testing.assert_allclose(value.sum(-1), 1.0, atol=1e-5, err_msg=key)


def test_table3_dims_and_table6_defaults():
    dims = [
        ABLATIONS[f"table3_compact_bilinear_{d}"]["fusion_dim"] for d in (1024, 2048, 4096, 8192)
    ]
    assert dims == [1024, 2048, 4096, 8192]
    # Table 6 D = the defaults (on ResNet-50, whose ImageNet weights Keras has; the paper's D is
    # on BN-Inception): 3 paths of 10 flow fields fused by STCB, STCB attention with 64 x 7 x 7
    # and 1 x 7 x 7 convolutions, a 4096-d STCB top fusion.
    defaults = {name: p.default for name, p in inspect.signature(STPN.__init__).parameters.items()}
    expected = {
        "backbone": "resnet50",
        "flow_length": 10,
        "num_paths": 3,
        "temporal_fusion": "compact_bilinear",
        "attention": True,
        "attention_fusion": "compact_bilinear",
        "attention_filters": 64,
        "attention_kernel_size": 7,
        "fusion": "compact_bilinear",
        "fusion_dim": 4096,
        "top_features": None,  # all three with attention
    }
    assert {name: defaults[name] for name in expected} == expected
    assert ABLATIONS["table6_d"] == {"backbone": "bn_inception"}


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="structure only; initialising 33M weights is slow in JAX eager"
)
def test_vgg16_stacks_two_fc_layers_behind_the_top_fusion():
    """Sect. 4.1: for VGG-16 the two 4096-d fc layers come after the last STCB; the backbone's
    own flatten-fc1-fc2 head (which expects pool5) is not part of the model."""
    model = build_stpn(
        3,
        backbone="vgg16",
        image_size=32,
        flow_length=1,
        num_paths=1,
        attention=False,
        fusion_dim=16,
        seed=0,
    )
    assert model.get_layer("fusion_fc1").input.shape[-1] == 16
    assert [model.get_layer(f"fusion_fc{i}").units for i in (1, 2)] == [4096, 4096]
    assert model.get_layer("fusion_classifier").input.shape[-1] == 4096
    names = {layer.name for layer in model.stream_layers("spatial")}
    assert "block5_conv3" in names and not names & {"fc1", "fc2"}
    assert not any(layer.name.endswith("_head") for layer in model.layers)


# --- Mathematics of the pyramid --------------------------------------------------------------------
def _stream_blocks(model, stream):
    return [model.get_layer(name) for name in model._stream_block_names[stream]]


def test_pyramid_matches_numpy_from_intermediate_tensors():
    """Paths, attention and top fusion recomputed in NumPy from the model's own tensors.

    K = 2 snippets of P = 3 chunks: the flow input is snippet-major, so chunk k * P + p is
    path p of snippet k.
    """
    k, p = 2, 3
    model = tiny(image_size=64, num_segments=k, num_paths=p, return_attention=True, dropout=0.0)
    x = inputs_for(model, batch=2)
    taps = {
        "spatial_map": model.get_layer("spatial_pool").input,  # res5 of the spatial network
        "paths": model.get_layer("temporal_paths").output,
        "temporal": model.get_layer("temporal_fusion").output,
        "attention": model.get_layer("spatiotemporal_attention").output,
    }
    probe = keras.Model(model.inputs, {**taps, "fused": model.output["fused"]})
    t = probe(x, training=False)
    spatial_map = np.asarray(t["spatial_map"], np.float64)  # [B*K, h, w, C]
    attended, scores = (np.asarray(v, np.float64) for v in t["attention"])

    # Each path is the temporal network applied to its own chunk (shared weights).
    for index in range(p):
        chunk = x["flow"][:, index::p].reshape((-1,) + x["flow"].shape[2:])  # [B*K, H, W, 2L]
        for block in _stream_blocks(model, "temporal"):
            chunk = block(chunk, training=False)
        np.testing.assert_allclose(np.asarray(t["paths"][index]), np.asarray(chunk), atol=1e-5)
    # Sect. 3.2: the temporal map is the STCB of the P path maps, per location.
    np.testing.assert_allclose(
        np.asarray(t["temporal"]),
        numpy_stcb([np.asarray(v) for v in t["paths"]], model.get_layer("temporal_fusion")),
        atol=1e-5,
    )
    # Sect. 3.3: a softmax over locations, then the weighted pooling of the spatial map.
    assert scores.shape == spatial_map.shape[:3] and scores.shape[1:] == (2, 2)
    np.testing.assert_allclose(scores.sum((1, 2)), 1.0, atol=1e-6)
    np.testing.assert_allclose(attended, np.einsum("bhw,bhwc->bc", scores, spatial_map), atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(model(x)["attention"]).reshape(scores.shape), scores, atol=1e-6
    )
    # Sect. 3.4: the STCB of pooled spatial, pooled temporal and attended features, the
    # classifier, the average of the K snippets' logits, the softmax.
    top = numpy_stcb(
        [spatial_map.mean((1, 2)), np.asarray(t["temporal"], np.float64).mean((1, 2)), attended],
        model.get_layer("top_fusion"),
    )
    kernel, bias = model.get_layer("fusion_classifier").get_weights()
    logits = (top @ kernel + bias).reshape(2, k, -1).mean(1)
    np.testing.assert_allclose(np.asarray(t["fused"]), softmax(logits), atol=1e-5)


def test_vector_level_fuses_pooled_paths():
    model = tiny(image_size=64, temporal_level="vector")
    x = inputs_for(model)
    probe = keras.Model(
        model.inputs,
        {
            "map": model.get_layer("temporal_path_pool").input,
            "temporal": model.get_layer("temporal_fusion").output,
        },
    )
    t = probe(x, training=False)
    pooled = np.asarray(t["map"]).mean((1, 2)).reshape(2, 3, -1)  # [B*P, C] -> [B, P, C]
    expected = numpy_stcb(list(pooled.transpose(1, 0, 2)), model.get_layer("temporal_fusion"))
    np.testing.assert_allclose(np.asarray(t["temporal"]), expected, atol=1e-5)


def test_stcb_outputs_unnormalized_when_asked():
    model = tiny(stcb_normalization=False, attention=False)
    layer = model.get_layer("top_fusion")
    assert not layer.signed_sqrt and not layer.l2_normalize
    assert tiny(attention=False).get_layer("top_fusion").l2_normalize


# --- Training ------------------------------------------------------------------------------------
def test_fit_trains_end_to_end_with_one_loss():
    """One loss on "fused"; one step moves every part. On TF under MirroredStrategy (2 CPUs)."""
    if BACKEND == "tensorflow":
        from conftest import two_cpu_strategy

        scope = two_cpu_strategy().scope()
    else:
        import contextlib

        scope = contextlib.nullcontext()
    with scope:
        model = tiny(image_size=64, dropout=0.0)
        model.compile()
    x, y = inputs_for(model, batch=4), np.array([0, 1, 2, 3])
    # The one loss is the cross-entropy of "fused" (no per-stream losses).
    probs = np.asarray(model(x, training=False)["fused"])
    loss = model.compute_loss(x, y, model(x, training=False), training=False)
    np.testing.assert_allclose(float(loss), -np.mean(np.log(probs[np.arange(4), y])), rtol=1e-4)
    variables = model.trainable_variables
    before = [np.array(v.numpy()) for v in variables]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # The gradient of the one loss reaches both backbones, the attention and the classifier.
    moved = {
        id(v) for v, b in zip(variables, before, strict=True) if not np.array_equal(b, v.numpy())
    }
    parts = {
        "spatial": model.stream_layers("spatial"),
        "temporal": model.stream_layers("temporal"),
        "attention": [model.get_layer("spatiotemporal_attention")],
        "classifier": [model.get_layer("fusion_classifier")],
    }
    for part, layers in parts.items():
        assert any(id(v) in moved for layer in layers for v in layer.trainable_weights), part


def test_default_optimizer_follows_the_paper():
    """Sect. 4.1: 0.001 for ResNets (and tiny), 0.01 for VGG-16, divided by 10 every 10,000 steps."""
    for backbone, values in (("tiny", [1e-3, 1e-4]), ("vgg16", [1e-2, 1e-3, 1e-4])):
        optimizer = STPN.default_optimizer(types.SimpleNamespace(backbone=backbone))
        assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.9
        schedule = optimizer.get_config()["learning_rate"]["config"]
        assert schedule["boundaries"] == [10_000 * i for i in range(1, len(values))]
        np.testing.assert_allclose(schedule["values"], values, rtol=1e-9)


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="the input contract does not depend on the backend"
)
def test_pipeline_batches_feed_the_model(tests_data):
    """`make_dataset(num_paths=P)` on a real TSN frame folder yields the model's input shapes."""
    from keras_twostream.data import make_dataset

    table = pd.DataFrame({"path": [str(tests_data / "mmaction2" / "imgs")], "label": [1]})
    ds = make_dataset(
        table,
        num_segments=1,
        flow_length=FLOW_LENGTH,
        image_size=32,
        num_paths=3,
        path_interval=(1, 3),
        batch_size=1,
        seed=0,
    )
    model = tiny()
    batch, labels = next(iter(ds))
    batch = {key: value.numpy() for key, value in batch.items()}
    assert {k: tuple(v.shape[1:]) for k, v in batch.items()} == model._input_shapes
    out = model(batch)
    assert tuple(out["fused"].shape) == (1, 4)


# --- Saving and multistage initialisation ----------------------------------------------------------
def test_keras_round_trip_keeps_hashes_and_outputs(tmp_path):
    model = tiny(image_size=64, temporal_level="vector", return_attention=True, seed=None)
    x = inputs_for(model)
    path = tmp_path / "stpn.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is STPN and reloaded.get_config() == model.get_config()
    out, again = model(x), reloaded(x)
    assert set(out) == {"fused", "attention"}
    for key in out:
        np.testing.assert_allclose(np.asarray(again[key]), np.asarray(out[key]), atol=1e-6)


def test_load_stream_weights_from_single_stream_backbones(tmp_path):
    """Multistage training: streams trained alone are copied into the pyramid by layer name."""
    from keras_twostream import build_two_stream

    two = build_two_stream(4, backbone="tiny", image_size=64, flow_length=FLOW_LENGTH)
    # "Trained" streams: every weight, BatchNormalization statistics included, away from its
    # initial value (variances stay positive).
    rng = np.random.RandomState(0)
    for net in (two.spatial_backbone, two.temporal_backbone):
        net.set_weights(
            [rng.uniform(0.5, 1.5, w.shape).astype("float32") * 0.5 for w in net.weights]
        )
    weights_file = tmp_path / "temporal.weights.h5"
    two.temporal_backbone.save_weights(weights_file)

    model = tiny(image_size=64)
    model.load_stream_weights(spatial=two, temporal=str(weights_file))
    x = inputs_for(model)
    spatial = x["rgb"][:, 0]
    for block in _stream_blocks(model, "spatial"):
        spatial = block(spatial, training=False)
    np.testing.assert_allclose(
        np.asarray(spatial),
        np.asarray(two.spatial_backbone(x["rgb"][:, 0], training=False)["res5"]),
        atol=1e-6,
    )
    chunk = x["flow"][:, 1]
    temporal = chunk
    for block in _stream_blocks(model, "temporal"):
        temporal = block(temporal, training=False)
    np.testing.assert_allclose(
        np.asarray(temporal),
        np.asarray(two.temporal_backbone(chunk, training=False)["res5"]),
        atol=1e-6,
    )


def test_load_stream_weights_errors(tmp_path):
    model = tiny(**{**ABLATIONS["table4_concat_3path"], "backbone": "tiny"})
    with pytest.raises(ValueError, match="no spatial stream"):
        model.load_stream_weights(spatial=Backbone("tiny", input_shape=(32, 32, 3)))
    expected = (
        r"Layer 'conv1_conv' of the temporal stream expects weights of shapes \[\(3, 3, 2, 8\)\]"
    )
    with pytest.raises(ValueError, match=expected):
        model.load_stream_weights(temporal=Backbone("tiny", input_shape=(32, 32, 6)))
    with pytest.raises(ValueError, match="has no counterpart"):
        model.load_stream_weights(temporal=Backbone("vgg16", input_shape=(32, 32, 2)))
    with pytest.raises(
        ValueError, match=r"Could not load temporal stream weights from .*missing\.weights\.h5"
    ):
        model.load_stream_weights(temporal=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match="Expected temporal to be"):
        model.load_stream_weights(temporal=3)


# --- Errors --------------------------------------------------------------------------------------
def test_bad_inputs_name_the_key_and_shape():
    model = tiny()
    x = inputs_for(model)
    with pytest.raises(ValueError, match=r"Missing input 'flow'.*\(batch, 3, 32, 32, 2\)"):
        model({"rgb": x["rgb"]})
    with pytest.raises(
        ValueError, match=r"Input 'flow' has shape .*expected \(batch, 3, 32, 32, 2\)"
    ):
        model({"rgb": x["rgb"], "flow": x["flow"][:, :1]})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_paths": 0}, "num_paths"),
        ({"fusion": "product"}, "fusion"),
        ({"temporal_fusion": "average"}, "temporal_fusion"),
        ({"attention_fusion": "max"}, "attention_fusion"),
        ({"temporal_level": "clip"}, "temporal_level"),
        ({"fusion_dim": 0}, "fusion_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"top_features": ("spatial", "motion")}, "top_features"),
        ({"top_features": ("spatial", "temporal")}, "attended feature exists only"),
        ({"attention": False, "top_features": ("attended",)}, "attended feature exists only"),
        ({"attention": False, "return_attention": True}, "return_attention"),
        ({"fusion": "sum", "temporal_fusion": "concat", "attention": False}, "Element-wise sum"),
        ({"seed": -2}, "seed"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kwargs)
