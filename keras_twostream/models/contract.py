"""The model contract shared by the five architectures (issue 19): backbone, outputs, dropout,
dtype.

- `backbone`: a name in `keras_twostream.backbones.BACKBONES`, or a `Backbone` instance whose
  architecture and weights initialise every stream (`get_stream_backbone`).
- Outputs: every two-stream model names its per-stream class scores `"spatial"` and
  `"temporal"` and their combination `"fused"`. With `logits=False` (the default) they are
  probabilities; with `logits=True` they are logits whose softmax is exactly the
  `logits=False` output (a late fusion's averaged probabilities become `log(p)`,
  `keras_twostream.layers.score_logits`).
- `dropout`: one argument, a rate for both streams or a `(spatial, temporal)` pair.
- `dtype`: the Keras dtype policy the model's layers are built with (`None`: the global one).
"""

import contextlib
import functools
import inspect
import numbers

import keras

from keras_twostream.backbones import Backbone, get_backbone
from keras_twostream.backbones.weights import transfer_weights

STREAMS = ("spatial", "temporal")
DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16", "float16", "bfloat16")


def apply_class_output(logits, name, as_logits):
    """A named class-score output and the probabilities behind it.

    Returns:
        `(output, probabilities)`: with `as_logits` the output is `logits` itself (in
        float32, under the name `name`) and the probabilities a softmax named
        `f"{name}_probabilities"` (what a late fusion averages); otherwise both are the
        softmax, named `name`.
    """
    if not as_logits:
        probabilities = keras.layers.Activation("softmax", dtype="float32", name=name)(logits)
        return probabilities, probabilities
    output = keras.layers.Activation("linear", dtype="float32", name=name)(logits)
    probabilities = keras.layers.Activation(
        "softmax", dtype="float32", name=f"{name}_probabilities"
    )(logits)
    return output, probabilities


def check_streams(streams):
    """The streams to build, in network order: both (the default), or one built alone.

    Example:

    >>> from keras_twostream.models.contract import check_streams
    >>> check_streams(["temporal", "spatial"]), check_streams("spatial")
    (('spatial', 'temporal'), ('spatial',))
    """
    given = (streams,) if isinstance(streams, str) else streams
    given = tuple(given) if isinstance(given, (list, tuple)) else ()
    if not given or len(set(given)) != len(given) or set(given) - set(STREAMS):
        raise ValueError(
            "Expected streams to be ('spatial', 'temporal'), ('spatial',) or ('temporal',). "
            f"Received: streams={streams!r}"
        )
    return tuple(s for s in STREAMS if s in given)  # network order


def check_logits(value):
    if not isinstance(value, bool):
        raise ValueError(f"Expected logits to be True or False. Received: logits={value!r}")
    return value


