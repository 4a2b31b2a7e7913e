"""Training schedules and training at scale.

- the alternating branch-by-branch schedule of the CMA paper (Sect. 4.3);
- the semantic adversarial two-optimizer step of the MPA+SAL paper (Algorithm 1);
- `CoupledSGD`: SGD with the papers' coupled (Caffe/PyTorch) L2 weight decay;
- resumable checkpoints (`ResumableCheckpoint`), one seed for a run (`set_seed`), mixed precision
  (`set_mixed_precision`, `mixed_precision`);
- multi-worker training on the JAX backend (`initialize_multi_worker`, imported lazily so that
  `python -m keras_twostream.training.multi_worker` runs that module only once).
"""

import importlib

from keras_twostream.training.adversarial import SemanticAdversarialMixin, clip_by_global_norm
from keras_twostream.training.alternating import (
    AlternatingSchedule,
    AlternatingTrainingMixin,
    reset_optimizer_state,
)
from keras_twostream.training.checkpoint import ResumableCheckpoint
from keras_twostream.training.coupled_sgd import CoupledSGD
from keras_twostream.training.mixed_precision import (
    default_mixed_precision_policy,
    mixed_precision,
    set_mixed_precision,
)
from keras_twostream.training.seed import set_seed

_LAZY = {"initialize_multi_worker": "keras_twostream.training.multi_worker"}

__all__ = [
    "AlternatingSchedule",
    "AlternatingTrainingMixin",
    "CoupledSGD",
    "ResumableCheckpoint",
    "SemanticAdversarialMixin",
    "clip_by_global_norm",
    "default_mixed_precision_policy",
    "initialize_multi_worker",
    "mixed_precision",
    "reset_optimizer_state",
    "set_mixed_precision",
    "set_seed",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_twostream.training' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
