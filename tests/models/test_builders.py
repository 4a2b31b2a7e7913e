"""One parametrized test over every builder: the contract every model of the library keeps.

Output shapes, predict on tf.data, `.keras` round trip with identical outputs, one fit step,
and SavedModel export (TF backend).
"""

import os

import keras
import numpy as np
import pytest

from keras_twostream.models import MODELS

# name -> (builder kwargs for a tiny CPU-sized model, input shapes without batch)
CASES = {
    "mpa_sal": (
        dict(
            num_classes=3,
            backbone="tiny",
            image_size=32,
            num_segments=2,
            diff_length=2,
            semantic_dim=8,
            discriminator_units=(8,),
            semantic_encoder=None,
        ),
        {"rgb": (2, 32, 32, 3), "rgb_diff": (2, 32, 32, 6)},
    ),
    "stpn": (
        dict(num_classes=3, backbone="tiny", image_size=64, flow_length=1, fusion_dim=64, seed=0),
        {"rgb": (1, 64, 64, 3), "flow": (3, 64, 64, 2)},
    ),
    "two_stream": (
        dict(num_classes=3, backbone="tiny", image_size=32, num_segments=2, flow_length=2),
        {"rgb": (2, 32, 32, 3), "flow": (2, 32, 32, 4)},
    ),
    "cma": (
        dict(num_classes=3, backbone="tiny", image_size=64, num_segments=2, flow_length=2),
        {"rgb": (2, 64, 64, 3), "flow": (2, 64, 64, 4)},
    ),
    "cma_3d": (
        dict(num_classes=3, num_segments=4, image_size=32),
        {"rgb": (4, 32, 32, 3), "flow": (4, 32, 32, 2)},
    ),
    "tclsta": (
        dict(
            num_classes=3,
            backbone="tiny",
            image_size=64,
            num_segments=3,
            flow_length=2,
            cam_filters=8,
            lstm_units=6,
            collaborative_units=5,
        ),
        {"rgb": (3, 64, 64, 3), "flow": (3, 64, 64, 4)},
    ),
}


def _inputs(shapes, batch=2, seed=0):
    rng = np.random.RandomState(seed)
    return {k: rng.rand(batch, *s).astype("float32") for k, s in shapes.items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_builder_contract(name, tmp_path):
    # Every builder of MODELS, so a new one cannot be left out: it needs a case here.
    assert name in CASES, f"MODELS[{name!r}] has no tiny case in CASES: add one"
    kwargs, shapes = CASES[name]
    model = MODELS[name](**kwargs)
    x = _inputs(shapes)
    y = np.array([0, 2])

    # Outputs are probabilities over the classes.
    out = model.predict(x, verbose=0)
    assert "fused" in out
    for key, value in out.items():
        assert value.shape == (2, kwargs["num_classes"]), key
        np.testing.assert_allclose(value.sum(-1), 1.0, atol=1e-5, err_msg=key)

    # predict on tf.data gives the same.
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x).batch(2)
    out_ds = model.predict(ds, verbose=0)
    for key in out:
        np.testing.assert_allclose(out_ds[key], out[key], atol=1e-5)

    # One fit step moves the weights and gives a finite loss.
    model.compile()
    if name == "mpa_sal" and keras.backend.backend() != "tensorflow":
        # Its two-optimizer step (training/adversarial.py) is TF-only and says so.
        with pytest.raises(NotImplementedError, match="TensorFlow backend only"):
            model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    else:
        before = [w.copy() for w in model.get_weights()]
        history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        changed = [
            not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)
        ]
        assert any(changed)

    # .keras round trip: same class, same outputs.
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(model)
    out, out_reloaded = model.predict(x, verbose=0), reloaded.predict(x, verbose=0)
    for key in out:
        np.testing.assert_allclose(out_reloaded[key], out[key], atol=1e-6)

    # SavedModel export of the inference path.
    if keras.backend.backend() == "tensorflow":
        export_dir = str(tmp_path / f"{name}_savedmodel")
        model.export(export_dir, verbose=False)
        reloaded_sm = tf.saved_model.load(export_dir)  # keep a reference: its variables die with it
        served = reloaded_sm.serve(x)
        for key in out:
            np.testing.assert_allclose(np.asarray(served[key]), out[key], atol=1e-5)
    assert os.path.exists(path)


