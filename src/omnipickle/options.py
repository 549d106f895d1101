"""The options of the public functions, validated once into typed objects.

``dumps``/``dump`` and ``loads``/``load`` take many keyword options; each call turns them into one
:class:`DumpOptions` or :class:`LoadOptions` here, so that every check (and every message about a
bad option) lives in one place and the layers below receive resolved objects (a codec, a backend,
checked keys) instead of loose values.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from ._registry import Record
from .backends import REGISTRY as BACKENDS
from .codecs import REGISTRY as CODECS
from .codecs import Codec
from .format.signing import Keys, check_keys, signing_key

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = [
    "DEFAULT_PROTOCOL",
    "HIGHEST_PROTOCOL",
    "DumpOptions",
    "LoadOptions",
    "OnUnpicklable",
    "dump_options",
    "load_options",
    "resolve_codec",
]

HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL
# Protocol 5 (Python 3.8+) has out-of-band buffers and the most compact framing; every Python
# omnipickle supports reads it.
DEFAULT_PROTOCOL = pickle.HIGHEST_PROTOCOL

OnUnpicklable = Literal["raise", "drop"]
_ON_UNPICKLABLE = ("raise", "drop")
BufferCallback = Callable[[pickle.PickleBuffer], Any] | None
# Spelled out by callers who mean "no compression" where None would mean "infer" (dump to a
# path infers the codec from the suffix).
NO_COMPRESSION = "none"


class DumpOptions(Record):
    """Validated options of :func:`omnipickle.dumps` and :func:`omnipickle.dump`.

    ``deterministic=True``: equal objects give equal bytes (backends/deterministic.py).
    """

    __slots__ = (  # noqa: RUF023 - the fields, in order
        "protocol",
        "fix_imports",
        "buffer_callback",
        "backend",
        "codec",
        "level",
        "key",
        "drop",
        "raw",
        "deterministic",
        "strip_source_info",
    )
    protocol: int
    fix_imports: bool
    buffer_callback: BufferCallback
    backend: Backend
    codec: Codec | None
    level: int | None
    key: bytes | None
    drop: bool
    raw: bool
    deterministic: bool
    strip_source_info: bool

    def __init__(
        self,
        protocol: int,
        fix_imports: bool,
        buffer_callback: BufferCallback,
        backend: Backend,
        codec: Codec | None,
        level: int | None,
        key: bytes | None,
        drop: bool,
        raw: bool,
        deterministic: bool = False,
        strip_source_info: bool = False,
    ) -> None:
        # One call per field, not Record._set's loop: made on every dump off the fast path.
        set_field = object.__setattr__
        set_field(self, "protocol", protocol)
        set_field(self, "fix_imports", fix_imports)
        set_field(self, "buffer_callback", buffer_callback)
        set_field(self, "backend", backend)
        set_field(self, "codec", codec)
        set_field(self, "level", level)
        set_field(self, "key", key)
        set_field(self, "drop", drop)
        set_field(self, "raw", raw)
        set_field(self, "deterministic", deterministic)
        set_field(self, "strip_source_info", strip_source_info)


class LoadOptions(Record):
    """Validated options of :func:`omnipickle.loads` and :func:`omnipickle.load`."""

    __slots__ = (  # noqa: RUF023 - the fields, in order
        "fix_imports",
        "encoding",
        "errors",
        "buffers",
        "keys",
        "resources",
        "restricted",
        "allow",
    )
    fix_imports: bool
    encoding: str
    errors: str
    buffers: Any
    keys: Keys | None
    resources: Mapping[Any, Any] | None
    restricted: bool
    allow: tuple[str, ...] | None

    def __init__(
        self,
        fix_imports: bool,
        encoding: str,
        errors: str,
        buffers: Any,
        keys: Keys | None,
        resources: Mapping[Any, Any] | None,
        restricted: bool,
        allow: tuple[str, ...] | None,
    ) -> None:
        self._set(fix_imports, encoding, errors, buffers, keys, resources, restricted, allow)


def check_protocol(protocol: Any) -> int:
    """``protocol`` as pickle reads it: ``None`` the default, negative the highest."""
    if protocol is None:
        return DEFAULT_PROTOCOL
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise TypeError(f"protocol must be an int or None, not {type(protocol).__name__}")
    if protocol < 0:
        return HIGHEST_PROTOCOL
    if protocol > HIGHEST_PROTOCOL:
        raise ValueError(f"pickle protocol must be <= {HIGHEST_PROTOCOL}, got {protocol}")
    return protocol


def resolve_codec(compression: Any) -> Codec | None:
    """The codec ``compression`` names (``None`` and ``"none"``: no compression)."""
    if compression is None or compression == NO_COMPRESSION:
        return None
    if isinstance(compression, Codec):
        return compression
    if not isinstance(compression, str):
        raise TypeError(
            f"compression must be a codec name or None, not {type(compression).__name__}"
        )
    return CODECS.get(compression)


def dump_options(
    protocol: Any,
    *,
    fix_imports: bool,
    buffer_callback: BufferCallback,
    backend: str,
    compression: str | Codec | None,
    level: int | None,
    key: Any,
    on_unpicklable: str,
    raw: bool,
    deterministic: bool = False,
    strip_source_info: bool = False,
) -> DumpOptions:
    """Check the options of a dump.

    Raises:
        TypeError, ValueError: an option is of the wrong type or out of range.
        UnknownBackendError, UnknownCodecError: no backend or codec has that name.
        BackendNotInstalledError, CodecNotInstalledError: its package is missing.
    """
    proto = check_protocol(protocol)
    if on_unpicklable not in _ON_UNPICKLABLE:
        raise ValueError(
            f"on_unpicklable must be one of {', '.join(map(repr, _ON_UNPICKLABLE))}, "
            f"got {on_unpicklable!r}"
        )
    if buffer_callback is not None and not callable(buffer_callback):
        raise TypeError("buffer_callback must be callable or None")
    if buffer_callback is not None and proto < 5:
        raise ValueError("buffer_callback needs protocol 5 or higher")
    codec = resolve_codec(compression)
    signing = signing_key(check_keys(key))
    if raw and (codec is not None or signing is not None):
        raise ValueError("raw=True writes a plain pickle stream: it cannot be compressed or signed")
    if codec is not None:
        level = codec.check_level(level)
    elif level is not None:
        raise ValueError("level is only meaningful with compression")
    impl = BACKENDS.get(backend)
    drop = on_unpicklable == "drop"
    if drop and not impl.supports_drop:
        raise ValueError(
            f'on_unpicklable="drop" needs the auto backend; the {impl.name!r} backend '
            "cannot leave objects out"
        )
    _check_deterministic(deterministic, strip_source_info, impl, drop)
    return DumpOptions(
        proto,
        fix_imports,
        buffer_callback,
        impl,
        codec,
        level,
        signing,
        drop,
        raw,
        deterministic,
        strip_source_info,
    )


def _check_deterministic(
    deterministic: Any, strip_source_info: Any, backend: Backend, drop: bool
) -> None:
    for name, value in (("deterministic", deterministic), ("strip_source_info", strip_source_info)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, not {value!r}")
    if strip_source_info and not deterministic:
        raise ValueError("strip_source_info=True only applies with deterministic=True")
    if not deterministic:
        return
    if backend.name != "auto":
        raise ValueError(
            f"deterministic=True needs the auto backend, not {backend.name!r}: only auto "
            "writes sets in a canonical order and classes with content identities"
        )
    if drop:
        raise ValueError(
            'deterministic=True cannot be combined with on_unpicklable="drop"; mark live '
            "resources transient (omnipickle.TransientMixin) instead"
        )


def check_allow(restricted: Any, allow: Any) -> tuple[bool, tuple[str, ...] | None]:
    """``restricted`` and ``allow`` as a load keeps them (``allow`` a tuple, or ``None``), once
    checked: the errors :func:`omnipickle.loads` documents for them."""
    if not isinstance(restricted, bool):
        raise TypeError(f"restricted must be True or False, not {restricted!r}")
    if allow is None:
        return restricted, None
    if not restricted:
        raise ValueError("allow= only applies to restricted loading: pass restricted=True too")
    policy = _policy()
    allow = (allow,) if isinstance(allow, str) else policy.read_allow(allow)
    # A typo in an allow-list (or one that is not an iterable of names) raises here, before
    # anything is read. Each allow-list is parsed once and remembered (Policy's cache, where
    # the load itself then finds it).
    policy.Policy(allow)
    return restricted, allow


@functools.cache
def _policy() -> ModuleType:
    """:mod:`omnipickle.security.policy`, imported on first use: only restricted loads need it,
    and an import in the function that uses it costs ~2.5 us every call."""
    from .security import policy

    return policy


def _check_resources(resources: Any) -> Mapping[Any, Any] | None:
    if resources is None:
        return None
    if not isinstance(resources, Mapping):
        raise TypeError(
            f"resources must be a mapping of paths or types to objects, "
            f"not {type(resources).__name__}"
        )
    for key in resources:
        if not isinstance(key, (str, type)):
            raise TypeError(
                f"resources keys must be paths (str, e.g. 'root.client._sock') or types, "
                f"not {type(key).__name__} {key!r}"
            )
    return resources


def load_options(
    *,
    fix_imports: bool,
    encoding: str,
    errors: str,
    buffers: Iterable[Any] | None,
    key: Any,
    resources: Any,
    restricted: Any,
    allow: Any,
) -> LoadOptions:
    """Check the options of a load.

    Raises:
        TypeError, ValueError: an option is of the wrong type, or ``allow`` is malformed or
            given without ``restricted``.
    """
    restricted, allowed = check_allow(restricted, allow)
    return LoadOptions(
        fix_imports,
        encoding,
        errors,
        buffers,
        check_keys(key),
        _check_resources(resources),
        restricted,
        allowed,
    )
