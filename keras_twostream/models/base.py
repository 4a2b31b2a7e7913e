"""What every model of the library shares: the input/output contract and compile defaults."""

import warnings

import keras
from keras import ops

from keras_twostream.models import data_config as _data_config


@keras.saving.register_keras_serializable(package="keras_twostream")
class MaskedSparseCategoricalAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Sparse categorical accuracy that leaves out samples labelled `-1`.

    In multi-task training (two-stream paper, Sect. 4) a sample belongs to one
    dataset; its label for the other tasks is `-1` and must not count.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.models import MaskedSparseCategoricalAccuracy
    >>> metric = MaskedSparseCategoricalAccuracy()
    >>> metric.update_state(np.array([0, 1, -1]), np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]]))
    >>> float(metric.result())  # the -1 sample does not count: 1 right of 2
    0.5
    """

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        valid = ops.cast(ops.greater_equal(y_true, 0), "float32")
        if sample_weight is not None:
            valid = valid * ops.cast(ops.reshape(sample_weight, ops.shape(valid)), "float32")
        return super().update_state(ops.maximum(y_true, 0), y_pred, sample_weight=valid)


class VideoClassifier(keras.Model):
    """Base of the library's models: named dict inputs, a dict of probability outputs.

    Subclasses build themselves functionally in `__init__` (KerasHub style) and
    then call `self._set_contract(input_shapes, label_map, loss_outputs)`:

    - `input_shapes`: input key -> shape without the batch axis; calls are
      checked against it, so a missing key or a wrong shape raises a
      `ValueError` naming the key and the expected shape;
    - `label_map`: output name -> task name. Labels may be given as one array
      (single task: used for every output), or as a dict keyed by task or by
      output name. Multi-task labels use `-1` for samples of another task's
      dataset: their losses skip them (two-stream paper, Sect. 4);
    - `loss_outputs`: the outputs trained with a cross-entropy loss by the
      default `compile()`. Other outputs (such as `"fused"`) get metrics only.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> model = keras_twostream.build_two_stream(num_classes=5, backbone="tiny", image_size=32,
    ...                                          flow_length=2)
    >>> isinstance(model, keras_twostream.models.VideoClassifier)
    True
    >>> model({"rgb": np.zeros((1, 1, 32, 32, 3), "float32")})
    Traceback (most recent call last):
    ...
    ValueError: Missing input 'flow': expected a tensor of shape (batch, 1, 32, 32, 4). Received keys: ['rgb']
    >>> model.rebuild(num_segments=3).num_segments  # same weights, another constructor argument
    3
    """

    # Preprocessing the paper gives for this model's flow (subclasses override).
    FLOW_DATA_DEFAULTS = {"flow_normalization": "pixels", "mean_subtract_flow": True}

    # Former output names -> current ones (CMA named its outputs "rgb"/"flow" before issue 19):
    # `compile` dicts and label dicts keyed by a former name still work, with a warning.
    OUTPUT_ALIASES = {}

    def __init__(self, *args, data_config=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Set entries of `data_config()` (the preprocessing and class names); the
        # rest is derived. Subclasses store their own arguments after this call.
        self._data_config_entries = {}
        if data_config:
            self._data_config_entries = _data_config.check_entries(
                dict(data_config),
                None,
                type(self).__name__,  # counts were checked when set
            )

    @classmethod
    def from_config(cls, config):
        # KerasHub style: the config is exactly the constructor's arguments.
        return cls(**config)

    def get_config(self):
        """`logits`, `dtype` and `{"data_config": ...}` (what `set_data_config` set);
        subclasses add their own arguments."""
        config = {
            "logits": bool(getattr(self, "logits", False)),
            "dtype": getattr(self, "_dtype_argument", None),
        }
        entries = getattr(self, "_data_config_entries", {})
        if entries:
            config["data_config"] = dict(entries)
        return config

    # --- The data contract --------------------------------------------------------
    def data_config(self):
        """What this model needs from its data, as the data pipeline's own argument names.

        Returns a new dict with `modalities`, `image_size`, `num_segments`,
        `flow_length`, `num_paths`, `diff_length` (from the network),
        `rgb_normalization`, `flow_normalization`, `mean_subtract_flow`,
        `flow_bound` and `class_names` (set with `set_data_config`, else the
        defaults of the backbone weights and the paper); see
        `keras_twostream.models.data_config`. Pass it, or the model itself, as
        `make_dataset(..., data_config=model)`.

        Example:

        >>> import keras_twostream
        >>> model = keras_twostream.build_two_stream(5, backbone="tiny", image_size=32, flow_length=2)
        >>> config = model.data_config()
        >>> config["modalities"], config["image_size"], config["num_segments"], config["flow_length"]
        (('rgb', 'flow'), 32, 1, 2)
        >>> config["rgb_normalization"], config["flow_normalization"], config["class_names"]
        ('unit', 'pixels', None)
        """
        shapes = getattr(self, "_input_shapes", None) or {}
        config = self.get_config()
        first = next(iter(shapes.values()), None)
        height, width = (int(first[1]), int(first[2])) if first is not None else (None, None)
        segments = config.get("num_segments")
        if segments is None and first is not None:
            segments = int(first[0])
        flow = shapes.get("flow")
        result = {
            "modalities": tuple(shapes),
            "image_size": height if height == width else (height, width),
            "num_segments": None if segments is None else int(segments),
            "flow_length": int(flow[-1]) // 2 if flow is not None else None,
            "num_paths": (
                int(flow[0]) // int(segments)
                if flow is not None and segments and int(flow[0]) != int(segments)
                else None
            ),
            "diff_length": int(shapes["rgb_diff"][-1]) // 3 if "rgb_diff" in shapes else None,
            "rgb_normalization": _data_config.default_rgb_normalization(
                config.get("backbone"), config.get("spatial_weights")
            ),
            **self.FLOW_DATA_DEFAULTS,
            "flow_bound": None,
            "class_names": None,
        }
        for key, value in getattr(self, "_data_config_entries", {}).items():
            if value is not None:
                result[key] = list(value) if isinstance(value, list) else value
        return result

    def set_data_config(self, **entries):
        """Sets preprocessing entries of `data_config()`; they are saved with the model.

        Settable: `rgb_normalization`, `flow_normalization`, `mean_subtract_flow`,
        `flow_bound`, `class_names`; `None` restores the default. The other keys
        follow from the network (`rebuild` changes them). `keras-twostream train`
        and `convert` set these, so a `.keras` file knows how its inputs were made.

        Example:

        >>> import keras_twostream
        >>> model = keras_twostream.build_two_stream(3, backbone="tiny", image_size=32, flow_length=2)
        >>> model.set_data_config(class_names=["run", "jump", "sit"], rgb_normalization="torch")
        >>> model.data_config()["class_names"], model.get_config()["data_config"]["rgb_normalization"]
        (['run', 'jump', 'sit'], 'torch')
        >>> model.set_data_config(image_size=64)
        Traceback (most recent call last):
        ...
        ValueError: TwoStream: unknown data config keys ['image_size'] (image_size follow from the network: use model.rebuild(...)); settable: ['rgb_normalization', 'flow_normalization', 'mean_subtract_flow', 'flow_bound', 'class_names']
        """
        checked = _data_config.check_entries(
            entries, getattr(self, "num_classes", None), type(self).__name__
        )
        merged = {**getattr(self, "_data_config_entries", {}), **checked}
        self._data_config_entries = {k: v for k, v in merged.items() if v is not None}

    def _set_contract(self, input_shapes, label_map, loss_outputs, logits=False, dtype=None):
        self._input_shapes = {k: tuple(v) for k, v in input_shapes.items()}
        self._label_map = dict(label_map)
        self._loss_outputs = list(loss_outputs)
        # `logits=True`: the class-score outputs are logits (softmax gives the probabilities).
        self.logits = bool(logits)
        # The `dtype` constructor argument (`self.dtype` is Keras' variable dtype).
        self._dtype_argument = dtype

    def _current_output_name(self, key):
        """`key`, or the current name of a former output name (with a DeprecationWarning)."""
        if key in self.OUTPUT_ALIASES and key not in getattr(self, "_label_map", {}):
            new = self.OUTPUT_ALIASES[key]
            warnings.warn(
                f"{type(self).__name__}: the output {key!r} is now named {new!r} (every "
                "two-stream model names its outputs 'spatial', 'temporal', 'fused'); the former "
                "name will stop working in a future release.",
                DeprecationWarning,
                stacklevel=4,
            )
            return new
        return key

    def _rename_output_keys(self, value):
        if isinstance(value, dict) and self.OUTPUT_ALIASES:
            return {self._current_output_name(k): v for k, v in value.items()}
        return value

    def rebuild(self, **overrides):
        """A new model of the same class with some constructor arguments changed, same weights.

        The papers train on K segments but score test videos one frame (or flow stack) per
        view; the segmental consensus has no weights, so the K=1 model is the same network:

        >>> scorer = model.rebuild(num_segments=1)  # doctest: +SKIP
        """
        config = self.get_config()
        unknown = sorted(set(overrides) - set(config))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no constructor arguments {unknown}.")
        model = type(self).from_config({**config, **overrides})
        model.set_weights(self.get_weights())
        return model

    # --- Inputs -----------------------------------------------------------------
    def __call__(self, inputs, *args, **kwargs):
        self._check_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def _check_inputs(self, inputs):
        expected = getattr(self, "_input_shapes", None)
        if not expected:
            return
        described = ", ".join(
            f"{k!r}: (batch, {', '.join(map(str, v))})" for k, v in expected.items()
        )
        if not isinstance(inputs, dict):
            raise ValueError(
                f"{type(self).__name__} expects a dict of inputs {{{described}}}. "
                f"Received: {type(inputs).__name__}"
            )
        for key, shape in expected.items():
            if key not in inputs:
                raise ValueError(
                    f"Missing input {key!r}: expected a tensor of shape (batch, "
                    f"{', '.join(map(str, shape))}). Received keys: {sorted(inputs)}"
                )
            received = tuple(getattr(inputs[key], "shape", ()))
            ok = len(received) == len(shape) + 1 and all(
                r is None or e is None or int(r) == e
                for r, e in zip(received[1:], shape, strict=False)
            )
            if not ok:
                raise ValueError(
                    f"Input {key!r} has shape {received}; expected (batch, "
                    f"{', '.join(map(str, shape))})."
                )
        unknown = sorted(set(inputs) - set(expected))
        if unknown:
            raise ValueError(
                f"Unexpected input keys {unknown}; this model takes {sorted(expected)}."
            )

    # --- Labels -----------------------------------------------------------------
    def _expand_labels(self, y):
        label_map = getattr(self, "_label_map", None)
        if y is None or not label_map:
            return y
        if isinstance(y, dict):
            y = self._rename_output_keys(y)
            expanded = {}
            for output, task in label_map.items():
                if output in y:
                    expanded[output] = y[output]
                elif task in y:
                    expanded[output] = y[task]
                else:
                    raise ValueError(
                        f"No labels for output {output!r}: give them under the key {task!r} "
                        f"(its task) or {output!r}. Received keys: {sorted(y)}"
                    )
            return expanded
        if len(set(label_map.values())) > 1:
            raise ValueError(
                "This model has several tasks "
                f"{sorted(set(label_map.values()))}: give labels as a dict keyed by task name, "
                "with -1 for samples that belong to another task."
            )
        return {output: y for output in label_map}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(
            x=x,
            y=self._expand_labels(y),
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(
            x, self._expand_labels(y), y_pred, sample_weight=sample_weight
        )

    # --- Compile defaults -------------------------------------------------------
    def default_optimizer(self):
        """The paper's optimizer; subclasses override."""
        return keras.optimizers.SGD(learning_rate=1e-2, momentum=0.9)

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Compiles with the paper's defaults where an argument is `"auto"`.

        `loss="auto"` puts a sparse categorical cross-entropy that ignores label
        `-1` on every output in the model's loss outputs (`from_logits` when
        the model was built with `logits=True`); `metrics="auto"` reports
        accuracy for every output. Dicts may use a former output name
        (`OUTPUT_ALIASES`), with a `DeprecationWarning`.
        """
        if optimizer == "auto":
            optimizer = self.default_optimizer()
        if loss == "auto":
            loss = {
                name: keras.losses.SparseCategoricalCrossentropy(
                    from_logits=bool(getattr(self, "logits", False)),
                    ignore_class=-1,
                    name=f"{name}_loss",
                )
                for name in self._loss_outputs
            }
        loss = self._rename_output_keys(loss)
        metrics = self._rename_output_keys(metrics)
        if "loss_weights" in kwargs:
            kwargs["loss_weights"] = self._rename_output_keys(kwargs["loss_weights"])
        if metrics == "auto":
            metrics = {
                name: [MaskedSparseCategoricalAccuracy(name="accuracy")] for name in self._label_map
            }
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # Our compile() only fills in defaults, so the stored config restores as usual.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)
