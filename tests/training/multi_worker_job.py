"""Training job of `test_multi_worker.py` (not a test): a tiny CMA model trained on a fixed global
batch, one epoch of joint training (the plain `fit` step) and one of the alternating schedule's
Flow iteration (the branch-by-branch step). Writes the weights and the history to `OUT.npz`.

Run as a worker (`python -m keras_twostream.training.multi_worker multi_worker_job.py OUT`) or
alone (`python multi_worker_job.py OUT`) for the single-process reference. KERAS_BACKEND=jax.
"""

import json
import sys

import keras
import numpy as np
import tensorflow as tf

from keras_twostream.models.cma import build_cma

GLOBAL_BATCH, STEPS, SIZE = 4, 2, 32
PHASES = [None, "temporal"]


class Phases(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_training_branch(PHASES[epoch])


def main(out):
    keras.utils.set_random_seed(7)  # the same on every worker: the initial weights agree
    model = build_cma(
        3,
        backbone="tiny",
        image_size=SIZE,
        num_segments=1,
        flow_length=1,
        cma_blocks=["conv4_block1"],
        dropout=0.0,
    )
    model.compile()  # SGD, momentum 0.9, weight decay 5e-4 (Sect. 4.4)
    initial = model.get_weights()
    rng = np.random.RandomState(0)
    n = GLOBAL_BATCH * STEPS
    x = {
        "rgb": rng.rand(n, 1, SIZE, SIZE, 3).astype("float32"),
        "flow": rng.rand(n, 1, SIZE, SIZE, 2).astype("float32"),
    }
    # The global batch: under DataParallel, fit keeps this worker's shard of each batch.
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(n) % 3)).batch(GLOBAL_BATCH)
    history = model.fit(dataset, epochs=len(PHASES), verbose=0, callbacks=[Phases()])
    np.savez(
        out,
        history=json.dumps(history.history),
        processes=keras.distribution.distribution().device_mesh.shape[0]
        if keras.distribution.distribution() is not None
        else 1,
        **{f"initial_{i}": np.asarray(w) for i, w in enumerate(initial)},
        **{f"final_{i}": np.asarray(w) for i, w in enumerate(model.get_weights())},
    )


if __name__ == "__main__":
    main(sys.argv[1])
