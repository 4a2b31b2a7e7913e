"""Mixed precision: every model trains a step under mixed_float16 and mixed_bfloat16 with finite
losses; FFT layers and outputs stay float32; the custom (alternating) step scales the loss."""

import keras
import numpy as np
import pytest

from keras_twostream.layers import CompactBilinear
from keras_twostream.models import MODELS
from keras_twostream.training.mixed_precision import (
    default_mixed_precision_policy,
    mixed_precision,
    set_mixed_precision,
)

# name -> (builder kwargs for a tiny CPU-sized model, input shapes without batch). MPA+SAL (its
# adversarial two-optimizer step) is covered by tests/models/test_mpa_sal.py.
CASES = {
    "stpn": (
        dict(num_classes=3, backbone="tiny", image_size=64, flow_length=1, fusion_dim=64, seed=0),
        {"rgb": (1, 64, 64, 3), "flow": (3, 64, 64, 2)},
    ),
    "two_stream": (
        dict(num_classes=3, backbone="tiny", image_size=32, num_segments=2, flow_length=2),
        {"rgb": (2, 32, 32, 3), "flow": (2, 32, 32, 4)},
    ),
    "cma": (
        dict(num_classes=3, backbone="tiny", image_size=32, num_segments=2, flow_length=2),
        {"rgb": (2, 32, 32, 3), "flow": (2, 32, 32, 4)},
    ),
    "cma_3d": (
        dict(num_classes=3, num_segments=4, image_size=32),
        {"rgb": (4, 32, 32, 3), "flow": (4, 32, 32, 2)},
    ),
    "tclsta": (
        dict(
            num_classes=3,
            backbone="tiny",
            image_size=32,
            num_segments=2,
            flow_length=2,
            cam_filters=8,
            lstm_units=6,
            collaborative_units=5,
        ),
        {"rgb": (2, 32, 32, 3), "flow": (2, 32, 32, 4)},
    ),
}

HALF = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


@pytest.fixture(autouse=True)
def _restore_policy():
    previous = keras.config.dtype_policy().name
    yield
    keras.config.set_dtype_policy(previous)
    assert previous == "float32", "an earlier test leaked a global dtype policy"


def _data(shapes, batch=2):
    rng = np.random.RandomState(0)
    return {k: rng.rand(batch, *s).astype("float32") for k, s in shapes.items()}, np.array([0, 2])


def _leaves(model):
    stack, seen = list(model.layers), []
    while stack:
        layer = stack.pop()
        seen.append(layer)
        stack.extend(getattr(layer, "layers", []))
        stack.extend(v for v in vars(layer).values() if isinstance(v, keras.layers.Layer))
    return seen


@pytest.mark.parametrize("policy", sorted(HALF))
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_model_trains_a_step(name, policy):
    kwargs, shapes = CASES[name]
    with mixed_precision(policy):
        model = MODELS[name](**kwargs)
    assert keras.config.dtype_policy().name == "float32"  # restored on exit
    layers = _leaves(model)
    assert any(layer.compute_dtype == HALF[policy] for layer in layers)
    assert all(v.dtype == "float32" for v in model.trainable_variables)  # float32 master weights
    for layer in layers:
        if isinstance(layer, CompactBilinear):  # FFTs reject half precision
            assert layer.compute_dtype == "float32", layer.name
    model.compile(run_eagerly=True)  # eager: tracing would dominate a one-step test
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    if hasattr(model, "set_training_branch"):
        model.set_training_branch("spatial")  # the custom branch-by-branch step
    x, y = _data(shapes)
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    # float16: the dynamic loss scale starts at 2^15, and a step whose scaled gradients overflow
    # is skipped (weights unchanged) with the scale halved; a few steps find a working scale.
    skipped = 0
    while True:
        logs = model.train_on_batch(x, y, return_dict=True)
        for key, value in logs.items():
            assert np.isfinite(value), key
        if any(
            not np.array_equal(keras.ops.convert_to_numpy(v), b)
            for v, b in zip(model.trainable_variables, before, strict=True)
        ):
            break
        assert policy == "mixed_float16", "a bfloat16 step must update the weights"
        skipped += 1
        assert skipped < 8, "eight float16 steps in a row overflowed"
    if policy == "mixed_float16":
        np.testing.assert_allclose(
            float(keras.ops.convert_to_numpy(model.optimizer.dynamic_scale)), 2.0 ** (15 - skipped)
        )
    outputs = model(x, training=False)
    assert all(keras.backend.standardize_dtype(t.dtype) == "float32" for t in outputs.values())
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert all(np.isfinite(a).all() for a in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_alternating_step_scales_and_unscales_the_loss():
    """float16 with a loss scale of 2^10: the RGB update matches the float32 update (half
    precision aside). A custom step that forgot `scale_loss` would apply gradients 2^10 times too
    small, one that forgot to unscale them 2^10 times too large."""
    kwargs, shapes = CASES["cma"]
    x, y = _data(shapes)
    updates = {}
    initial = None
    for policy in ("float32", "mixed_float16"):
        keras.config.set_dtype_policy(policy)
        model = MODELS["cma"](**{**kwargs, "dropout": 0.0})
        keras.config.set_dtype_policy("float32")
        if initial is None:
            initial = model.get_weights()
        model.set_weights(initial)
        optimizer = keras.optimizers.SGD(0.1)
        if policy == "mixed_float16":  # a fixed scale small enough not to overflow on this batch
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**10)
        model.compile(optimizer=optimizer, run_eagerly=True)
        model.set_training_branch("spatial")
        variables = model.branch_variables("spatial")
        before = [keras.ops.convert_to_numpy(v) for v in variables]
        model.fit(x, y, batch_size=2, epochs=1, verbose=0)
        updates[policy] = np.concatenate(
            [
                (keras.ops.convert_to_numpy(v) - b).ravel()
                for v, b in zip(variables, before, strict=True)
            ]
        )
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    reference, half = updates["float32"], updates["mixed_float16"]
    assert np.abs(reference).max() > 1e-3
    ratio = np.linalg.norm(half) / np.linalg.norm(reference)
    assert 0.8 < ratio < 1.25, ratio
    assert np.dot(half, reference) / (np.linalg.norm(half) * np.linalg.norm(reference)) > 0.95


def test_set_mixed_precision_chooses_by_device_and_validates():
    previous = set_mixed_precision(True)
    assert previous == "float32"
    assert keras.config.dtype_policy().name == default_mixed_precision_policy()
    import tensorflow as tf

    expected = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    if keras.backend.backend() == "tensorflow":
        assert default_mixed_precision_policy() == expected
    assert set_mixed_precision(False) == default_mixed_precision_policy()
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match="policy"):
        set_mixed_precision(True, policy="float16")
    with pytest.raises(ValueError, match="enabled"):
        set_mixed_precision("yes")
