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


# Issue 19 item 1: the shared vocabulary, with where each builder departs from it and why.
SHARED = {"backbone", "image_size", "num_segments", "dropout", "logits", "dtype", "name"}
NO_FLOW_LENGTH = {"mpa_sal"}  # RGB differences, not flow: `diff_length`
NO_STREAM_WEIGHTS = {"cma_3d"}  # the tiny P3D ResNet has no pretrained weights


def test_builders_share_one_vocabulary_keyword_only():
    """Every builder: keyword-only arguments after num_classes, explicit (no **kwargs but the
    former names), the shared names, and the same signature as the class it builds."""
    import inspect

    from keras_twostream.models import CMA

    for name, builder in MODELS.items():
        params = inspect.signature(builder).parameters
        kinds = [p.kind for p in params.values()]
        assert list(params)[0] == "num_classes", name
        assert all(k == inspect.Parameter.KEYWORD_ONLY for k in kinds[1:-1]), name
        assert list(params)[-1] == "deprecated" and kinds[-1] == inspect.Parameter.VAR_KEYWORD
        expected = SHARED | ({"flow_length"} if name not in NO_FLOW_LENGTH else set())
        if name not in NO_STREAM_WEIGHTS:
            expected |= {"spatial_weights", "temporal_weights"}
        assert expected <= set(params), (name, expected - set(params))
        # The builder repeats its class's signature (so help() shows every argument): the same
        # names, order and defaults; build_mpa_sal trains the semantic encoder by default.
        cls = type(MODELS[name](**CASES[name][0]))
        theirs = dict(inspect.signature(cls.__init__).parameters)
        theirs.pop("self"), theirs.pop("kwargs")
        ours = {k: p.default for k, p in params.items() if k != "deprecated"}
        assert list(ours) == list(theirs), name
        differences = {k for k in ours if ours[k] != theirs[k].default}
        assert differences == ({"semantic_encoder"} if name == "mpa_sal" else set()), name
    # build_non_local is CMA with non_local and cross_modality fixed.
    from keras_twostream.models import build_non_local

    cma = dict(inspect.signature(CMA.__init__).parameters)
    ours = inspect.signature(build_non_local).parameters
    assert set(cma) - set(ours) == {"self", "kwargs", "non_local", "cross_modality"}
    with pytest.raises(TypeError):
        MODELS["two_stream"](3, "tiny")  # keyword-only: a positional backbone is refused