@pytest.mark.parametrize(
    "name", sorted(name for name, (kwargs, _) in CASES.items() if "backbone" in kwargs)
)
def test_torch_backbone_in_every_builder(name):
    """Every builder that takes a backbone by name takes the torchvision-layout one.

    tiny_torch is resnet50_torch's layout with one bottleneck per stage; the `.keras` round
    trip and SavedModel export of a two-stream model with it are in tests/test_cli_convert.py.
    """
    kwargs, shapes = CASES[name]
    model = MODELS[name](**{**kwargs, "backbone": "tiny_torch"})
    assert model.get_config()["backbone"] == "tiny_torch"
    # Its blocks (models named f"{backbone}_{block}") are torchvision's, by name.
    blocks = {layer.name.rsplit("_", 1)[-1] for layer in model._flatten_layers()}
    assert {"layer1.0", "layer4.0"} <= blocks
    out = model.predict_on_batch(_inputs(shapes))
    assert "fused" in out
    for key, value in out.items():
        np.testing.assert_allclose(np.asarray(value).sum(-1), 1.0, atol=1e-5, err_msg=key)


def test_one_vocabulary_and_deprecated_names():
    """Issue 19 item 1: the builders share argument names; the former names still work, with a
    DeprecationWarning, and a saved config with a former name still loads."""
    import inspect

    from keras_twostream.models.cma import CMA3D
    from keras_twostream.models.stpn import STPN
    from keras_twostream.models.tclsta import TCLSTA

    def parameters(cls):
        return set(inspect.signature(cls.__init__).parameters)

    classes = {type(MODELS[n](**CASES[n][0])) for n in ("two_stream", "cma", "tclsta", "stpn")}
    for cls in classes:
        assert {"num_segments", "image_size", "flow_length", "backbone"} <= parameters(cls), cls
        assert {"spatial_weights", "temporal_weights"} <= parameters(cls), cls
        assert not {"num_frames", "rgb_weights", "flow_weights", "temporal_paths"} & parameters(cls)
    assert "num_paths" in parameters(STPN) and "num_segments" in parameters(CMA3D)

    tclsta_kwargs = {k: v for k, v in CASES["tclsta"][0].items() if k != "num_segments"}
    with pytest.warns(DeprecationWarning, match="`num_frames` is deprecated.*num_segments"):
        old = MODELS["tclsta"](**tclsta_kwargs, num_frames=3)
    assert old.num_segments == old.num_frames == 3 and "num_frames" not in old.get_config()
    with pytest.raises(ValueError, match="both num_segments=4 and its deprecated name num_frames"):
        MODELS["tclsta"](**tclsta_kwargs, num_segments=4, num_frames=3)
    config = {**old.get_config()}
    config["num_frames"] = config.pop("num_segments")  # a file saved before the rename
    with pytest.warns(DeprecationWarning):
        assert TCLSTA.from_config(config).num_segments == 3
    with pytest.warns(DeprecationWarning, match="`temporal_paths`"):
        assert MODELS["stpn"](**CASES["stpn"][0], temporal_paths=1).num_paths == 1
    with pytest.warns(DeprecationWarning, match="`num_frames`"):
        assert MODELS["cma_3d"](num_classes=3, num_frames=2, image_size=32).num_segments == 2
    with pytest.warns(DeprecationWarning, match="`rgb_weights`"):
        cma = MODELS["cma"](**CASES["cma"][0], rgb_weights=None)
    assert cma.name == "cma"
