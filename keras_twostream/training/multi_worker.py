"""Training on several machines: the JAX backend with `keras.distribution.DataParallel`.

`tf.distribute.MultiWorkerMirroredStrategy` with `model.fit` fails in Keras 3.15 (two workers on
one host: "Attempt to convert a value (PerReplica...)" in `_maybe_symbolic_build`, then "Invalid
reduction dimension 0"; see PITFALLS.md). What works on an existing engine is JAX's multi-process
runtime: every worker runs the same program, `jax.distributed.initialize` joins them into one
cluster (collectives over gloo on CPU, NCCL on GPU), and Keras' `DataParallel` distribution
replicates the variables over every device of every process and shards each global batch across
them. `model.fit` is then one SPMD program: each step sees the global batch (batch normalisation
statistics are those of the global batch, as synchronised BN), gradients are reduced by the
compiler, and every worker ends with the same weights as one process training on the global batch.

Schedules: the plain `fit` step and the branch-by-branch (alternating) step of CMA
(`keras_twostream.training.alternating`, which has a JAX `train_step`) both run. The adversarial
two-optimizer step of MPA+SAL (`keras_twostream.training.adversarial`) cannot join: it is
implemented for the TensorFlow backend only, because Keras' JAX trainer threads the state of a
single optimizer (`model.optimizer`) through its stateless `train_step`.

Configuration, read from the environment when the arguments are `None` (the names are Keras'
own, see `keras.distribution.initialize`):

- `KERAS_DISTRIBUTION_JOB_ADDRESSES`: the coordinator's `host:port` (process 0's machine, a free
  port), or every worker's address comma-separated (the first is the coordinator);
- `KERAS_DISTRIBUTION_NUM_PROCESSES`: the number of worker processes;
- `KERAS_DISTRIBUTION_PROCESS_ID`: this worker's index, `0` .. `num_processes - 1`.

Every worker must run with `KERAS_BACKEND=jax`, the same code, the same data (a `tf.data`
pipeline producing the *global* batch: `fit` keeps this worker's shard of each batch) and the
same seed. The launcher runs a training script after joining the cluster:

    KERAS_BACKEND=jax KERAS_DISTRIBUTION_JOB_ADDRESSES=10.0.0.1:1234 \\
    KERAS_DISTRIBUTION_NUM_PROCESSES=2 KERAS_DISTRIBUTION_PROCESS_ID=0 \\
        python -m keras_twostream.training.multi_worker train.py --epochs 30

See `docs/distributed.md` for the cluster how-to.
"""

import os
import runpy
import sys

import keras

ENV_JOB_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_NUM_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"


def _env_int(name, value):
    if value is not None:
        return value
    raw = os.environ.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"Expected the environment variable {name} to be an integer. Received: {raw!r}"
        ) from None


def _check_config(job_addresses, num_processes, process_id):
    if not job_addresses or not isinstance(job_addresses, str):
        raise ValueError(
            f"Expected the coordinator address as 'host:port' (argument job_addresses or the "
            f"environment variable {ENV_JOB_ADDRESSES}). Received: {job_addresses!r}"
        )
    for address in job_addresses.split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(
                f"Expected every address in {ENV_JOB_ADDRESSES} to be 'host:port'. Received: {address!r}"
            )
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(
            f"Expected num_processes >= 1 (argument or the environment variable {ENV_NUM_PROCESSES}). "
            f"Received: {num_processes!r}"
        )
    if (
        isinstance(process_id, bool)
        or not isinstance(process_id, int)
        or not 0 <= process_id < num_processes
    ):
        raise ValueError(
            f"Expected 0 <= process_id < num_processes={num_processes} (argument or the environment "
            f"variable {ENV_PROCESS_ID}). Received: {process_id!r}"
        )


def initialize_multi_worker(job_addresses=None, num_processes=None, process_id=None, seed=None):
    """Joins this process to a multi-worker cluster and distributes `fit` over all its devices.

    Call it first, before building any model (variables are laid out by the distribution set
    here). Arguments left `None` are read from `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
    `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID`. JAX backend only: the
    TensorFlow multi-worker strategy does not train with `model.fit` in Keras 3.15 (see the
    module docstring).

    Args:
        job_addresses: the coordinator's `"host:port"` (process 0), or all workers'
            addresses comma-separated.
        num_processes: the number of worker processes.
        process_id: this worker's index in `[0, num_processes)`.
        seed: a seed for `keras.utils.set_random_seed`; the same on every worker (initial
            weights must agree). `None`: the workers agree on a random one.

    Returns:
        The `keras.distribution.DataParallel` distribution now in effect.

    Example:

    >>> # On each of two machines, with KERAS_BACKEND=jax and the three variables set:
    >>> from keras_twostream.training import initialize_multi_worker  # doctest: +SKIP
    >>> distribution = initialize_multi_worker(seed=0)  # doctest: +SKIP
    >>> model = build_cma(101, synchronized=False)  # batch statistics are global anyway  # doctest: +SKIP
    >>> model.compile()  # doctest: +SKIP
    >>> model.fit(train_ds, epochs=60, callbacks=[AlternatingSchedule(30)])  # doctest: +SKIP
    """
    backend = keras.backend.backend()
    if backend != "jax":
        raise NotImplementedError(
            "Multi-worker training runs on the JAX backend (set KERAS_BACKEND=jax before Python "
            "starts): tf.distribute.MultiWorkerMirroredStrategy with model.fit fails in Keras 3.15. "
            f"Received backend: {backend!r}"
        )
    import jax

    job_addresses = (
        job_addresses if job_addresses is not None else os.environ.get(ENV_JOB_ADDRESSES)
    )
    num_processes = _env_int(ENV_NUM_PROCESSES, num_processes)
    process_id = _env_int(ENV_PROCESS_ID, process_id)
    _check_config(job_addresses, num_processes, process_id)
    # CPU devices talk through gloo (the default CPU runtime has no cross-process collectives);
    # GPUs use NCCL whatever this says. Must be set before JAX initialises its backends.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    keras.distribution.initialize(job_addresses, num_processes, process_id)
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    keras.distribution.set_distribution(distribution)
    return distribution


def main(argv=None):
    """`python -m keras_twostream.training.multi_worker SCRIPT [ARGS...]`: joins the cluster
    described by the environment variables, then runs `SCRIPT` as `__main__` with `ARGS`.

    Example:

    >>> # KERAS_BACKEND=jax KERAS_DISTRIBUTION_JOB_ADDRESSES=10.0.0.1:1234
    >>> # KERAS_DISTRIBUTION_NUM_PROCESSES=2 KERAS_DISTRIBUTION_PROCESS_ID=1
    >>> #     python -m keras_twostream.training.multi_worker train.py --epochs 30
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    script = argv[0]
    if not os.path.isfile(script):
        raise FileNotFoundError(f"Training script not found: {script!r}")
    seed = os.environ.get("KERAS_TWOSTREAM_SEED")
    initialize_multi_worker(seed=None if seed is None else int(seed))
    sys.argv = argv
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
