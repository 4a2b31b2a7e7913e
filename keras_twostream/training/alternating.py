"""Branch-by-branch ("alternating") training of two-branch models.

The training strategy of the cross-modality attention paper (Chi et al. 2019,
Sect. 4.3): iteration 1 trains the RGB branch "according to the loss of the
current branch" with every layer of the Flow branch frozen, CMA blocks
included; iteration 2 trains the Flow branch with the RGB branch frozen; and so
on, after the Flow branch was first trained alone (`AlternatingSchedule(
pretrain_branch="temporal")`, its CMA blocks kept identities). The learning
rate is reset to its initial value at the start of every iteration (Sect.
4.4) and the fused score leans 5:1 toward the branch trained last (Sect. 5.2).

How the freezing works (see docs PITFALLS: toggling `layer.trainable` from a
callback does nothing on TensorFlow once `fit` has traced its step, and zeroed
gradients still move weights under momentum or Adam):

* one optimizer is built on every trainable variable when the model is
  compiled (inside the model's `tf.distribute` strategy scope);
* `model.training_branch` is a Python attribute that `train_step` reads while
  it is traced: only that branch's variables are passed to
  `optimizer.apply`, so the other branch's weights and optimizer slots are not
  touched at all;
* during a phase the other branch runs in inference mode: its batch
  normalisation uses and keeps its moving statistics and its dropout is off,
  so every variable of the frozen branch (weights, CMA blocks, BN moving
  statistics, dropout seeds) is bit-for-bit unchanged. Its path is NOT cut:
  the paper freezes the other branch's weights, not the gradient through it,
  so the gradient of the RGB loss also flows RGB -> Flow CMA block -> Flow
  blocks -> the next RGB CMA block (issue 15 item 6);
* the gradient follows "the loss of the current branch" (Sect. 4.3): the
  compiled losses of the trained branch's outputs (`"spatial"`, `"spatial_*"`, with
  their loss weights) plus the model's regularisation losses. The frozen
  branch's output loss is left out of the gradient: with the path open it
  would otherwise push the trained branch through the frozen CMA blocks.
  A loss compiled on the fused output (`ScoreFusion`, `"fused"`; the default
  `compile()` puts none there) is left out too: the paper trains each
  iteration on the current branch's loss only, and the fused score is a
  test-time combination (Sect. 5.2), so it trains only when every branch is
  trained jointly (`training_branch=None`). Logs still report the total loss
  and every output's loss and metrics;
* changing the phase calls `model.make_train_function(force=True)`, so the
  next step is traced again; `fit` looks the step function up at every step,
  so a callback may change the phase between epochs.

Backends: TensorFlow (also under `tf.distribute.MirroredStrategy`) and JAX
(its stateless `train_step` applies the optimizer to the trained branch inside
a `keras.StatelessScope` and returns the frozen branch's values unchanged).
Other backends raise `NotImplementedError` when a phase is set. With no phase
(`training_branch=None`, the default) the models train every branch jointly
with Keras' own `train_step`.

The mixin relies on the Keras 3 functional graph runner
(`Functional._run_through_graph`) to choose the `training` flag per layer.
"""

import warnings

import keras
from keras import ops

_SUPPORTED_BACKENDS = ("tensorflow", "jax")


def _check_backend():
    backend = keras.backend.backend()
    if backend not in _SUPPORTED_BACKENDS:
        raise NotImplementedError(
            "Branch-by-branch training (AlternatingTrainingMixin) supports the TensorFlow and JAX "
            f"backends. Received backend: {backend!r}"
        )


def _batch_size(x):
    first = next(t for t in keras.tree.flatten(x) if t is not None)
    return ops.shape(first)[0]


