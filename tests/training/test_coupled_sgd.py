"""CoupledSGD: the papers' Caffe/PyTorch L2 weight decay inside the momentum, checked against NumPy."""

import keras
import numpy as np
import pytest

from keras_twostream.training import CoupledSGD

LR, WD, MOMENTUM = 0.01, 5e-4, 0.9


def numpy_sgd(w, grads, lr=LR, wd=WD, momentum=MOMENTUM):
    """PyTorch/Caffe SGD: g <- g + wd*w; v <- m*v + g; w <- w - lr*v (constant lr)."""
    w, v = np.array(w, "float64"), np.zeros_like(w, "float64")
    for g in grads:
        v = momentum * v + (g(w) + wd * w)
        w = w - lr * v
    return w


def linear_model(kernel, bias):
    model = keras.Sequential([keras.Input((kernel.shape[0],)), keras.layers.Dense(kernel.shape[1])])
    model.layers[0].set_weights([kernel, bias])
    return model


def test_first_two_updates_match_numpy_and_keras_decay_does_not():
    rng = np.random.RandomState(0)
    x, y = rng.randn(8, 4).astype("float32"), rng.randn(8, 3).astype("float32")
    kernel, bias = rng.randn(4, 3).astype("float32"), rng.randn(3).astype("float32")

    # NumPy reference with a real gradient: the mean squared error of a linear layer.
    def run_numpy(wd):
        W, b = kernel.astype("float64"), bias.astype("float64")
        vW, vb = np.zeros_like(W), np.zeros_like(b)
        for _ in range(2):
            r = 2 * (x @ W + b - y) / y.size
            gW, gb = x.T @ r + wd * W, r.sum(0)  # biases are not decayed (TSN's policy)
            vW, vb = MOMENTUM * vW + gW, MOMENTUM * vb + gb
            W, b = W - LR * vW, b - LR * vb
        return W, b

    def run_keras(optimizer):
        model = linear_model(kernel, bias)
        model.compile(optimizer=optimizer, loss="mse")
        for _ in range(2):
            model.train_on_batch(x, y)
        return [np.asarray(w, "float64") for w in model.get_weights()]

    W, b = run_keras(CoupledSGD(LR, momentum=MOMENTUM, weight_decay=WD))
    W_ref, b_ref = run_numpy(WD)
    np.testing.assert_allclose(W, W_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b, b_ref, rtol=1e-5, atol=1e-7)
    # The decay's share of the two updates: ours / NumPy's, and Keras' decoupled SGD's.
    W0, _ = run_numpy(0.0)
    ratio = np.abs(W - W0).sum() / np.abs(W_ref - W0).sum()
    assert ratio == pytest.approx(1.0, abs=0.01)
    W_keras, _ = run_keras(keras.optimizers.SGD(LR, momentum=MOMENTUM, weight_decay=WD))
    keras_ratio = np.abs(W_keras - W0).sum() / np.abs(W_ref - W0).sum()
    assert keras_ratio < 0.8  # 2 vs 2.9 lr*wd*w after two steps; about 10x weaker in the long run


def test_long_run_decay_matches_numpy_and_vectors_are_kept():
    w = keras.Variable(np.ones((2, 2), "float32"))
    bias = keras.Variable(np.ones(2, "float32"))
    ours = CoupledSGD(LR, momentum=MOMENTUM, weight_decay=WD)
    ref = numpy_sgd(np.ones((2, 2)), [lambda w: 0.0] * 300)
    zero = [np.zeros((2, 2), "float32"), np.zeros(2, "float32")]
    for _ in range(300):
        ours.apply(zero, [w, bias])
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-5)
    assert np.array_equal(bias.numpy(), np.ones(2))  # rank-1 variables are not decayed
    every = CoupledSGD(LR, momentum=MOMENTUM, weight_decay=WD, decay_vectors=True)
    every.apply(zero[1:], [bias])
    assert float(bias.numpy()[0]) < 1.0


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="an eager LossScaleOptimizer.apply leaks a tracer on JAX, Keras' own SGD too (Keras 3.15)",
)
def test_inside_loss_scaling_and_serialisation():
    w = keras.Variable(np.ones((2, 2), "float32"))
    optimizer = keras.optimizers.LossScaleOptimizer(
        CoupledSGD(LR, momentum=MOMENTUM, weight_decay=WD)
    )
    for _ in range(2):
        optimizer.apply([np.zeros((2, 2), "float32")], [w])
    np.testing.assert_allclose(
        w.numpy(), numpy_sgd(np.ones((2, 2)), [lambda w: 0.0] * 2), rtol=1e-6
    )
    config = keras.optimizers.serialize(CoupledSGD(0.1, momentum=0.5, weight_decay=1e-3))
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored, CoupledSGD) and restored.weight_decay == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="weight_decay"):
        CoupledSGD(weight_decay=-1.0)


def test_gradient_accumulation_equals_the_large_batch():
    # `train --accumulate N`: N micro-batches of B/N give the update of one batch of B, with the
    # momentum and the coupled decay applied once per update (issue 19 item 4).
    rng = np.random.RandomState(1)
    x, y = rng.randn(16, 4).astype("float32"), rng.randn(16, 3).astype("float32")
    kernel, bias = rng.randn(4, 3).astype("float32"), rng.randn(3).astype("float32")

    def trained(batch_size, **optimizer_kwargs):
        model = linear_model(kernel, bias)
        optimizer = CoupledSGD(LR * 10, momentum=MOMENTUM, weight_decay=WD * 10, **optimizer_kwargs)
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        return model.get_weights(), int(optimizer.iterations)

    large, updates = trained(8)
    accumulated, accumulated_updates = trained(2, gradient_accumulation_steps=4)
    assert updates == accumulated_updates == 2  # 16 samples: two updates either way
    for a, b in zip(large, accumulated, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-6)
    # Without accumulation the same micro-batches make 8 updates and another result.
    separate, _ = trained(2)
    assert not np.allclose(separate[0], large[0], atol=1e-4)
