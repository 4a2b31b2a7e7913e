"""Checkpoints that resume a killed training run exactly where it stopped, even mid-epoch.

`keras.callbacks.BackupAndRestore` (Keras 3.15) does not: it restores the weights and the epoch
only (the batch it stores is never read back, so the interrupted epoch starts again from its
first batch and trains some batches twice), and it overwrites its one weights file in place,
so a kill during a write can leave no usable checkpoint.

`ResumableCheckpoint` saves, every `save_every_n_steps` batches and at every epoch end:

- every variable of the model (weights, batch-normalisation statistics, fusion weights, dropout
  seed states), of the optimizer (slots, `iterations`, hence the position in a learning-rate
  schedule, the learning rate itself, a loss scale) and of the metrics. Metrics are restored
  when they exist at restart (under a `tf.distribute` strategy Keras builds them before
  training; without one, the first traced step builds them, and the interrupted epoch's logged
  metrics then cover the batches trained after the restart only: the weights are exact either
  way);
- the epoch, the number of batches done in it, and the alternating phase
  (`model.training_branch`, CMA's branch-by-branch schedule).

On restart with the same command it restores all of that, makes `fit` start at the saved epoch,
and skips the batches of that epoch already trained: they are read from the dataset and dropped
without training, so the data order matches the uninterrupted run. A checkpoint taken at an
epoch boundary is restored when training begins, so the next epoch's `on_epoch_begin`
callbacks act on it as in the uninterrupted run (an `AlternatingSchedule` starting an iteration
resets the learning rate and the optimizer state); a mid-epoch one is restored just before the
first batch, after them (what they did at that epoch's start is in the checkpoint already).

The data must come in the same order as in the uninterrupted run. Datasets from
`keras_twostream.data.make_dataset(..., seed=...)` draw each epoch from `(seed, epoch)`: pass the
dataset as `dataset=` and the callback sets its epoch counter to the resumed epoch. A `tf.data`
pipeline that reshuffles at each iteration (`shuffle(..., reshuffle_each_iteration=True)`) gives
a restarted process the first epoch's order again: it cannot resume exactly.

Atomic writes: a checkpoint is written into a temporary folder in `directory`, flushed to disk and
renamed to `ckpt-<step>`; then `latest.json` is replaced (temporary file + `os.replace`) to name
it; only then are older checkpoints deleted, keeping the previous one. A kill at any moment
leaves `latest.json` naming a complete checkpoint (and a corrupt or missing `latest.json` falls
back to the newest complete one).

Backends: TensorFlow (also under `tf.distribute.MirroredStrategy`). Mid-epoch resumption replaces
the train function for the skipped batches, which Keras' JAX trainer (it threads its state
through the loop) does not allow; on JAX, save at epoch ends only (`save_every_n_steps=None`).
"""

import json
import os
import re
import shutil
import tempfile

import keras
import numpy as np

FORMAT_VERSION = 1
_CHECKPOINT = re.compile(r"^ckpt-(\d+)-(\d+)$")  # ckpt-<global step>-<epoch>


