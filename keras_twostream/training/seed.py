"""One seed for a whole training run: sampling, augmentation and initialisation.

Where the randomness of a run comes from, and what fixes it:

- initial weights, dropout masks, STPN's count-sketch hashes when built without `seed=`: Python's
  `random`, NumPy's global generator and Keras' global `SeedGenerator`, all seeded by
  `keras.utils.set_random_seed` (which also seeds TensorFlow's global generator);
- frame sampling, crops, flips and colour jitter of `keras_twostream.data.make_dataset`: one
  NumPy generator per epoch, `np.random.default_rng([seed, epoch])`, drawn before decoding (no
  `tf.random` op in the pipeline), so the batches do not depend on the parallelism: pass the
  same `seed` to `make_dataset`.

On CPU two runs with the same seed then give identical histories. GPU kernels (cuDNN
convolutions, scatter/segment sums) may still pick non-deterministic algorithms; use
`deterministic_ops=True` there (TensorFlow's `enable_op_determinism`, slower).
"""

import numbers

import keras


def set_seed(seed, deterministic_ops=False):
    """Seeds every random number generator a training run uses.

    Call it before building the model and the datasets, and pass the same `seed` to
    `keras_twostream.data.make_dataset`.

    Args:
        seed: a non-negative integer.
        deterministic_ops: also make TensorFlow pick deterministic kernels
            (`tf.config.experimental.enable_op_determinism`; for GPUs, and it stays on for the
            rest of the process). Ignored on other backends.

    Returns:
        `seed`.

    Example:

    >>> from keras_twostream import build_two_stream
    >>> from keras_twostream.training import set_seed
    >>> _ = set_seed(0)
    >>> a = build_two_stream(5, backbone="tiny", image_size=32, flow_length=2).get_weights()
    >>> _ = set_seed(0)
    >>> b = build_two_stream(5, backbone="tiny", image_size=32, flow_length=2).get_weights()
    >>> all((x == y).all() for x, y in zip(a, b))
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"Expected seed to be a non-negative integer. Received: seed={seed!r}")
    if not isinstance(deterministic_ops, bool):
        raise ValueError(
            f"Expected deterministic_ops to be a bool. Received: deterministic_ops={deterministic_ops!r}"
        )
    keras.utils.set_random_seed(int(seed))
    if deterministic_ops and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return int(seed)
