"""Training job of `test_checkpoint.py` (not a test): a tiny CMA model trained branch by branch
(`AlternatingSchedule`, one epoch per iteration: the phase changes every epoch, the optimizer
state and the iteration count are reset at each), SGD with momentum and a decaying learning-rate
schedule, dropout, on a seeded `make_dataset` pipeline (shuffling, crops, flips). Saves a
checkpoint every 2 steps. With `KILL_AFTER=n` it SIGKILLs itself after its n-th trained batch
(before that batch is checkpointed). Writes the final weights to `OUT.npz`.

    python resume_job.py CHECKPOINT_DIR OUT.npz
"""

import os
import signal
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from keras_twostream.data import make_dataset
from keras_twostream.models.cma import build_cma
from keras_twostream.training import AlternatingSchedule, ResumableCheckpoint, set_seed

FRAMES = Path(__file__).resolve().parent.parent / "data" / "mmaction2" / "imgs"
EPOCHS = 3  # 4 batches of 2 each: 12 steps


class KillAfter(keras.callbacks.Callback):
    def __init__(self, steps):
        super().__init__()
        self.steps, self.seen = steps, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.steps:
            os.kill(os.getpid(), signal.SIGKILL)


def main(directory, out):
    set_seed(3)
    model = build_cma(
        3,
        backbone="tiny",
        image_size=32,
        num_segments=1,
        flow_length=1,
        cma_blocks=["conv4_block1"],
        pool_size=None,
        dropout=0.3,
    )
    learning_rate = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.8)
    # Eager: tracing would dominate these few steps (and the phase changes retrace).
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9), run_eagerly=True)
    table = pd.DataFrame({"path": [str(FRAMES)] * 8, "label": [0, 1, 2, 0, 1, 2, 0, 1]})
    dataset = make_dataset(
        table, num_segments=1, flow_length=1, image_size=32, batch_size=2, seed=5
    )
    callbacks = [
        AlternatingSchedule(1, reset_learning_rate=False, verbose=0),
        KillAfter(
            int(os.environ.get("KILL_AFTER", "0"))
        ),  # before the checkpoint: its step is lost
        ResumableCheckpoint(directory, save_every_n_steps=2, dataset=dataset, verbose=0),
    ]
    model.fit(dataset, epochs=EPOCHS, callbacks=callbacks, verbose=0)
    np.savez(
        out,
        *[keras.ops.convert_to_numpy(v) for v in model.variables],
        *[keras.ops.convert_to_numpy(v) for v in model.optimizer.variables],
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
