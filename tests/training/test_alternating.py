"""Branch-by-branch training (CMA paper, Sect. 4.3): the frozen branch is bit-for-bit unchanged,
the update follows the trained branch's loss, the learning rate resets, the fusion follows."""

import keras
import numpy as np
import pytest

from keras_twostream.layers.cross_modality_attention import CrossModalityAttention
from keras_twostream.models.cma import build_cma
from keras_twostream.training.alternating import AlternatingSchedule, reset_optimizer_state

BACKEND = keras.backend.backend()
SIZE, K, L, CLASSES, BATCH = 64, 2, 2, 3, 4


def make_model(**kwargs):
    model = build_cma(
        CLASSES, backbone="tiny", image_size=SIZE, num_segments=K, flow_length=L, **kwargs
    )
    # As after an earlier iteration: non-zero CMA scales, so each branch reads the other one.
    for layer in model.layers:
        if isinstance(layer, CrossModalityAttention):
            layer.output_norm.gamma.assign(np.ones(tuple(layer.output_norm.gamma.shape), "float32"))
    return model


def make_data(n=BATCH, seed=0):
    rng = np.random.RandomState(seed)
    x = {
        "rgb": rng.rand(n, K, SIZE, SIZE, 3).astype("float32"),
        "flow": rng.randn(n, K, SIZE, SIZE, 2 * L).astype("float32"),
    }
    return x, rng.randint(0, CLASSES, n)


def _replica_values(variable):
    """Every replica's copy of a variable (one copy outside tf.distribute)."""
    value = variable.value
    components = getattr(value, "values", None)
    if components is not None and not callable(components):
        return [keras.ops.convert_to_numpy(c) for c in components]
    return [keras.ops.convert_to_numpy(value)]


def snapshot(model):
    return {
        branch: {
            (i, v.path): _replica_values(v)
            for i, v in enumerate(model.branch_variables(branch, trainable_only=False))
        }
        for branch in model.branches
    }


class Recorder(keras.callbacks.Callback):
    """Snapshots of both branches, fusion weights and learning rates at epoch boundaries."""

    def __init__(self, decay_lr_at_epoch_end=False):
        super().__init__()
        self.decay = decay_lr_at_epoch_end
        self.states, self.fusion, self.lr_at_begin, self.slots_zero_at_begin = [], [], [], []

    def _optimizer_slots(self):
        lr = self.model.optimizer.learning_rate
        return [
            keras.ops.convert_to_numpy(v) for v in self.model.optimizer.variables if v is not lr
        ]

    def on_train_begin(self, logs=None):
        self.states.append(snapshot(self.model))

    def on_epoch_begin(self, epoch, logs=None):
        self.lr_at_begin.append(
            float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        )
        self.slots_zero_at_begin.append(all(not s.any() for s in self._optimizer_slots()))

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(snapshot(self.model))
        self.fusion.append(
            keras.ops.convert_to_numpy(self.model.get_layer("fused").fusion_weights).tolist()
        )
        if self.decay:  # as ReduceLROnPlateau would
            self.model.optimizer.learning_rate = self.lr_at_begin[-1] / 10


def check_phase(before, after, trained, frozen):
    # Every variable of the frozen branch (weights, CMA blocks, BN moving statistics,
    # dropout seeds) is bit-for-bit unchanged, on every replica.
    for key, values in before[frozen].items():
        for a, b in zip(values, after[frozen][key], strict=True):
            assert np.array_equal(a, b), f"{key} of the frozen {frozen} branch moved"
    # Every variable of the trained branch moved, except the key biases of the CMA blocks, whose
    # gradient is zero (softmax is invariant to a shift q.b_k shared by all keys) and which start at 0.
    unchanged = {
        key[1]
        for key, values in before[trained].items()
        if np.array_equal(values[0], after[trained][key][0])
    }
    assert all(name.endswith("key/bias") or "seed_generator" in name for name in unchanged), (
        unchanged
    )
    assert any("moving_mean" in key[1] for key in before[trained]) and not any(
        "moving_mean" in n for n in unchanged
    )


