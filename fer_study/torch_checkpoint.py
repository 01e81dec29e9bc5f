"""Read PyTorch checkpoints (state dicts) into numpy without torch.

Both the zip format of ``torch.save`` and the legacy one are read with a restricted
unpickler: only OrderedDict, tensor-rebuild functions and storage classes may appear in the
pickle; anything else raises :class:`UnsafeCheckpointError` before it can run.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's pickle asked for something other than tensors and plain containers."""


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001

# torch storage classes -> little-endian numpy dtypes
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "DoubleStorage": "<f8",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None  # filled when read (legacy files store data after the pickle)


@dataclass(frozen=True)
class _StorageView:
    root: _Storage
    offset: int  # in elements


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageView, storage_offset: int, size: Sequence[int], stride: Sequence[int],
    requires_grad: bool = False, backward_hooks: Any = None, metadata: Any = None,
) -> _TensorRef:  # fmt: skip
    if not isinstance(storage, _StorageView):
        raise UnsafeCheckpointError("_rebuild_tensor_v2 called without a storage")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: _TensorRef, requires_grad: bool, backward_hooks: Any) -> _TensorRef:
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the handful of globals a plain state dict needs."""

    def __init__(self, file: BinaryIO, storages: Callable[[tuple[Any, ...]], _StorageView]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to load global {module}.{name} from a checkpoint: only tensors in "
                "(Ordered)dicts are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageView:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unsupported persistent id in checkpoint: {pid!r}")
        if not isinstance(pid[1], _StorageType):
            raise UnsafeCheckpointError(f"unsupported storage type in checkpoint: {pid[1]!r}")
        return self._storages(pid)


def _safe_load(file: BinaryIO, storages: Callable[[tuple[Any, ...]], _StorageView]) -> Any:
    return _RestrictedUnpickler(file, storages).load()


def _no_storages(pid: tuple[Any, ...]) -> _StorageView:
    raise UnsafeCheckpointError("storage reference outside the checkpoint's object pickle")


def _materialize(ref: _TensorRef) -> np.ndarray:
    data = ref.storage.root.data
    if data is None:
        raise ValueError("checkpoint tensor refers to a storage with no data")
    start = ref.storage.offset + ref.offset
    if any(n == 0 for n in ref.size):
        return np.empty(ref.size, dtype=data.dtype)
    last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if start < 0 or last >= data.size or any(s < 0 for s in ref.stride):
        raise ValueError(f"checkpoint tensor {ref.size} runs outside its storage ({data.size})")
    view = np.lib.stride_tricks.as_strided(
        data[start:], shape=ref.size, strides=[s * data.itemsize for s in ref.stride]
    )
    return np.array(view, dtype=data.dtype.newbyteorder("="))  # own, native-order copy


def _to_state_dict(obj: Any, path: Path) -> dict[str, np.ndarray]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # training checkpoints wrap the weights
    if not isinstance(obj, dict):
        raise TypeError(f"{path}: expected a state dict, found {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise TypeError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        out[str(key)] = _materialize(value)
    return out


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path}: zip checkpoint without a single <archive>/data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        names = set(zf.namelist())
        big = f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() == b"big"
        cache: dict[str, _Storage] = {}

        def storage(pid: tuple[Any, ...]) -> _StorageView:
            _, stype, key, _location, numel = pid[:5]
            key = str(key)
            if key not in cache:
                dtype = stype.dtype.newbyteorder(">") if big else stype.dtype
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise ValueError(f"{path}: missing storage record {record}")
                raw = zf.read(record)
                data = np.frombuffer(raw, dtype=dtype, count=len(raw) // dtype.itemsize)
                cache[key] = _Storage(dtype, int(numel), data)
            return _StorageView(cache[key], 0)

        with zf.open(pickles[0]) as f:
            return _safe_load(f, storage)


def _read_legacy(path: Path) -> Any:
    """The pre-1.6 ``torch.save`` stream: magic, protocol, sys info, objects, keys, raw data."""
    with open(path, "rb") as f:
        if _safe_load(f, _no_storages) != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        if _safe_load(f, _no_storages) != _LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy PyTorch checkpoint protocol")
        sys_info = _safe_load(f, _no_storages)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian legacy checkpoints are not supported")
        roots: dict[str, _Storage] = {}

        def storage(pid: tuple[Any, ...]) -> _StorageView:
            _, stype, key, _location, numel = pid[:5]
            key = str(key)
            root = roots.setdefault(key, _Storage(stype.dtype, int(numel)))
            view = pid[5] if len(pid) > 5 else None
            if view is None:
                return _StorageView(root, 0)
            _view_key, offset, _view_size = view
            return _StorageView(root, int(offset))

        obj = _safe_load(f, storage)
        keys = _safe_load(f, _no_storages)
        for key in keys:
            root = roots.get(str(key))
            if root is None:
                raise ValueError(f"{path}: data for unknown storage {key!r}")
            (numel,) = struct.unpack("<q", f.read(8))
            raw = f.read(numel * root.dtype.itemsize)
            if len(raw) != numel * root.dtype.itemsize:
                raise ValueError(f"{path}: truncated storage {key!r}")
            root.data = np.frombuffer(raw, dtype=root.dtype)
    return obj


def read_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (zip or legacy ``torch.save`` format) into numpy, without torch.

    Only OrderedDict, tensor-rebuild functions and storage classes may appear in the pickle;
    anything else raises `UnsafeCheckpointError` before it can run.
    """
    path = Path(path)
    obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    return _to_state_dict(obj, path)
