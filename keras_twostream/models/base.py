"""What every model of the library shares: the input/output contract and compile defaults."""

import keras
from keras import ops


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

    @classmethod
    def from_config(cls, config):
        # KerasHub style: the config is exactly the constructor's arguments.
        return cls(**config)

    def _set_contract(self, input_shapes, label_map, loss_outputs):
        self._input_shapes = {k: tuple(v) for k, v in input_shapes.items()}
        self._label_map = dict(label_map)
        self._loss_outputs = list(loss_outputs)

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
        `-1` on every output in the model's loss outputs; `metrics="auto"`
        reports accuracy for every output.
        """
        if optimizer == "auto":
            optimizer = self.default_optimizer()
        if loss == "auto":
            loss = {
                name: keras.losses.SparseCategoricalCrossentropy(
                    ignore_class=-1, name=f"{name}_loss"
                )
                for name in self._loss_outputs
            }
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