def test_each_iteration_freezes_the_other_branch_bit_for_bit():
    model = make_model()
    model.compile()  # SGD with momentum and weight decay (Sect. 4.4): both would move frozen weights
    recorder = Recorder(decay_lr_at_epoch_end=True)
    schedule = AlternatingSchedule(epochs_per_iteration=2, verbose=0)
    model.fit(
        *make_data(),
        batch_size=BATCH,
        epochs=4,
        verbose=0,
        shuffle=False,
        callbacks=[schedule, recorder],
    )
    # Iteration 1 (epochs 0-1) trains RGB, iteration 2 (epochs 2-3) trains Flow.
    check_phase(recorder.states[0], recorder.states[2], trained="spatial", frozen="temporal")
    check_phase(recorder.states[2], recorder.states[4], trained="temporal", frozen="spatial")
    assert recorder.fusion == [[5.0, 1.0], [5.0, 1.0], [1.0, 5.0], [1.0, 5.0]]  # Sect. 5.2
    # Sect. 4.4: the learning rate (decayed at every epoch end here) is reset when an iteration
    # starts, and so is the optimizer's state (momentum, iteration count); not in between.
    np.testing.assert_allclose(recorder.lr_at_begin, [0.01, 0.001, 0.01, 0.001], rtol=1e-6)
    assert recorder.slots_zero_at_begin == [True, False, True, False]
    assert model.training_branch == "temporal" and (schedule.iteration, schedule.branch) == (
        2,
        "temporal",
    )
    assert [schedule.iteration_for_epoch(e) for e in range(5)] == [
        (1, "spatial"),
        (1, "spatial"),
        (2, "temporal"),
        (2, "temporal"),
        (3, "spatial"),
    ]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute.MirroredStrategy")
def test_freezing_holds_under_mirrored_strategy_with_two_replicas():
    import tensorflow as tf
    from conftest import two_cpu_strategy

    strategy = two_cpu_strategy()
    with strategy.scope():
        model = make_model()
        # Adam: zeroed gradients would still move weights. No XLA, to keep the test fast.
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    x, y = make_data(n=2 * BATCH)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)  # 2 samples per replica
    recorder = Recorder()
    model.fit(dataset, epochs=2, verbose=0, callbacks=[AlternatingSchedule(1, verbose=0), recorder])
    assert all(
        len(values) == 2 for values in recorder.states[0]["spatial"].values()
    )  # two replicas
    check_phase(recorder.states[0], recorder.states[1], trained="spatial", frozen="temporal")
    check_phase(recorder.states[1], recorder.states[2], trained="temporal", frozen="spatial")


@pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="the loss isolation is the backend-neutral _phase_losses; JAX's step is tested above (CI time)",
)
def test_the_update_follows_the_loss_of_the_trained_branch():
    """Sect. 4.3: the RGB branch is optimised "according to the loss of the current branch". The
    Flow output depends on RGB features through the Flow CMA blocks, so with joint training (the
    control) other Flow labels change the RGB update; in an RGB phase they must not."""
    x, y = make_data()
    model = make_model(dropout=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    initial = model.get_weights()

    def rgb_update(flow_labels):
        model.set_weights(initial)
        model.train_on_batch(x, {"spatial": y, "temporal": flow_labels, "fused": y})
        return [keras.ops.convert_to_numpy(v) for v in model.branch_variables("spatial")]

    for branch in (None, "spatial"):
        model.set_training_branch(branch)
        a, b = rgb_update(y), rgb_update((y + 1) % CLASSES)
        same = all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
        assert same == (branch == "spatial"), branch


def test_reset_optimizer_state_keeps_the_learning_rate():
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    for v in model.optimizer.variables:
        v.assign(np.ones(tuple(v.shape), v.dtype))
    reset_optimizer_state(model.optimizer)
    lr = model.optimizer.learning_rate
    assert float(keras.ops.convert_to_numpy(lr)) == 1.0  # set to ones above, then kept
    assert all(
        not keras.ops.convert_to_numpy(v).any() for v in model.optimizer.variables if v is not lr
    )


def test_errors_name_the_problem():
    model = make_model()
    with pytest.raises(ValueError, match="branch"):
        model.set_training_branch("audio")
    with pytest.raises(ValueError, match="epochs_per_iteration"):
        AlternatingSchedule(0)
    with pytest.raises(ValueError, match="fusion_ratio"):
        AlternatingSchedule(1, fusion_ratio=0)
    schedule = AlternatingSchedule(1, branches=["spatial", "audio"])
    schedule.set_model(model)
    with pytest.raises(ValueError, match="'audio'"):
        schedule.iteration_for_epoch(0)
    x, y = make_data()
    plain = keras.Model(model.inputs, model.get_layer("spatial").output)
    plain.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="AlternatingTrainingMixin"):
        plain.fit(x, y, epochs=1, verbose=0, callbacks=[AlternatingSchedule(1)])
    decaying = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.9)
    model.compile(optimizer=keras.optimizers.SGD(decaying))
    with pytest.raises(ValueError, match="LearningRateSchedule"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[AlternatingSchedule(1)])


