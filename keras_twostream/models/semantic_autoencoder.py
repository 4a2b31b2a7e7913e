"""The semantic autoencoder of the RGB-only two-stream paper (MPA+SAL, Eq. 8): label semantics S = encoder(y)."""

import numbers

import keras
import numpy as np


def _check_positive_int(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Expected {name} to be a positive integer. Received: {name}={value!r}")
    return int(value)


@keras.saving.register_keras_serializable(package="keras_twostream")
class SemanticAutoencoder(keras.Model):
    """Three fully connected layers that encode one-hot labels and reconstruct them.

    The semantic autoencoder of the RGB-only two-stream paper (MPA+SAL),
    Sect. "Semantic Adversarial Learning": "three fully connected layers
    supervised by video labels"; after training, the frozen encoder gives the
    "real" semantics `S = encoder(y)` (Eq. 8) that the discriminator compares
    with the video representation `V̄` (Eqs. 9-11).

    The paper gives no widths or activations; this model chooses

        y (num_classes) -> FC1 (hidden_dim, ReLU) -> FC2 (semantic_dim,
        semantic_activation) = S -> FC3 (num_classes, softmax) = y_hat

    so the encoder is FC1-FC2 and the decoder FC3. `S` is bounded by a tanh
    by default: the generator's `V̄` has a fixed range to match, and the
    code cannot grow without bound while the decoder shrinks.

    Args:
        num_classes: the number of classes K (the one-hot label size).
        semantic_dim: the size of `S`, equal to the size of `V̄`.
        hidden_dim: the width of FC1. `None` (the default) uses
            `max(semantic_dim, num_classes)`.
        semantic_activation: activation of FC2, anything
            `keras.activations.get` accepts. Defaults to `"tanh"`.
        seed: seed of the weight initialisers (`None`: unseeded).
        **kwargs: `keras.Model` keyword arguments, such as `name`.

    Call arguments:
        inputs: one-hot (or soft) labels `(batch, num_classes)`.

    Returns:
        The reconstructed label distribution `(batch, num_classes)`.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> autoencoder = keras_twostream.models.SemanticAutoencoder(num_classes=5, semantic_dim=8, seed=0)
    >>> tuple(autoencoder(np.eye(5, dtype="float32")).shape)
    (5, 5)
    >>> tuple(autoencoder.encoder(np.eye(5, dtype="float32")).shape)
    (5, 8)
    """

    def __init__(
        self,
        num_classes,
        semantic_dim,
        hidden_dim=None,
        semantic_activation="tanh",
        seed=None,
        **kwargs,
    ):
        num_classes = _check_positive_int(num_classes, "num_classes")
        semantic_dim = _check_positive_int(semantic_dim, "semantic_dim")
        if hidden_dim is not None:
            hidden_dim = _check_positive_int(hidden_dim, "hidden_dim")
        if seed is not None and (
            not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0
        ):
            raise ValueError(
                f"Expected seed to be None or a non-negative integer. Received: seed={seed!r}"
            )
        width = hidden_dim if hidden_dim is not None else max(semantic_dim, num_classes)

        def init(i):
            return keras.initializers.GlorotUniform(seed=None if seed is None else int(seed) + i)

        # === Layers ===
        fc1 = keras.layers.Dense(width, activation="relu", kernel_initializer=init(0), name="fc1")
        fc2 = keras.layers.Dense(
            semantic_dim, activation=semantic_activation, kernel_initializer=init(1), name="fc2"
        )
        fc3 = keras.layers.Dense(
            num_classes, activation="softmax", kernel_initializer=init(2), name="fc3"
        )

        # === Functional Model ===
        labels = keras.Input((num_classes,), name="labels")
        # Eq. (8): S = encoder(y)
        encoder = keras.Model(labels, fc2(fc1(labels)), name="semantic_encoder")
        inputs = keras.Input((num_classes,), name="labels")
        outputs = fc3(encoder(inputs))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.semantic_dim = semantic_dim
        self.hidden_dim = hidden_dim
        self.semantic_activation = semantic_activation
        self.seed = seed
        self.encoder = encoder

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "semantic_dim": self.semantic_dim,
            "hidden_dim": self.hidden_dim,
            "semantic_activation": self.semantic_activation,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _num_replicas():
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


class _RepeatedBatch(keras.utils.PyDataset):
    """The same `(labels, labels)` batch `steps` times: one `fit` epoch of `steps` steps.

    One epoch of many steps avoids `fit`'s per-epoch overhead (about 0.1 s on
    TensorFlow), which dominated training for one-batch epochs (~20x slower).
    """

    def __init__(self, labels, steps):
        super().__init__()
        self.labels = labels
        self.steps = steps

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        return self.labels, self.labels


def train_semantic_encoder(
    num_classes,
    semantic_dim,
    epochs=300,
    seed=0,
    hidden_dim=None,
    semantic_activation="tanh",
    learning_rate=0.01,
    return_autoencoder=False,
):
    """Trains the semantic autoencoder on every one-hot label and returns its frozen encoder.

    Eq. (8) of the RGB-only two-stream paper (MPA+SAL): the autoencoder is
    trained to reconstruct the labels, then its encoder is frozen and gives
    `S = encoder(y)`. Each epoch is one full-batch Adam step on the K one-hot
    labels (the whole label set), with the categorical cross-entropy between
    the labels and their reconstruction. Training is deterministic for a given
    `seed` (seeded initialisers, no shuffling, no dropout) and takes about a
    second on a CPU for a hundred classes.

    Args:
        num_classes: the number of classes K.
        semantic_dim: the size of `S`, equal to the size of the model's `V̄`.
        epochs: full-batch training steps. Defaults to `300`.
        seed: seed of the initialisers. Defaults to `0`.
        hidden_dim: the width of the autoencoder's first layer (see
            `SemanticAutoencoder`).
        semantic_activation: the activation of `S`. Defaults to `"tanh"`.
        learning_rate: Adam's learning rate. Defaults to `0.01`.
        return_autoencoder: also return the trained `SemanticAutoencoder`
            (whose encoder is the returned, frozen one). Defaults to `False`.

    Returns:
        The encoder, a `keras.Model` from `(batch, num_classes)` labels to
        `(batch, semantic_dim)` semantics, with `trainable=False`, so its
        weights stay fixed inside another model's `fit`; with
        `return_autoencoder=True`, a tuple `(encoder, autoencoder)`.

    Raises:
        ValueError: on invalid arguments, or when after `epochs` steps some
            label is not reconstructed (its argmax differs), naming the
            labels and suggesting more `epochs` or a larger `semantic_dim`.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> encoder = keras_twostream.models.train_semantic_encoder(num_classes=5, semantic_dim=8)
    >>> encoder.trainable, tuple(encoder(np.eye(5, dtype="float32")).shape)
    (False, (5, 8))
    """
    epochs = _check_positive_int(epochs, "epochs")
    if not isinstance(learning_rate, numbers.Real) or not learning_rate > 0:
        raise ValueError(f"Expected learning_rate > 0. Received: learning_rate={learning_rate!r}")
    autoencoder = SemanticAutoencoder(
        num_classes,
        semantic_dim,
        hidden_dim=hidden_dim,
        semantic_activation=semantic_activation,
        seed=seed,
        name="semantic_autoencoder",
    )
    labels = np.eye(num_classes, dtype="float32")  # every one-hot label, one full batch
    # Inside a tf.distribute strategy scope (a model built under MirroredStrategy trains its
    # encoder here), every replica gets the whole label set: an uneven split of K rows fails.
    batch = np.tile(labels, (_num_replicas(), 1))
    autoencoder.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
    )
    autoencoder.fit(_RepeatedBatch(batch, epochs), epochs=1, shuffle=False, verbose=0)
    reconstructed = np.argmax(keras.ops.convert_to_numpy(autoencoder(labels)), axis=-1)
    wrong = np.flatnonzero(reconstructed != np.arange(num_classes))
    if wrong.size:
        raise ValueError(
            f"The semantic autoencoder did not reconstruct labels {wrong.tolist()} of num_classes={num_classes} "
            f"after epochs={epochs}: expected every one-hot label back. Use more epochs or a larger "
            f"semantic_dim (received semantic_dim={semantic_dim})."
        )
    encoder = autoencoder.encoder
    encoder.trainable = False  # frozen after training (Eq. 8)
    if return_autoencoder:
        return encoder, autoencoder
    return encoder
