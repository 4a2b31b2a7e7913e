"""Semantic adversarial learning (SAL): the alternating discriminator / network train step.

Algorithm 1 and Eqs. (3)-(5), (9)-(11) of the RGB-only two-stream paper with
multi-scale pyramid attention and semantic adversarial learning (MPA+SAL).
Per batch and per stream:

(a) discriminator step (Algorithm 1, lines 4-5): the network G and classifier
    C are fixed; D is updated to score the label semantics `S = encoder(y)`
    (Eq. 8) as real and the video representation `V̄` (Eq. 2) as generated,
    `L_D = BCE(1, D(S)) + BCE(0, D(V̄))` (Eq. 9 maximised by D);
(b) network step (lines 6-7): D is fixed (and already updated by (a)); G and
    C are updated on `L = L_cls + lambda * L_adv` (Eq. 5) with the
    non-saturating adversarial loss `L_adv = BCE(1, D(V̄)) = -log D(V̄)`
    (Eq. 11), `L_cls` the cross-entropy of Eq. (4).

Two optimizers per stream, as in the paper: Adam (1e-4) for D, SGD with
momentum 0.9 (1e-3, divided by 10 every 40 epochs) for G and C, the latter's
gradient clipped to a global norm of 20 (spatial) or 40 (temporal).

Backends: TensorFlow, also under `tf.distribute.MirroredStrategy`. Other
backends raise `NotImplementedError` when `fit` starts (Keras' JAX trainer
carries the state of one optimizer, `model.optimizer`, only); the models
build, predict, save and export on every backend.

What makes the two-optimizer step correct under `MirroredStrategy`
(see PITFALLS.md):

* the model is functional, so `call()` is its inference path;
* `compile()` passes `optimizer=None` to Keras (no default RMSprop) and
  creates and builds every optimizer inside the model's strategy scope;
* losses are Keras built-in losses, which divide the per-replica mean by the
  replica count, so the cross-replica sum of gradients is the gradient of the
  global-batch mean; the `Mean` trackers are fed the loss multiplied back;
* gradient clipping is done here, not by the optimizer: Keras optimizers clip
  each replica's partial gradient before the cross-replica sum, which is not
  the clipping of the global-batch gradient. Here the stream's gradients are
  summed across replicas first, clipped to the global norm (as
  `torch.nn.utils.clip_grad_norm_` in TSN, where the 20/40 settings come
  from), and divided by the replica count before the optimizer sums them again.
"""

import numbers

import keras
from keras import ops

PHASES = ("discriminator", "generator")
# Sect. "Implementation details": gradient clipping of 20 (spatial) and 40 (temporal).
DEFAULT_CLIP_NORMS = {"spatial": 20.0, "temporal": 40.0}
GENERATOR_LEARNING_RATE = 1e-3
DISCRIMINATOR_LEARNING_RATE = 1e-4
DECAY_EPOCHS = 40  # "decreases by 0.1 every 40 epochs"
DECAY_FACTOR = 0.1


def _check_backend():
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise NotImplementedError(
            "Semantic adversarial training (two optimizers per stream, keras_twostream.training."
            "adversarial) runs on the TensorFlow backend only; Keras' "
            f"{backend!r} trainer carries the state of a single optimizer. Build, predict, save "
            "and export work on every backend. Received backend: "
            f"{backend!r}"
        )


def _num_replicas():
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def _batch_size(x):
    first = next(t for t in keras.tree.flatten(x) if t is not None)
    return ops.shape(first)[0]


def clip_by_global_norm(gradients, clip_norm):
    """Scales `gradients` so that their global L2 norm is at most `clip_norm`.

    `g * clip_norm / max(||g||, clip_norm)` over the list, as
    `tf.clip_by_global_norm` and `torch.nn.utils.clip_grad_norm_` (the
    clipping of TSN, whose settings the paper uses). `None` entries are kept.

    Returns:
        `(clipped_gradients, global_norm)`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.training.adversarial import clip_by_global_norm
    >>> clipped, norm = clip_by_global_norm([np.array([3.0, 4.0], "float32")], 1.0)
    >>> float(norm), [round(float(v), 3) for v in np.asarray(clipped[0])]
    (5.0, [0.6, 0.8])
    """
    present = [g for g in gradients if g is not None]
    if not present:
        return list(gradients), ops.convert_to_tensor(0.0)
    squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in present]
    norm = ops.sqrt(ops.sum(ops.stack(squares)))
    scale = clip_norm / ops.maximum(norm, clip_norm)
    clipped = [None if g is None else g * ops.cast(scale, g.dtype) for g in gradients]
    return clipped, norm