def test_plateau_decay_restarts_with_each_iteration():
    """Issue 15 item 7: ReduceLROnPlateau together with the schedule. Iteration 2 starts below
    iteration 1's best accuracy (Table 1: the new branch starts lower); without the restart the
    plateau callback cuts the freshly reset rate every `patience` epochs."""
    model = make_model()
    model.compile()
    # Validation accuracy per epoch: iteration 1 climbs and stalls, iteration 2 climbs from lower.
    curve = [0.3, 0.5, 0.6, 0.6, 0.6, 0.6, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55]

    def learning_rates(reset):
        model.optimizer.learning_rate = 0.01
        plateau = keras.callbacks.ReduceLROnPlateau("val_acc", mode="max", factor=0.1, patience=2)
        schedule = AlternatingSchedule(6, verbose=0, reset_callbacks=[plateau] if reset else ())
        callbacks = keras.callbacks.CallbackList([schedule, plateau], model=model)
        callbacks.on_train_begin()
        rates = []
        for epoch, accuracy in enumerate(curve):
            callbacks.on_epoch_begin(epoch)
            rates.append(round(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)), 8))
            callbacks.on_epoch_end(epoch, {"val_acc": accuracy})
        return rates

    # Iteration 1: stalls after epoch 2, cut after 2 epochs without improvement (epoch 4 end).
    assert learning_rates(reset=True) == [0.01] * 5 + [0.001] + [0.01] * 6
    assert learning_rates(reset=False)[6:] == [0.01, 0.001, 0.001, 0.0001, 0.0001, 1e-05]


# --- Issue 15 item 6: the frozen branch's weights are frozen, not its path -----------------


def _frozen_copy(model, branch):
    """A copy of `model` (same weights) whose other branch is frozen the plain Keras way:
    `trainable=False`, so its batch normalisation runs in inference mode, as in a phase."""
    copy = make_model(dropout=0.0)
    copy.set_weights(model.get_weights())
    for other in copy.branches:
        if other != branch:
            for layer in copy.branch_layers(other):
                layer.trainable = False
    return copy


def _reference_gradients(copy, x, y, branch, cut=False):
    """The gradient of the branch's own loss w.r.t. its variables, by plain autodiff on the
    frozen copy (updating its BN moving statistics, as a training step does). `cut=True` is
    the old implementation: the frozen branch's layer inputs wrapped in `stop_gradient`."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    frozen = {id(layer) for o in copy.branches if o != branch for layer in copy.branch_layers(o)}

    def forward(inputs):
        if not cut:
            return copy(inputs, training=True)

        def operation_fn(operation):
            def run(*args, **kwargs):
                if id(operation) in frozen:
                    args, kwargs = keras.tree.map_structure(
                        lambda v: keras.ops.stop_gradient(v) if keras.ops.is_tensor(v) else v,
                        (args, kwargs),
                    )
                if "training" in getattr(operation, "_call_context_args", ()):
                    kwargs["training"] = True  # the frozen layers are trainable=False
                return operation(*args, **kwargs)

            return run

        return copy._run_through_graph(copy._standardize_inputs(inputs), operation_fn=operation_fn)

    variables = copy.branch_variables(branch)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(y, forward(x)[branch])
        return [keras.ops.convert_to_numpy(g) for g in tape.gradient(loss, variables)]
    import jax

    trainable, non_trainable = copy.trainable_variables, copy.non_trainable_variables

    def loss_of(values, non_trainable_values):
        mapping = list(zip(trainable, values, strict=True)) + list(
            zip(non_trainable, non_trainable_values, strict=True)
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            loss = loss_fn(y, forward(x)[branch])
        return loss, [scope.get_current_value(v) for v in non_trainable]

    gradients, updated = jax.grad(loss_of, has_aux=True)(
        [v.value for v in trainable], [v.value for v in non_trainable]
    )
    for variable, value in zip(non_trainable, updated, strict=True):
        if value is not None:
            variable.assign(value)
    index = {id(v): i for i, v in enumerate(trainable)}
    return [np.asarray(gradients[index[id(v)]]) for v in variables]


def _scaled_difference(a, b):
    """The largest |a - b| relative to the gradient's scale (its largest entry, at least 1)."""
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def test_the_trained_branch_gradient_flows_through_the_frozen_branch():
    """Sect. 4.3 freezes the other branch's weights, not the path: with the Flow CMA blocks
    active, the RGB loss's gradient also flows RGB -> Flow CMA -> Flow blocks -> next RGB CMA.
    The phase step's gradient (read off an SGD step with learning rate 1) equals plain autodiff
    of the RGB branch's loss with the Flow branch merely not updated, and differs from the old
    `stop_gradient` version (issue 15 item 6 measured 18 of 56 RGB variables)."""
    x, y = make_data()
    model = make_model(dropout=0.0)
    model.compile(optimizer=keras.optimizers.SGD(1.0), jit_compile=False)
    model.set_training_branch("spatial")
    before = snapshot(model)
    variables = model.branch_variables("spatial")
    weights = [keras.ops.convert_to_numpy(v) for v in variables]
    reference = _reference_gradients(_frozen_copy(model, "spatial"), x, y, "spatial")
    old = _reference_gradients(_frozen_copy(model, "spatial"), x, y, "spatial", cut=True)
    model.train_on_batch(x, y)
    used = [w - keras.ops.convert_to_numpy(v) for w, v in zip(weights, variables, strict=True)]
    # float32 noise of two differently ordered backward passes: measured at most 3.4e-6.
    errors = [_scaled_difference(g, r) for g, r in zip(used, reference, strict=True)]
    cut = [_scaled_difference(o, r) for o, r in zip(old, reference, strict=True)]
    differ = [v.path for v, c in zip(variables, cut, strict=True) if c > 1e-4]
    print(
        f"largest difference to the reference {max(errors):.1e}; {len(differ)} of "
        f"{len(variables)} RGB variables differ in the cut version (up to {max(cut):.1e})"
    )
    assert max(errors) < 1e-5, [v.path for v, e in zip(variables, errors, strict=True) if e >= 1e-5]
    assert differ  # the path through the frozen branch matters: the old gradient was wrong
    after = snapshot(model)
    for key, values in before["temporal"].items():  # weights and BN statistics, bit for bit
        assert all(
            np.array_equal(a, b) for a, b in zip(values, after["temporal"][key], strict=True)
        ), key