def _fsync_file(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_json_atomic(path, payload):
    directory = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def _numpy(variable):
    try:
        return np.array(keras.ops.convert_to_numpy(variable.value))
    except ValueError:
        # Some tf.distribute variables (measured: MirroredStrategy on one device, `keras-twostream
        # train --strategy mirrored`) give a value NumPy cannot convert; their own read works.
        return np.array(variable.numpy())


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves the complete training state and resumes a killed run exactly, mid-epoch included.

    Restart the same training command after a crash or kill: `fit` continues from the last
    checkpoint with the weights, optimizer state (learning-rate schedule position included),
    metrics, epoch, batch within the epoch and alternating phase of the interrupted run, and
    ends with the weights an uninterrupted run would have. See the module docstring for what
    is saved, the data-order requirement and the atomic writes.

    Args:
        directory: folder of the checkpoints (created if needed).
        save_every_n_steps: also save every this many batches; `None` saves at epoch ends only.
        dataset: the training dataset, when it comes from `keras_twostream.data.make_dataset`:
            its epoch counter is set to the resumed epoch so it draws that epoch's order and
            augmentation.
        keep: the number of complete checkpoints kept (at least 2: the newest and the one
            before it, in case the newest is being replaced).
        verbose: print a line when training resumes.

    Attributes:
        initial_epoch: the epoch the next `fit` starts at (0 without a checkpoint).
        initial_step: the batches of that epoch already trained.

    Example:

    >>> import keras_twostream
    >>> from keras_twostream.training import ResumableCheckpoint
    >>> checkpoint = ResumableCheckpoint("runs/cma/checkpoints", save_every_n_steps=500)  # doctest: +SKIP
    >>> train_ds = keras_twostream.data.make_dataset(train, batch_size=32, seed=0)  # doctest: +SKIP
    >>> checkpoint = ResumableCheckpoint("runs/cma/checkpoints", 500, dataset=train_ds)  # doctest: +SKIP
    >>> model.fit(train_ds, epochs=60, callbacks=[schedule, checkpoint])  # resumes if killed  # doctest: +SKIP
    """

    def __init__(self, directory, save_every_n_steps=None, dataset=None, keep=2, verbose=1):
        super().__init__()
        if not directory:
            raise ValueError(f"Expected a checkpoint directory. Received: directory={directory!r}")
        if save_every_n_steps is not None and (
            isinstance(save_every_n_steps, bool)
            or not isinstance(save_every_n_steps, int)
            or save_every_n_steps < 1
        ):
            raise ValueError(
                "Expected save_every_n_steps to be a positive integer or None. "
                f"Received: save_every_n_steps={save_every_n_steps!r}"
            )
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 2:
            raise ValueError(
                f"Expected keep >= 2 (the newest and the previous checkpoint). Received: keep={keep!r}"
            )
        if dataset is not None and not callable(getattr(dataset, "set_epoch", None)):
            raise ValueError(
                "dataset= is for datasets made by keras_twostream.data.make_dataset (they have "
                f"set_epoch). Received: {type(dataset).__name__}"
            )
        self.directory = os.fspath(directory)
        self.save_every_n_steps = save_every_n_steps
        self.dataset = dataset
        self.keep = keep
        self.verbose = verbose
        self._state = self._read_latest()
        meta = self._state[0] if self._state else {}
        self.initial_epoch = int(meta.get("epoch", 0))
        self.initial_step = int(meta.get("step", 0))
        self._global_step = int(meta.get("global_step", 0))

    # --- Reading ----------------------------------------------------------------------------
    def checkpoints(self):
        """The complete checkpoints in `directory`, oldest first: `[((global_step, epoch), path)]`."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            match = _CHECKPOINT.match(name)
            path = os.path.join(self.directory, name)
            if match and os.path.isfile(os.path.join(path, "meta.json")):
                found.append(((int(match.group(1)), int(match.group(2))), path))
        return sorted(found)

    def _read_latest(self):
        latest = os.path.join(self.directory, "latest.json")
        candidates = []
        try:
            with open(latest) as f:
                candidates.append(os.path.join(self.directory, json.load(f)["checkpoint"]))
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError):  # a corrupt pointer: use the newest complete one
            pass
        candidates += [path for _, path in reversed(self.checkpoints())]
        for path in candidates:
            state = self._read(path)
            if state is not None:
                return state
        return None

    @staticmethod
    def _read(path):
        try:
            with open(os.path.join(path, "meta.json")) as f:
                meta = json.load(f)
            with np.load(os.path.join(path, "state.npz")) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError, KeyError):
            return None
        if meta.get("format") != FORMAT_VERSION:
            return None
        return meta, arrays, path

    # --- Writing ----------------------------------------------------------------------------
    def _groups(self):
        model = self.model
        optimizer = model.optimizer
        return {
            "model": list(model.variables),
            "optimizer": list(optimizer.variables) if optimizer is not None else [],
            "metrics": list(model.metrics_variables),
        }

    def save(self, epoch, step):
        """Writes a checkpoint: `epoch` in progress with `step` of its batches done."""
        os.makedirs(self.directory, exist_ok=True)
        arrays, paths = {}, {}
        for group, variables in self._groups().items():
            paths[group] = [v.path for v in variables]
            for i, v in enumerate(variables):
                arrays[f"{group}_{i}"] = _numpy(v)
        meta = {
            "format": FORMAT_VERSION,
            "epoch": int(epoch),
            "step": int(step),
            "global_step": int(self._global_step),
            "training_branch": getattr(self.model, "training_branch", None),
            "training_cross_layers": getattr(self.model, "training_cross_layers", True),
            "paths": paths,
        }
        temp = tempfile.mkdtemp(dir=self.directory, prefix=".tmp-")
        try:
            np.savez(os.path.join(temp, "state.npz"), **arrays)
            with open(os.path.join(temp, "meta.json"), "w") as f:  # written last: marks complete
                json.dump(meta, f)
            for name in ("state.npz", "meta.json"):
                _fsync_file(os.path.join(temp, name))
            # A batch save and the epoch-end save of the same step differ in their epoch.
            name = f"ckpt-{self._global_step:09d}-{int(epoch):06d}"
            final = os.path.join(self.directory, name)
            if os.path.exists(final):  # a leftover of an earlier run of the same command
                shutil.rmtree(final)
            os.replace(temp, final)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        _write_json_atomic(os.path.join(self.directory, "latest.json"), {"checkpoint": name})
        for _, path in self.checkpoints()[: -self.keep]:
            shutil.rmtree(path, ignore_errors=True)

    # --- Restoring ----------------------------------------------------------------------------
    def _restore_variables(self, state):
        meta, arrays, path = state
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        groups = self._groups()
        for group, variables in groups.items():
            saved = meta["paths"].get(group, [])
            if group == "metrics" and len(saved) != len(variables):
                # Compiled metrics are built by the first traced step outside a strategy (under
                # one, before training starts): when they do not exist yet, the interrupted
                # epoch's logged metrics cover the batches trained after the restart only.
                continue
            if len(saved) != len(variables):
                raise ValueError(
                    f"Checkpoint {path} holds {len(saved)} {group} variables; this model has "
                    f"{len(variables)}. Expected the checkpoint of the same model, optimizer and metrics."
                )
            for i, variable in enumerate(variables):
                value = arrays[f"{group}_{i}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"Checkpoint {path}: {group} variable {saved[i]!r} has shape {value.shape}; "
                        f"expected {tuple(variable.shape)} for {variable.path!r}."
                    )
                variable.assign(value)

    def on_train_begin(self, logs=None):
        self._pending = None
        self._skip = 0
        self._epoch = self.initial_epoch
        if (
            self.save_every_n_steps is not None
            and getattr(self.model, "steps_per_execution", 1) != 1
        ):
            raise ValueError(
                "ResumableCheckpoint(save_every_n_steps=...) needs steps_per_execution=1 in "
                "compile(), to resume at any batch."
            )
        if self._state is None:
            return
        meta = self._state[0]
        if self.verbose:
            print(
                f"ResumableCheckpoint: resuming from {self._state[2]} at epoch {self.initial_epoch + 1}, "
                f"after {self.initial_step} batches of it"
            )
        if meta["step"] and keras.backend.backend() != "tensorflow":
            raise NotImplementedError(
                f"Resuming mid-epoch (checkpoint {self._state[2]}) needs the TensorFlow backend; "
                "on JAX save at epoch ends only (save_every_n_steps=None)."
            )
        # fit starts at the saved epoch (Keras reads `_initial_epoch` after on_train_begin).
        self.model._initial_epoch = self.initial_epoch
        if self.initial_step:
            # Mid-epoch: restored before the first batch, after every on_epoch_begin (whatever
            # an AlternatingSchedule does at an iteration start happened before the checkpoint).
            self._pending = self._state
            self._skip = self.initial_step
        else:
            # At an epoch boundary: restored now, so on_epoch_begin callbacks act on it as they
            # did in the uninterrupted run (e.g. the optimizer reset of a new iteration).
            self._restore_phase_and_variables(self._state)
        self._state = None  # consumed: a later fit with this callback continues from here

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.dataset is not None:
            # Key the draws on the real epoch index: under a tf.distribute strategy Keras reads
            # one batch before training (its symbolic build), which advances the counter.
            self.dataset.set_epoch(epoch)

    def _restore_phase_and_variables(self, state):
        branch = state[0].get("training_branch")
        cross = state[0].get("training_cross_layers", True)
        if hasattr(self.model, "set_training_branch") and (branch, cross) != (
            self.model.training_branch,
            self.model.training_cross_layers,
        ):
            self.model.set_training_branch(branch, with_cross_layers=cross)
        self._restore_variables(state)

    def on_train_batch_begin(self, batch, logs=None):
        if self._pending is not None:
            self._restore_phase_and_variables(self._pending)
            self._pending = None
            if self._skip:
                self._train_function = self.model.train_function
                self.model.train_function = self._skip_batch
        if self._skip and batch >= self.initial_step:
            self.model.train_function = self._train_function
            self._skip = 0

    def _skip_batch(self, iterator):
        next(iterator)  # read and drop a batch the interrupted run already trained on
        try:
            return self.model.get_metrics_result()
        except ValueError:  # compiled metrics not built yet (the first traced step builds them)
            return {}

    def on_train_batch_end(self, batch, logs=None):
        if self._skip and batch < self.initial_step:
            return
        self._global_step += 1
        if self.save_every_n_steps and self._global_step % self.save_every_n_steps == 0:
            self.save(self._epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1, 0)
