"""Helpers shared by the backbone definitions: one block = one small functional model."""

import keras


def make_block(apply_fn, input_shape, name):
    """Wraps `apply_fn(x) -> y` into a functional `keras.Model` named `name`.

    Args:
        apply_fn: a function building the block's layers on a symbolic tensor.
        input_shape: the block's input shape without the batch axis.
        name: the model's name.

    Returns:
        The block model and its output shape without the batch axis.
    """
    inputs = keras.Input(shape=tuple(input_shape))
    outputs = apply_fn(inputs)
    block = keras.Model(inputs=inputs, outputs=outputs, name=name)
    return block, tuple(outputs.shape[1:])


def chain_blocks(specs, input_shape, prefix):
    """Builds a list of `(block_name, apply_fn)` specs into chained block models.

    Each block's input shape is the previous block's output shape. Models are
    named `f"{prefix}_{block_name}"` so that the blocks of two backbones (the
    RGB and the flow branch) can live in one functional model.

    Returns:
        A list of `(block_name, keras.Model)` pairs.
    """
    blocks = []
    shape = tuple(input_shape)
    for block_name, apply_fn in specs:
        block, shape = make_block(apply_fn, shape, f"{prefix}_{block_name}")
        blocks.append((block_name, block))
    return blocks