def test_a_phase_trains_as_if_the_frozen_variables_were_simply_not_updated():
    """Two steps of the paper's optimiser (coupled weight decay, momentum) in an RGB phase
    give the weights and BN statistics of a plain loop that differentiates the RGB loss and
    updates only the RGB variables; the Flow branch stays bit-for-bit as it was."""
    model = make_model(dropout=0.0)
    model.compile(jit_compile=False)  # CoupledSGD(0.01, momentum 0.9, weight decay 5e-4)
    copy = _frozen_copy(model, "spatial")
    optimizer = model.default_optimizer()
    optimizer.build(copy.branch_variables("spatial"))
    model.set_training_branch("spatial")
    before = snapshot(model)
    for step in range(2):
        x, y = make_data(seed=step)
        model.train_on_batch(x, y)
        gradients = _reference_gradients(copy, x, y, "spatial")
        optimizer.apply(gradients, copy.branch_variables("spatial"))
    ours = model.branch_variables("spatial", trainable_only=False)
    theirs = copy.branch_variables("spatial", trainable_only=False)
    for a, b in zip(ours, theirs, strict=True):
        if "seed_generator" not in a.path:
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(a),
                keras.ops.convert_to_numpy(b),
                atol=1e-5,
                err_msg=a.path,
            )
    after = snapshot(model)
    for key, values in before["temporal"].items():
        assert all(
            np.array_equal(a, b) for a, b in zip(values, after["temporal"][key], strict=True)
        ), key


def test_flow_pretraining_comes_before_iteration_1():
    """CMA Sect. 4.3 (issue 15 item 8): the Flow branch is trained first, alone, then the
    iterations alternate from RGB; the pre-training keeps the Flow CMA blocks frozen."""
    model = make_model()
    schedule = AlternatingSchedule(2, pretrain_branch="temporal", pretrain_epochs=1, verbose=0)
    schedule.set_model(model)
    assert [schedule.iteration_for_epoch(e) for e in range(6)] == [
        (0, "temporal"),
        (1, "spatial"),
        (1, "spatial"),
        (2, "temporal"),
        (2, "temporal"),
        (3, "spatial"),
    ]
    assert [schedule._starts_iteration(e) for e in range(6)] == [True, True, False, True] + [
        False,
        True,
    ]
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    schedule.on_train_begin()
    schedule.on_epoch_begin(0)
    assert (model.training_branch, model.training_cross_layers) == ("temporal", False)
    cma = {id(v) for layer in model.cma_layers("temporal") for v in layer.variables}
    assert {id(layer) for layer in model.cross_layers("temporal")} == {
        id(layer) for layer in model.cma_layers("temporal")
    }
    trained = model._phase_variables()
    assert trained and not cma & {id(v) for v in trained}
    assert {id(v) for v in trained} == {id(v) for v in model.branch_variables("temporal")} - cma
    schedule.on_epoch_begin(1)
    assert (model.training_branch, model.training_cross_layers) == ("spatial", True)
    with pytest.raises(ValueError, match="pretrain_epochs"):
        AlternatingSchedule(1, pretrain_branch="temporal")
    with pytest.raises(ValueError, match="with_cross_layers"):
        model.set_training_branch("spatial", with_cross_layers="no")