class AlternatingTrainingMixin:
    """Adds branch-by-branch training to a functional two-branch `keras.Model`.

    Mix it in before `keras.Model` (or `VideoClassifier`):
    `class CMA(AlternatingTrainingMixin, VideoClassifier)`. The model declares
    its branches in `self.branches` (CMA: `("spatial", "temporal")`, the
    names of their outputs); a branch owns every layer named after its layer
    prefix (`self.branch_prefixes`, CMA: `"rgb"` for the spatial branch, so
    `"rgb_*"`; by default the branch name itself). The late-fusion layer
    (`ScoreFusion`, named by `self.fusion_layer_name`, `"fused"` by default)
    belongs to no branch. See the module docstring for how freezing works.
    Former branch names in `self.BRANCH_ALIASES` (CMA: `"rgb"`, `"flow"`)
    are accepted with a `DeprecationWarning`.

    Set the phase with `set_training_branch("spatial")` (or let an
    `AlternatingSchedule` callback do it during `fit`); `None` trains every
    branch jointly.

    Example:

    >>> from keras_twostream.models.cma import build_cma
    >>> model = build_cma(5, backbone="tiny", image_size=64, num_segments=2, flow_length=2)
    >>> model.compile()
    >>> model.set_training_branch("spatial")  # next fit() updates the RGB branch only
    >>> model.training_branch
    'spatial'
    """

    fusion_layer_name = "fused"
    # Former branch names -> current ones (CMA's branches were "rgb" and "flow").
    BRANCH_ALIASES = {}

    @property
    def branch_prefixes(self):
        """Branch -> the prefix of the names of its layers (by default the branch name)."""
        return {branch: branch for branch in self.branches}

    # --- Branches -----------------------------------------------------------------------
    @property
    def training_branch(self):
        """The branch that `fit` updates, or `None` for all of them."""
        return getattr(self, "_training_branch", None)

    def _check_branch(self, branch, allow_none=False):
        """The branch's current name: `branch`, or the branch a former name stands for."""
        if branch is None and allow_none:
            return None
        if branch in self.BRANCH_ALIASES and branch not in self.branches:
            new = self.BRANCH_ALIASES[branch]
            warnings.warn(
                f"{type(self).__name__}: the branch {branch!r} is now named {new!r}, the name of "
                "its output (every two-stream model has 'spatial', 'temporal' and 'fused'); the "
                "former name will stop working in a future release.",
                DeprecationWarning,
                stacklevel=3,
            )
            branch = new
        if branch not in self.branches:
            raise ValueError(
                f"Expected branch to be one of {tuple(self.branches)}"
                + (" or None" if allow_none else "")
                + f". Received: branch={branch!r}"
            )
        return branch

    def branch_layers(self, branch):
        """The model's layers that belong to `branch`: its output (named `branch`) and every
        layer named after its prefix (`prefix` or `prefix_*`, see `branch_prefixes`)."""
        branch = self._check_branch(branch)
        prefix = self.branch_prefixes[branch]
        return [
            layer
            for layer in self.layers
            if layer.name in (branch, prefix) or layer.name.startswith(f"{prefix}_")
        ]

    def branch_variables(self, branch, trainable_only=True):
        """The variables of `branch`: its trainable ones, or with `trainable_only=False` all of
        them (batch-normalisation moving statistics included)."""
        variables, seen = [], set()
        for layer in self.branch_layers(branch):
            for v in layer.trainable_variables if trainable_only else layer.variables:
                if id(v) not in seen:
                    seen.add(id(v))
                    variables.append(v)
        return variables

    @property
    def training_cross_layers(self):
        """Whether a phase also trains the branch's cross-branch layers (e.g. its CMA blocks)."""
        return getattr(self, "_training_cross_layers", True)

    def cross_layers(self, branch):
        """The layers of `branch` that read another branch's output: CMA's `"rgb_cma_*"`
        blocks (queries from RGB, keys and values from Flow). Found in the functional graph."""
        branch = self._check_branch(branch)
        own = {id(layer) for layer in self.branch_layers(branch)}
        others = {
            id(layer)
            for other in self.branches
            if other != branch
            for layer in self.branch_layers(other)
        }
        cross = []
        for layer in self.layers:
            if id(layer) not in own:
                continue
            parents = [
                id(parent.operation)
                for node in getattr(layer, "_inbound_nodes", ())
                for parent in node.parent_nodes
            ]
            if any(parent in others for parent in parents):
                cross.append(layer)
        return cross

    def set_training_branch(self, branch, with_cross_layers=True):
        """Trains only `branch` from the next step on (`None`: every branch).

        The other branches are frozen and run in inference mode; the train
        function is rebuilt so the change takes effect even inside `fit`.
        With `with_cross_layers=False` the branch's own cross-branch layers
        (`cross_layers`, e.g. its CMA blocks) are frozen too: the branch trains
        as a single stream while its CMA blocks stay identities (the Flow
        pre-training before iteration 1 of the CMA paper, Sect. 4.3).
        """
        branch = self._check_branch(branch, allow_none=True)
        if not isinstance(with_cross_layers, bool):
            raise ValueError(
                "Expected with_cross_layers to be a bool. "
                f"Received: with_cross_layers={with_cross_layers!r}"
            )
        if branch is None and not with_cross_layers:
            raise ValueError("with_cross_layers=False needs a branch to train; received None.")
        if branch is not None:
            _check_backend()
        self._training_branch = branch
        self._training_cross_layers = with_cross_layers
        if getattr(self, "train_function", None) is not None:
            self.make_train_function(force=True)

    def set_fusion_weights(self, weights):
        """Sets the weights of the branches in the fused score, in `self.branches` order."""
        self.get_layer(self.fusion_layer_name).set_stream_weights(weights)

    def fusion_weights_for(self, branch, ratio=5.0):
        """Fusion weights leaning `ratio : 1` toward `branch` (Sect. 5.2 of the CMA paper)."""
        branch = self._check_branch(branch)
        return [float(ratio) if b == branch else 1.0 for b in self.branches]

    # --- Compile: one optimizer over every variable, built up front ---------------------
    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            if keras.backend.backend() == "tensorflow":
                with self.distribute_strategy.scope():
                    self.optimizer.build(self.trainable_variables)
            else:
                self.optimizer.build(self.trainable_variables)

    # --- Forward pass: the frozen branch in inference mode ---------------------------
    def _frozen_layer_ids(self):
        branch = self.training_branch
        frozen = {
            id(layer)
            for other in self.branches
            if other != branch
            for layer in self.branch_layers(other)
        }
        if not self.training_cross_layers:
            frozen |= {id(layer) for layer in self.cross_layers(branch)}
        return frozen

    def call(self, inputs, training=None, mask=None):
        if self.training_branch is None or not training:
            return super().call(inputs, training=training, mask=mask)
        if not hasattr(self, "_run_through_graph"):
            raise NotImplementedError(
                f"{type(self).__name__}: branch-by-branch training needs a functional model (built "
                "from keras.Input); subclassed models cannot choose the training mode per layer."
            )
        frozen = self._frozen_layer_ids()

        def operation_fn(operation):
            is_frozen = id(operation) in frozen

            def run(*args, **kwargs):
                # The frozen branch runs in inference mode; gradients still flow through it
                # (the optimizer is only handed the trained branch's variables).
                if "training" in getattr(operation, "_call_context_args", ()):
                    kwargs["training"] = not is_frozen
                return operation(*args, **kwargs)

            return run

        inputs = self._standardize_inputs(inputs)
        return self._run_through_graph(inputs, operation_fn=operation_fn)

    # --- The loss of the current branch -----------------------------------------------
    def _phase_losses(self, x, y, y_pred, sample_weight):
        """`(total, branch_loss)`: the compiled total loss (updating every output's loss
        tracker, for the logs) and the loss the phase's gradient follows: the compiled losses
        of the trained branch's outputs, with their loss weights, plus the additional
        (regularisation) losses. See the module docstring for the fused output."""
        total = self.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
        )
        compiled = getattr(self, "_compile_loss", None)
        flat_losses = getattr(compiled, "_flat_losses", None) or []
        branch = self.training_branch
        labels = self._expand_labels(y) if hasattr(self, "_expand_labels") else y
        branch_loss = None
        for path, loss_fn, loss_weight, _ in flat_losses:
            # The branch's outputs are keyed by its name: "spatial" (or "spatial_*"), not "fused".
            key = str(path[0]) if path else ""
            if key != branch and not key.startswith(f"{branch}_"):
                continue
            if not isinstance(labels, dict) or not isinstance(y_pred, dict):
                raise ValueError(
                    f"{type(self).__name__}: branch-by-branch training needs labels and outputs "
                    f"keyed by output name. Received labels of type {type(labels).__name__}"
                )
            weights = sample_weight
            if isinstance(sample_weight, dict):
                weights = sample_weight.get(path[0])
            value = ops.cast(loss_fn(labels[path[0]], y_pred[path[0]], weights), "float32")
            if loss_weight is not None:
                value = value * loss_weight
            branch_loss = value if branch_loss is None else branch_loss + value
        if branch_loss is None:
            raise ValueError(
                f"Branch {branch!r} has no compiled loss on an output named {branch!r} or "
                f"'{branch}_*': compile the model with a loss on it (the default compile() puts "
                "one on every branch output)."
            )
        for loss in self.losses:  # regularisation losses, as Keras' compute_loss adds them
            branch_loss = branch_loss + ops.cast(self._aggregate_additional_loss(loss), "float32")
        return total, branch_loss

    # --- train_step -------------------------------------------------------------------
    def _loss_metric(self):
        return next((m for m in self.metrics if m.name == "loss"), None)

    def _phase_variables(self):
        if self.optimizer is None:
            raise ValueError(
                f"{type(self).__name__}.training_branch={self.training_branch!r} needs a compiled "
                "model with an optimizer: call model.compile() first."
            )
        variables = self.branch_variables(self.training_branch)
        if not self.training_cross_layers:
            frozen = {
                id(v) for layer in self.cross_layers(self.training_branch) for v in layer.variables
            }
            variables = [v for v in variables if id(v) not in frozen]
        if not variables:
            raise ValueError(
                f"Branch {self.training_branch!r} has no trainable variables to train."
            )
        return variables

    def train_step(self, *args, **kwargs):
        if self.training_branch is None:
            return super().train_step(*args, **kwargs)
        backend = keras.backend.backend()
        if backend == "tensorflow":
            return self._tensorflow_branch_step(*args, **kwargs)
        if backend == "jax":
            return self._jax_branch_step(*args, **kwargs)
        _check_backend()

    def _tensorflow_branch_step(self, data):
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self._phase_variables()
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            total, loss = self._phase_losses(x, y, y_pred, sample_weight)
            tracker = self._loss_metric()
            if tracker is not None:
                # Keras losses divide by the replica count; report the per-batch total loss.
                replicas = tf.distribute.get_strategy().num_replicas_in_sync
                tracker.update_state(
                    total * ops.cast(replicas, total.dtype), sample_weight=_batch_size(x)
                )
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply(gradients, variables)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _jax_branch_step(self, state, data):
        import jax

        trainable_values, non_trainable_values, optimizer_values, metrics_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        trainable_variables = self.trainable_variables
        optimizer_variables = self.optimizer.variables

        def phase_loss(trainable_values, non_trainable_values, metrics_values):
            # As Keras' compute_loss_and_updates, but differentiating the current branch's loss.
            y_pred, non_trainable_values, losses = self.stateless_call(
                trainable_values, non_trainable_values, x, return_losses=True, training=True
            )
            if losses:  # forward-pass losses for self.losses
                self._losses_override.clear()
                self._losses_override = losses
            mapping = (
                list(zip(trainable_variables, trainable_values, strict=True))
                + list(zip(self.non_trainable_variables, non_trainable_values, strict=True))
                + list(zip(self.metrics_variables, metrics_values, strict=True))
            )
            with keras.StatelessScope(state_mapping=mapping) as scope:
                total, loss = self._phase_losses(x, y, y_pred, sample_weight)
            if losses:
                self._losses_override.clear()
            metrics_values = _current_values(scope, self.metrics_variables, metrics_values)
            with keras.StatelessScope(
                state_mapping=list(zip(optimizer_variables, optimizer_values, strict=True))
            ):
                loss = self.optimizer.scale_loss(loss)
            return loss, (total, y_pred, non_trainable_values, metrics_values)

        grad_fn = jax.value_and_grad(phase_loss, has_aux=True)
        (_, aux), gradients = grad_fn(trainable_values, non_trainable_values, metrics_values)
        unscaled_loss, y_pred, non_trainable_values, metrics_values = aux

        # Apply the optimizer to the trained branch only; every other value is returned as is.
        selected = {id(v) for v in self._phase_variables()}
        indices = [i for i, v in enumerate(trainable_variables) if id(v) in selected]
        mapping = list(zip(trainable_variables, trainable_values, strict=True)) + list(
            zip(optimizer_variables, optimizer_values, strict=True)
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.optimizer.apply(
                [gradients[i] for i in indices], [trainable_variables[i] for i in indices]
            )
        trainable_values = _current_values(scope, trainable_variables, trainable_values)
        optimizer_values = _current_values(scope, optimizer_variables, optimizer_values)

        metrics_variables = self.metrics_variables
        with keras.StatelessScope(
            state_mapping=list(zip(metrics_variables, metrics_values, strict=True))
        ) as scope:
            tracker = self._loss_metric()
            if tracker is not None:
                tracker.update_state(unscaled_loss, sample_weight=_batch_size(x))
            logs = self.compute_metrics(x, y, y_pred, sample_weight)
        metrics_values = _current_values(scope, metrics_variables, metrics_values)
        return logs, (trainable_values, non_trainable_values, optimizer_values, metrics_values)


def _current_values(scope, variables, old_values):
    values = []
    for variable, old in zip(variables, old_values, strict=True):
        new = scope.get_current_value(variable)
        values.append(old if new is None else new)
    return values


class AlternatingSchedule(keras.callbacks.Callback):
    """Trains the branches of a model one after the other during `fit`.

    The iterative training of the CMA paper (Chi et al. 2019, Sect. 4.3):
    epochs `[0, E)` form iteration 1 and train the first branch (RGB) with the
    others frozen, epochs `[E, 2E)` iteration 2 training the next branch
    (Flow), and so on, cycling through `branches`. At the start of each
    iteration the callback

    * sets `model.training_branch` (which retraces the train step),
    * resets the learning rate to its initial value (Sect. 4.4: "At the
      beginning of each iteration, we reset the learning rate"); combine with
      `keras.callbacks.ReduceLROnPlateau` for the paper's plateau decay,
    * optionally zeroes the optimizer's state (momentum, iteration count), as
      a fresh optimizer for the iteration would,
    * sets the fused score's weights `fusion_ratio : 1` toward the branch being
      trained (Sect. 5.2: 5:1 at iterations 1, 3, ... and 1:5 at 2, 4, ...).

    With `pretrain_branch` (the CLI: `"temporal"`, the Flow branch), epochs `[0, P)` first train
    that branch alone, before iteration 1 (Sect. 4.3: "we firstly train the
    flow branch ... After that, ... we train the CMA Model in an iterative
    way"): its CMA blocks stay frozen identities
    (`set_training_branch(branch, with_cross_layers=False)`), so this
    pre-training is the plain Flow stream, and the paper's iteration 1 then
    starts from a trained Flow branch whose CMA blocks are "initially an
    identity mapping". It is not an iteration of Table 1 (its `iter_0` is a
    separately trained two-stream baseline, which the paper says it does not
    use as initialisation); `iteration_for_epoch` numbers it 0. The
    learning rate, optimizer state and `reset_callbacks` reset when it
    starts and again when iteration 1 starts, and the fused score leans
    toward the pre-trained branch meanwhile.

    Iterations follow the absolute epoch index, so `fit(initial_epoch=...)`
    resumes in the right iteration and one iteration may span several `fit`
    calls. After `fit`, the model keeps training the last branch; call
    `model.set_training_branch(None)` to train every branch jointly again.

    Args:
        epochs_per_iteration: `E`, epochs per iteration (30 in the paper).
        branches: the order in which branches are trained; `None` uses
            `model.branches` (CMA: `("spatial", "temporal")`: RGB first, as
            the paper).
        fusion_ratio: weight of the branch being trained in the fused score,
            against 1 for the others; `None` leaves the fusion weights alone.
        reset_learning_rate: reset the learning rate at each iteration start.
        initial_learning_rate: the value to reset to; `None` takes the
            optimizer's learning rate when training begins.
        reset_optimizer_state: zero every optimizer variable except the
            learning rate (momentum/Adam slots, iteration counter) at each
            iteration start.
        reset_callbacks: callbacks restarted (their `on_train_begin`) when an
            iteration starts, e.g. the `keras.callbacks.ReduceLROnPlateau` of
            the paper's decay: otherwise it keeps the best value and wait
            counter of the previous iteration and cuts the freshly reset rate
            again and again (Sect. 4.4 resets the rate each iteration).
        verbose: print a line when an iteration starts.
        pretrain_branch: a branch trained alone (its cross-branch layers
            frozen) before iteration 1, or `None` for no pre-training.
        pretrain_epochs: `P`, epochs of that pre-training (positive when
            `pretrain_branch` is given).

    Example:

    >>> from keras_twostream.models.cma import build_cma
    >>> from keras_twostream.training.alternating import AlternatingSchedule
    >>> model = build_cma(5, backbone="tiny", image_size=64, num_segments=2, flow_length=2)
    >>> model.compile()
    >>> schedule = AlternatingSchedule(epochs_per_iteration=30)
    >>> # model.fit(train_ds, epochs=60, callbacks=[schedule])  -> iterations 1 (RGB) and 2 (Flow)
    """

    def __init__(
        self,
        epochs_per_iteration,
        branches=None,
        fusion_ratio=5.0,
        reset_learning_rate=True,
        initial_learning_rate=None,
        reset_optimizer_state=True,
        reset_callbacks=(),
        verbose=1,
        pretrain_branch=None,
        pretrain_epochs=0,
    ):
        super().__init__()
        if (
            isinstance(epochs_per_iteration, bool)
            or not isinstance(epochs_per_iteration, int)
            or epochs_per_iteration < 1
        ):
            raise ValueError(
                "Expected epochs_per_iteration to be a positive integer. "
                f"Received: epochs_per_iteration={epochs_per_iteration!r}"
            )
        if branches is not None:
            branches = tuple(branches)
            if not branches:
                raise ValueError(
                    "Expected branches to name at least one branch. Received: branches=()"
                )
        if fusion_ratio is not None and (isinstance(fusion_ratio, bool) or not fusion_ratio > 0):
            raise ValueError(
                f"Expected fusion_ratio > 0 or None. Received: fusion_ratio={fusion_ratio!r}"
            )
        if initial_learning_rate is not None and not initial_learning_rate > 0:
            raise ValueError(
                "Expected initial_learning_rate > 0 or None. "
                f"Received: initial_learning_rate={initial_learning_rate!r}"
            )
        if isinstance(pretrain_epochs, bool) or not isinstance(pretrain_epochs, int):
            raise ValueError(
                "Expected pretrain_epochs to be a non-negative integer. "
                f"Received: pretrain_epochs={pretrain_epochs!r}"
            )
        if (pretrain_branch is None) != (pretrain_epochs == 0) or pretrain_epochs < 0:
            raise ValueError(
                "Expected pretrain_epochs > 0 with a pretrain_branch, and 0 without one. "
                f"Received: pretrain_branch={pretrain_branch!r}, pretrain_epochs={pretrain_epochs!r}"
            )
        self.epochs_per_iteration = epochs_per_iteration
        self.pretrain_branch = pretrain_branch
        self.pretrain_epochs = pretrain_epochs
        self.branches = branches
        self.fusion_ratio = fusion_ratio
        self.reset_learning_rate = reset_learning_rate
        self.initial_learning_rate = initial_learning_rate
        self.reset_optimizer_state = reset_optimizer_state
        self.reset_callbacks = list(reset_callbacks or ())
        self.verbose = verbose
        self.iteration = None
        self.branch = None

    def _branches(self):
        branches = tuple(
            self.model._check_branch(branch) for branch in (self.branches or self.model.branches)
        )
        if self.pretrain_branch is not None:
            self.pretrain_branch = self.model._check_branch(self.pretrain_branch)
        return branches

    def iteration_for_epoch(self, epoch):
        """The 1-based iteration and the branch it trains, for a 0-based epoch index
        (iteration 0: the pre-training of `pretrain_branch`)."""
        branches = self._branches()
        if epoch < self.pretrain_epochs:
            return 0, self.pretrain_branch
        iteration = (epoch - self.pretrain_epochs) // self.epochs_per_iteration + 1
        return iteration, branches[(iteration - 1) % len(branches)]

    def _starts_iteration(self, epoch):
        if epoch < self.pretrain_epochs:
            return epoch == 0
        return (epoch - self.pretrain_epochs) % self.epochs_per_iteration == 0

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "set_training_branch"):
            raise ValueError(
                "AlternatingSchedule needs a model with branch-by-branch training "
                f"(AlternatingTrainingMixin, e.g. build_cma). Received: {type(self.model).__name__}"
            )
        self._branches()
        optimizer = self.model.optimizer
        if self.reset_learning_rate and self.initial_learning_rate is None:
            if not isinstance(optimizer.learning_rate, keras.Variable):
                raise ValueError(
                    "AlternatingSchedule resets the learning rate at each iteration and needs a "
                    "constant learning rate (a float), not a LearningRateSchedule or callable; use "
                    "keras.callbacks.ReduceLROnPlateau for the paper's decay, or pass "
                    "reset_learning_rate=False."
                )
            self.initial_learning_rate = float(ops.convert_to_numpy(optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        iteration, branch = self.iteration_for_epoch(epoch)
        cross = iteration > 0  # the pre-training keeps the branch's CMA blocks frozen
        starts = self._starts_iteration(epoch)
        current = (self.model.training_branch, self.model.training_cross_layers)
        if not starts and (branch, cross) == current:
            return
        self.model.set_training_branch(branch, with_cross_layers=cross)
        if self.fusion_ratio is not None:
            self.model.set_fusion_weights(self.model.fusion_weights_for(branch, self.fusion_ratio))
        if starts:
            optimizer = self.model.optimizer
            if self.reset_optimizer_state:
                reset_optimizer_state(optimizer)
            if self.reset_learning_rate:
                optimizer.learning_rate = self.initial_learning_rate
            for callback in self.reset_callbacks:  # e.g. ReduceLROnPlateau: best value, wait
                callback.on_train_begin()
        self.iteration, self.branch = iteration, branch
        if self.verbose:
            what = (
                f"iteration {iteration} (epoch {epoch + 1}) trains the {branch!r} branch"
                if iteration
                else f"pre-training (epoch {epoch + 1}) trains the {branch!r} branch alone, its "
                "cross-branch blocks frozen"
            )
            print(f"AlternatingSchedule: {what}")


def reset_optimizer_state(optimizer):
    """Zeroes every variable of `optimizer` except its learning rate.

    Momentum and Adam slots and the iteration counter start again from zero,
    as in a freshly created optimizer; the learning rate is left as it is.

    Example:

    >>> import keras, numpy as np
    >>> from keras_twostream.training import reset_optimizer_state
    >>> variable = keras.Variable(np.ones(2, "float32"))
    >>> optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    >>> optimizer.apply([np.ones(2, "float32")], [variable])
    >>> reset_optimizer_state(optimizer)
    >>> int(optimizer.iterations), round(float(optimizer.learning_rate), 6)
    (0, 0.1)
    """
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:  # LossScaleOptimizer: keep the loss scale, reset the wrapped optimizer
        return reset_optimizer_state(inner)
    keep = (
        {id(optimizer.learning_rate)}
        if isinstance(optimizer.learning_rate, keras.Variable)
        else set()
    )
    for variable in optimizer.variables:
        if id(variable) not in keep:
            variable.assign(ops.zeros(variable.shape, variable.dtype))
