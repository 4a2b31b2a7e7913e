"""The spatiotemporal compact bilinear (STCB) operator of the STPN paper."""

import math
import numbers
import random

import keras
import numpy as np
from keras import ops

# The count sketch sums the flattened input into N * d segments on these backends and
# transposes the feature axis first on the others: the faster of the two forms on each
# (benchmarks/bench_compact_bilinear.py). Flat segment ids must fit in int32.
_FLAT_SKETCH_BACKENDS = ("jax",)
_MAX_SEGMENTS = 2**31 - 1

# Guards the signed square root's gradient at 0 and the L2 norm of a zero vector.
_EPSILON = 1e-12


def _is_shape(value):
    return isinstance(value, (list, tuple)) and all(
        d is None or isinstance(d, numbers.Integral) for d in value
    )


def _input_shapes(input_shape):
    """Checks that the layer received a list of m >= 2 shapes and returns them as tuples."""
    if _is_shape(input_shape) or not isinstance(input_shape, (list, tuple)):
        raise ValueError(
            "CompactBilinear expects `inputs` to be a list of at least 2 tensors of shape "
            f"(..., p_i). Received a single input of shape {input_shape}"
        )
    shapes = [tuple(s) for s in input_shape]
    if len(shapes) < 2 or not all(_is_shape(s) for s in shapes):
        raise ValueError(
            "CompactBilinear expects `inputs` to be a list of at least 2 tensors of shape "
            f"(..., p_i). Received shapes: {input_shape}"
        )
    return shapes


def _broadcast_leading(shapes):
    """The broadcast of the leading (all but the last) dimensions of `shapes`."""
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1 or min(ranks) < 2:
        raise ValueError(
            "CompactBilinear expects all `inputs` to have the same rank >= 2, (batch, ..., p_i); "
            "reshape a (batch, p) vector to (batch, 1, 1, p) to combine it with a "
            f"(batch, H, W, p) map. Received shapes: {shapes}"
        )
    leading = []
    for axis, dims in enumerate(zip(*(s[:-1] for s in shapes), strict=True)):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ValueError(
                "CompactBilinear expects the leading dimensions of all `inputs` to be equal or 1 "
                f"(broadcastable); axis {axis} differs. Received shapes: {shapes}"
            )
        if known:
            leading.append(known.pop())
        elif None in dims:
            leading.append(None)
        else:
            leading.append(1)
    for i, s in enumerate(shapes):
        if s[-1] is None:
            raise ValueError(
                f"CompactBilinear expects the last dimension of inputs[{i}] to be known. "
                f"Received shapes: {shapes}"
            )
    return tuple(leading)


def _draw_sketch(seed, index, input_dim, output_dim):
    """The hash (int32, uniform in {0..d-1}) and sign (float32, +-1) of input `index`."""
    rng = np.random.default_rng([seed, index])
    h = rng.integers(0, output_dim, size=input_dim, dtype=np.int32)
    s = rng.choice(np.array([-1.0, 1.0], np.float32), size=input_dim)
    return h, s


def _constant(value):
    """An initializer returning `value` (a NumPy array of the variable's shape)."""

    def initializer(shape, dtype=None):
        return ops.cast(value, dtype)

    return initializer


