"""The spatiotemporal attention pooling of the STPN paper."""

import numbers
import random

import keras
from keras import ops

from keras_twostream.layers.compact_bilinear import CompactBilinear

FUSIONS = ("compact_bilinear", "concat", "sum", "temporal")


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Expected {name} to be a positive integer. Received: {name}={value!r}")
    return int(value)


@keras.saving.register_keras_serializable(package="keras_twostream")
class SpatiotemporalAttention(keras.layers.Layer):
    """Attention pooling of a spatial feature map guided by temporal features.

    The second level of the Spatiotemporal Pyramid Network (Wang et al., CVPR
    2017, Sect. 3.3, red layers of Fig. 2). It replaces the global average
    pooling of the spatial stream's last feature map `S` (res5c of ResNets,
    conv5 of VGG-16) by a weighted pooling whose weights come from appearance
    and motion together:

    1. at every location `l` of `S`, fuse the spatial vector `S_l` with its
       temporal counterpart `T_l` (a feature map of the same height and
       width, or one temporal vector broadcast over the locations): by a
       `CompactBilinear` (STCB, the paper's choice), or for the ablation of
       Table 5 by concatenation, element-wise sum, or the temporal features
       alone;
    2. two convolutions produce one score per location: `filters` (64) maps
       of size `kernel_size` x `kernel_size` (7 x 7), then 1 map of the same
       size ("64 x 7 x 7" and "1 x 7 x 7", Sect. 3.3), both with "same"
       padding; the paper names no non-linearity between them, the first one
       uses `activation` (ReLU by default: without it the two would collapse
       into one linear convolution);
    3. a softmax over the `H x W` locations gives the attention `a`;
    4. the output is the weighted pooling `sum_l a_l S_l` of the original
       spatial features.

    The softmax runs in float32 under any mixed-precision policy.

    Args:
        fusion: how `S_l` and `T_l` are combined before the convolutions:
            `"compact_bilinear"` (STCB, the paper), `"concat"`, `"sum"` (needs
            equal channel counts) or `"temporal"` (`T_l` alone), the four rows
            of Table 5.
        fusion_dim: output size `d` of the STCB; `None` (the default) uses the
            number of spatial channels. Only used with `"compact_bilinear"`.
        filters: filters of the first convolution (64 in the paper).
        kernel_size: kernel size of both convolutions (7 in the paper).
        activation: activation of the first convolution (`"relu"`).
        seed: seed of the STCB's hashes and signs (see
            `keras_twostream.layers.CompactBilinear`); `None` draws one at
            construction and keeps it in the config.
        signed_sqrt: signed square root of the STCB output (see
            `CompactBilinear`). Defaults to `False`.
        l2_normalize: L2 normalisation of the STCB output at every location.
            Defaults to `False`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a list `[spatial, temporal]`: the spatial feature map
            `(batch, height, width, channels_s)` and the temporal features,
            either a map `(batch, height, width, channels_t)` or a vector
            `(batch, channels_t)` used at every location.
        return_attention_scores: also return the attention map.

    Returns:
        The attended features `(batch, channels_s)`, or with
        `return_attention_scores=True` a tuple `(attended, scores)` where
        `scores` of shape `(batch, height, width)` sums to 1 over the
        locations.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> spatial = np.random.rand(2, 7, 7, 32).astype("float32")
    >>> temporal = np.random.rand(2, 7, 7, 16).astype("float32")
    >>> attention = keras_twostream.layers.SpatiotemporalAttention(fusion_dim=64, seed=0)
    >>> attended, scores = attention([spatial, temporal], return_attention_scores=True)
    >>> tuple(attended.shape), tuple(scores.shape)
    ((2, 32), (2, 7, 7))
    >>> bool(np.allclose(np.sum(scores, axis=(1, 2)), 1.0, atol=1e-5))
    True
    """

    def __init__(
        self,
        fusion="compact_bilinear",
        fusion_dim=None,
        filters=64,
        kernel_size=7,
        activation="relu",
        seed=None,
        signed_sqrt=False,
        l2_normalize=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if fusion not in FUSIONS:
            raise ValueError(f"Expected fusion to be one of {FUSIONS}. Received: fusion={fusion!r}")
        if fusion_dim is not None:
            fusion_dim = _check_positive_int(fusion_dim, "fusion_dim")
        if seed is None:
            seed = random.randint(0, 2**31 - 1)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(
                f"Expected seed to be a non-negative integer or None. Received: seed={seed!r}"
            )
        self.fusion = fusion
        self.fusion_dim = fusion_dim
        self.filters = _check_positive_int(filters, "filters")
        self.kernel_size = _check_positive_int(kernel_size, "kernel_size")
        self.activation = keras.activations.get(activation)
        self.seed = int(seed)
        self.signed_sqrt = bool(signed_sqrt)
        self.l2_normalize = bool(l2_normalize)

    def _shapes(self, input_shape):
        ok = isinstance(input_shape, (list, tuple)) and len(input_shape) == 2
        if ok:
            spatial, temporal = (tuple(s) for s in input_shape)
            ok = (
                len(spatial) == 4
                and len(temporal) in (2, 4)
                and None not in (spatial[-1], temporal[-1])
            )
        if not ok:
            raise ValueError(
                "SpatiotemporalAttention expects [spatial (batch, height, width, channels), temporal "
                "(batch, height, width, channels) or (batch, channels)] with known channels. "
                f"Received input shapes: {input_shape}"
            )
        if len(temporal) == 4:
            for axis in (1, 2):
                if None not in (spatial[axis], temporal[axis]) and spatial[axis] != temporal[axis]:
                    raise ValueError(
                        "SpatiotemporalAttention expects the temporal map to have the height and "
                        f"width of the spatial map. Received: spatial {spatial}, temporal {temporal}"
                    )
        if self.fusion == "sum" and spatial[-1] != temporal[-1]:
            raise ValueError(
                "fusion='sum' needs spatial and temporal features with the same number of channels. "
                f"Received: spatial {spatial}, temporal {temporal}"
            )
        return spatial, temporal

    def build(self, input_shape):
        spatial, temporal = self._shapes(input_shape)
        channels = {
            "compact_bilinear": self.fusion_dim or spatial[-1],
            "concat": spatial[-1] + temporal[-1],
            "sum": spatial[-1],
            "temporal": temporal[-1],
        }[self.fusion]
        if self.fusion == "compact_bilinear":
            self.compact_bilinear = CompactBilinear(
                channels,
                seed=self.seed,
                signed_sqrt=self.signed_sqrt,
                l2_normalize=self.l2_normalize,
                name="compact_bilinear",
            )
            self.compact_bilinear.build([spatial, (temporal[0], 1, 1, temporal[-1])])
        self.hidden_conv = keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            padding="same",
            activation=self.activation,
            dtype=self.dtype_policy,
            name="hidden_conv",
        )
        self.hidden_conv.build(spatial[:3] + (channels,))
        self.score_conv = keras.layers.Conv2D(
            1, self.kernel_size, padding="same", dtype=self.dtype_policy, name="score_conv"
        )
        self.score_conv.build(spatial[:3] + (self.filters,))

    def call(self, inputs, return_attention_scores=False):
        spatial, temporal = inputs
        if len(temporal.shape) == 2:
            temporal = temporal[:, None, None, :]  # [B, Ct] -> [B, 1, 1, Ct], one vector everywhere
        shape = ops.shape(spatial)
        batch, height, width = shape[0], shape[1], shape[2]
        channels = spatial.shape[-1]
        # Sect. 3.3, step 1: at every location, the spatial vector with its temporal counterpart.
        if self.fusion == "compact_bilinear":
            fused = self.compact_bilinear([spatial, temporal])  # [B, h, w, d], float32
        else:
            temporal = ops.broadcast_to(
                ops.cast(temporal, spatial.dtype), (batch, height, width, temporal.shape[-1])
            )
            if self.fusion == "concat":
                fused = ops.concatenate([spatial, temporal], axis=-1)
            elif self.fusion == "sum":
                fused = spatial + temporal
            else:  # "temporal": Table 5, attention from the temporal features only.
                fused = temporal
        # Step 2: 64 x 7 x 7, then 1 x 7 x 7 convolutions -> one score per location.
        scores = self.score_conv(self.hidden_conv(ops.cast(fused, self.compute_dtype)))
        # Step 3: softmax over the h * w locations.
        scores = ops.reshape(ops.cast(scores, "float32"), (batch, -1))  # [B, h, w, 1] -> [B, h*w]
        scores = scores - ops.max(scores, axis=-1, keepdims=True)
        attention = ops.exp(scores) / ops.sum(ops.exp(scores), axis=-1, keepdims=True)
        # Step 4: weighted pooling of the original spatial features.
        flat = ops.reshape(spatial, (batch, -1, channels))  # [B, h, w, C] -> [B, h*w, C]
        weights = ops.cast(attention, spatial.dtype)
        attended = ops.einsum("bl,blc->bc", weights, flat)  # -> [B, C]
        if return_attention_scores:
            return attended, ops.reshape(attention, (batch, height, width))
        return attended

    def compute_output_shape(self, input_shape):
        spatial, _ = self._shapes(input_shape)
        return (spatial[0], spatial[-1])

    def compute_output_spec(self, inputs, return_attention_scores=False):
        spatial, _ = inputs
        attended = keras.KerasTensor(
            (spatial.shape[0], spatial.shape[-1]), dtype=self.compute_dtype
        )
        if return_attention_scores:
            return attended, keras.KerasTensor(tuple(spatial.shape[:3]), dtype="float32")
        return attended

    def get_config(self):
        return {
            **super().get_config(),
            "fusion": self.fusion,
            "fusion_dim": self.fusion_dim,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "activation": keras.activations.serialize(self.activation),
            "seed": self.seed,
            "signed_sqrt": self.signed_sqrt,
            "l2_normalize": self.l2_normalize,
        }
