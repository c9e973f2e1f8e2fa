"""Read the tensors of an official checkpoint without running any code it names.

The published CTHNet and TVSRN code saves whole modules: ``torch.save({'net': module,
'config_dict': ...})``. The standard unpickler imports and calls whatever such a file names,
so a checkpoint downloaded from anywhere could run any program. Here ``data.pkl`` goes
through an unpickler that never imports: it knows a short list of harmless callables (tensor
rebuilding, ordered dicts, sets, storage types), turns the classes of the published model,
timm and ``torch.nn`` into inert stand-ins that only keep their pickled state, and refuses
every other global. Tensors are built from the archive's raw storage bytes, and the state
dict is read off the stand-ins' ``_parameters``/``_buffers``/``_modules``.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from thinct.errors import InputError

# Modules whose classes become inert stand-ins: the published model's own (``net.*``), timm's
# (DropPath moved between timm versions) and torch's layers.
STUB_PREFIXES = ("net", "timm", "torch.nn")
# Modules whose names never belong in a checkpoint of the published model: refused at once,
# with a message naming them. Names from other modules become inert stand-ins that may not be
# called, so this list only makes messages clearer; it is not what keeps a pickle harmless.
REFUSED_PREFIXES = (
    "builtins", "os", "posix", "nt", "sys", "subprocess", "shutil", "importlib", "runpy",
    "pickle", "marshal", "ctypes", "socket", "code", "pty", "io", "operator", "functools",
    "types", "webbrowser", "torch",
)  # fmt: skip
# What torch's legacy (pre-1.6, not zip) format starts with: a pickled magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
# Bounds of the walks over the pickled objects, far above what the published networks need
# (a few hundred modules and tensors, names under 100 characters, plain configs): shared or
# self-containing entries in a crafted file could otherwise make them endless or huge.
_MAX_ITEMS = 100_000
_MAX_NAME = 500
_MAX_DEPTH = 64

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
# dtypes a module or a config may hold as values (pickled as globals such as ``torch.float32``).
_DTYPE_NAMES = (
    "float16",
    "float32",
    "float64",
    "bfloat16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
)


@dataclass(frozen=True)
class OfficialCheckpoint:
    """An official checkpoint's state dict (official names) and the plain values of its config."""

    tensors: dict[str, Tensor]
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _StorageType:
    """What a storage class such as ``torch.FloatStorage`` stands for here: its dtype."""

    dtype: torch.dtype


@dataclass(frozen=True, slots=True)
class _Storage:
    """One storage of the archive, as a flat tensor; only tensor rebuilding accepts it."""

    data: Tensor


class _PickledTensor(Tensor):
    """A tensor while the pickle is read. The pickle may not set state on it: torch's own
    ``Tensor.__setstate__`` would re-point and resize its storage."""

    def __setstate__(self, state: Any) -> None:
        raise InputError("the checkpoint sets state on a tensor")


