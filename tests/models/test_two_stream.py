import keras
import numpy as np
import pytest

from keras_twostream import build_two_stream


def tiny(**kwargs):
    kwargs = {"num_classes": 4, "backbone": "tiny", "image_size": 32, "flow_length": 2, **kwargs}
    return build_two_stream(**kwargs)


def inputs(batch=3, segments=1, channels=4, seed=0):
    rng = np.random.RandomState(seed)
    return {
        "rgb": rng.rand(batch, segments, 32, 32, 3).astype("float32"),
        "flow": rng.randn(batch, segments, 32, 32, channels).astype("float32"),
    }


def test_fused_is_the_average_of_the_stream_probabilities():
    model = tiny()
    out = model.predict(inputs(), verbose=0)
    np.testing.assert_allclose(out["fused"], (out["spatial"] + out["temporal"]) / 2, atol=1e-6)


def test_streams_are_independent():
    """The spatial output must not depend on flow and vice versa (late fusion only)."""
    model = tiny()
    x = inputs()
    changed = dict(x, flow=x["flow"] + 1.0)
    a, b = model.predict(x, verbose=0), model.predict(changed, verbose=0)
    np.testing.assert_allclose(a["spatial"], b["spatial"], atol=1e-6)
    assert not np.allclose(a["temporal"], b["temporal"])


def test_segment_consensus_averages_logits_over_segments():
    model = tiny(num_segments=3)
    x = inputs(segments=3)
    out = model.predict(x, verbose=0)
    # Each segment alone through a K=1 model with the same weights.
    single = tiny(num_segments=1)
    single.set_weights(model.get_weights())
    logits = keras.Model(single.inputs, single.get_layer("spatial_consensus").output)
    per_segment = [
        logits.predict({"rgb": x["rgb"][:, k : k + 1], "flow": x["flow"][:, k : k + 1]}, verbose=0)
        for k in range(3)
    ]
    mean_logits = np.mean(per_segment, axis=0)
    expected = np.exp(mean_logits) / np.exp(mean_logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(out["spatial"], expected, atol=1e-5)


def test_multitask_heads_and_masked_losses():
    """Two-stream paper Sect. 4: one softmax per dataset, each loss only on its own samples."""
    model = tiny(num_classes={"hmdb51": 3, "ucf101": 5})
    out = model.predict(inputs(), verbose=0)
    assert out["spatial"].shape == (3, 3) and out["temporal_ucf101"].shape == (3, 5)
    assert {"fused", "fused_ucf101"} <= set(out)
    model.compile()
    x = inputs()
    # Samples 0-1 come from HMDB51, sample 2 from UCF101.
    y = {"hmdb51": np.array([0, 2, -1]), "ucf101": np.array([-1, -1, 4])}
    hmdb_head = model.get_layer("temporal_hmdb51_classifier")
    ucf_head = model.get_layer("temporal_ucf101_classifier")
    # A batch with only UCF101 samples leaves the HMDB51 head untouched.
    only_ucf = {"hmdb51": np.array([-1, -1, -1]), "ucf101": np.array([1, 2, 4])}
    before_hmdb = [w.copy() for w in hmdb_head.get_weights()]
    before_ucf = [w.copy() for w in ucf_head.get_weights()]
    model.fit(x, only_ucf, batch_size=3, epochs=1, verbose=0)
    for a, b in zip(before_hmdb, hmdb_head.get_weights(), strict=False):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b) for a, b in zip(before_ucf, ucf_head.get_weights(), strict=False)
    )
    history = model.fit(x, y, batch_size=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    with pytest.raises(ValueError, match="several tasks"):
        model.fit(x, np.array([0, 1, 2]), batch_size=3, epochs=1, verbose=0)


def test_bad_input_names_key_and_shape():
    model = tiny()
    x = inputs()
    with pytest.raises(ValueError, match=r"Missing input 'flow'.*\(batch, 1, 32, 32, 4\)"):
        model({"rgb": x["rgb"]})
    with pytest.raises(
        ValueError, match=r"Input 'flow' has shape .*expected \(batch, 1, 32, 32, 4\)"
    ):
        model({"rgb": x["rgb"], "flow": x["flow"][..., :2]})
    with pytest.raises(ValueError, match="dict of inputs"):
        model(x["rgb"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1}, "num_classes >= 2"),
        ({"num_classes": {"a": 5, "b": 1}}, "at least 2 classes"),
        ({"num_classes": "ten"}, "num_classes"),
        ({"backbone": "resnet9000"}, "resnet50"),
        ({"flow_length": 0}, "flow_length"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kwargs)


def test_one_stream_model_is_that_stream_of_the_two_stream_model(tmp_path):
    """`streams=["temporal"]` (or spatial) builds one net alone, the paper's separate training:
    with the two-stream model's weights for it, the same probabilities; only its input, no
    fused output; its config round-trips."""
    both = tiny()
    x = inputs()
    expected = both.predict(x, verbose=0)
    for stream, key in (("spatial", "rgb"), ("temporal", "flow")):
        one = tiny(streams=[stream])
        assert list(one.input) == [key] and list(one.output) == [stream]
        layers = {layer.name for layer in one.layers if layer.weights}
        for layer in one.layers:
            if layer.name in layers:
                layer.set_weights(both.get_layer(layer.name).get_weights())
        got = one.predict({key: x[key]}, verbose=0)[stream]
        np.testing.assert_allclose(got, expected[stream], atol=1e-6)
        one.save(tmp_path / f"{stream}.keras")
        loaded = keras.saving.load_model(tmp_path / f"{stream}.keras")
        assert loaded.streams == (stream,)
        np.testing.assert_allclose(loaded.predict({key: x[key]}, verbose=0)[stream], got, atol=1e-6)
    with pytest.raises(ValueError, match="streams"):
        tiny(streams=["audio"])
