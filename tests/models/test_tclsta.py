"""TCLSTA model: the heads each switch adds, the paper's computations wired end to end, training."""

import contextlib

import keras
import numpy as np
import pytest

from keras_twostream.models.tclsta import TCLSTA, build_tclsta

T, SIZE, L, N = 3, 64, 2, 4  # tiny backbone: a 64x64 input gives a 2x2 res5 map (g = 4)


def tiny(**kwargs):
    kwargs = {
        "num_classes": N,
        "backbone": "tiny",
        "image_size": SIZE,
        "num_segments": T,
        "flow_length": L,
        "cam_filters": 8,
        "lstm_units": 6,
        "collaborative_units": 5,
        **kwargs,
    }
    return build_tclsta(**kwargs)


def inputs(batch=2, seed=0):
    rng = np.random.RandomState(seed)
    return {
        "rgb": rng.rand(batch, T, SIZE, SIZE, 3).astype("float32"),
        "flow": rng.randn(batch, T, SIZE, SIZE, 2 * L).astype("float32"),
    }


def run(model, x):
    """Eager inference (much faster than a first `predict`, which traces a function)."""
    return {k: np.asarray(v) for k, v in model(x, training=False).items()}


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize(
    "switches, heads",
    [
        # Table VI "Two-stream" (Frame / Optical flow streams, late fusion).
        (dict(spatial_attention=False, temporal_attention=False, collaborative=False), []),
        (
            dict(spatial_attention=True, temporal_attention=False, collaborative=False),
            ["cam"],
        ),  # + SA
        (
            dict(spatial_attention=False, temporal_attention=True, collaborative=False),
            ["lstm"],
        ),  # + TA
        (
            dict(spatial_attention=True, temporal_attention=True, collaborative=False),
            ["cam", "lstm"],
        ),  # + STA
        (dict(), ["cam", "lstm", "cln"]),  # + STA + CLN (Table VII)
    ],
)
def test_switches_add_their_loss_heads(switches, heads):
    model = tiny(**switches)
    expected = {"fused"} | {
        f"{s}{'_' + h if h else ''}" for s in ("spatial", "temporal") for h in ["", *heads]
    }
    out = run(model, inputs())
    assert set(out) == expected
    assert set(model._loss_outputs) == expected - {"fused"}
    for name, value in out.items():
        np.testing.assert_allclose(value.sum(-1), 1.0, atol=1e-5, err_msg=name)
    # Late fusion averages the collaborative heads (with CLN) or the streams (without), Table VII.
    pair = ("spatial_cln", "temporal_cln") if "cln" in heads else ("spatial", "temporal")
    assert model.fused_outputs == pair
    np.testing.assert_allclose(out["fused"], (out[pair[0]] + out[pair[1]]) / 2, atol=1e-6)


def test_streams_are_independent_until_collaborative_learning():
    model = tiny()
    x = inputs()
    other_flow = dict(x, flow=3.0 * inputs(seed=5)["flow"])
    a, b = run(model, x), run(model, other_flow)
    for name in ("spatial", "spatial_cam", "spatial_lstm"):
        np.testing.assert_allclose(a[name], b[name], atol=1e-6, err_msg=name)
    assert not np.allclose(a["temporal"], b["temporal"], atol=1e-6)
    # The frame coefficients z^s are guided by the flow feature O^m (Algorithm 1, step 6).
    probe = model.attention_model()
    za, zb = run(probe, x), run(probe, other_flow)
    assert np.abs(za["spatial_collaborative"] - zb["spatial_collaborative"]).max() > 1e-5
    np.testing.assert_allclose(
        za["spatial_frame_attention"], zb["spatial_frame_attention"], atol=1e-6
    )


