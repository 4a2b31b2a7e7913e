"""Timing helpers shared by the benchmarks: medians of per-step times measured by model.fit."""

import statistics
import time

import keras


class StepTimer(keras.callbacks.Callback):
    """Records the wall time of every training batch."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def median_fit_step(model, dataset, steps, warmup=2):
    """Median seconds per `fit` step after `warmup` steps (tracing, first allocations)."""
    timer = StepTimer()
    model.fit(dataset, epochs=1, steps_per_epoch=steps + warmup, verbose=0, callbacks=[timer])
    return statistics.median(timer.times[warmup:])


def interleaved_medians(runs, rounds=3):
    """Runs each `(name, fn)` in turn for several rounds; returns name -> median of the fn results.

    Interleaving spreads the noise of a shared machine over every contender.
    """
    results = {name: [] for name, _ in runs}
    for _ in range(rounds):
        for name, fn in runs:
            results[name].append(fn())
    return {name: statistics.median(values) for name, values in results.items()}


def repeat_batch(x, y):
    """An endless stream of the same batch: tf.data when TensorFlow is there, else a generator."""
    try:
        import tensorflow as tf

        return tf.data.Dataset.from_tensors((x, y)).repeat()
    except ImportError:

        def forever():
            while True:
                yield x, y

        return forever()
