"""The Backbone model: lookup, validation, blocks, saving, training (all architectures)."""

import keras
import numpy as np
import pytest
from backbone_test_utils import randomize_weights, to_numpy

from keras_twostream.backbones import BACKBONES, Backbone, get_backbone
from keras_twostream.backbones.cnn_m import MIN_INPUT_SIZE
from keras_twostream.backbones.weights import leaf_layers

# Small inputs that keep every architecture fast (ResNet-101 only differs from
# ResNet-50 by its block count, checked in test_resnet_backbone.py).
SMALL = {
    "tiny": (64, 64, 3),
    "resnet50": (64, 64, 20),
    "vgg16": (32, 32, 20),
    "cnn_m_2048": (MIN_INPUT_SIZE, MIN_INPUT_SIZE + 4, 20),
    "tiny_torch": (64, 72, 10),
}


def images(shape, batch=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, *shape)).astype("float32")


def test_backbones_dict_and_unknown_name():
    assert sorted(BACKBONES) == [
        "bn_inception",
        "cnn_m_2048",
        "resnet101",
        "resnet101_torch",
        "resnet50",
        "resnet50_torch",
        "tiny",
        "tiny_torch",
        "vgg16",
    ]
    assert all(callable(builder) for builder in BACKBONES.values())
    with pytest.raises(
        ValueError, match=r"resnet9000.*'cnn_m_2048', 'resnet101', 'resnet101_torch', 'resnet50'"
    ):
        get_backbone("resnet9000")
    with pytest.raises(ValueError, match="architecture"):
        Backbone("alexnet", input_shape=(64, 64, 3))


def test_tiny_shapes_and_size():
    backbone = get_backbone("tiny", input_shape=(112, 112, 3))
    shapes = {name: tuple(t.shape) for name, t in backbone.output.items()}
    assert shapes == {
        "res2": (None, 28, 28, 8),
        "res3": (None, 14, 14, 16),
        "res4": (None, 7, 7, 32),
        "res5": (None, 4, 4, 64),
        "features": (None, 64),
    }
    assert backbone.count_params() < 100_000
    # Height and width may be left open for the convolution-only networks.
    free = get_backbone("tiny", input_shape=(None, None, 4))
    out = free(images((40, 72, 4)))
    assert tuple(out["res5"].shape) == (2, 2, 3, 64)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (64, 64)}, "input_shape"),
        ({"input_shape": (64, 64, 0)}, "input_shape"),
        ({"input_shape": (64, -1, 3)}, "input_shape"),
        ({"input_shape": "64x64x3"}, "input_shape"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"stream": "rgb"}, "stream"),
        ({"synchronized": "yes"}, "synchronized"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_backbone("tiny", **{"input_shape": (64, 64, 3), **kwargs})


@pytest.mark.parametrize("architecture", sorted(SMALL))
def test_blocks_compose_to_the_network(architecture):
    backbone = get_backbone(architecture, input_shape=SMALL[architecture])
    randomize_weights(backbone, seed=1)
    names = [name for name, _ in backbone.blocks]
    assert names[-1] == "head" and len(set(names)) == len(names)
    assert set(backbone.stage_ends.values()) <= set(names)
    x = images(SMALL[architecture])
    expected = to_numpy(backbone(x, training=False))

    # A hand-written loop over the blocks, as architectures with lockstep branches do.
    stage_of_block = {block: stage for stage, block in backbone.stage_ends.items()}
    got, h = {}, x
    for name, block in backbone.blocks:
        h = block(h, training=False)
        if name in stage_of_block:
            got[stage_of_block[name]] = keras.ops.convert_to_numpy(h)
    got["features"] = keras.ops.convert_to_numpy(h)
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-6)
    assert np.std(got["features"]) > 0

    # The blocks hold every weight of the backbone, once.
    block_weights = [id(w) for _, block in backbone.blocks for w in block.weights]
    assert sorted(block_weights) == sorted(id(w) for w in backbone.weights)


def test_run_blocks_applies_the_hook_between_blocks():
    backbone = get_backbone("tiny", input_shape=(64, 64, 3))
    x = images((64, 64, 3))
    plain = to_numpy(backbone(x, training=False))
    same = to_numpy(backbone.run_blocks(x, training=False))
    for key in plain:
        np.testing.assert_allclose(same[key], plain[key], rtol=1e-6, atol=1e-6)

    seen = []

    def hook(name, h):
        seen.append(name)
        return h * 0.0 if name == "conv3_block1" else h

    hooked = to_numpy(backbone.run_blocks(x, after_block=hook, training=False))
    assert seen == [name for name, _ in backbone.blocks]
    np.testing.assert_allclose(hooked["res2"], plain["res2"], rtol=1e-6)
    assert np.all(hooked["res3"] == 0)  # the hook's output is the stage output
    assert not np.allclose(hooked["res4"], plain["res4"])