def test_stream_prediction_uses_the_weighted_pooling_and_the_temporal_attention():
    """spatial = softmax(W sum_i beta_i + b), beta_i = w_i alpha_i (Eq. 6), alpha from the CAM map (Eq. 3)."""
    model = tiny(collaborative=False)
    x = inputs()
    probe = keras.Model(
        model.input,
        {
            "feature_map": model.get_layer("spatial_weighted_pool").input[0],  # [B*T, h, w, D]
            "alpha": model.get_layer("spatial_unfold").output,  # [B, T, D]
            "weights": model.get_layer("spatial_temporal_attention").output[2],  # [B, T]
            "cam_logits": model.get_layer("spatial_cam_attention").output[0],
        },
    )
    got = run(probe, x)
    attention = run(model.attention_model(), x)
    maps = attention["spatial_attention_map"]  # [B, T, h, w]
    assert maps.shape == (2, T, 2, 2)
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), 4.0, atol=1e-4)  # Eq. (3): sums to g
    feature_map = got["feature_map"].reshape(2, T, 2, 2, -1)
    alpha = (feature_map * maps[..., None]).mean(axis=(2, 3))  # weighted pooling
    np.testing.assert_allclose(got["alpha"], alpha, atol=1e-5)
    np.testing.assert_allclose(attention["spatial_frame_attention"], got["weights"], atol=1e-6)
    np.testing.assert_allclose(got["weights"].sum(-1), 1.0, atol=1e-6)
    kernel, bias = model.get_layer("spatial_classifier").get_weights()
    video = (got["weights"][..., None] * alpha).sum(axis=1)  # sum_i beta_i
    out = run(model, x)
    np.testing.assert_allclose(out["spatial"], softmax(video @ kernel + bias), atol=1e-5)
    cam = softmax(got["cam_logits"].reshape(2, T, N).mean(axis=1))  # consensus of the frame logits
    np.testing.assert_allclose(out["spatial_cam"], cam, atol=1e-5)


def test_without_spatial_attention_pooling_is_global_average():
    model = tiny(spatial_attention=False, temporal_attention=False, collaborative=False)
    x = inputs()
    probe = keras.Model(
        model.input,
        [model.get_layer("spatial_avg_pool").input, model.get_layer("spatial_unfold").output],
    )
    feature_map, alpha = (np.asarray(t) for t in probe(x))
    np.testing.assert_allclose(
        alpha.reshape(-1, alpha.shape[-1]), feature_map.mean(axis=(1, 2)), atol=1e-5
    )
    kernel, bias = model.get_layer("spatial_classifier").get_weights()
    out = run(model, x)
    np.testing.assert_allclose(
        out["spatial"], softmax(alpha.mean(axis=1) @ kernel + bias), atol=1e-5
    )


def test_adaptive_weights_set_the_fused_output_and_survive_saving(tmp_path):
    model = tiny()
    x = inputs(batch=3)
    weights = np.random.RandomState(0).rand(N, 2).astype("float32")
    weights[0] = [1.0, 0.0]
    model.set_fusion_weights(weights)
    out = run(model, x)
    raw = out["spatial_cln"] * weights[:, 0] + out["temporal_cln"] * weights[:, 1]  # Eq. (14)
    np.testing.assert_allclose(out["fused"], raw, atol=1e-6)
    path = tmp_path / "tclsta.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.get_layer("fused").get_weights()[0], weights)
    np.testing.assert_allclose(run(reloaded, x)["fused"], out["fused"], atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        model.set_fusion_weights(np.ones((2, N)))


@pytest.mark.filterwarnings(
    "ignore:Gradients do not exist"
)  # the streams, behind the stop-gradient
def test_early_fusion_trains_a_classifier_on_fixed_stream_features():
    model = tiny(fusion="early", collaborative=False, spatial_attention=False)
    assert "fused" in model._loss_outputs
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss={"fused": "sparse_categorical_crossentropy"}
    )
    head = model.get_layer("early_fusion_classifier")
    streams = [
        w for w in model.trainable_weights if not any(w is v for v in head.trainable_weights)
    ]
    before_head = [w.numpy().copy() for w in head.trainable_weights]
    before_streams = [np.array(w.numpy()) for w in streams]
    model.fit(inputs(batch=4), np.array([0, 1, 2, 3]), batch_size=4, epochs=1, verbose=0)
    assert all(
        not np.allclose(a, w.numpy())
        for a, w in zip(before_head, head.trainable_weights, strict=True)
    )
    for a, w in zip(before_streams, streams, strict=True):  # stop-gradient: the streams do not move
        np.testing.assert_array_equal(a, w.numpy(), err_msg=w.path)
    with pytest.raises(ValueError, match="fusion='late'"):
        model.set_fusion_weights(np.ones((N, 2)))


