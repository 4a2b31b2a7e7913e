"""Mixed precision for every model: float16 on GPUs, bfloat16 on CPUs and TPUs.

Set the global Keras dtype policy *before* building a model; its layers then compute in half
precision and keep float32 variables. What stays float32 whatever the policy:

- the FFT-based compact bilinear pooling (`CompactBilinear` forces `dtype="float32"`: `rfft`
  rejects float16 and bfloat16 on TensorFlow and JAX), and so the STCB layers of STPN;
- the softmax outputs and score fusions of every model (`dtype="float32"`), so losses and metrics
  are computed in float32;
- batch-normalisation statistics (Keras computes moments in float32).

Loss scaling: with `"mixed_float16"`, `model.compile()` wraps the optimizer in a
`keras.optimizers.LossScaleOptimizer` (dynamic loss scale), Keras' `train_step` multiplies the loss
by `optimizer.scale_loss`, and the library's custom steps (the alternating step of CMA, the
adversarial step of MPA+SAL) call `optimizer.scale_loss` themselves; the optimizer unscales the
gradients and skips steps whose gradients overflow. bfloat16 has float32's range and needs no
scaling (`scale_loss` is then the identity).
"""

import contextlib

import keras

POLICIES = ("mixed_float16", "mixed_bfloat16", "float32")


def default_mixed_precision_policy():
    """`"mixed_float16"` when the backend sees a GPU, else `"mixed_bfloat16"` (CPU, TPU).

    Example:

    >>> from keras_twostream.training import default_mixed_precision_policy
    >>> default_mixed_precision_policy() in ("mixed_float16", "mixed_bfloat16")
    True
    """
    return "mixed_float16" if _has_gpu() else "mixed_bfloat16"


def _has_gpu():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() in ("gpu", "cuda", "rocm")
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def set_mixed_precision(enabled=True, policy=None):
    """Turns mixed precision on (or off) for the models built from now on.

    Args:
        enabled: `True` sets a mixed policy, `False` goes back to `"float32"`.
        policy: `"mixed_float16"` or `"mixed_bfloat16"`; `None` chooses by device
            (`default_mixed_precision_policy`: float16 on GPU, bfloat16 on CPU/TPU).

    Returns:
        The name of the previous global policy, to restore it with
        `keras.config.set_dtype_policy(previous)`.

    Example:

    >>> from keras_twostream import build_two_stream
    >>> from keras_twostream.training import set_mixed_precision
    >>> previous = set_mixed_precision(policy="mixed_bfloat16")
    >>> model = build_two_stream(5, backbone="tiny", image_size=32, flow_length=2)
    >>> model.get_layer("spatial_classifier").compute_dtype, model.get_layer("spatial").compute_dtype
    ('bfloat16', 'float32')
    >>> _ = set_mixed_precision(False)
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"Expected enabled to be a bool. Received: enabled={enabled!r}")
    if policy is not None and policy not in POLICIES:
        raise ValueError(
            f"Expected policy to be one of {POLICIES} or None. Received: policy={policy!r}"
        )
    if not enabled:
        policy = "float32"
    elif policy is None:
        policy = default_mixed_precision_policy()
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    return previous


@contextlib.contextmanager
def mixed_precision(policy=None):
    """Context manager: a mixed-precision policy inside, the previous global policy restored after.

    Example:

    >>> from keras_twostream import build_two_stream
    >>> from keras_twostream.training import mixed_precision
    >>> with mixed_precision("mixed_bfloat16"):
    ...     model = build_two_stream(5, backbone="tiny", image_size=32, flow_length=2)
    >>> model.dtype_policy.name
    'mixed_bfloat16'
    """
    previous = set_mixed_precision(True, policy)
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)
