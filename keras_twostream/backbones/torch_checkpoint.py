"""Reading PyTorch `.pth` checkpoints with NumPy, without PyTorch, and without running their code.

A `.pth` file written by `torch.save` (PyTorch >= 1.6) is a zip archive:
`<name>/data.pkl` is a pickle of the saved object in which every tensor is a
call `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and
every storage a persistent id `("storage", torch.FloatStorage, key, location,
numel)` whose bytes are the archive member `<name>/data/<key>` (byte order in
`<name>/byteorder`, little-endian when absent).

A pickle can call any importable function, so a checkpoint is untrusted input.
`read_torch_checkpoint` unpickles with a restricted `pickle.Unpickler` whose
`find_class` resolves only what a state dict needs: `collections.OrderedDict`,
the tensor/parameter rebuild functions (replaced by NumPy versions),
`torch.*Storage` types (replaced by dtype markers), `torch.Size` (a tuple) and
`_codecs.encode` (how protocol 2 pickles bytes). Every other global raises
`UnsafeCheckpointError` naming it, before anything is called. Objects of a few
data-only classes that MMAction2/MMEngine put into a checkpoint's metadata
(NumPy scalars and arrays, `mmengine.*` log buffers) become inert
`OpaqueObject` records: their class is never imported or called.

Legacy checkpoints (`torch.save(..., _use_new_zipfile_serialization=False)`,
the default before PyTorch 1.6) are refused with an error saying how to
re-save them.
"""

import collections
import io
import os
import pickle
import zipfile

import numpy as np

# torch storage type name -> NumPy dtype (little-endian; byte-swapped for "big").
STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",  # read as uint16, widened to float32 (below)
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
# The pickle header of a legacy (pre-1.6) torch.save file: protocol 2 and the magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
# Data-only classes seen in MMAction2 / MMEngine checkpoint metadata ("meta", "message_hub"):
# loaded as inert records, never imported.
_OPAQUE = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
}
_OPAQUE_MODULES = ("mmengine.", "mmcv.")


class UnsafeCheckpointError(ValueError):
    """A checkpoint's pickle refers to a callable that a state dict does not need.

    Raised by `read_torch_checkpoint` (and so by `load_torch_weights`) before
    the callable is imported or called; the message names it (`module.name`).

    Example:

    >>> from keras_twostream.backbones import UnsafeCheckpointError, read_torch_checkpoint
    >>> try:  # doctest: +SKIP
    ...     read_torch_checkpoint("downloaded.pth")
    ... except UnsafeCheckpointError as error:
    ...     print(error)
    downloaded.pth: refused to load 'posix.system': a checkpoint may only hold tensors, ...
    """