class _Stub:
    """An object of a class the checkpoint names: it keeps its construction arguments and
    pickled state and has no behaviour, so nothing of the foreign class ever runs."""

    __slots__ = ("args", "state")

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        stub = object.__new__(cls)
        stub.args = (args, kwargs)
        stub.state = None
        return stub

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Construction arguments were kept by ``__new__``; there is nothing to set up."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _UncallableStub(type):
    """Metaclass of stand-ins for classes from unknown modules (say, an options object in
    ``config_dict``): pickle restores an object without calling its class, which stays inert;
    a pickle that calls the name instead (how ``os.system("...")`` is pickled) is refused."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise InputError(
            f"refused to call {cls.__module__}.{cls.__qualname__}: the checkpoint would run "
            "code that is neither a tensor nor a class of the published model"
        )


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _rebuild_tensor(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    hooks: Any = None,
    metadata: Any = None,
) -> Tensor:
    """A view into one storage, checked to lie inside it (``torch._utils._rebuild_tensor_v2``)."""
    if not isinstance(storage, _Storage) or not _is_index(offset):
        raise InputError("malformed tensor record")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
        raise InputError("malformed tensor record")
    if not all(_is_index(n) for n in size + stride):
        raise InputError("malformed tensor record")
    if 0 not in size:
        last = offset + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
        if last >= storage.data.numel():
            raise InputError("a tensor reaches past the end of its storage")
    view = torch.as_strided(storage.data, size, stride, offset)
    return view.as_subclass(_PickledTensor)


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None) -> Tensor:
    """A parameter is kept as its plain tensor (``torch._utils._rebuild_parameter``)."""
    if not isinstance(data, _PickledTensor):
        raise InputError("malformed parameter record")
    return data


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None
) -> Tensor:
    """Like `_rebuild_parameter`; the Python attributes of the parameter are dropped."""
    return _rebuild_parameter(data)


def _reconstructor(cls: Any, base: Any, state: Any = None) -> _Stub:
    """``copyreg._reconstructor`` (protocol 0 and 1 pickles), for stand-in classes only."""
    if not (isinstance(cls, type) and issubclass(cls, _Stub) and base is object):
        raise InputError("the checkpoint reconstructs an object that is not a model class")
    return cls.__new__(cls)


def _is_index(value: Any) -> bool:
    return type(value) is int and value >= 0


_CALLABLES: dict[str, Any] = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
    "collections.OrderedDict": OrderedDict,
    "torch.Size": torch.Size,
    "torch.device": torch.device,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.object": object,
    "copyreg._reconstructor": _reconstructor,
    **{f"torch.{name}": _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
    **{f"torch.{name}": getattr(torch, name) for name in _DTYPE_NAMES},
}


class _StorageReader:
    """Storages from ``<root>/data/<key>`` of the archive, each read once."""

    def __init__(self, archive: zipfile.ZipFile, root: str, byteorder: str) -> None:
        self._archive = archive
        self._root = root
        self._swap = byteorder != sys.byteorder
        self._cache: dict[str, _Storage] = {}

    def load(self, pid: Any) -> _Storage:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and _is_index(pid[4])
        ):
            raise InputError("malformed storage reference")
        _, storage_type, key, _location, numel = pid
        if key not in self._cache:
            self._cache[key] = _Storage(self._read(key, storage_type.dtype, numel))
        return self._cache[key]

    def _read(self, key: str, dtype: torch.dtype, numel: int) -> Tensor:
        name = f"{self._root}/data/{key}"
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise InputError(f"storage {key} is missing from the archive") from None
        itemsize = dtype.itemsize
        if info.file_size != numel * itemsize:
            raise InputError(
                f"storage {key} holds {info.file_size} bytes, expected {numel * itemsize}"
            )
        if numel == 0:
            return torch.empty(0, dtype=dtype)
        values = torch.frombuffer(bytearray(self._archive.read(name)), dtype=dtype)
        if self._swap and itemsize > 1:
            values = values.view(torch.uint8).view(-1, itemsize).flip(1).contiguous()
            values = values.view(dtype).view(-1)
        return values


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals from the allowlist or as stand-ins, and storages from the archive."""

    def __init__(self, data: bytes, storages: _StorageReader) -> None:
        super().__init__(io.BytesIO(data))
        self._storages = storages
        self._stubs: dict[tuple[str, str], type[_Stub]] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 pickles use Python 2 names (``__builtin__``, ``commands`` for subprocess):
        # map them as the standard unpickler would, so the allowlist and messages see the
        # object that would really be loaded.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f"{module}.{name}"
        if qualified in _CALLABLES:
            return _CALLABLES[qualified]
        if _within(module, REFUSED_PREFIXES) and not _within(module, STUB_PREFIXES):
            raise InputError(
                f"refused to load {qualified}: the checkpoint names code that is neither a "
                "tensor nor a class of the published model (a foreign or malicious pickle)"
            )
        key = (module, name)
        if key not in self._stubs:
            attributes = {"__module__": module, "__qualname__": name, "__slots__": ()}
            # The published model's classes may be called like classes; anything else may
            # only be instantiated the way pickle restores objects (without calling it).
            kind = type if _within(module, STUB_PREFIXES) else _UncallableStub
            self._stubs[key] = kind(name.rpartition(".")[2], (_Stub,), attributes)
        return self._stubs[key]

    def persistent_load(self, pid: Any) -> _Storage:
        return self._storages.load(pid)


def _archive_root(archive: zipfile.ZipFile) -> str:
    roots = [n[: -len("/data.pkl")] for n in archive.namelist() if n.endswith("/data.pkl")]
    roots = [root for root in roots if "/" not in root]
    if len(roots) != 1:
        raise InputError("a zip archive, but not one torch checkpoint (no single data.pkl)")
    return roots[0]


def _byteorder(archive: zipfile.ZipFile, root: str) -> str:
    try:
        recorded = archive.read(f"{root}/byteorder").decode("ascii", "replace").strip()
    except KeyError:
        return "little"  # written by torch before byte order was recorded
    if recorded not in ("little", "big"):
        raise InputError(f"unknown byte order {recorded!r}")
    return recorded


