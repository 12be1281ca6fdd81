"""Reading ``torch.save`` files from elsewhere without running code pickled in them.

A pickle names globals and calls them. ``torch.load(..., weights_only=True)`` refuses any global
outside its allowlist, which rejects checkpoints that pickle a training-config object (the seed
repo's ``*.pth.tar`` pickle a yacs ``CfgNode``). This module is a ``pickle_module`` for
``torch.load`` whose ``Unpickler`` resolves a global only when it is torch's own tensor machinery
(``torch._weights_only_unpickler``'s allowlist plus ``torch.serialization.add_safe_globals``) or a
numpy scalar/array; any other global becomes a stand-in class that

- may be *instantiated without arguments* (pickle's NEWOBJ: how objects of unknown classes are
  rebuilt), giving a ``dict`` that receives the object's items and attributes as data, but
- refuses to be *called* (pickle's REDUCE: how a payload such as ``os.system("...")`` runs):
  loading stops with :class:`UnsafePickleError` before anything from the file is executed.

Both the zip format (torch >= 1.6) and the legacy format go through ``torch.load``'s own storage
handling; only the resolution of globals changes.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The file asks to call something that is not tensor or container machinery."""


_NUMPY = {
    ("numpy", "dtype"): "dtype",
    ("numpy", "ndarray"): "ndarray",
    ("numpy.core.multiarray", "scalar"): "scalar",
    ("numpy._core.multiarray", "scalar"): "scalar",
    ("numpy.core.multiarray", "_reconstruct"): "_reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "_reconstruct",
}


def _numpy_global(module: str, name: str) -> Any:
    import numpy

    attr = _NUMPY[(module, name)]
    return getattr(numpy, attr, None) or getattr(numpy._core.multiarray, attr)


def _allowed_globals() -> dict[str, Any]:
    from torch import _weights_only_unpickler as wo

    allowed = dict(wo._get_allowed_globals())
    allowed.update(wo._get_user_allowed_globals())
    return allowed


class _RefuseCalls(type):
    """Metaclass of the stand-ins: ``cls(*args)`` (pickle REDUCE / INST with arguments) refuses,
    ``cls.__new__(cls)`` (pickle NEWOBJ, how plain objects are rebuilt) still works."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        shown = ", ".join(repr(arg)[:60] for arg in args)
        raise UnsafePickleError(
            f"the pickle calls {cls.pickled_class}({shown}); only tensors, numbers, strings, "
            "containers and plain data objects are loaded, so nothing from the file was run"
        )


class PickledObject(dict, metaclass=_RefuseCalls):
    """An object of a class this process does not load: its dict items and attributes as data."""

    pickled_class: ClassVar[str] = "?"

    def __setstate__(self, state: Any) -> None:
        self.__dict__["pickled_state"] = state


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` never imports or returns arbitrary code."""

    _allowed: ClassVar[dict[str, Any] | None] = None

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles name Python 2 modules (``__builtin__.set``); map them as pickle does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if Unpickler._allowed is None:
            Unpickler._allowed = _allowed_globals()
        found = Unpickler._allowed.get(f"{module}.{name}")
        if found is not None:
            return found
        if (module, name) in _NUMPY:
            return _numpy_global(module, name)
        stand_in = _RefuseCalls(name, (PickledObject,), {"pickled_class": f"{module}.{name}"})
        stand_in.__module__ = __name__
        return stand_in


def load(file: Any, **kwargs: Any) -> Any:
    """``pickle.load`` with the restricted :class:`Unpickler` (used by torch's legacy format)."""
    return Unpickler(file, **kwargs).load()


def to_plain(obj: Any) -> Any:
    """``obj`` with every :class:`PickledObject` turned into a plain ``dict`` (its items, then its
    public attributes), recursively through dicts, lists and tuples."""
    if isinstance(obj, PickledObject):
        plain = {key: to_plain(value) for key, value in obj.items()}
        state = obj.__dict__.get("pickled_state")
        parts = state if isinstance(state, tuple) else (state,)
        for part in parts:
            if isinstance(part, dict):
                for key, value in part.items():
                    if isinstance(key, str) and not key.startswith("_"):
                        plain.setdefault(key, to_plain(value))
        return plain
    if isinstance(obj, dict):
        return type(obj)((key, to_plain(value)) for key, value in obj.items())
    if isinstance(obj, list):
        return [to_plain(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(item) for item in obj)
    return obj


def load_untrusted(path: str | Path) -> Any:
    """Load a ``torch.save`` file on the CPU without executing pickled code.

    Unknown classes come back as plain dicts; a pickled call of anything but tensor/container
    machinery raises :class:`UnsafePickleError` naming the file. TorchScript archives (which
    ``torch.load`` would hand to ``torch.jit.load``) are refused too.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(member.endswith("constants.pkl") for member in archive.namelist()):
                raise UnsafePickleError(f"{path}: a TorchScript archive, not a checkpoint")
    try:
        obj = torch.load(
            path, map_location="cpu", pickle_module=sys.modules[__name__], weights_only=False
        )
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: refused: {err}") from None
    return to_plain(obj)