class OpaqueObject:
    """An inert stand-in for a data-only object of checkpoint metadata (never used)."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<{type(self).__name__} {self.qualified_name}>"


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
    def __init__(self, array, name):
        self.array = array  # 1-D, one element per storage element
        self.name = name


def _rebuild_tensor(storage, storage_offset, size, stride, *unused, path="?"):
    """`torch._utils._rebuild_tensor_v2` in NumPy: a strided view of the storage, copied."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"{path}: a tensor refers to {type(storage).__name__}, not a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
        raise ValueError(f"{path}: corrupt tensor (size {size}, stride {stride}, offset {offset})")
    array = storage.array
    if any(s == 0 for s in size):
        return np.zeros(size, array.dtype)
    # The last element read must lie inside the storage (as_strided does not check).
    last = offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True))
    if last >= array.size:
        raise ValueError(
            f"{path}: corrupt tensor: size {size}, stride {stride} and offset {offset} read "
            f"past the end of its storage of {array.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(
        array[offset:],
        shape=size,
        strides=tuple(st * array.itemsize for st in stride),
        writeable=False,
    )
    return np.array(view)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only what a state dict needs (see the module docstring)."""

    def __init__(self, file, archive, prefix, byteorder, path):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._path = path
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            path = self._path

            def rebuild(*args):
                return _rebuild_tensor(*args, path=path)

            return rebuild
        if module == "torch._utils" and name in (
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
        ):
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name.endswith("Storage"):
            raise ValueError(
                f"{self._path}: tensors of storage type torch.{name} are not supported "
                f"(supported: {', '.join(sorted(STORAGE_DTYPES))})"
            )
        if (module, name) == ("torch", "Size"):
            return tuple
        if (module, name) == ("_codecs", "encode"):
            return _encode
        if (module, name) in _OPAQUE or module.startswith(_OPAQUE_MODULES):
            return type(name, (OpaqueObject,), {"qualified_name": f"{module}.{name}"})
        raise UnsafeCheckpointError(
            f"{self._path}: refused to load '{module}.{name}': a checkpoint may only hold "
            "tensors, (ordered) dicts, lists and primitive values, and this pickle calls "
            "something else. Load it only if you trust its source, and re-save its state dict "
            "with torch.save(model.state_dict(), path)."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ValueError(f"{self._path}: unsupported persistent id {pid!r:.100}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise ValueError(f"{self._path}: storage {key} has no known storage type")
        if key not in self._storages:
            member = f"{self._prefix}data/{key}"
            try:
                raw = self._archive.read(member)
            except KeyError:
                raise ValueError(f"{self._path}: missing archive member {member!r}") from None
            dtype = storage_type.dtype
            if self._byteorder == "big":
                dtype = dtype.newbyteorder(">")
            if len(raw) < numel * dtype.itemsize:
                raise ValueError(
                    f"{self._path}: archive member {member!r} holds {len(raw)} bytes; its "
                    f"{numel} {storage_type.name} elements need {numel * dtype.itemsize}"
                )
            array = np.frombuffer(raw, dtype=dtype, count=numel)
            if storage_type.name == "BFloat16Storage":  # the upper half of a float32
                array = (array.astype(np.uint32) << 16).view(np.float32)
            self._storages[key] = _Storage(array.astype(array.dtype.newbyteorder("=")), key)
        return self._storages[key]


def _encode(text, encoding="latin1"):
    return str(text).encode(encoding)


def read_torch_checkpoint(path):
    """Reads a PyTorch `.pth` checkpoint into Python containers of NumPy arrays.

    Args:
        path: a file written by `torch.save` (zip format, PyTorch >= 1.6).

    Returns:
        The saved object, with every tensor a NumPy array (bfloat16 widened to
        float32), e.g. a dict of arrays for a state dict or
        `{"state_dict": {...}, "meta": {...}}` for an MMAction2 checkpoint.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the pickle refers to a callable outside the
            allowed set (named in the message); nothing of it was called.
        ValueError: a legacy (pre-1.6) checkpoint, or a corrupt file.

    Example:

    >>> from keras_twostream.backbones.torch_checkpoint import read_torch_checkpoint
    >>> state = read_torch_checkpoint("resnet50-0676ba61.pth")  # doctest: +SKIP
    >>> state["conv1.weight"].shape  # doctest: +SKIP
    (64, 3, 7, 7)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path!r}")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_MAGIC))
        if head == _LEGACY_MAGIC:
            raise ValueError(
                f"{path}: a legacy PyTorch checkpoint (saved before PyTorch 1.6 or with "
                "_use_new_zipfile_serialization=False), which is not supported. Re-save it "
                "with a current PyTorch: torch.save(torch.load(path, weights_only=True), "
                "new_path)."
            )
        raise ValueError(
            f"{path}: not a PyTorch checkpoint (expected the zip archive torch.save writes)"
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if not pickles:
            raise ValueError(f"{path}: a zip archive without data.pkl, not a PyTorch checkpoint")
        member = min(pickles, key=len)
        prefix = member[: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise ValueError(f"{path}: unknown byte order {byteorder!r}")
        unpickler = _RestrictedUnpickler(
            io.BytesIO(archive.read(member)), archive, prefix, byteorder, path
        )
        try:
            return unpickler.load()
        except (UnsafeCheckpointError, ValueError):
            raise
        except Exception as error:  # a truncated or malformed pickle
            raise ValueError(
                f"{path}: corrupt checkpoint ({type(error).__name__}: {error})"
            ) from None