@keras.saving.register_keras_serializable(package="keras_twostream")
class CompactBilinear(keras.layers.Layer):
    """Spatiotemporal compact bilinear fusion (STCB) of m >= 2 feature vectors.

    Implements Algorithm 1 of Wang et al., "Spatiotemporal Pyramid Network for
    Video Action Recognition" (CVPR 2017, Sect. 3.1): the Tensor Sketch of
    Pham & Pagh (KDD 2013) used by compact bilinear pooling (Gao et al., CVPR
    2016). It approximates the bilinear fusion `vec(v_1 ⊗ ... ⊗ v_m)`, which
    has `p_1 * ... * p_m` entries, by a `d`-dimensional vector:

    1. Count Sketch each input (Algorithm 1, lines 1-11): a hash
       `h_i: {0..p_i-1} -> {0..d-1}` and a sign `s_i: {0..p_i-1} -> {-1, +1}`,
       drawn once, send `s_i(j) * v_i(j)` to bin `h_i(j)` of `v_i'`.
    2. Multiply the sketches in the frequency domain (line 13):
       `irfft(rfft(v_1') * ... * rfft(v_m'))`, a circular convolution. It equals
       the Count Sketch of the outer product `v_1 ⊗ ... ⊗ v_m` under the hash
       `(h_1(j_1) + ... + h_m(j_m)) mod d` and the sign `s_1(j_1) * ... * s_m(j_m)`.

    The hashes and signs are non-trainable weights (`hash_i`, int32, and
    `sign_i`, float32) that `build()` draws from `seed`, so a `.keras` file,
    `model.export()` and a layer rebuilt from its config all give the same
    output. The sketch is a scatter-add (`keras.ops.segment_sum`), not a dense
    `p_i x d` matrix. The paper's 1-based bins `{1..d}` are 0-based here.

    Inputs are `(batch, ..., p_i)` tensors of the same rank whose leading
    dimensions are equal or 1, and broadcast like NumPy: the operator works per
    vector on `(batch, p_i)` and per location on `(batch, H, W, p_i)` maps.

    In STPN the operator is used three times (Sect. 3.2-3.4, Fig. 2):

    - multi-path temporal fusion: the flow features of P temporal paths,
      `(batch, p)` each (or `(batch, H, W, p)` maps), are fused by one layer
      called on the list of P tensors;
    - spatiotemporal attention: at every location of the spatial feature map
      `(batch, H, W, p_s)` the spatial vector is fused with the temporal vector;
      reshape the temporal vector `(batch, p_t)` to `(batch, 1, 1, p_t)` and it
      broadcasts over the `H x W` locations (it is sketched and transformed
      only once, not once per location);
    - the final fusion of the spatial, temporal and attended vectors into a
      4096-dimensional vector (m = 3).

    The layer always computes in float32, whatever its `dtype` argument or the
    global mixed-precision policy, because `rfft` rejects float16 and bfloat16;
    inputs are cast to float32 and the output is float32.

    Args:
        output_dim: d, the size of the sketch and of the output, >= 1. The
            paper uses 4096 (Table 3 compares 1024 to 8192).
        seed: a non-negative integer from which the hashes and signs are
            drawn (input i uses the NumPy generator `default_rng([seed, i])`).
            Defaults to `None`: one is drawn from Python's `random` module at
            construction (reproducible under `keras.utils.set_random_seed`) and
            kept in the config.
        signed_sqrt: apply `sign(z) * sqrt(|z|)` to the output, as compact
            bilinear pooling does. Defaults to `False`, as in the paper.
        l2_normalize: divide each output vector by its L2 norm (after the
            signed square root if both are set). Defaults to `False`, as in
            the paper.
        **kwargs: base layer keyword arguments, such as `name`. A `dtype` is
            accepted for compatibility, but the layer runs in float32.

    Call arguments:
        inputs: a list of m >= 2 tensors of shapes `(batch, ..., p_i)` with
            equal ranks and leading dimensions that are equal or 1.

    Returns:
        A float32 tensor of shape `(batch, ..., output_dim)`, the leading
        dimensions being the broadcast of those of the inputs.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> spatial = np.random.rand(2, 7, 7, 64).astype("float32")
    >>> temporal = np.random.rand(2, 1, 1, 32).astype("float32")
    >>> layer = keras_twostream.layers.CompactBilinear(output_dim=128, seed=0)
    >>> tuple(layer([spatial, temporal]).shape)
    (2, 7, 7, 128)
    """

    def __init__(self, output_dim, seed=None, signed_sqrt=False, l2_normalize=False, **kwargs):
        # FFTs reject float16/bfloat16: the policy is float32 whatever was asked for.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if (
            isinstance(output_dim, bool)
            or not isinstance(output_dim, numbers.Integral)
            or output_dim < 1
        ):
            raise ValueError(
                f"Expected output_dim to be an integer >= 1. Received: output_dim={output_dim!r}"
            )
        if seed is None:
            seed = random.randint(0, 2**31 - 1)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(
                f"Expected seed to be a non-negative integer or None. Received: seed={seed!r}"
            )
        self.output_dim = int(output_dim)
        self.seed = int(seed)
        self.signed_sqrt = bool(signed_sqrt)
        self.l2_normalize = bool(l2_normalize)
        self.supports_masking = False

    def build(self, input_shape):
        shapes = _input_shapes(input_shape)
        _broadcast_leading(shapes)
        self.input_dims = [int(s[-1]) for s in shapes]
        self.hashes, self.signs = [], []
        for i, p in enumerate(self.input_dims):
            h, s = _draw_sketch(self.seed, i, p, self.output_dim)
            # Algorithm 1, lines 2-5: h_i(j) and s_i(j), drawn once and kept constant.
            hash_i = self.add_weight(
                shape=(p,),
                dtype="int32",
                initializer=_constant(h),
                trainable=False,
                name=f"hash_{i}",
            )
            sign_i = self.add_weight(
                shape=(p,), initializer=_constant(s), trainable=False, name=f"sign_{i}"
            )
            self.hashes.append(hash_i)
            self.signs.append(sign_i)

    def _count_sketch(self, x, i):
        # Algorithm 1, lines 7-11: v_i'(h_i(j)) += s_i(j) * v_i(j), as one scatter-add.
        p, d = self.input_dims[i], self.output_dim
        leading = tuple(ops.shape(x)[:-1])
        x = ops.reshape(x * self.signs[i], (-1, p))  # [..., p] -> [N, p]
        n = math.prod(leading) if all(isinstance(k, int) for k in leading) else None
        if keras.backend.backend() in _FLAT_SKETCH_BACKENDS and n and n * d <= _MAX_SEGMENTS:
            # Sum the flattened [N * p] tensor into N * d segments, ids n * d + h_i(j): no
            # transposes (XLA's CPU transposes made the other form 1.6-2x the FFT floor).
            ids = ops.arange(n, dtype="int32")[:, None] * d + self.hashes[i][None, :]
            x = ops.segment_sum(
                ops.reshape(x, (-1,)), ops.reshape(ids, (-1,)), num_segments=n * d
            )  # [N * p] -> [N * d]
        else:
            # segment_sum reduces the leading axis, so the feature axis is moved first.
            x = ops.segment_sum(ops.transpose(x), self.hashes[i], num_segments=d)  # [d, N]
            x = ops.transpose(x)  # [d, N] -> [N, d]
        return ops.reshape(x, leading + (d,))  # [N, d] -> [..., d]

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != len(self.input_dims):
            raise ValueError(
                f"CompactBilinear was built for {len(self.input_dims)} inputs; expected `inputs` "
                f"to be a list of that many tensors. Received: {inputs!r}"
            )
        d = self.output_dim
        real = imag = None
        for i, x in enumerate(inputs):
            if x.shape[-1] != self.input_dims[i]:
                raise ValueError(
                    f"CompactBilinear was built for inputs[{i}] with last dimension "
                    f"{self.input_dims[i]}. Received shape: {x.shape}"
                )
            sketch = self._count_sketch(ops.cast(x, self.compute_dtype), i)
            # Algorithm 1, line 13: the product of the FFTs of the sketches
            # (the real FFT keeps the d // 2 + 1 non-redundant bins).
            r, im = ops.rfft(sketch, fft_length=d)
            if real is None:
                real, imag = r, im
            else:
                real, imag = real * r - imag * im, real * im + imag * r
        z = ops.irfft((real, imag), fft_length=d)
        if self.signed_sqrt:
            z = ops.sign(z) * ops.sqrt(ops.abs(z) + _EPSILON)
        if self.l2_normalize:
            z = z * ops.rsqrt(ops.maximum(ops.sum(z * z, axis=-1, keepdims=True), _EPSILON))
        return z

    def compute_output_shape(self, input_shape):
        shapes = _input_shapes(input_shape)
        return _broadcast_leading(shapes) + (self.output_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "seed": self.seed,
            "signed_sqrt": self.signed_sqrt,
            "l2_normalize": self.l2_normalize,
        }
