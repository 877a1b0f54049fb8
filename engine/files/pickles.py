"""Read NVIDIA StyleGAN network pickles without running any code they carry.

Two pickle formats exist (FACTS.md §16, §17 of the shared reference):

* stylegan2-ada-pytorch / stylegan3 ``.pkl`` files: a dict ``{'G', 'D', 'G_ema', 'augment_pipe',
  'training_set_kwargs'}`` whose networks are pickled through ``torch_utils.persistence``, each one carrying the
  Python source of its defining module. NVIDIA's own loader executes that source; this module never does. Every
  network becomes an inert :class:`NetworkRecord` holding its flattened state dict and constructor kwargs.
* legacy TensorFlow pickles: a tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects; each becomes a
  :class:`TFNetwork` holding numpy variables (no TensorFlow needed). ``tf_legacy`` converts them.

Unpickling goes through :class:`RestrictedUnpickler`, whose ``find_class`` resolves only an explicit allow-list of
globals (tensor/array rebuilders, plain containers and inert stand-ins for NVIDIA's classes); any other global —
``os.system``, ``builtins.eval``, a class of an unknown module — is refused with a ``ModelFormatError`` before it
can be called. Its work and memory are bounded while it runs: at most ``MAX_PICKLE_OPS`` pickle instructions, at
most ``guard.MAX_MODEL_BYTES`` of bytes, strings and tensor storages, no array it is asked to make beyond the data
the file holds. What it gives is then checked once by ``guard.check_structure`` (a memo can make a 300-byte file
whose naive traversal visits 2^64 paths) before anything here walks it.
"""
from __future__ import annotations

import _compat_pickle
import ast
import collections
import io
import math
import os
import pickle
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from engine.errors import ModelFormatError, describe, unreadable_reason
from engine.files.guard import MAX_ITEMS, MAX_MODEL_BYTES, check_structure, format_bytes

try:
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray
    from numpy.core import numeric as _np_numeric

_ZIP_MAGIC = b"PK\x03\x04"
_MAX_DOCSTRING_SOURCE = 8 << 20
MAX_PICKLE_OPS = 2 * MAX_ITEMS  # instructions of one pickle (a 1024 px FFHQ network pickle has some 100 000)
_MAX_ARRAY_SHELL = 1 << 20  # values of the empty array numpy's pickles start from (they use shape (0,))


@dataclass(frozen=True)
class NetworkRecord:
    """One network (``torch.nn.Module``) of an NVIDIA pickle, reduced to data.

    ``state_dict`` is exactly what ``module.state_dict()`` would give; ``submodule_classes`` maps every dotted
    submodule path (``''`` for the network itself) to its class name; ``module_name_hint`` is the first line of
    the docstring of the embedded (never executed) module source, or ``''``.
    """

    class_name: str
    module_name_hint: str
    state_dict: dict[str, torch.Tensor]
    init_kwargs: dict
    init_args: tuple
    submodule_classes: dict[str, str]


@dataclass(frozen=True)
class TFNetwork:
    """One ``dnnlib.tflib.network.Network`` of a legacy TensorFlow pickle, reduced to data.

    ``variables`` maps the variable names relative to this network (``'Dense0/weight'``) to numpy arrays;
    ``components`` holds the sub-networks (a generator's ``'mapping'`` and ``'synthesis'``).
    """

    name: str
    build_func_name: str
    static_kwargs: dict
    components: dict[str, TFNetwork]
    variables: dict[str, np.ndarray]
    version: int


class TFPickle(NamedTuple):
    """The three networks of a legacy TensorFlow pickle, in file order."""

    G: TFNetwork
    D: TFNetwork
    Gs: TFNetwork


class EasyDict(dict):
    """Inert stand-in for ``dnnlib.EasyDict`` (a dict with attribute access in NVIDIA's code; here just a dict)."""


class _Refusal(Exception):
    """Raised inside the unpickler; turned into a ``ModelFormatError`` that names the file."""


