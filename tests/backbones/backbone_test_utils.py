"""Helpers shared by the backbone tests."""

import keras
import numpy as np

from keras_twostream.backbones.weights import leaf_layers


def randomize_weights(model, seed=0):
    """Gives every weight of `model` a random, non-default value (BN statistics included).

    Kernels get He-scaled normal values, biases and BN betas/means small normal
    values, BN gammas/variances values around 1, so that a wrongly wired bias,
    epsilon or statistic changes the outputs.
    """
    rng = np.random.default_rng(seed)
    for layer in leaf_layers(model):
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = (np.asarray(w) for w in layer.get_weights())
            layer.set_weights(
                [
                    rng.uniform(0.7, 1.3, gamma.shape).astype("float32"),
                    rng.normal(0, 0.1, beta.shape).astype("float32"),
                    rng.normal(0, 0.1, mean.shape).astype("float32"),
                    rng.uniform(0.7, 1.3, variance.shape).astype("float32"),
                ]
            )
            continue
        values = []
        for weight in layer.get_weights():
            if weight.ndim > 1:
                fan_in = int(np.prod(weight.shape[:-1]))
                values.append(rng.normal(0, np.sqrt(2.0 / fan_in), weight.shape))
            else:
                values.append(rng.normal(0, 0.05, weight.shape))
        layer.set_weights([v.astype("float32") for v in values])


def weights_by_layer(model):
    """`{layer name: [arrays]}` for every weight-bearing leaf layer."""
    return {
        layer.name: [np.asarray(w) for w in layer.get_weights()]
        for layer in leaf_layers(model)
        if layer.weights
    }


def to_numpy(tensors):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, tensors)


def assert_close_to_scale(actual, expected, rtol=1e-4):
    """`|actual - expected| <= rtol * max|expected|` elementwise (deep nets, float32)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(float(np.max(np.abs(expected))), 1e-6)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)