def _loss_scale(optimizer):
    """The factor the optimizer's `scale_loss` multiplies the loss by, or `None`."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.dynamic_scale
    return optimizer.loss_scale_factor


def _check_clip_norm(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"Expected {name} to be None or a number > 0. Received: {name}={value!r}")
    return float(value)


class SemanticAdversarialMixin:
    """Adds the SAL train step (Algorithm 1) to a functional multi-stream `keras.Model`.

    Mix it in before `VideoClassifier`: `class MPASAL(SemanticAdversarialMixin,
    VideoClassifier)`. The model provides:

    * `streams`: the stream names (e.g. `("spatial",)` or
      `("spatial", "temporal")`); each has its own optimizers;
    * `use_sal`: whether the adversarial loss is on (without it the step is
      the plain classification step, with the same optimizer and clipping);
    * `discriminators`: stream -> `SemanticDiscriminator` (with `use_sal`);
    * `semantic_encoder`: the frozen label encoder of Eq. (8) (with `use_sal`);
    * `adversarial_weight`: lambda of `L_cls + lambda * L_adv`;
    * `adversarial_forward(x, training)`: `(outputs, representations)`, the
      model's outputs and each stream's `V̄`, in one forward pass;
    * `generator_variables(stream)`: the trainable variables of G and C.

    `train_phases` chooses what a step updates: both phases (the default,
    Algorithm 1), `("discriminator",)` (the network runs in inference mode
    and nothing of it changes, batch-normalisation statistics included) or
    `("generator",)` (D is used as it is). Change it with
    `set_train_phases`, which retraces the train function.

    Logged metrics, under distribution too: `loss` (the network's objective
    `L_cls + lambda * L_adv`), `classification_loss`, the compiled accuracies,
    and per stream `<stream>_d_loss`, `<stream>_g_adv_loss`,
    `<stream>_d_real_accuracy` (share of `S` scored real) and
    `<stream>_d_fake_accuracy` (share of `V̄` scored generated), measured with
    D before its update.

    Example:

    >>> from keras_twostream.models.mpa_sal import build_mpa_sal
    >>> model = build_mpa_sal(5, backbone="tiny", image_size=32, num_segments=2,
    ...                       semantic_dim=8, discriminator_units=(16,))
    >>> model.compile()  # Adam 1e-4 for D, SGD 1e-3 momentum 0.9 for G and C, clipping 20
    >>> model.set_train_phases("discriminator")  # next steps update D only
    >>> model.train_phases
    ('discriminator',)
    """

    # --- Metrics (created with the model, so inside its strategy scope) ------------------
    def _create_adversarial_metrics(self):
        # Keras' built-in loss divides the per-replica mean by the replica count (PITFALLS).
        self._bce = keras.losses.BinaryCrossentropy(from_logits=True, name="adversarial_bce")
        self.classification_loss_tracker = keras.metrics.Mean(name="classification_loss")
        self.adversarial_trackers = {}
        if self.use_sal:
            for stream in self.streams:
                self.adversarial_trackers[stream] = {
                    key: keras.metrics.Mean(name=f"{stream}_{key}")
                    for key in ("d_loss", "g_adv_loss", "d_real_accuracy", "d_fake_accuracy")
                }

    # --- Phases ----------------------------------------------------------------------------
    @property
    def train_phases(self):
        """The phases a train step runs: a tuple of `"discriminator"`, `"generator"`."""
        default = PHASES if self.use_sal else ("generator",)
        return getattr(self, "_train_phases", None) or default

    def set_train_phases(self, *phases):
        """Chooses the phases of the next train steps (Algorithm 1 runs both) and retraces.

        Args:
            *phases: any of `"discriminator"` (D step) and `"generator"` (G and C
                step), in any order; they always run D first. No argument restores
                the default (both with `use_sal`, else the generator only).
        """
        if len(phases) == 1 and isinstance(phases[0], (list, tuple)):
            phases = tuple(phases[0])
        unknown = [p for p in phases if p not in PHASES]
        if unknown or len(set(phases)) != len(phases):
            raise ValueError(
                f"Expected distinct phases among {PHASES}. Received: phases={phases!r}"
            )
        if "discriminator" in phases and not self.use_sal:
            raise ValueError(
                "The discriminator phase needs use_sal=True; this model has no discriminator. "
                f"Received: phases={phases!r}"
            )
        self._train_phases = tuple(p for p in PHASES if p in phases) or None
        if getattr(self, "train_function", None) is not None:
            self.make_train_function(force=True)

    # --- Compile: the paper's optimizers, built up front inside the strategy scope --------
    def default_generator_optimizer(self, stream, steps_per_epoch=None):
        """SGD, momentum 0.9, 1e-3 divided by 10 every 40 epochs (paper, Implementation details).

        The step decay needs `steps_per_epoch` (Keras schedules count optimizer
        steps); without it the learning rate stays at 1e-3.
        """
        learning_rate = GENERATOR_LEARNING_RATE
        if steps_per_epoch is not None:
            learning_rate = keras.optimizers.schedules.ExponentialDecay(
                GENERATOR_LEARNING_RATE,
                decay_steps=DECAY_EPOCHS * int(steps_per_epoch),
                decay_rate=DECAY_FACTOR,
                staircase=True,
            )
        return keras.optimizers.SGD(
            learning_rate=learning_rate, momentum=0.9, name=f"{stream}_generator_sgd"
        )

    def default_discriminator_optimizer(self, stream):
        """Adam at 1e-4 (paper, Implementation details: "adaptive moment estimation")."""
        return keras.optimizers.Adam(
            DISCRIMINATOR_LEARNING_RATE, name=f"{stream}_discriminator_adam"
        )

    def _per_stream(self, value, name, default):
        if value == "auto":
            return {stream: default(stream) for stream in self.streams}
        if isinstance(value, dict):
            missing = [s for s in self.streams if s not in value]
            if missing or set(value) - set(self.streams):
                raise ValueError(
                    f"Expected {name} to map every stream {list(self.streams)} to an optimizer. "
                    f"Received keys: {sorted(value)}"
                )
            return {stream: keras.optimizers.get(value[stream]) for stream in self.streams}
        optimizer = keras.optimizers.get(value)
        if optimizer is None:
            raise ValueError(
                f"Expected {name} to be an optimizer, 'auto' or a dict. Received: None"
            )
        optimizers = {self.streams[0]: optimizer}
        for stream in self.streams[1:]:  # one instance per stream: its own slots and step count
            optimizers[stream] = optimizer.__class__.from_config(optimizer.get_config())
        return optimizers

    def compile(
        self,
        optimizer="auto",
        discriminator_optimizer="auto",
        loss="auto",
        metrics="auto",
        gradient_clip_norm="auto",
        steps_per_epoch=None,
        **kwargs,
    ):
        """Compiles with the paper's two optimizers per stream.

        Args:
            optimizer: the optimizer of the network G and classifier C:
                `"auto"` (SGD, momentum 0.9, 1e-3 with the step decay when
                `steps_per_epoch` is given), an optimizer (copied for each
                further stream) or a dict stream -> optimizer. Give it no
                `clipnorm`: see `gradient_clip_norm`.
            discriminator_optimizer: the same for D (`"auto"`: Adam 1e-4);
                unused without `use_sal`.
            loss: `"auto"`: sparse cross-entropy on every stream's output (Eq. 4).
            metrics: `"auto"`: accuracy of every output.
            gradient_clip_norm: the global norm the network gradients of a
                stream are clipped to, after the cross-replica sum: `"auto"`
                (20 spatial, 40 temporal), a number, a dict stream -> number,
                or `None` (no clipping).
            steps_per_epoch: batches per epoch, for the "every 40 epochs"
                step decay of the `"auto"` optimizer.

        Mixed precision: pass `keras.optimizers.LossScaleOptimizer`s (one stream
        per model); the step scales the losses and clips the unscaled gradient.
            **kwargs: other `keras.Model.compile` arguments (`jit_compile`, ...).
        """
        if steps_per_epoch is not None and (
            isinstance(steps_per_epoch, bool)
            or not isinstance(steps_per_epoch, numbers.Integral)
            or steps_per_epoch < 1
        ):
            raise ValueError(
                f"Expected steps_per_epoch to be None or a positive integer. Received: "
                f"steps_per_epoch={steps_per_epoch!r}"
            )
        if gradient_clip_norm == "auto":
            clip = {
                s: DEFAULT_CLIP_NORMS.get(s, DEFAULT_CLIP_NORMS["spatial"]) for s in self.streams
            }
        elif isinstance(gradient_clip_norm, dict):
            if set(gradient_clip_norm) != set(self.streams):
                raise ValueError(
                    f"Expected gradient_clip_norm to map every stream {list(self.streams)} to a "
                    f"number or None. Received keys: {sorted(gradient_clip_norm)}"
                )
            clip = {
                s: _check_clip_norm(gradient_clip_norm[s], f"gradient_clip_norm[{s!r}]")
                for s in self.streams
            }
        else:
            value = _check_clip_norm(gradient_clip_norm, "gradient_clip_norm")
            clip = {s: value for s in self.streams}
        # optimizer=None: Keras would otherwise create an RMSprop over every variable (PITFALLS).
        super().compile(optimizer=None, loss=loss, metrics=metrics, **kwargs)
        self.gradient_clip_norms = clip
        generator = self._per_stream(
            optimizer,
            "optimizer",
            lambda s: self.default_generator_optimizer(s, steps_per_epoch),
        )
        for stream, opt in generator.items():
            if (
                opt.clipnorm is not None
                or opt.global_clipnorm is not None
                or opt.clipvalue is not None
            ):
                raise ValueError(
                    f"The {stream} optimizer clips its own gradients ({opt.get_config()['name']}); "
                    "under MirroredStrategy Keras clips each replica's partial gradient. Pass "
                    "gradient_clip_norm to compile() instead and an optimizer without clipping."
                )
        discriminator = (
            self._per_stream(
                discriminator_optimizer,
                "discriminator_optimizer",
                self.default_discriminator_optimizer,
            )
            if self.use_sal
            else {}
        )
        if len(self.streams) > 1:
            for opt in [*generator.values(), *discriminator.values()]:
                if isinstance(opt, keras.optimizers.LossScaleOptimizer) or opt.loss_scale_factor:
                    raise ValueError(
                        "Loss scaling (mixed precision) is supported for one stream: the streams' "
                        "gradients come from one loss. Train the spatial and temporal networks as "
                        f"separate models. Received a scaling optimizer: {opt.name!r}"
                    )
        self.generator_optimizers = generator
        self.discriminator_optimizers = discriminator
        self._build_optimizers()

    def _build_optimizers(self):
        def build():
            for stream in self.streams:
                self.generator_optimizers[stream].build(self.generator_variables(stream))
                if self.use_sal:
                    self.discriminator_optimizers[stream].build(
                        self.discriminators[stream].trainable_variables
                    )

        if keras.backend.backend() == "tensorflow":
            with self.distribute_strategy.scope():
                build()
        else:
            build()

    def compile_from_config(self, config):
        # The stored config has optimizer=None (the optimizers are the model's own): recompile
        # with the paper's optimizers and the stored losses and metrics.
        config = dict(keras.saving.deserialize_keras_object(config))
        config.pop("optimizer", None)
        self.compile(**config)

    # --- Fit ---------------------------------------------------------------------------------
    def make_train_function(self, force=False):
        _check_backend()
        if getattr(self, "generator_optimizers", None) is None:
            raise ValueError(
                f"{type(self).__name__} trains with its own optimizers: call model.compile() before fit."
            )
        return super().make_train_function(force=force)

    def _labels(self, y):
        expanded = self._expand_labels(y)
        labels = next(iter(expanded.values())) if isinstance(expanded, dict) else expanded
        return ops.reshape(ops.cast(labels, "int32"), (-1,))

    def _semantics(self, y):
        # Eq. (8): S = encoder(y), the frozen encoder of one-hot labels.
        one_hot = ops.one_hot(self._labels(y), self.num_classes)
        return ops.stop_gradient(self.semantic_encoder(one_hot, training=False))

    def _discriminator_losses(self, stream, semantics, representation, training):
        discriminator = self.discriminators[stream]
        real = discriminator(semantics, training=training)  # [B, 1] logits
        fake = discriminator(ops.stop_gradient(representation), training=training)
        ones, zeros = ops.ones_like(real), ops.zeros_like(fake)
        # Eq. (9), maximised by D: minimise BCE(1, D(S)) + BCE(0, D(V̄)).
        loss = self._bce(ones, real) + self._bce(zeros, fake)
        return loss, real, fake

    def _track(self, tracker, value, batch):
        tracker.update_state(value, sample_weight=batch)

    def _apply_generator(self, tape, loss):
        import tensorflow as tf

        streams = list(self.streams)
        variables = {s: self.generator_variables(s) for s in streams}
        flat = [v for s in streams for v in variables[s]]
        gradients = tape.gradient(loss, flat)
        replicas = _num_replicas()
        start = 0
        for stream in streams:
            count = len(variables[stream])
            grads = gradients[start : start + count]
            start += count
            clip_norm = self.gradient_clip_norms[stream]
            if clip_norm is not None:
                context = tf.distribute.get_replica_context()
                present = [i for i, g in enumerate(grads) if g is not None]
                if replicas > 1 and context is not None:
                    # Clip the global-batch gradient: sum over replicas first.
                    summed = context.all_reduce(
                        tf.distribute.ReduceOp.SUM, [grads[i] for i in present]
                    )
                    for i, g in zip(present, summed, strict=True):
                        grads[i] = g
                # Clip the true gradient: undo a mixed-precision loss scale around the clipping.
                scale = _loss_scale(self.generator_optimizers[stream])
                grads, _ = clip_by_global_norm(
                    grads, clip_norm if scale is None else clip_norm * ops.cast(scale, "float32")
                )
                if replicas > 1 and context is not None:
                    # The optimizer sums the replicas' gradients again.
                    grads = [None if g is None else g / replicas for g in grads]
            self.generator_optimizers[stream].apply(grads, variables[stream])

    def train_step(self, data):
        _check_backend()
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self._check_inputs(x)
        phases = self.train_phases
        train_network = "generator" in phases
        train_discriminator = "discriminator" in phases
        replicas = _num_replicas()
        batch = _batch_size(x)

        with tf.GradientTape() as tape:
            # One forward pass of the network per batch, in training mode only when it is trained.
            y_pred, representations = self.adversarial_forward(x, training=train_network)
            classification = self.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            loss = classification
            if self.use_sal:
                semantics = self._semantics(y)
                if train_discriminator:
                    with tape.stop_recording():
                        self._discriminator_step(semantics, representations, replicas, batch)
                for stream in self.streams:
                    # Eq. (11): the non-saturating loss -log D(V̄), D fixed (inference mode).
                    fake = self.discriminators[stream](representations[stream], training=False)
                    adversarial = self._bce(ops.ones_like(fake), fake)
                    loss = loss + self.adversarial_weight * adversarial
                    self._track(
                        self.adversarial_trackers[stream]["g_adv_loss"],
                        adversarial * replicas,
                        batch,
                    )
            # Mixed precision: the optimizer's loss scaling (one stream; see compile()).
            scaled = self.generator_optimizers[self.streams[0]].scale_loss(loss)
        if train_network:
            self._apply_generator(tape, scaled)
        self._track(self.classification_loss_tracker, classification * replicas, batch)
        self._loss_tracker.update_state(loss * replicas, sample_weight=batch)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _discriminator_step(self, semantics, representations, replicas, batch):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            total = 0.0
            logits = {}
            for stream in self.streams:
                loss, real, fake = self._discriminator_losses(
                    stream, semantics, representations[stream], training=True
                )
                logits[stream] = (loss, real, fake)
                total = total + loss
            total = self.discriminator_optimizers[self.streams[0]].scale_loss(total)
        variables = {s: self.discriminators[s].trainable_variables for s in self.streams}
        flat = [v for s in self.streams for v in variables[s]]
        gradients = tape.gradient(total, flat)
        start = 0
        for stream in self.streams:
            count = len(variables[stream])
            self.discriminator_optimizers[stream].apply(
                gradients[start : start + count], variables[stream]
            )
            start += count
            self._track_discriminator(stream, *logits[stream], replicas, batch)

    def _track_discriminator(self, stream, loss, real, fake, replicas, batch):
        trackers = self.adversarial_trackers[stream]
        self._track(trackers["d_loss"], loss * replicas, batch)
        trackers["d_real_accuracy"].update_state(ops.cast(ops.greater(real, 0.0), "float32"))
        trackers["d_fake_accuracy"].update_state(ops.cast(ops.less(fake, 0.0), "float32"))

    def test_step(self, *args):
        if keras.backend.backend() != "tensorflow":
            # Keras' stateless step: loss and compiled metrics (the SAL trackers stay at 0).
            return super().test_step(*args)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(args[0])
        self._check_inputs(x)
        replicas = _num_replicas()
        batch = _batch_size(x)
        y_pred, representations = self.adversarial_forward(x, training=False)
        classification = self.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        loss = classification
        if self.use_sal:
            semantics = self._semantics(y)
            for stream in self.streams:
                d_loss, real, fake = self._discriminator_losses(
                    stream, semantics, representations[stream], training=False
                )
                self._track_discriminator(stream, d_loss, real, fake, replicas, batch)
                adversarial = self._bce(ops.ones_like(fake), fake)
                loss = loss + self.adversarial_weight * adversarial
                self._track(
                    self.adversarial_trackers[stream]["g_adv_loss"], adversarial * replicas, batch
                )
        self._track(self.classification_loss_tracker, classification * replicas, batch)
        self._loss_tracker.update_state(loss * replicas, sample_weight=batch)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