class _PersistentObject:
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` yields here: the metadata, nothing run."""

    __slots__ = ("class_name", "state", "module_src", "version")

    def __init__(self, class_name: str, state: dict, module_src: str, version):
        self.class_name = class_name
        self.state = state
        self.module_src = module_src
        self.version = version


class _TFNetworkStub:
    """Inert stand-in for ``dnnlib.tflib.network.Network``: pickle's BUILD step stores the state dict."""

    def __init__(self):
        self.state = None

    def __setstate__(self, state):
        self.state = state


def _reconstruct_persistent_obj(meta):
    """Stand-in for NVIDIA's reconstruct function: keeps class name and state, ignores (never runs) the source."""
    if not isinstance(meta, dict):
        raise _Refusal(f"a persistent network object has {describe(meta)} as metadata, not a dictionary")
    if meta.get("type") != "class":
        raise _Refusal(f"a persistent object of type {meta.get('type')!r} (only 'class' objects are known)")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise _Refusal("a persistent network object without a class name or state dict")
    src = meta.get("module_src")
    return _PersistentObject(class_name, state, src if isinstance(src, str) else "", meta.get("version"))


def _load_storage_from_bytes(blob):
    """Stand-in for ``torch.storage._load_from_bytes``: the blob is a legacy ``torch.save``, read weights-only."""
    if not isinstance(blob, (bytes, bytearray)):
        raise _Refusal(f"a tensor storage is serialised as {describe(blob)}, not raw bytes")
    try:
        storage = torch.load(io.BytesIO(bytes(blob)), map_location="cpu", weights_only=True)
    except Exception as e:
        raise _Refusal(f"a tensor storage inside the pickle cannot be read safely ({unreadable_reason(e)})") from None
    if not isinstance(storage, torch.storage.TypedStorage):
        raise _Refusal(f"a tensor storage decodes to {describe(storage)}, not a storage")
    size = storage._untyped_storage.nbytes()
    if size > len(blob):
        raise _Refusal(f"a tensor storage claims {format_bytes(size)} but holds {format_bytes(len(blob))}")
    return storage


class _ArrayClass:
    """What the pickle's ``numpy.ndarray`` global resolves to: usable only as the class numpy's ``_reconstruct``
    starts an array from, never called itself (``ndarray(shape)`` would allocate whatever a file asks)."""

    def __init__(self, *args, **kwargs):
        raise _Refusal("the pickle creates a numpy array directly instead of from its data")


def _reconstruct_array(cls, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` for ``numpy.ndarray`` only, and only the small empty array numpy's
    pickles start from (the data then comes from the file, through ``__setstate__``, which checks its size)."""
    if cls is not _ArrayClass and cls is not np.ndarray:
        raise _Refusal(f"the pickle rebuilds an array of class {getattr(cls, '__name__', 'unknown')}")
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(d, int) and 0 <= d for d in dims) or math.prod(dims) > _MAX_ARRAY_SHELL:
        raise _Refusal(f"the pickle starts an array of shape {dims} without its data")
    return _np_multiarray._reconstruct(np.ndarray, dims, dtype)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    """``torch._utils._rebuild_tensor_v2`` without its side channels: hooks and metadata are dropped."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise _Refusal(f"a tensor is built from {describe(storage)}, not a tensor storage")
    tensor = torch.empty((0,), dtype=storage.dtype)
    return tensor.set_(storage._untyped_storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """``torch._utils._rebuild_parameter[_with_state]`` reduced to the plain data tensor."""
    if not isinstance(data, torch.Tensor):
        raise _Refusal(f"a parameter wraps {describe(data)}, not a tensor")
    return data


def _codecs_encode(text, encoding="utf-8"):
    """``_codecs.encode`` as protocol 2 uses it for ``bytes`` objects: latin-1 only."""
    if not isinstance(text, str) or str(encoding).replace("-", "").lower() != "latin1":
        raise _Refusal(f"_codecs.encode is called with encoding {encoding!r} (pickles only use 'latin1')")
    return text.encode("latin1")


_TORCH_DTYPES = ("float16", "bfloat16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64", "bool")

_ALLOWED: dict[tuple[str, str], object] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("dnnlib.tflib.network", "Network"): _TFNetworkStub,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): _ArrayClass,
    **{(mod, "scalar"): _np_multiarray.scalar for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_reconstruct"): _reconstruct_array for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_frombuffer"): _np_numeric._frombuffer for mod in ("numpy.core.numeric", "numpy._core.numeric")},
    **{("torch", name): getattr(torch, name) for name in _TORCH_DTYPES},
}


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Undo the Python 2 spelling that pickle protocols 0-2 write (``fix_imports``): ``__builtin__.set`` etc."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _counted(op):
    def run(unpickler):
        unpickler.ops += 1
        if unpickler.ops > MAX_PICKLE_OPS:
            raise _Refusal(f"the pickle runs more than {MAX_PICKLE_OPS:,} instructions, far more than a model file "
                           "needs (it may be built to exhaust the memory)")
        op(unpickler)
    return run


