"""Training schedules: the alternating branch-by-branch schedule of the CMA paper (Sect. 4.3)."""

from keras_twostream.training.alternating import (
    AlternatingSchedule,
    AlternatingTrainingMixin,
    reset_optimizer_state,
)

__all__ = ["AlternatingSchedule", "AlternatingTrainingMixin", "reset_optimizer_state"]