def test_fit_trains_every_head_and_moves_the_attention_weights():
    """One fit on all the losses; on TensorFlow under MirroredStrategy with two CPU devices."""
    if keras.backend.backend() == "tensorflow":
        from conftest import two_cpu_strategy

        scope = two_cpu_strategy().scope()
    else:
        scope = contextlib.nullcontext()
    with scope:
        model = tiny()
        model.compile(
            optimizer=keras.optimizers.SGD(0.1)
        )  # no weight decay: only gradients move weights
    watched = [
        "spatial_cam_attention",
        "temporal_temporal_attention",
        "collaborative_learning",
        "spatial_cln_classifier",
        "temporal_lstm_classifier",
        "spatial_classifier",
    ]
    before = {name: [w.copy() for w in model.get_layer(name).get_weights()] for name in watched}
    history = model.fit(inputs(batch=4), np.array([0, 1, 2, 3]), batch_size=4, epochs=1, verbose=0)
    logs = history.history
    assert len(model._loss_outputs) == 8
    for head in model._loss_outputs:
        assert np.isfinite(logs[f"{head}_loss"][0]), head
    for name in watched:
        after = model.get_layer(name).get_weights()
        assert all(not np.allclose(a, b) for a, b in zip(before[name], after, strict=True)), name


def test_attention_model_and_visualisation(tmp_path):
    from keras_twostream.visualization.tclsta import (
        plot_attention,
        spatial_attention_maps,
        temporal_attention_curves,
    )

    model = tiny()
    x = inputs()
    maps = spatial_attention_maps(model, x, stream="temporal")
    assert maps.shape == (2, T, 2, 2)
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), 4.0, atol=1e-4)
    curves = temporal_attention_curves(model, x)
    assert curves.shape == (2, T)
    np.testing.assert_allclose(curves.sum(-1), 1.0, atol=1e-6)
    upsampled = spatial_attention_maps(model, x, size=SIZE)
    assert upsampled.shape == (2, T, SIZE, SIZE)
    figure = plot_attention(x["rgb"][0], upsampled[0], curves[0], path=tmp_path / "attention.png")
    assert (tmp_path / "attention.png").stat().st_size > 0
    assert len(figure.axes) == T + 1
    with pytest.raises(ValueError, match="spatial_attention"):
        spatial_attention_maps(tiny(spatial_attention=False, collaborative=False), x)
    with pytest.raises(ValueError, match="stream"):
        spatial_attention_maps(model, x, stream="audio")


def test_bad_input_names_key_and_shape():
    model = tiny(collaborative=False)
    x = inputs()
    with pytest.raises(ValueError, match=r"Missing input 'flow'.*\(batch, 3, 64, 64, 4\)"):
        model({"rgb": x["rgb"]})
    with pytest.raises(
        ValueError, match=r"Input 'rgb' has shape .*expected \(batch, 3, 64, 64, 3\)"
    ):
        model({"rgb": x["rgb"][:, :2], "flow": x["flow"]})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_segments": 0}, "num_segments"),
        ({"spatial_attention": "yes"}, "spatial_attention"),
        ({"fusion": "mkl"}, "fusion"),
        ({"feature_stage": "res9"}, r"feature_stage.*res2"),
        ({"attention_class": "label"}, "attention_class"),
        ({"backbone": "resnet9000"}, "resnet50"),
        ({"num_alternations": 0}, "num_alternations"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kwargs)


def test_config_round_trip():
    model = tiny(feature_stage="res4", attention_class="expected", num_alternations=1)
    config = model.get_config()
    clone = TCLSTA.from_config(config)
    assert clone.get_config() == config
    assert clone.attention_model().output["spatial_attention_map"].shape[1:] == (T, 4, 4)