def _load_bytearray8(unpickler) -> None:
    """BYTEARRAY8 reading its data before making the array (Python's own makes ``bytearray(length)`` first: an
    11-byte pickle could ask for exabytes of zeroes)."""
    length, = struct.unpack("<Q", unpickler.read(8))
    unpickler.append(bytearray(unpickler.read(length)))


_COUNTED = {code: _counted(op) for code, op in pickle._Unpickler.dispatch.items()}
_COUNTED[pickle.BYTEARRAY8[0]] = _counted(_load_bytearray8)


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only the globals NVIDIA's network pickles need (see ``_ALLOWED``), within bounds:
    at most ``MAX_PICKLE_OPS`` instructions and ``MAX_MODEL_BYTES`` read from the stream, and no read past what the
    stream holds (a length field of a petabyte is refused before anything is allocated). Python's own unpickler
    (as ``torch.load(weights_only=True)`` uses), so every instruction can be counted."""

    dispatch = _COUNTED

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self.ops = 0
        self._budget = MAX_MODEL_BYTES  # bytes it may still read
        self._in_file = None  # bytes the stream still holds, when it can tell
        if getattr(file, "seekable", lambda: False)():
            here = file.tell()
            self._in_file = file.seek(0, os.SEEK_END) - here
            file.seek(here)
        read = self._file_read

        def bounded_read(n: int) -> bytes:
            if self._in_file is not None and n > self._in_file:
                raise EOFError("truncated")
            if n > self._budget:
                raise _Refusal(f"the pickle asks for more than {format_bytes(MAX_MODEL_BYTES)} of data, the most "
                               "a model may take in the editor")
            data = read(n)
            self._budget -= len(data)
            if self._in_file is not None:
                self._in_file -= len(data)
            return data

        self._file_read = bounded_read

    def find_class(self, module: str, name: str):
        module, name = _python3_name(module, name)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refusal(f"the pickle asks for the global '{module}.{name}', which no model file needs") from None

    def persistent_load(self, pid):
        raise _Refusal(f"the pickle refers to an external object (persistent id {str(pid)[:60]!r}); "
                       "model pickles are self-contained")


def _unpickle(source) -> tuple[object, str]:
    """Unpickle ``source`` (path, bytes or binary file) through the restricted unpickler; returns (object, label)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _unpickle_stream(io.BytesIO(bytes(source)), "the pickle data"), "the pickle data"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        with open(path, "rb") as f:
            return _unpickle_stream(f, path.name), path.name
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        label = Path(name).name if isinstance(name, (str, os.PathLike)) else "the pickle stream"
        return _unpickle_stream(source, label), label
    raise TypeError(f"cannot read a pickle from {describe(source)}: pass a path, bytes or a binary file")


def _unpickle_stream(f, label: str):
    if getattr(f, "seekable", lambda: False)():
        start = f.tell()
        head = f.read(4)
        f.seek(start)
        if not head:
            raise ModelFormatError(f"{label} is empty")
        if head.startswith(_ZIP_MAGIC):
            raise ModelFormatError(f"{label} is a ZIP archive (a torch.save checkpoint), not a network pickle")
    try:
        obj = RestrictedUnpickler(f).load()
    except _Refusal as e:
        raise ModelFormatError(f"refusing to load {label}: {e}") from None
    except MemoryError:
        raise ModelFormatError(f"{label} cannot be read: it asks for more memory than there is") from None
    except Exception as e:
        raise ModelFormatError(f"{label} cannot be read: {unreadable_reason(e)}") from None
    check_structure(obj, what=label)
    return obj


