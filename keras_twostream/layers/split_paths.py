"""Unfolding STPN's flow paths from the batch axis."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_twostream")
class SplitPaths(keras.layers.Layer):
    """Splits `(B * P, ...)` into P tensors `(B, ...)`: path p is every P-th row from p.

    STPN's multi-path temporal fusion (Wang et al., CVPR 2017, Sect. 3.2) runs the
    P flow chunks of a snippet through one temporal network folded into the
    batch, then splits them again for the fusion of the paths.

    Args:
        num_paths: P.
        **kwargs: base layer keyword arguments, such as `name`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.layers import SplitPaths
    >>> a, b = SplitPaths(2)(np.arange(4, dtype="float32").reshape(4, 1))
    >>> np.asarray(a).ravel().tolist(), np.asarray(b).ravel().tolist()
    ([0.0, 2.0], [1.0, 3.0])
    """

    def __init__(self, num_paths, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_paths, bool) or not isinstance(num_paths, int) or num_paths < 1:
            raise ValueError(f"Expected num_paths to be a positive int. Received: {num_paths!r}")
        self.num_paths = num_paths

    def call(self, inputs):
        trailing = tuple(inputs.shape[1:])
        if None in trailing:
            trailing = tuple(ops.shape(inputs)[1:])
        x = ops.reshape(inputs, (-1, self.num_paths) + trailing)  # [B*P, ...] -> [B, P, ...]
        return [x[:, p] for p in range(self.num_paths)]

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.num_paths
        return [(batch,) + tuple(input_shape[1:])] * self.num_paths

    def get_config(self):
        return {**super().get_config(), "num_paths": self.num_paths}
