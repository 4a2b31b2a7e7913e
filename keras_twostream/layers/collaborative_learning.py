"""The collaborative learning layer of TCLSTA (Peng et al. 2018, Sect. III-B-1, Eqs. 7-9, Algorithm 1)."""

import numbers

import keras
from keras import ops


def _is_positive_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


@keras.saving.register_keras_serializable(package="keras_twostream")
class CollaborativeLearning(keras.layers.Layer):
    """Static-motion collaborative learning: each modality's attention guided by the other.

    The collaborative learning layer of Peng et al., "Two-Stream
    Collaborative Learning with Spatial-Temporal Attention for Video
    Classification" (IEEE TCSVT 2018), Sect. III-B-1. Given the frame
    (static) features `V^s = [v^s_1 .. v^s_N]` and the optical flow (motion)
    features `V^m = [v^m_1 .. v^m_N]` of a video, the motion coefficients are
    computed under the guidance of the merged static feature `O^s`

        H = tanh(W_m V^m + (W^s_o O^s) 1^T)                     (Eq. 7)
        z^m = softmax(W^m_h^T H)                                 (Eq. 8)
        O^m = sum_i z^m_i v^m_i                                  (Eq. 9)

    and symmetrically `z^s` and `O^s` from `O^m` with `W_s`, `W^m_o` and
    `W^s_h`. Algorithm 1 starts from uniform `z^s = 1/N` and alternates
    (step 3: `O^s`; steps 4-5: `z^m`, `O^m`; step 6: `z^s`, `O^s`);
    "until the loss functions converge" is here a fixed number of
    alternations inside the layer, sharing the six weight matrices. The layer
    returns the optimised features `V^s_f = V^s^T z^s` and `V^m_f = V^m^T z^m`
    of the last alternation (step 8). Like Eq. (7), the projections have no
    biases. Kernels are stored transposed for row-vector features:
    `static_kernel` is `W_s^T` (static channels x units), `motion_kernel` is
    `W_m^T`, `static_guide_kernel` is `W^s_o^T`, `motion_guide_kernel` is
    `W^m_o^T`, and `static_score_kernel` / `motion_score_kernel` are the
    vectors `W^s_h` / `W^m_h` (units x 1).

    Args:
        units: `k`, the rows of `W_m`, `W_s`, `W^s_o`, `W^m_o` (the paper does
            not give it; 512 by default, the LSTM's width).
        num_alternations: how many times Algorithm 1's loop body (steps 3-6)
            runs. One alternation guides the motion attention by the plain
            average of the frames and the static attention by the attended
            motion feature; the default 2 lets the attended static feature
            guide the motion attention in turn.
        kernel_initializer: initializer of the six weight matrices.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a list `[static, motion]` of features `(batch, N_s, d_s)` and
            `(batch, N_m, d_m)`: one vector per frame (or flow stack).
        return_coefficients: also return `z^s` and `z^m`.

    Returns:
        `(static_features, motion_features)`, `(batch, d_s)` and
        `(batch, d_m)`; with `return_coefficients=True`, also the
        coefficients `z^s` `(batch, N_s)` and `z^m` `(batch, N_m)`, each
        summing to 1.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> cln = keras_twostream.layers.CollaborativeLearning(units=8)
    >>> static = np.random.rand(2, 5, 16).astype("float32")
    >>> motion = np.random.rand(2, 5, 12).astype("float32")
    >>> vs, vm, zs, zm = cln([static, motion], return_coefficients=True)
    >>> tuple(vs.shape), tuple(vm.shape), np.round(np.asarray(zm).sum(-1), 4).tolist()
    ((2, 16), (2, 12), [1.0, 1.0])
    """

    def __init__(
        self, units=512, num_alternations=2, kernel_initializer="glorot_uniform", **kwargs
    ):
        super().__init__(**kwargs)
        for arg, value in (("units", units), ("num_alternations", num_alternations)):
            if not _is_positive_int(value):
                raise ValueError(
                    f"Expected {arg} to be a positive integer. Received: {arg}={value!r}"
                )
        self.units = int(units)
        self.num_alternations = int(num_alternations)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) != 2
            or any(len(s) != 3 or s[-1] is None for s in input_shape)
        ):
            raise ValueError(
                "CollaborativeLearning expects [static (batch, N, d_s), motion (batch, N, d_m)] "
                f"with known feature sizes. Received input shapes: {input_shape}"
            )
        static_dim, motion_dim = int(input_shape[0][-1]), int(input_shape[1][-1])

        def kernel(name, rows, cols):
            return self.add_weight(
                name=name, shape=(rows, cols), initializer=self.kernel_initializer
            )

        self.static_kernel = kernel("static_kernel", static_dim, self.units)  # W_s^T
        self.motion_kernel = kernel("motion_kernel", motion_dim, self.units)  # W_m^T
        self.static_guide_kernel = kernel("static_guide_kernel", static_dim, self.units)  # W^s_o^T
        self.motion_guide_kernel = kernel("motion_guide_kernel", motion_dim, self.units)  # W^m_o^T
        self.static_score_kernel = kernel("static_score_kernel", self.units, 1)  # W^s_h
        self.motion_score_kernel = kernel("motion_score_kernel", self.units, 1)  # W^m_h

    @staticmethod
    def _coefficients(features, kernel, guide, guide_kernel, score_kernel):
        # Eq. (7): H = tanh(W V + (W_o O) 1^T), with the columns v_i of V as rows of `features`.
        projected = ops.matmul(features, ops.cast(kernel, features.dtype))  # [B, N, k]
        guidance = ops.matmul(guide, ops.cast(guide_kernel, guide.dtype))  # [B, k]
        hidden = ops.tanh(projected + guidance[:, None, :])
        # Eq. (8): z = softmax(W_h^T H) over the N features.
        scores = ops.matmul(hidden, ops.cast(score_kernel, hidden.dtype))[..., 0]  # [B, N]
        return ops.softmax(scores, axis=-1)

    @staticmethod
    def _merge(coefficients, features):
        return ops.einsum("bn,bnd->bd", coefficients, features)  # Eq. (9): sum_i z_i v_i

    def call(self, inputs, return_coefficients=False):
        static, motion = inputs
        static_coefficients = ops.ones_like(static[..., 0]) / ops.cast(
            ops.shape(static)[1], static.dtype
        )  # step 1
        for _ in range(self.num_alternations):
            static_video = self._merge(static_coefficients, static)  # step 3: O^s
            motion_coefficients = self._coefficients(  # step 4: z^m guided by O^s, Eqs. (7)-(8)
                motion,
                self.motion_kernel,
                static_video,
                self.static_guide_kernel,
                self.motion_score_kernel,
            )
            motion_video = self._merge(motion_coefficients, motion)  # step 5: O^m, Eq. (9)
            static_coefficients = self._coefficients(  # step 6: z^s guided by O^m
                static,
                self.static_kernel,
                motion_video,
                self.motion_guide_kernel,
                self.static_score_kernel,
            )
        static_features = self._merge(static_coefficients, static)  # step 8: V^s_f = V^s^T z^s
        motion_features = self._merge(motion_coefficients, motion)  # V^m_f = V^m^T z^m
        if return_coefficients:
            return static_features, motion_features, static_coefficients, motion_coefficients
        return static_features, motion_features

    def compute_output_spec(self, inputs, return_coefficients=False):
        static, motion = inputs
        outputs = (
            keras.KerasTensor((static.shape[0], static.shape[-1]), dtype=self.compute_dtype),
            keras.KerasTensor((motion.shape[0], motion.shape[-1]), dtype=self.compute_dtype),
        )
        if return_coefficients:
            outputs += (
                keras.KerasTensor(tuple(static.shape[:2]), dtype=self.compute_dtype),
                keras.KerasTensor(tuple(motion.shape[:2]), dtype=self.compute_dtype),
            )
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "num_alternations": self.num_alternations,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