def test_every_model_names_its_outputs_spatial_temporal_fused():
    """Issue 19 item 2: the late-fusion models all have "spatial", "temporal" and "fused"; STPN
    fuses features (Sect. 3.4, one end-to-end loss), so it has "fused" only."""
    for name, builder in MODELS.items():
        model = builder(**CASES[name][0])
        expected = {"fused"} if name == "stpn" else {"spatial", "temporal", "fused"}
        assert expected <= set(model.output_names), (name, model.output_names)
        assert not {"rgb", "flow"} & set(model.output_names), name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_option_is_the_log_of_the_probabilities(name):
    """`logits=True`: same weights, every output's softmax is the `logits=False` output, and
    compile() switches to from_logits losses: the same loss on the same batch."""
    kwargs, shapes = CASES[name]
    probs_model = MODELS[name](**kwargs)
    logits_model = probs_model.rebuild(logits=True)
    assert logits_model.logits and logits_model.get_config()["logits"] is True
    x = _inputs(shapes)
    probs = probs_model.predict_on_batch(x)
    logits = logits_model.predict_on_batch(x)
    assert set(probs) == set(logits)
    for key in probs:
        z = np.asarray(logits[key], "float64")
        assert not np.allclose(z, probs[key], atol=1e-3), key  # not the probabilities
        softmax = np.exp(z - z.max(-1, keepdims=True))
        softmax /= softmax.sum(-1, keepdims=True)
        np.testing.assert_allclose(softmax, probs[key], atol=2e-6, err_msg=key)
    y = np.array([0, 2])
    if name == "mpa_sal" and keras.backend.backend() != "tensorflow":
        return  # its adversarial steps are TensorFlow-only (test_builder_contract)
    losses = []
    for model in (probs_model, logits_model):
        model.compile()
        losses.append(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def test_dtype_option_builds_under_the_policy_and_restores_the_global_one():
    kwargs, shapes = CASES["two_stream"]
    before = keras.config.dtype_policy().name
    model = MODELS["two_stream"](**kwargs, dtype="mixed_bfloat16")
    assert keras.config.dtype_policy().name == before
    assert model.get_layer("spatial_classifier").compute_dtype == "bfloat16"
    assert model.get_layer("spatial_classifier").variable_dtype == "float32"
    out = model.predict_on_batch(_inputs(shapes))
    assert all(np.asarray(v).dtype == np.float32 for v in out.values())  # outputs stay float32
    again = type(model).from_config(model.get_config())
    assert again.get_config()["dtype"] == "mixed_bfloat16"
    assert again.get_layer("temporal_classifier").compute_dtype == "bfloat16"
    with pytest.raises(ValueError, match="dtype"):
        MODELS["cma"](**CASES["cma"][0], dtype="int8")
    assert keras.config.dtype_policy().name == before  # also after a constructor that raised


def test_dropout_is_one_argument_a_rate_or_a_pair():
    two = MODELS["two_stream"](**CASES["two_stream"][0])
    assert two.dropout == [0.5, 0.9]  # Table 1a (spatial) and Sect. 6 (temporal, from scratch)
    assert two.get_layer("temporal_dropout").rate == 0.9
    cma = MODELS["cma"](**CASES["cma"][0], dropout=(0.2, 0.4))
    assert (cma.get_layer("rgb_dropout").rate, cma.get_layer("flow_dropout").rate) == (0.2, 0.4)
    tclsta = MODELS["tclsta"](**CASES["tclsta"][0])
    assert tclsta.dropout == 0.0  # the paper gives none: no dropout layer at all
    assert not [layer for layer in tclsta.layers if isinstance(layer, keras.layers.Dropout)]
    tclsta = MODELS["tclsta"](**CASES["tclsta"][0], dropout=0.3)
    rates = {layer.rate for layer in tclsta.layers if isinstance(layer, keras.layers.Dropout)}
    assert rates == {0.3}
    for bad in (1.0, -0.1, (0.5,), "0.5"):
        with pytest.raises(ValueError, match="dropout"):
            MODELS["two_stream"](**CASES["two_stream"][0], dropout=bad)


def test_renamed_arguments_warn_and_still_work():
    """Every former name in RENAMED_ARGUMENTS works, with a DeprecationWarning naming it."""
    from keras_twostream.models import RENAMED_ARGUMENTS

    values = {
        "spatial_dropout": 0.1,
        "temporal_dropout": 0.2,
        "rgb_weights": None,
        "flow_weights": None,
        "num_frames": 2,
        "flow_channels": 2,
        "temporal_paths": 1,
        "stream": "spatial",
        "weights": None,
    }
    builders = {builder.__name__: (key, builder) for key, builder in MODELS.items()}
    from keras_twostream.models import build_non_local

    builders["build_non_local"] = ("cma", build_non_local)
    assert set(RENAMED_ARGUMENTS) == set(builders)
    for builder_name, renamed in RENAMED_ARGUMENTS.items():
        key, builder = builders[builder_name]
        kwargs = dict(CASES[key][0])
        for old, new in renamed.items():
            given = {k: v for k, v in kwargs.items() if k != new}
            with pytest.warns(DeprecationWarning, match=f"`{old}`"):
                model = builder(**given, **{old: values[old]})
            assert old not in model.get_config(), (builder_name, old)
    # What the former names set, under the current names.
    with pytest.warns(DeprecationWarning):
        two = MODELS["two_stream"](**CASES["two_stream"][0], temporal_dropout=0.2)
    assert two.dropout == [0.5, 0.2]
    with pytest.warns(DeprecationWarning):
        mpa = MODELS["mpa_sal"](**CASES["mpa_sal"][0], stream="temporal")
    assert mpa.streams == ("temporal",) and mpa.stream == "temporal"
    with pytest.raises(ValueError, match="both dropout"):
        MODELS["two_stream"](**CASES["two_stream"][0], dropout=0.3, spatial_dropout=0.1)


def test_cma_former_output_and_branch_names_still_work():
    kwargs, shapes = CASES["cma"]
    model = MODELS["cma"](**kwargs)
    assert model.branches == ("spatial", "temporal")
    assert model.branch_prefixes == {"spatial": "rgb", "temporal": "flow"}
    with pytest.warns(DeprecationWarning, match="'rgb' is now named 'spatial'"):
        model.set_training_branch("rgb")
    assert model.training_branch == "spatial"
    model.set_training_branch(None)
    y = np.array([0, 2])
    with pytest.warns(DeprecationWarning, match="output '(rgb|flow)' is now named"):
        model.compile(loss={"rgb": "sparse_categorical_crossentropy",
                            "flow": "sparse_categorical_crossentropy"})  # fmt: skip
    x = _inputs(shapes)
    with pytest.warns(DeprecationWarning):
        loss = model.evaluate(x, {"rgb": y, "flow": y, "fused": y}, verbose=0, return_dict=True)
    assert np.isfinite(loss["loss"]) and "spatial_loss" in loss


# The default configuration of every builder is the paper's; built once each (no fit: full-size
# networks), its contract checked against the numbers the papers give, written out here.
PAPER_DEFAULTS = {
    # Simonyan & Zisserman 2014: CNN-M-2048 (Sect. 5), 224 px, L = 10 (Sect. 6), one frame.
    "two_stream": dict(backbone="cnn_m_2048", image_size=224, num_segments=1, flow_length=10),
    # Chi et al. 2019, Sects. 4.1-4.4: ResNet-50, K = 3 segments, L = 5, 5 CMA blocks per branch.
    "cma": dict(backbone="resnet50", image_size=224, num_segments=3, flow_length=5),
    # Sect. 5.6: the 3-D variant (a tiny P3D ResNet here), one flow field per frame.
    "cma_3d": dict(backbone="tiny", image_size=112, num_segments=8, flow_length=1),
    # Peng et al. 2018: ResNet-50 (Table II), L = 10; T = 8 frames is the library's choice.
    "tclsta": dict(backbone="resnet50", image_size=224, num_segments=8, flow_length=10),
    # Wang et al. 2017, Table 6 D: P = 3 paths of L = 10, one snippet; ResNet-50 (Tables 2, 7).
    "stpn": dict(backbone="resnet50", image_size=224, num_segments=1, flow_length=10, num_paths=3),
    # The RGB-only two-stream paper: ResNet-101, K = 3 segments, RGB + RGB differences.
    "mpa_sal": dict(backbone="resnet101", image_size=224, num_segments=3, diff_length=5),
}


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the same keras.ops graphs as on TensorFlow; building full-size twice costs CI minutes",
)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_default_configuration_is_the_papers(name):
    """Issue 19 item 7: every builder's default configuration, built as a user gets it."""
    assert name in PAPER_DEFAULTS, f"MODELS[{name!r}] has no paper default in PAPER_DEFAULTS"
    expected = PAPER_DEFAULTS[name]
    kwargs = {"semantic_encoder": None} if name == "mpa_sal" else {}  # its training is tested
    model = MODELS[name](101, **kwargs)
    config = model.get_config()
    for key in ("backbone", "image_size", "num_segments"):
        assert config[key] == expected[key], (name, key, config[key])
    data = model.data_config()
    for key in ("image_size", "num_segments", "flow_length", "num_paths", "diff_length"):
        if key in expected:
            assert data[key] == expected[key], (name, key, data[key])
    outputs = {"fused"} if name == "stpn" else {"spatial", "temporal", "fused"}
    assert outputs <= set(model.output_names), (name, model.output_names)
    for output in outputs:
        assert tuple(model.output[output].shape) == (None, 101), (name, output)
    for key, shape in model._input_shapes.items():
        assert shape[1:3] == (expected["image_size"],) * 2, (name, key)
    if name == "cma":
        assert len(model.cma_layers("spatial")) == len(model.cma_layers("temporal")) == 5
        assert all(n.startswith(("conv3", "conv4")) for n in model.cma_block_names)  # res3, res4
    if name == "stpn":
        assert config["fusion_dim"] == 4096 and config["attention"]  # Table 6 D


