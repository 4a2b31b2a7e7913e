"""MirroredStrategy on two logical CPU devices trains every model and schedule exactly as one device
does on the same global batch: same weights, optimizer state and reported metrics after an epoch.

Batch normalisation mode checked: **synchronised** (`synchronized=True`, the CMA paper's setting,
Sect. 4.4) in every model. With per-replica BN in training mode each replica normalises its half
batch with its own statistics, so outputs, gradients and moving statistics legitimately differ from
the single-device run (`test_per_replica_batch_norm_differs_synchronized_matches` shows both modes on
one BN layer). Synchronised BN all-reduces the sums over the global batch, so the only remaining
difference is the float summation order: the comparison is exact up to float rounding.

The single-device reference also uses `synchronized=True`: outside a strategy Keras runs the same
one-pass moments (`E[x^2] - E[x]^2`) over one replica, which keeps the formulas identical.

The mirrored runs are traced (as `fit` runs by default) for CMA, whose custom branch-by-branch
step is where graph-mode pitfalls live; the others run eagerly under the strategy (the same
replica functions, all-reduces and variable updates, without the tracing that would dominate CI
time): their traced `fit` under the strategy is exercised by tests/models/test_stpn.py,
test_tclsta.py and tests/backbones/test_backbone.py.

Dropout is 0 (its masks are drawn per replica). STPN runs with `stcb_normalization=False`: the
signed square root `sign(z) sqrt(|z| + eps)` is discontinuous at 0 and its derivative is ~1/(2
sqrt(eps)) there, so float rounding of the summation order changes one update by up to 25 % (measured);
the normalisation is per sample and has nothing to do with distribution.
"""

import contextlib

import keras
import numpy as np
import pytest

from keras_twostream.models import MODELS

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute.MirroredStrategy is TensorFlow's"
)

GLOBAL_BATCH, STEPS, CLASSES = 4, 2, 3  # 2 samples per replica, 2 steps per epoch

# name -> (builder kwargs, input shapes without batch, phases: the training branch per epoch,
#          traced: the mirrored run traces its step as fit does by default, else runs eagerly)
CASES = {
    "two_stream": (
        dict(
            backbone="tiny",
            image_size=32,
            num_segments=2,
            flow_length=2,
            dropout=0.0,
        ),
        {"rgb": (2, 32, 32, 3), "flow": (2, 32, 32, 4)},
        [None],
        False,
    ),
    "stpn": (
        dict(
            backbone="tiny",
            image_size=64,
            flow_length=1,
            num_paths=2,
            fusion_dim=32,
            seed=0,
            dropout=0.0,
            stcb_normalization=False,
        ),
        {"rgb": (1, 64, 64, 3), "flow": (2, 64, 64, 2)},
        [None],
        False,
    ),
    # An epoch of joint training (Keras' train_step), then an epoch of the alternating schedule's
    # Flow iteration (the branch-by-branch train_step, retraced at the phase change; its code is
    # the same for either branch, and tests/training/test_alternating.py switches both phases
    # under the strategy). Traced, as fit runs it: the custom step is where graph-mode pitfalls
    # live (optimizer slots built outside the scope, PITFALLS.md).
    "cma": (
        dict(backbone="tiny", image_size=32, num_segments=2, flow_length=2, dropout=0.0),
        {"rgb": (2, 32, 32, 3), "flow": (2, 32, 32, 4)},
        [None, "temporal"],
        True,
    ),
    "tclsta": (
        dict(
            backbone="tiny",
            image_size=32,
            num_segments=2,
            flow_length=2,
            cam_filters=8,
            lstm_units=6,
            collaborative_units=5,
        ),
        {"rgb": (2, 32, 32, 3), "flow": (2, 32, 32, 4)},
        [None],
        False,
    ),
    # The 3-D variant, in its alternating RGB phase.
    "cma_3d": (
        dict(num_segments=2, image_size=32, dropout=0.0),
        {"rgb": (2, 32, 32, 3), "flow": (2, 32, 32, 2)},
        ["spatial"],
        False,
    ),
}


class _Phases(keras.callbacks.Callback):
    """Sets the model's training branch at each epoch start (`None`: joint training)."""

    def __init__(self, phases):
        super().__init__()
        self.phases = phases

    def on_epoch_begin(self, epoch, logs=None):
        if hasattr(self.model, "set_training_branch"):
            self.model.set_training_branch(self.phases[epoch])


def _data(shapes, steps=STEPS):
    rng = np.random.RandomState(0)
    n = GLOBAL_BATCH * steps
    x = {key: rng.rand(n, *shape).astype("float32") for key, shape in shapes.items()}
    return x, np.arange(n) % CLASSES


def _replica_values(variable):
    """Every replica's copy of a variable (one copy outside tf.distribute)."""
    import tensorflow as tf

    value = variable.value
    if isinstance(value, tf.distribute.DistributedValues):
        return [np.asarray(v) for v in value.values]
    return [np.asarray(value)]


