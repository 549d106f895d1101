"""omnipickle: serialize anything a Python program holds.

``import omnipickle`` in place of ``import pickle``: the same functions and names, plus code by
value, the types only dill knows, recreated locks, compression, checksums and signatures.

Importing this package imports neither cloudpickle, dill nor any compression package, and
changes no global state of :mod:`pickle` or :mod:`copyreg`.
"""

from __future__ import annotations

# pickle's other public names, so that `import omnipickle as pickle` keeps working.
from pickle import PickleBuffer, PickleError
from typing import TYPE_CHECKING, Any

from .api import (
    DEFAULT_PROTOCOL,
    HIGHEST_PROTOCOL,
    dump,
    dumps,
    info,
    load,
    loads,
)
from .backends import backends, register_backend, unregister_backend
from .backends.base import Backend
from .codecs import Codec, codecs, register_codec, unregister_codec
from .errors import (
    BackendNotInstalledError,
    BudgetExceededError,
    CodecNotInstalledError,
    CorruptPayloadError,
    DroppedResourceWarning,
    IncompatiblePayloadError,
    OmnipickleError,
    PicklingAttributeError,
    PicklingError,
    PicklingRecursionError,
    PicklingTypeError,
    SignatureError,
    TruncatedPayloadError,
    UnknownBackendError,
    UnknownCodecError,
    UnpicklingError,
    UnsafePayloadError,
)

if TYPE_CHECKING:  # what __getattr__ below imports on first use, for type checkers
    from .backends.canonical import DeterminismError
    from .explain import Explanation, explain
    from .format.describe import Info
    from .hashing import digest
    from .picklers import Pickler, Unpickler
    from .resources.builtin import ResourceReopenError
    from .resources.mixins import (
        ResourceAwareMixin,
        ResourceRebuildError,
        TransientMixin,
        transient,
    )
    from .resources.rules import register_resource, unregister_resource
    from .security import ScanReport, scan
    from .serializer import Serializer
    from .session import NotASessionError, SessionReport, dump_session, load_session

# Names whose modules the default dumps/loads never need: imported on first use, so that
# ``import omnipickle`` stays as cheap as the functions most programs call (``Pickler`` brings
# in the auto backend and the diagnostics, the resource names the built-in resource rules).
_LAZY = {
    "Pickler": "picklers",
    "Unpickler": "picklers",
    "Serializer": "serializer",
    "ResourceAwareMixin": "resources",
    "ResourceRebuildError": "resources",
    "ResourceReopenError": "resources",
    "TransientMixin": "resources",
    "register_resource": "resources",
    "transient": "resources",
    "unregister_resource": "resources",
    "Info": "format.describe",
    "Explanation": "explain",
    "explain": "explain",
    "ScanReport": "security",
    "scan": "security",
    "NotASessionError": "session",
    "SessionReport": "session",
    "dump_session": "session",
    "load_session": "session",
    "digest": "hashing",
    "DeterminismError": "backends.canonical",
}

if TYPE_CHECKING:  # imported on first use, by __getattr__ below
    from . import futures as futures
    from .wrapping import wrap


def __getattr__(name: str) -> Any:
    # The integrations are imported on first use: omnipickle.futures brings in
    # multiprocessing and concurrent.futures, which most programs never need.
    if name == "wrap":
        from .wrapping import wrap

        globals()["wrap"] = wrap
        return wrap
    if name == "futures":
        # Not ``from . import futures``: that looks the name up here first, calling this again.
        from importlib import import_module

        return import_module(f"{__name__}.futures")
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    # ``__version__`` is read from the installed package's metadata on first use: importing
    # importlib.metadata costs more than the rest of omnipickle's own import.
    if name != "__version__":
        raise AttributeError(f"module 'omnipickle' has no attribute {name!r}")
    from importlib import metadata

    try:
        version = metadata.version("omnipickle")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        version = "0+unknown"
    globals()["__version__"] = version
    return version


__all__ = [
    "DEFAULT_PROTOCOL",
    "HIGHEST_PROTOCOL",
    "Backend",
    "BackendNotInstalledError",
    "BudgetExceededError",
    "Codec",
    "CodecNotInstalledError",
    "CorruptPayloadError",
    "DeterminismError",
    "DroppedResourceWarning",
    "Explanation",
    "IncompatiblePayloadError",
    "Info",
    "NotASessionError",
    "OmnipickleError",
    "PickleBuffer",
    "PickleError",
    "Pickler",
    "PicklingAttributeError",
    "PicklingError",
    "PicklingRecursionError",
    "PicklingTypeError",
    "ResourceAwareMixin",
    "ResourceRebuildError",
    "ResourceReopenError",
    "ScanReport",
    "Serializer",
    "SessionReport",
    "SignatureError",
    "TransientMixin",
    "TruncatedPayloadError",
    "UnknownBackendError",
    "UnknownCodecError",
    "Unpickler",
    "UnpicklingError",
    "UnsafePayloadError",
    "backends",
    "codecs",
    "digest",
    "dump",
    "dump_session",
    "dumps",
    "explain",
    "info",
    "load",
    "load_session",
    "loads",
    "register_backend",
    "register_codec",
    "register_resource",
    "scan",
    "transient",
    "unregister_backend",
    "unregister_codec",
    "unregister_resource",
    "wrap",
]
