"""Writes `.pth` files the way `torch.save` does, without torch, for the converter's error tests.

The pickle is emitted opcode by opcode (protocol 2, as torch.save writes it),
so a test can name any global, including ones it must never import (the
malicious-pickle test), and build state dicts with missing, extra or
misshapen tensors. `test_torch_weights.py` checks that these files read back
like the committed ones that PyTorch wrote.
"""

import struct
import zipfile

import numpy as np

_STORAGE_TYPES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
}


def global_op(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _string(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value):
    return b"J" + struct.pack("<i", value)


def _int_tuple(values):
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _ordered_dict():
    return global_op("collections", "OrderedDict") + b")R"


def tensor_pickle(key, array):
    """Opcodes of `torch._utils._rebuild_tensor_v2(storage key, 0, shape, strides, False, {})`."""
    storage = (
        b"("
        + _string("storage")
        + global_op("torch", _STORAGE_TYPES[array.dtype])
        + _string(key)
        + _string("cpu")
        + _int(array.size)
        + b"tQ"  # TUPLE, BINPERSID
    )
    strides = [s // array.itemsize for s in np.require(array, requirements="C").strides]
    return (
        global_op("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + storage
        + _int(0)
        + _int_tuple(array.shape)
        + _int_tuple(strides)
        + b"\x89"  # NEWFALSE: requires_grad
        + _ordered_dict()
        + b"tR"
    )


def write_pth(path, body, storages=(), archive="archive"):
    """Writes a torch.save-style zip: `body` is the pickle between PROTO and STOP."""
    with zipfile.ZipFile(path, "w") as f:
        f.writestr(f"{archive}/data.pkl", b"\x80\x02" + body + b".")
        f.writestr(f"{archive}/byteorder", "little")
        for key, array in storages:
            f.writestr(f"{archive}/data/{key}", np.require(array, requirements="C").tobytes())
    return path


def save_state_dict(path, state, wrap_mmaction2=False):
    """`torch.save(OrderedDict(state))` (or `{"state_dict": ...}`) for NumPy arrays."""
    body = _ordered_dict() + b"("
    storages = []
    for index, (name, array) in enumerate(state.items()):
        array = np.asarray(array)
        body += _string(name) + tensor_pickle(str(index), array)
        storages.append((str(index), array))
    body += b"u"  # SETITEMS
    if wrap_mmaction2:
        body = b"}(" + _string("meta") + b"}" + _string("state_dict") + body + b"u"
    return write_pth(path, body, storages)
