"""SGD with momentum and the papers' coupled L2 weight decay (Caffe / PyTorch `SGD`).

Keras' `SGD(weight_decay=wd)` is decoupled: it shrinks the weights by `lr * wd * w`
outside the momentum. The papers trained with Caffe (or PyTorch), whose weight
decay is an L2 term added to the gradient *inside* the momentum:

    g <- g + wd * w
    v <- momentum * v - lr * g
    w <- w + v

At momentum 0.9 the coupled decay accumulates to about `1 / (1 - momentum) = 10`
times the decoupled one (measured 9.96x at lr 0.01, wd 5e-4); the paper defaults
therefore use `CoupledSGD`.

Backends: TensorFlow (also under `tf.distribute.MirroredStrategy`) and JAX; the
decay is added in `update_step`, which every backend calls once per variable with
the (replica-summed, unscaled, clipped) gradient, so it works inside
`LossScaleOptimizer` (mixed precision) and in the library's custom train steps,
which only ever pass their trained variables to `apply`.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_twostream")
class CoupledSGD(keras.optimizers.SGD):
    """SGD with momentum whose `weight_decay` is the papers' coupled L2 decay.

    The update of a variable `w` with gradient `g` is Caffe's and PyTorch's
    `SGD(momentum, weight_decay)`: `g <- g + weight_decay * w` is added to the
    gradient before the momentum (and after gradient clipping, as Caffe
    clips before it regularises), where Keras' `SGD` would decay the weights
    outside the momentum. With a constant learning rate this is the same
    update as PyTorch's (`buf = m * buf + g; w -= lr * buf`); under a decaying
    rate it is Caffe's (the rate inside the momentum), as in Keras' `SGD`.

    Which variables decay: by default the kernels only (every variable of rank
    2 or more: convolution, dense and LSTM kernels); biases, batch-normalisation
    scales and offsets and other vectors are not decayed. The papers do not
    say; this is the policy of TSN's training code (`decay_mult` 0 for biases
    and BN parameters), on which the CMA and TCLSTA set-ups build, and of
    Caffe's usual `decay_mult: 0` for biases. `decay_vectors=True` decays
    every variable, as a bare PyTorch `SGD(weight_decay=...)`.
    `exclude_from_weight_decay` excludes more, as in every Keras optimizer.

    Args:
        learning_rate: a float or a `LearningRateSchedule`.
        momentum: float in `[0, 1]`.
        nesterov: Nesterov momentum.
        weight_decay: the L2 coefficient `wd` (the loss gains `wd / 2 * ||w||^2`);
            `None` or 0 for none.
        decay_vectors: also decay variables of rank 0 and 1 (biases, BN
            parameters).
        **kwargs: the other `keras.optimizers.SGD` arguments (`global_clipnorm`,
            `name`, ...).

    Example:

    >>> import keras, numpy as np
    >>> from keras_twostream.training import CoupledSGD
    >>> w = keras.Variable(np.ones((1, 1), "float32"))
    >>> opt = CoupledSGD(learning_rate=0.1, momentum=0.9, weight_decay=0.5)
    >>> for _ in range(2):  # zero loss gradient: the decay alone, inside the momentum
    ...     opt.apply([np.zeros((1, 1), "float32")], [w])
    >>> round(float(w.numpy()[0, 0]), 4)  # 1 - 0.05 = 0.95, then v = 0.9*0.05 + 0.1*0.5*0.95
    0.8575
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
        weight_decay=None,
        decay_vectors=False,
        **kwargs,
    ):
        if weight_decay is not None and (isinstance(weight_decay, bool) or weight_decay < 0):
            raise ValueError(
                f"Expected weight_decay >= 0 or None. Received: weight_decay={weight_decay!r}"
            )
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay or None,
            **kwargs,
        )
        self.decay_vectors = bool(decay_vectors)

    def _use_weight_decay(self, variable):
        if not self.decay_vectors and len(variable.shape) < 2:
            return False
        return super()._use_weight_decay(variable)

    def _apply_weight_decay(self, variables):
        # Keras' decoupled decay is replaced by the L2 term inside `update_step`.
        return

    def update_step(self, gradient, variable, learning_rate):
        if self.weight_decay is not None and self._use_weight_decay(variable):
            gradient = ops.add(
                ops.cast(gradient, variable.dtype),
                ops.multiply(ops.cast(self.weight_decay, variable.dtype), variable),
            )
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "decay_vectors": self.decay_vectors}
