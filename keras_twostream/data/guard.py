"""The epoch source and the error guard of the pipelines (TensorFlow), and `DatasetErrors`.

`_EpochSource` draws a whole epoch of sample descriptions (frame indices, augmentation
parameters) in one NumPy call per iteration of the dataset. `_guarded` maps them through
the decoder with `ignore_errors()` and checks, in the graph, that no sample went missing;
`_Guard` names the bad file of a dropped sample (`keras_twostream.data.decoding.jpeg_problem`)
and raises (`on_error="raise"`) or records it in a `DatasetErrors` (`"skip"`).
"""

import logging
import os
import threading

import numpy as np
import tensorflow as tf

from keras_twostream.data import frames, video_source
from keras_twostream.data.decoding import _op_message, jpeg_problem
from keras_twostream.data.folders import _frame_name

__all__ = ["DatasetErrors"]

logger = logging.getLogger("keras_twostream.data")

_KEEP_EPOCHS = 4  # epochs of drawn indices kept for diagnosing dropped samples


class DatasetErrors:
    """The problems a pipeline met with, for `on_error="skip"`.

    Each record is a dict `{"video", "file", "problem", "row"}`: the frame
    folder, the offending file (or `None` for a folder-level problem), what
    was wrong, and the row of the table. Up-front problems are recorded when
    the dataset is built; decoding failures when the epoch reaches the sample
    (once per epoch in which the sample is drawn), so read `count` after
    iterating.

    Example:

    >>> from keras_twostream.data import DatasetErrors
    >>> errors = DatasetErrors()
    >>> errors.add("videos/v1", "videos/v1/img_00003.jpg", "not a valid JPEG", row=4)
    >>> errors.count
    1
    """

    def __init__(self):
        self.records = []
        self._lock = threading.Lock()

    @property
    def count(self):
        """Number of problems recorded so far."""
        return len(self.records)

    def add(self, video, file, problem, row=None):
        """Records (and logs) one problem."""
        with self._lock:
            self.records.append({"video": video, "file": file, "problem": problem, "row": row})
        logger.warning("Skipped a sample of %s: %s: %s", video, file or video, problem)

    def reset(self):
        """Forgets all records."""
        with self._lock:
            self.records = []

    def __repr__(self):
        return f"DatasetErrors(count={self.count})"