def _docstring_line(src: str, cache: dict[str, str]) -> str:
    """First docstring line of a module source, read by parsing only (the source is never executed)."""
    if not src or len(src) > _MAX_DOCSTRING_SOURCE:
        return ""
    if src not in cache:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                doc = ast.get_docstring(ast.parse(src)) or ""
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            doc = ""
        cache[src] = doc.strip().splitlines()[0] if doc.strip() else ""
    return cache[src]


def _plain(value, doc_cache: dict[str, str]):
    """Convert unpickled containers to plain Python ones (EasyDict -> dict, tuple -> list, numpy scalar -> item)."""
    if isinstance(value, _PersistentObject):
        return _network_record(value, doc_cache)
    if isinstance(value, dict):
        return {k: _plain(v, doc_cache) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, doc_cache) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _flatten(obj: _PersistentObject, prefix: str, out: dict, classes: dict, *, path: str) -> None:
    state = obj.state
    classes[path] = obj.class_name
    non_persistent = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        entries = state.get(group) or {}
        if not isinstance(entries, dict):
            raise _Refusal(f"{group} of network {path or obj.class_name!r} is {describe(entries)}")
        for name, tensor in entries.items():
            if tensor is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise _Refusal(f"network entry {prefix + name!r} is {describe(tensor)}, not a tensor")
            out[prefix + name] = tensor
    modules = state.get("_modules") or {}
    if not isinstance(modules, dict):
        raise _Refusal(f"_modules of network {path or obj.class_name!r} is {describe(modules)}")
    for name, sub in modules.items():
        if sub is None:
            continue
        if not isinstance(sub, _PersistentObject):
            raise _Refusal(f"submodule {prefix + name!r} of {obj.class_name} is {describe(sub)}, "
                           "not a network object")
        _flatten(sub, f"{prefix}{name}.", out, classes, path=f"{prefix}{name}")


def _network_record(obj: _PersistentObject, doc_cache: dict[str, str]) -> NetworkRecord:
    state_dict: dict[str, torch.Tensor] = {}
    classes: dict[str, str] = {}
    _flatten(obj, "", state_dict, classes, path="")
    kwargs = obj.state.get("_init_kwargs") or {}
    args = obj.state.get("_init_args") or ()
    if not isinstance(kwargs, dict) or not isinstance(args, (tuple, list)):
        raise _Refusal(f"network {obj.class_name} has constructor arguments {describe(args)} and "
                       f"{describe(kwargs)} instead of a tuple and a dictionary")
    return NetworkRecord(
        class_name=obj.class_name,
        module_name_hint=_docstring_line(obj.module_src, doc_cache),
        state_dict=state_dict,
        init_kwargs=_plain(kwargs, doc_cache),
        init_args=tuple(_plain(list(args), doc_cache)),
        submodule_classes=classes,
    )


def _is_nvlabs(obj) -> bool:
    return isinstance(obj, dict) and any(isinstance(v, _PersistentObject) for v in obj.values())


def _is_tf(obj) -> bool:
    return isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, _TFNetworkStub) for n in obj)


def _describe(obj) -> str:
    if obj is None:
        return "None"
    if isinstance(obj, _PersistentObject):
        return f"a single network object of class {obj.class_name!r} instead of a dict of networks"
    return describe(obj)


def _neither(label: str, obj) -> ModelFormatError:
    return ModelFormatError(f"{label} is a Python pickle that is neither an NVIDIA StyleGAN network pickle nor a "
                            f"legacy TensorFlow StyleGAN pickle: top-level object is {_describe(obj)}")


def _nvlabs_content(obj: dict) -> dict[str, NetworkRecord | object]:
    doc_cache: dict[str, str] = {}
    return {key: _plain(value, doc_cache) for key, value in obj.items()}


