"""omnipickle: serialize anything a Python program holds.

``import omnipickle`` in place of ``import pickle``: the same functions and names, plus code by
value, the types only dill knows, recreated locks, compression, checksums and signatures.

Importing this package imports neither cloudpickle, dill nor any compression package, and
changes no global state of :mod:`pickle` or :mod:`copyreg`.
"""

from __future__ import annotations

# pickle's other public names, so that `import omnipickle as pickle` keeps working.
from pickle import PickleBuffer, PickleError

from .api import (
    DEFAULT_PROTOCOL,
    HIGHEST_PROTOCOL,
    Info,
    dump,
    dumps,
    info,
    load,
    loads,
)
from .backends import Backend, backends, register_backend, unregister_backend
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
from .explain import Explanation, explain
from .picklers import Pickler, Unpickler
from .resources import (
    ResourceAwareMixin,
    ResourceRebuildError,
    TransientMixin,
    register_resource,
    transient,
    unregister_resource,
)
from .security import ScanReport, scan
from .serializer import Serializer
from .session import SessionReport, dump_session, load_session


def __getattr__(name: str) -> str:
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
    "DroppedResourceWarning",
    "Explanation",
    "IncompatiblePayloadError",
    "Info",
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
]
