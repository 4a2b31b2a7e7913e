"""The sub-commands of `keras-twostream`: one module per command, each with `add_arguments(parser)`
and `run(args)`.

Modules import only the standard library at the top, so building the parser (and
`keras-twostream --help`) stays fast; TensorFlow, Keras and the models are imported inside `run`.
"""


class UserError(Exception):
    """An error the user can fix; `keras-twostream` prints it as one line and exits with status 2.

    Example:

    >>> from keras_twostream.commands import UserError
    >>> str(UserError("data/frames: no such folder"))
    'data/frames: no such folder'
    """


__all__ = ["UserError"]