def _tf_record(stub: _TFNetworkStub, *, where: str) -> TFNetwork:
    state = stub.state
    if not isinstance(state, dict):
        raise _Refusal(f"TensorFlow network {where} has no state dict (found {describe(state)})")
    name, version = state.get("name", ""), state.get("version", 0)
    variables = state.get("variables", [])
    components = state.get("components") or {}
    if not isinstance(variables, (list, tuple)) or not all(
            isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], str) for v in variables):
        raise _Refusal(f"TensorFlow network {name or where!r} has 'variables' that are not a list of (name, array)")
    if not isinstance(components, dict) or not all(isinstance(c, _TFNetworkStub) for c in components.values()):
        raise _Refusal(f"TensorFlow network {name or where!r} has 'components' that are not a dict of networks")
    arrays: dict[str, np.ndarray] = {}
    for var_name, value in variables:
        if not isinstance(value, (np.ndarray, np.generic)):
            raise _Refusal(f"TensorFlow variable {var_name!r} of {name or where!r} is {describe(value)}, "
                           "not a numpy array")
        arrays[var_name] = np.asarray(value)
    return TFNetwork(
        name=str(name),
        build_func_name=str(state.get("build_func_name", "")),
        static_kwargs=_plain(state.get("static_kwargs") or {}, {}),
        components={str(k): _tf_record(c, where=f"{where}/{k}") for k, c in components.items()},
        variables=arrays,
        version=version if isinstance(version, int) else 0,
    )


def _tf_content(obj: tuple) -> TFPickle:
    return TFPickle(*(_tf_record(stub, where=role) for stub, role in zip(obj, TFPickle._fields)))


def _convert(convert, obj, label: str):
    try:
        return convert(obj)
    except _Refusal as e:
        raise ModelFormatError(f"cannot read {label}: {e}") from None
    except RecursionError:
        raise ModelFormatError(f"cannot read {label}: its networks nest too deeply or refer to themselves") from None


# kind -> (is it, its content, what it is in words, the reader for it alone)
_KINDS = {"nvlabs-pickle": (_is_nvlabs, _nvlabs_content, "an NVIDIA PyTorch network pickle", "read_nvlabs_pickle"),
          "tf-pickle": (_is_tf, _tf_content, "a legacy TensorFlow StyleGAN pickle", "read_tf_pickle")}


def read_pickle(source, *, kind: str | None = None) -> tuple[str, dict[str, NetworkRecord | object] | TFPickle]:
    """Read either kind of NVIDIA pickle (path, bytes or binary file) without executing it; returns
    ``('nvlabs-pickle', dict)`` or ``('tf-pickle', TFPickle)``. With ``kind``, the other kind is refused."""
    obj, label = _unpickle(source)
    found = next((k for k, (test, *_) in _KINDS.items() if test(obj)), None)
    if found is None:
        raise _neither(label, obj)
    _, content, words, reader = _KINDS[found]
    if kind is not None and found != kind:
        raise ModelFormatError(f"{label} is {words}, not {_KINDS[kind][2]} (read it with {reader})")
    return found, _convert(content, obj, label)


def read_nvlabs_pickle(source) -> dict[str, NetworkRecord | object]:
    """Read a stylegan2-ada-pytorch / stylegan3 ``.pkl`` (path, bytes or binary file) without executing it.

    Returns the pickled dict with every network (``'G'``, ``'D'``, ``'G_ema'``, ``'augment_pipe'``) as a
    :class:`NetworkRecord` and the other entries as plain Python values.
    """
    return read_pickle(source, kind="nvlabs-pickle")[1]


def read_tf_pickle(source) -> TFPickle:
    """Read a legacy TensorFlow StyleGAN pickle ``(G, D, Gs)`` (path, bytes or binary file); no TensorFlow needed."""
    return read_pickle(source, kind="tf-pickle")[1]


__all__ = ["NetworkRecord", "TFNetwork", "TFPickle", "EasyDict", "RestrictedUnpickler", "read_pickle",
           "read_nvlabs_pickle", "read_tf_pickle"]