def _train(name, strategy, initial, steps=STEPS):
    kwargs, shapes, phases, traced = CASES[name]
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = MODELS[name](num_classes=CLASSES, synchronized=True, **kwargs)
        # The paper's optimizer (SGD, momentum, weight decay for CMA). The single-device reference
        # runs eagerly: tracing dominates these few steps, and eager and traced steps agree.
        model.compile(jit_compile=False, run_eagerly=strategy is None or not traced)
    if initial is not None:
        model.set_weights(initial)
    model.initial_weights = model.get_weights()
    x, y = _data(shapes, steps)
    history = model.fit(
        x,
        y,
        batch_size=GLOBAL_BATCH,
        epochs=len(phases),
        shuffle=False,
        verbose=0,
        callbacks=[_Phases(phases)],
    )
    return model, history.history


def _compare(name, steps=STEPS):
    from conftest import two_cpu_strategy

    strategy = two_cpu_strategy()
    single, single_logs = _train(name, None, None, steps)
    initial = single.initial_weights
    mirrored, mirrored_logs = _train(name, strategy, initial, steps)
    assert mirrored.distribute_strategy.num_replicas_in_sync == 2

    # Reported metrics: the loss (Keras divides it by the replica count for the gradient and
    # multiplies it back for the tracker) and every output's loss and accuracy.
    assert sorted(mirrored_logs) == sorted(single_logs)
    for key, values in single_logs.items():
        np.testing.assert_allclose(mirrored_logs[key], values, rtol=2e-5, err_msg=key)

    # Weights, BN moving statistics and optimizer slots, on both replicas.
    moved = 0.0
    pairs = list(zip(single.weights, mirrored.weights, strict=True)) + list(
        zip(single.optimizer.variables, mirrored.optimizer.variables, strict=True)
    )
    for a, b in pairs:
        replicas = _replica_values(b)
        assert len(replicas) == 2, b.path
        np.testing.assert_array_equal(
            replicas[0], replicas[1], err_msg=f"replicas disagree: {b.path}"
        )
        expected = keras.ops.convert_to_numpy(a.value)
        np.testing.assert_allclose(replicas[0], expected, rtol=1e-4, atol=2e-6, err_msg=b.path)
    for a, w in zip(single.weights, initial, strict=True):
        moved = max(moved, float(np.abs(keras.ops.convert_to_numpy(a.value) - w).max()))
    # A 2x loss-scaling error would move weights by ~`moved`: far above the tolerance.
    assert moved > 1e-3


@pytest.mark.parametrize("name", sorted(CASES))
def test_mirrored_matches_single_device_with_synchronized_batch_norm(name):
    # The 3-D CMA model is checked over one step. On its second step Keras' synchronised BN loses
    # the exact match: it computes the variance as E[x^2] - E[x]^2 in float32, and for channels
    # whose variance is small against their squared mean (res5 is 1x1 x T here) the summation
    # order then changes the normalisation by ~1e-2 (measured: 5 % of an update; a two-pass
    # all-reduce of (x - mean)^2 brings it back to 1e-6): Keras' formula, not the model.
    _compare(name, steps=1 if name == "cma_3d" else STEPS)


def test_per_replica_batch_norm_differs_synchronized_matches():
    """The BN mode matters: per-replica statistics differ from the global batch's, synchronised
    ones do not. One BN layer, one step, inputs whose two halves have different means."""
    from conftest import two_cpu_strategy

    strategy = two_cpu_strategy()
    x = np.concatenate([np.zeros((2, 3)), np.ones((2, 3)) * 4.0]).astype("float32")
    x += np.random.RandomState(0).rand(4, 3).astype("float32")
    expected_mean = 0.1 * x.mean(0)  # momentum 0.9 from 0 after one step on the global batch

    def moving_mean(synchronized):
        with strategy.scope():
            inputs = keras.Input((3,))
            bn = keras.layers.BatchNormalization(momentum=0.9, synchronized=synchronized)
            model = keras.Model(inputs, keras.layers.Dense(1)(bn(inputs)))
            model.compile(optimizer="sgd", loss="mse", jit_compile=False)
        model.fit(x, np.zeros((4, 1)), batch_size=4, epochs=1, shuffle=False, verbose=0)
        return _replica_values(bn.moving_mean)

    synced = moving_mean(True)
    np.testing.assert_allclose(synced[0], expected_mean, rtol=1e-5)
    np.testing.assert_array_equal(synced[0], synced[1])
    per_replica = moving_mean(False)
    # Each replica averages its own half (the default MEAN aggregation of the moving statistics on
    # assignment is per replica: they even disagree between replicas).
    np.testing.assert_allclose(per_replica[0], 0.1 * x[:2].mean(0), rtol=1e-5)
    np.testing.assert_allclose(per_replica[1], 0.1 * x[2:].mean(0), rtol=1e-5)