class _EpochSource:
    """Draws a whole epoch of samples per iteration of the dataset."""

    def __init__(self, draw):
        self._draw = draw
        self._counter = 0
        self._lock = threading.Lock()
        self.epochs = {}
        self.latest = None
        self.on_draw = None  # called before each epoch is drawn (the guard's reset)

    def set_epoch(self, epoch):
        """The next iteration of the dataset draws `epoch` (the draws depend on (seed, epoch)
        only, so a run resumed at epoch `e` by `keras_twostream.training.ResumableCheckpoint`
        sees the batches of the uninterrupted run's epoch `e`)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(
                f"Expected epoch to be a non-negative integer. Received: epoch={epoch!r}"
            )
        with self._lock:
            self._counter = epoch

    def generate(self):
        if self.on_draw is not None:
            self.on_draw()
        with self._lock:
            epoch = self._counter
            self._counter += 1
        arrays = self._draw(epoch)
        n = len(arrays["seq"])
        arrays["epoch"] = np.full((n,), epoch, np.int64)
        with self._lock:
            self.epochs[epoch] = arrays
            for old in [e for e in self.epochs if e <= epoch - _KEEP_EPOCHS]:
                del self.epochs[old]
            self.latest = epoch
        # Fresh copies: tf.data may alias the yielded NumPy buffers and reuse them
        # in place (measured: the bound array was overwritten by 2 * bound / 255),
        # which must not touch the arrays kept for diagnosis or the video table.
        yield {k: np.array(v, copy=True) for k, v in arrays.items()}


class _Guard:
    """Finds the samples `ignore_errors` dropped and names their bad file.

    Samples carry their position `seq` in the epoch; a parallel map with
    `deterministic=True` keeps that order, so a gap in `seq` after
    `ignore_errors()` is a dropped sample. A sentinel element after the last
    sample catches drops at the end of the epoch. The check runs in the graph
    (`_guarded`); Python is called only when samples are missing.
    """

    def __init__(self, source, cfg, errors, on_error, load):
        self.source = source
        self.cfg = cfg
        self.errors = errors
        self.on_error = on_error
        self.load = load
        # Set in the graph once a failure has been raised (on_error="raise"), so that
        # tf.data's threads, which run ahead of the consumer, never call into Python
        # again: a Python call in a background thread while the main thread (holding
        # the GIL) destroys the iterator after the error deadlocks the process
        # (measured: `keras-twostream train` hung after printing the traceback, the
        # main thread in ~PrefetchDatasetOp::Iterator waiting for a runner thread in
        # this guard's EagerPyFunc). Cleared when an epoch is drawn.
        self.failed = tf.Variable(False, trainable=False, name="dataset_failed")
        source.on_draw = lambda: self.failed.assign(False)

    def report_missing(self, epoch, seq, expected):
        """Reports the samples from `expected` on that the batch `seq` lacks.

        Args:
            epoch: the batch's epochs (one value repeated).
            seq: the batch's positions, increasing; `[-1]` for the sentinel,
                after which every position from `expected` to the end of the
                latest epoch is missing.
            expected: the first position not seen yet.

        Returns:
            `(count, message)`: the number of missing samples and, with
            `on_error="raise"`, the error naming the first one's bad file
            (raised in the graph, see `_guarded`), else `""`.
        """
        seq = np.asarray(seq).reshape(-1).astype(np.int64)
        expected = int(expected)
        if seq[0] >= 0:
            e = int(np.asarray(epoch).reshape(-1)[0])
            present = set(seq.tolist())
            missing = [s for s in range(expected, int(seq[-1])) if s not in present]
        elif self.source.latest is not None and self.source.latest in self.source.epochs:
            e = self.source.latest
            missing = range(expected, len(self.source.epochs[e]["seq"]))
        else:
            missing = []
        for s in missing:
            message = self._report(e, s)
            if message:
                return np.int64(len(missing)), message
        return np.int64(len(missing)), ""

    def _report(self, epoch, seq):
        arrays = self.source.epochs[epoch]
        element = {k: v[seq] for k, v in arrays.items()}
        directory = element["dir"].decode() if isinstance(element["dir"], bytes) else element["dir"]
        file, problem = self._diagnose(directory, element)
        if self.on_error == "raise":
            return (
                f"{file or directory}: {problem} (video {directory}, row {element['row']} of the "
                "annotation table; pass on_error='skip' to drop such samples)"
            )
        self.errors.add(directory, file, problem, row=int(element["row"]))
        return ""

    def _diagnose(self, directory, element):
        cfg = self.cfg
        if cfg.video_files:
            try:
                video_source.read_frames(
                    directory, np.asarray(element["rgb_index"]) - 1, cfg.video_short_side
                )
            except (OSError, ValueError) as error:  # VideoDecodeError is a ValueError
                return directory, getattr(error, "reason", str(error))
            return directory, "was dropped by tf.data for an unknown reason"
        files = []
        if cfg.need_rgb:
            files += [
                os.path.join(directory, _frame_name(frames.RGB_PREFIX, int(i)))
                for i in np.unique(element["rgb_index"])
            ]
        if cfg.need_flow:
            for i in np.unique(element["flow_index"]):
                files += list(frames.flow_frame_paths(directory, int(i)))
        shapes = {}
        for path in files:
            try:
                contents = tf.io.read_file(path)
            except tf.errors.OpError as error:
                return path, f"cannot be read ({_op_message(error)})"
            problem = jpeg_problem(contents.numpy())
            if problem is not None:
                return path, problem
            shape = tuple(tf.io.extract_jpeg_shape(contents).numpy()[:2])
            kind = os.path.basename(path)[:2]
            if shapes.setdefault(kind, (shape, path))[0] != shape:
                first_shape, first = shapes[kind]
                return (
                    path,
                    f"has size {shape}, but {first} has {first_shape}: frames differ in size",
                )
        try:
            self.load({k: tf.constant(v) for k, v in element.items()})
        except (tf.errors.OpError, ValueError) as error:
            return None, f"could not be loaded ({_op_message(error)})"
        return None, "was dropped by tf.data for an unknown reason"


def _guarded(source, signature, load, guard, batch_size=None, drop_remainder=False, size=None):
    """Epoch arrays -> loaded (and batched) samples; failures dropped, reported, sentinel removed.

    The gap check runs once per sample, in the graph (a `scan` over the
    position expected next), before batching; only a missing sample calls
    Python to name it. A sentinel element with `seq = -1` follows the last
    sample of each epoch, so drops at the very end are caught too, and because
    the check runs before `batch`, the epoch's last batch is not emitted before
    the sentinel has been checked (issue 20: with the check after batching, a
    drop in the last batch was only seen by the sentinel batch, which
    `model.fit` never pulls, since it stops after the known number of steps;
    training then went on with a sample fewer and exited 0). `size` is the
    number of samples of an epoch. With `drop_remainder`, the last incomplete
    batch is dropped after the check, so its samples are not taken for failures.
    """
    ds = tf.data.Dataset.from_generator(source.generate, output_signature=signature)
    ds = ds.flat_map(tf.data.Dataset.from_tensor_slices)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors()
    spec = ds.element_spec

    def sentinel(_):
        def zeros(s):
            return tf.zeros([1 if d is None else d for d in s.shape], s.dtype)

        inputs, label, epoch, seq = tf.nest.map_structure(zeros, spec)
        return inputs, label, epoch - 1, seq - 1

    ds = ds.concatenate(tf.data.Dataset.range(1).map(sentinel))
    failed = guard.failed
    raising = guard.on_error == "raise"

    def call_guard(epoch, seq, expected):
        count, message = tf.py_function(
            guard.report_missing, [epoch, seq, expected], [tf.int64, tf.string]
        )
        if not raising:
            return count
        # Raised here, in the graph, after setting `failed`: later checks raise
        # without calling Python (see `_Guard.__init__`).
        flag = failed.assign(tf.not_equal(message, ""))
        with tf.control_dependencies([flag]):
            check = tf.debugging.Assert(tf.equal(message, ""), [message], summarize=1)
        with tf.control_dependencies([check]):
            return tf.identity(count)

    def already_failed():
        check = tf.debugging.Assert(
            False, ["an earlier sample of this dataset failed to load (see the first error)"]
        )
        with tf.control_dependencies([check]):
            return tf.constant(0, tf.int64)

    def check(expected, element):
        inputs, label, epoch, seq = element
        seq = tf.reshape(seq, [-1])
        is_sentinel = seq[0] < 0
        count = tf.cast(tf.size(seq), tf.int64)
        complete = tf.reduce_all(tf.equal(seq, expected + tf.range(count, dtype=tf.int64)))
        complete = tf.where(is_sentinel, tf.equal(expected, size), complete)
        reported = tf.cond(
            complete,
            lambda: tf.constant(0, tf.int64),
            lambda: tf.cond(
                failed.read_value(),
                already_failed,
                lambda: call_guard(tf.reshape(epoch, [-1]), seq, expected),
            ),
        )
        following = tf.where(is_sentinel, tf.constant(0, tf.int64), seq[-1] + 1)
        return following + 0 * reported, (inputs, label, is_sentinel)

    ds = ds.scan(tf.constant(0, tf.int64), check)  # sequential: the samples in order
    ds = ds.filter(lambda inputs, label, is_sentinel: tf.logical_not(is_sentinel))
    ds = ds.map(lambda inputs, label, _: (inputs, label))
    if batch_size is None:
        return ds
    # In parallel, in order: a sequential batch copy (8 x 7.8 MB for 224x224 clips)
    # capped the parallel map (measured on 2 idle cores: 139 clips/s, 186 unbatched).
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if drop_remainder:
        ds = ds.filter(lambda inputs, label: tf.equal(tf.shape(label)[0], batch_size))

        def static_batch(inputs, label):
            def fix(t):
                return tf.ensure_shape(t, [batch_size, *t.shape[1:]])

            return tf.nest.map_structure(fix, (inputs, label))

        return ds.map(static_batch)
    return ds


def _epoch_signature(arrays):
    def spec(value):
        value = np.asarray(value)
        dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
        return tf.TensorSpec((None,) + value.shape[1:], dtype)

    return {k: spec(v) for k, v in arrays.items()}