def test_the_same_arguments_build_every_model():
    """Issue 19, done when: the README's example works with the same arguments for every builder
    (`README.md`, "One contract"), and the data contract tells make_dataset what to feed."""
    for name, build in MODELS.items():
        model = build(num_classes=5, backbone="tiny", image_size=64, num_segments=2, dropout=0.5)
        config = model.data_config()
        assert (config["image_size"], config["num_segments"]) == (64, 2), name
        assert "fused" in model.output_names, name
        shapes = {k: (2, *v) for k, v in model._input_shapes.items()}
        out = model.predict_on_batch({k: np.zeros(s, "float32") for k, s in shapes.items()})
        assert all(np.asarray(v).shape == (2, 5) for v in out.values()), name


@pytest.mark.parametrize("name", ["cma", "mpa_sal"])
def test_models_saved_before_the_renaming_still_load(name):
    """`.keras` files written before issue 19 (tests/data/legacy_models/README.md): CMA's layers
    keep their former order (Keras restores a functional model's layers by position), and the
    former argument names in a saved config still build the same model."""
    import warnings

    from keras_twostream import load_model

    folder = os.path.join(os.path.dirname(__file__), "..", "data", "legacy_models")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the former names in the config
        model = load_model(os.path.join(folder, f"{name}.keras"))
    x = dict(np.load(os.path.join(folder, f"{name}_inputs.npz")))
    old = dict(np.load(os.path.join(folder, f"{name}_outputs.npz")))
    new = model.predict_on_batch(x)
    renamed = {"rgb": "spatial", "flow": "temporal"}
    assert sorted(renamed.get(k, k) for k in old) == sorted(new)
    for key, value in old.items():
        np.testing.assert_allclose(np.asarray(new[renamed.get(key, key)]), value, atol=1e-6)


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"cma_3d"}))
def test_a_backbone_instance_initialises_every_stream(name):
    """Issue 19 item 1: `backbone` is a name or a backbone instance. The instance's weights go
    into every stream; the other stream's first convolution is TSN's cross-modality average
    (each of its channels the mean of the RGB kernel over its 3 channels)."""
    from keras_twostream.backbones import Backbone, adapt_input_channels
    from keras_twostream.backbones.weights import leaf_layers

    kwargs, shapes = CASES[name]
    size = kwargs["image_size"]
    source = Backbone("tiny", input_shape=(size, size, 3), name="my_backbone")
    for layer in leaf_layers(source):  # weights unlike any fresh initialisation
        layer.set_weights([np.random.RandomState(1).randn(*w.shape) for w in layer.get_weights()])
    model = MODELS[name](**{**kwargs, "backbone": source})
    assert model.get_config()["backbone"] == "tiny"
    theirs = [layer for layer in leaf_layers(source) if layer.weights]
    # Each stream's blocks, named f"{backbone name}_{block}" (STPN uses them up to res5).
    # (two_stream keeps each backbone whole, as one layer named f"{stream}_backbone").
    names = {layer.name: layer for layer in model.layers}
    streams = [p for p in ("spatial", "temporal", "rgb", "flow")
               if f"{p}_backbone" in names or f"{p}_backbone_stem" in names]  # fmt: skip
    assert len(streams) == 2, streams
    for stream in streams:
        blocks = [names[f"{stream}_backbone"]] if f"{stream}_backbone" in names else [
            layer for layer in model.layers if layer.name.startswith(f"{stream}_backbone_")
        ]  # fmt: skip
        ours = [layer for block in blocks for layer in leaf_layers(block) if layer.weights]
        assert len(ours) >= len(theirs) - 1, stream  # all but a head's classifier, if any
        for index, (a, b) in enumerate(zip(theirs, ours, strict=False)):
            for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
                if index == 0 and u.shape != v.shape:  # the first conv of a 2L/3D-channel stream
                    u = adapt_input_channels(u, v.shape[2])
                    np.testing.assert_allclose(v[:, :, 0], a.get_weights()[0].mean(2), atol=1e-6)
                np.testing.assert_allclose(v, u, atol=1e-6, err_msg=f"{stream} {b.name}")
    with pytest.raises(ValueError, match="instance's weights"):
        MODELS[name](**{**kwargs, "backbone": source, "spatial_weights": "imagenet"})
    with pytest.raises(ValueError, match="backbone"):
        MODELS[name](**{**kwargs, "backbone": 3})