def check_dropout(dropout, streams=STREAMS):
    """`dropout` as a dict stream -> rate: one rate for every stream, or one per stream in order.

    Example:

    >>> from keras_twostream.models.contract import check_dropout
    >>> check_dropout(0.5)
    {'spatial': 0.5, 'temporal': 0.5}
    >>> check_dropout((0.5, 0.9))
    {'spatial': 0.5, 'temporal': 0.9}
    """

    def rate(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise ValueError(
                f"Expected dropout to be a rate in [0, 1) or a ({', '.join(streams)}) pair of "
                f"rates. Received: dropout={dropout!r}"
            )
        return float(value)

    if isinstance(dropout, (list, tuple)):
        if len(dropout) != len(streams):
            raise ValueError(
                f"Expected dropout to be one rate or {len(streams)} rates "
                f"({', '.join(streams)}). Received: dropout={dropout!r}"
            )
        return {s: rate(v) for s, v in zip(streams, dropout, strict=True)}
    value = rate(dropout)
    return {s: value for s in streams}


def dropout_config(rates):
    """The config form of checked rates: one float when the streams agree, else a list."""
    values = list(rates.values())
    return values[0] if len(set(values)) == 1 else values


def check_dtype(dtype):
    """`None` (the global policy) or the name of a Keras dtype policy."""
    if dtype is None:
        return None
    if isinstance(dtype, keras.DTypePolicy):
        dtype = dtype.name
    if dtype not in DTYPE_POLICIES:
        raise ValueError(
            f"Expected dtype to be None (the global Keras policy) or one of {DTYPE_POLICIES}. "
            f"Received: dtype={dtype!r}"
        )
    return dtype


@contextlib.contextmanager
def dtype_policy(dtype):
    """The global Keras dtype policy set to `dtype` inside (nothing changes for `None`)."""
    dtype = check_dtype(dtype)
    if dtype is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def builds_with_dtype(init):
    """Decorates a model's `__init__(..., dtype=None, ...)`: its layers are built under `dtype`.

    Keras layers take their dtype policy from the global one when they are created, so the
    constructor runs with the global policy set to `dtype` and restores it afterwards (also
    when the constructor raises). The FFT layers, softmax outputs and fusions keep
    `dtype="float32"` whatever the policy (`keras_twostream.training.mixed_precision`).
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        dtype = signature.bind_partial(self, *args, **kwargs).arguments.get("dtype")
        with dtype_policy(dtype):
            init(self, *args, **kwargs)

    return wrapper


def backbone_name(backbone):
    """The architecture name of `backbone`: a name as given, or a `Backbone`'s architecture."""
    if isinstance(backbone, Backbone):
        return backbone.architecture
    if not isinstance(backbone, str):
        raise ValueError(
            "Expected backbone to be a name in keras_twostream.backbones.BACKBONES or a "
            f"keras_twostream.backbones.Backbone. Received: backbone={backbone!r}"
        )
    return backbone


def get_stream_backbone(backbone, input_shape, weights=None, **kwargs):
    """One stream's backbone: `get_backbone(name, ...)`, or a copy of a `Backbone` instance.

    KerasHub's tasks take a backbone instance; a two-stream model needs one network per
    stream with the stream's input channels, so an instance is used as the template of every
    stream: each stream gets a new backbone of the instance's architecture, named after the
    stream, and the instance's weights (by layer name). A stream with other input
    channels (flow: 2L, RGB differences: 3D) gets the first convolution adapted by TSN's
    cross-modality averaging (`adapt_input_channels`), as `temporal_weights="imagenet"` does.
    The instance itself is not part of the model; the model's config records its
    architecture and the `.keras` file the copied weights.

    Args:
        backbone: a name in `BACKBONES` or a `Backbone`.
        input_shape: the stream's `(height, width, channels)`.
        weights: the stream's weights argument (`spatial_weights` / `temporal_weights`);
            must be `None` with an instance, whose weights are used.
        **kwargs: the other `get_backbone` arguments (`stream`, `dropout`, `synchronized`,
            `name`).

    Returns:
        A `Backbone`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.backbones import Backbone
    >>> from keras_twostream.models.contract import get_stream_backbone
    >>> rgb = Backbone("tiny", input_shape=(32, 32, 3))
    >>> flow = get_stream_backbone(rgb, (32, 32, 4), stream="temporal", name="temporal_backbone")
    >>> kernel = flow.get_layer("temporal_backbone_stem").get_layer("conv1_conv").kernel
    >>> flow.architecture, tuple(kernel.shape)
    ('tiny', (3, 3, 4, 8))
    """
    if not isinstance(backbone, Backbone):
        return get_backbone(
            backbone_name(backbone), input_shape=input_shape, weights=weights, **kwargs
        )
    if weights is not None:
        raise ValueError(
            f"Got a Backbone instance as backbone and weights={weights!r}: the instance's "
            "weights initialise every stream; load the weights into the instance instead "
            "(spatial_weights / temporal_weights must be None)."
        )
    target = get_backbone(backbone.architecture, input_shape=input_shape, weights=None, **kwargs)
    return transfer_weights(backbone, target, f"the backbone {backbone.name!r}")