def test_blocks_of_two_backbones_share_one_functional_model():
    """RGB and flow branches in lockstep with a layer inserted after a res3 block."""
    rgb = get_backbone("tiny", input_shape=(64, 64, 3), name="rgb")
    flow = get_backbone("tiny", input_shape=(64, 64, 10), name="flow")
    assert rgb.blocks[1][1].name == "rgb_conv2_block1"
    inputs = {
        "rgb": keras.Input((64, 64, 3), name="rgb"),
        "flow": keras.Input((64, 64, 10), name="flow"),
    }
    a, b = inputs["rgb"], inputs["flow"]
    for (name, rgb_block), (_, flow_block) in zip(rgb.blocks, flow.blocks, strict=True):
        a, b = rgb_block(a), flow_block(b)
        if name == "conv3_block1":
            a = keras.layers.Add(name="cross_modality")([a, b])
    model = keras.Model(inputs, {"rgb": a, "flow": b})
    assert len(model.weights) == len(rgb.weights) + len(flow.weights)
    x = {"rgb": images((64, 64, 3)), "flow": images((64, 64, 10), seed=1)}
    out = to_numpy(model(x, training=False))
    # The flow branch is untouched, and it reuses flow's weights.
    np.testing.assert_allclose(
        out["flow"], keras.ops.convert_to_numpy(flow(x["flow"])["features"]), rtol=1e-6
    )


def test_default_names_are_unique():
    first, second = get_backbone("tiny", input_shape=(32, 32, 3)), get_backbone("tiny")
    assert first.name != second.name
    assert first.blocks[0][1].name == f"{first.name}_stem"


def test_get_config_is_the_constructor_arguments():
    backbone = get_backbone(
        "cnn_m_2048", input_shape=(96, 112, 20), stream="temporal", dropout=0.9, name="flow"
    )
    assert backbone.get_config() == {
        "name": "flow",
        "trainable": True,
        "architecture": "cnn_m_2048",
        "input_shape": (96, 112, 20),
        "stream": "temporal",
        "dropout": 0.9,
        "synchronized": False,
    }


@pytest.mark.parametrize("architecture, shape", [("tiny", (64, 64, 20)), ("resnet50", (64, 64, 3))])
def test_keras_file_round_trip(tmp_path, architecture, shape):
    backbone = get_backbone(architecture, input_shape=shape, name=f"{architecture}_rgb")
    randomize_weights(backbone, seed=2)
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is Backbone
    assert restored.get_config() == backbone.get_config()
    assert [n for n, _ in restored.blocks] == [n for n, _ in backbone.blocks]
    assert restored.stage_ends == backbone.stage_ends
    x = images(shape)
    expected, got = to_numpy(backbone(x)), to_numpy(restored(x))
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    # BatchNorm statistics travelled too (randomised, not the defaults).
    bn = next(x for x in leaf_layers(restored) if isinstance(x, keras.layers.BatchNormalization))
    assert not np.allclose(np.asarray(bn.moving_variance), 1.0)


def test_tiny_trains():
    """The tiny backbone learns an easy task in a few CPU steps (fit through the dict output)."""
    backbone = get_backbone("tiny", input_shape=(64, 64, 3))
    inputs = keras.Input((64, 64, 3))
    logits = keras.layers.Dense(2, name="classifier")(backbone(inputs)["features"])
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.2, (32, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 2, 32)
    x[y == 1, :, :32] += 0.8  # class 1: bright left half
    before = [np.asarray(w).copy() for w in backbone.trainable_weights]
    bn = backbone.blocks[0][1].get_layer("conv1_bn")
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0)
    after = [np.asarray(w) for w in backbone.trainable_weights]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert not np.allclose(np.asarray(bn.moving_mean), 0.0)  # BN ran in training mode
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]


def test_predict_on_tf_data():
    import tensorflow as tf

    backbone = get_backbone("tiny", input_shape=(64, 64, 3))
    x = images((64, 64, 3), batch=6)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(4)
    predicted = backbone.predict(dataset, verbose=0)
    assert predicted["features"].shape == (6, 64) and predicted["res2"].shape == (6, 16, 16, 8)
    np.testing.assert_allclose(
        predicted["features"],
        keras.ops.convert_to_numpy(backbone(x)["features"]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_savedmodel_export(tmp_path):
    import tensorflow as tf

    backbone = get_backbone("tiny", input_shape=(64, 64, 3))
    backbone.export(str(tmp_path / "tiny"), verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "tiny"))
    x = images((64, 64, 3))
    served = restored.serve(x)
    expected = to_numpy(backbone(x, training=False))
    assert sorted(served) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(served[key].numpy(), expected[key], rtol=1e-5, atol=1e-6)


def test_synchronized_batch_norm():
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(ValueError, match="TensorFlow backend"):
            get_backbone("tiny", input_shape=(32, 32, 3), synchronized=True)
        return
    from conftest import two_cpu_strategy

    strategy = two_cpu_strategy()
    with strategy.scope():
        backbone = get_backbone("tiny", input_shape=(32, 32, 3), synchronized=True)
        inputs = keras.Input((32, 32, 3))
        model = keras.Model(inputs, keras.layers.Dense(2)(backbone(inputs)["features"]))
        model.compile(
            optimizer="sgd",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    bns = [x for x in leaf_layers(backbone) if isinstance(x, keras.layers.BatchNormalization)]
    assert bns and all(bn.synchronized for bn in bns)
    x = images((32, 32, 3), batch=8)
    history = model.fit(x, np.arange(8) % 2, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(np.asarray(bns[0].moving_mean), 0.0)