def _unpickle(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            root = _archive_root(archive)
            storages = _StorageReader(archive, root, _byteorder(archive, root))
            return _RestrictedUnpickler(archive.read(f"{root}/data.pkl"), storages).load()
    except (InputError, MemoryError):
        raise
    except Exception as error:  # a crafted or damaged pickle can fail in any way
        reason = " ".join(str(error).split()) or type(error).__name__
        raise InputError(f"corrupt checkpoint ({reason})") from None


def _check_format(path: Path) -> None:
    """Refuse what is not a zip torch checkpoint before reading it as one."""
    if not path.is_file():
        raise InputError("not a file" if path.exists() else "no such file")
    with open(path, "rb") as stream:
        head = stream.read(len(_LEGACY_MAGIC))
    if head.startswith(_LEGACY_MAGIC):
        raise InputError(
            "torch's legacy (non-zip) checkpoint format is not supported; re-save it with "
            "torch 1.6 or later, whose torch.save writes zip checkpoints, where the official "
            "code runs and only if you trust the file"
        )
    if not zipfile.is_zipfile(path):
        if head.startswith(b"PK\x03\x04"):
            raise InputError("truncated or corrupt zip archive")
        raise InputError("not a torch checkpoint (a zip archive written by torch.save)")


def _module_tensors(net: Any) -> dict[str, Tensor]:
    """A pickled module's state dict, in ``module.state_dict()`` order (depth first)."""
    tensors: dict[str, Tensor] = {}
    pending = [("", net)]
    budget = _MAX_ITEMS
    while pending:
        prefix, module = pending.pop()
        state = module.state if isinstance(module, _Stub) else None
        if not isinstance(state, dict):
            raise InputError(f"{prefix.rstrip('.') or 'net'} is not a pickled torch module")
        entries = [*_named(state, "_parameters"), *_named(state, "_buffers")]
        children = _named(state, "_modules")
        budget -= 1 + len(entries) + len(children)
        if budget < 0 or len(prefix) > _MAX_NAME:
            raise InputError(
                f"not a published network: over {_MAX_ITEMS} modules and tensors, or names "
                f"over {_MAX_NAME} characters"
            )
        skipped = state.get("_non_persistent_buffers_set") or set()
        for name, tensor in entries:
            if tensor is None or name in skipped:
                continue
            if not isinstance(tensor, Tensor):
                raise InputError(f"{prefix}{name} is not a tensor")
            tensors[prefix + name] = tensor.as_subclass(Tensor)
        pending.extend(
            (f"{prefix}{name}.", child) for name, child in reversed(children) if child is not None
        )
    return tensors


def _named(state: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    entries = state.get(key) or {}
    if not isinstance(entries, Mapping) or len(entries) > _MAX_ITEMS:
        raise InputError(f"malformed module: {key} is not a table of names")
    if not all(isinstance(k, str) and len(k) <= _MAX_NAME for k in entries):
        raise InputError(f"malformed module: {key} is not a table of names")
    return list(entries.items())


def _state_dict(net: Any) -> dict[str, Tensor]:
    """The official state dict of the ``net`` entry: a pickled module or a dict of tensors."""
    if not isinstance(net, Mapping):
        return _module_tensors(net)
    tensors: dict[str, Tensor] = {}
    for name, tensor in net.items():
        if not (isinstance(name, str) and isinstance(tensor, Tensor)):
            raise InputError("the 'net' entry is a dict, but not one of named tensors")
        tensors[name] = tensor.as_subclass(Tensor)
    return tensors


_DROPPED = object()


def _plain_config(config: Any) -> dict[str, Any]:
    """The plain values of ``config_dict`` (strings, numbers, booleans, None, and lists,
    tuples and dicts of them); anything else is dropped.

    A crafted pickle can share one container many times or put it inside itself, which
    would expand without end when printed or written as JSON: the result holds at most
    `_MAX_ITEMS` values and string characters, nested at most `_MAX_DEPTH` deep.
    """
    remaining = _MAX_ITEMS

    def plain(value: Any, depth: int) -> Any:
        nonlocal remaining
        remaining -= 1 + (len(value) if type(value) is str else 0)
        if remaining < 0:
            return _DROPPED
        if value is None or type(value) in (str, int, float, bool):
            return value
        if depth >= _MAX_DEPTH:
            return _DROPPED
        if type(value) in (list, tuple):
            items = (plain(item, depth + 1) for item in value)
            return type(value)(item for item in items if item is not _DROPPED)
        if isinstance(value, Mapping):
            pairs = ((key, plain(item, depth + 1)) for key, item in value.items())
            return {k: v for k, v in pairs if type(k) is str and v is not _DROPPED}
        return _DROPPED

    result = plain(config, 0)
    return result if isinstance(result, dict) else {}


def read_official_checkpoint(path: Path) -> OfficialCheckpoint:
    """The state dict and plain config values of an official checkpoint, read safely.

    Raises `InputError` (one line, naming ``path``) for anything that is not a zip torch
    checkpoint with a ``net`` entry, for a damaged archive, and for any global outside the
    allowlist (the name of the refused global is in the message).
    """
    try:
        _check_format(path)
        content = _unpickle(path)
        if not isinstance(content, Mapping) or "net" not in content:
            raise InputError(
                "no 'net' entry: not an official checkpoint ({'net': module, 'config_dict': ...})"
            )
        tensors = _state_dict(content["net"])
        config = _plain_config(content.get("config_dict"))
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    return OfficialCheckpoint(tensors, config)
