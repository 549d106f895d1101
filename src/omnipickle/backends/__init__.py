"""The backend registry, over the backend table.

A backend turns objects into a pickle stream and back (see :class:`Backend`). Every fact about a
backend is one :class:`BackendRow` (``rows.py``); the functions here answer the questions the
envelope asks (which bits, which loader id, which package to install) from the rows. Built-ins are
recorded by dotted path and imported on first use, so ``import omnipickle`` imports neither
cloudpickle nor dill.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._registry import Entry, Registry, Remembered
from ..errors import BackendNotInstalledError, IncompatiblePayloadError, UnknownBackendError
from .rows import BUILTIN_ROWS, BackendRow, builtin_row

if TYPE_CHECKING:
    from .base import Backend, Pickled

__all__ = [
    "BUILTIN_ROWS",
    "DEFAULTS",
    "Backend",
    "BackendRow",
    "Pickled",
    "backends",
    "bits_for",
    "check_installed",
    "get_backend",
    "global_prefixes",
    "loader_id",
    "loader_name",
    "names_for_bits",
    "package_for",
    "register_backend",
    "register_row",
    "row_for",
    "unregister_backend",
]


def __getattr__(name: str) -> Any:
    # The Backend base class (and Pickled) live in .base, imported with the first backend that
    # is used (or registered): the registry itself needs only the rows.
    if name in ("Backend", "Pickled"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _checked(impl: object) -> Backend:
    """``impl``, if it is a :class:`Backend`; ``TypeError`` naming its type if not."""
    from .base import Backend

    if not isinstance(impl, Backend):
        raise TypeError(
            f"a backend must be an instance of omnipickle.backends.Backend, "
            f"not {type(impl).__name__}"
        )
    return impl


def _check(impl: object) -> None:
    _checked(impl)


class _Defaults:
    """What the per-call fast paths may take for granted, kept by the registry's change hook so
    that a call reads an attribute instead of the registry.

    Attributes:
        builtin: ``"auto"`` and ``"pickle"`` are the built-in backends (nobody replaced them).
        pickle_only: the envelope backend bits of a payload that needs only pickle.
        fast_bits: the backend bits a payload may carry and still be read by the fast path (once
            the package is imported): pickle's, and pickle's with cloudpickle's while the
            built-in cloudpickle backend is registered.
    """

    builtin = True
    pickle_only: frozenset[int] = frozenset()
    fast_bits: frozenset[int] = frozenset()


DEFAULTS = _Defaults()


def _is_builtin(entries: Mapping[str, Entry[Backend]], name: str) -> bool:
    return name in entries and entries[name].target == builtin_row(name).target


def _note_change() -> None:
    entries = REGISTRY.view()
    DEFAULTS.builtin = all(_is_builtin(entries, name) for name in PERMANENT)
    pickle_bit = builtin_row("pickle").bit
    cloudpickle_bit = builtin_row("cloudpickle").bit
    assert pickle_bit is not None and cloudpickle_bit is not None
    DEFAULTS.pickle_only = frozenset({pickle_bit})
    DEFAULTS.fast_bits = DEFAULTS.pickle_only
    if _is_builtin(entries, "cloudpickle"):
        DEFAULTS.fast_bits = frozenset({pickle_bit, pickle_bit | cloudpickle_bit})


REGISTRY: Registry[Backend] = Registry(
    "backend", UnknownBackendError, BackendNotInstalledError, _check, on_change=_note_change
)

# The registry is the truth for which names exist: a row counts only while its name is registered
# (so that whoever saves and restores the registry restores the table with it).
_ROWS: dict[str, BackendRow] = {}
_LOCK = threading.RLock()

# The default backend and the loader of every auto payload and plain pickle stream: without them
# nothing loads.
PERMANENT = frozenset({"auto", "pickle"})

# The pickle backend's wire numbers, from its row: it is permanent, so readers and writers may
# use them for plain data without a look-up in the table (what one tiny call pays for).
_PICKLE_ROW = builtin_row("pickle")
assert _PICKLE_ROW.bit is not None and _PICKLE_ROW.loader_id is not None
PICKLE_BIT: int = _PICKLE_ROW.bit
PICKLE_LOADER_ID: int = _PICKLE_ROW.loader_id


def _live_rows() -> list[BackendRow]:
    registered = REGISTRY.view()
    return [row for name, row in _ROWS.items() if name in registered]


def register_row(row: BackendRow, *, replace: bool = False) -> None:
    """Register the backend ``row`` describes.

    For backends that are part of the wire format (a ``bit`` or ``loader_id``); third-party
    backends use :func:`register_backend`, whose names travel in the header's extra field.

    Args:
        row: the backend's facts; ``row.target`` is a path or a :class:`Backend`.
        replace: allow replacing a registration of the same name.

    Raises:
        ValueError: the name is taken (and ``replace`` is false), or another backend has the
            same envelope bit or loader id, or the bit is not a single bit of the header's byte.
        TypeError: ``row.target`` is neither a path nor a :class:`Backend`.
    """
    if row.bit is not None and (row.bit <= 0 or row.bit > 0x80 or row.bit & (row.bit - 1)):
        raise ValueError(f"an envelope bit is one of 1, 2, 4, ... 128, got {row.bit!r}")
    if row.loader_id is not None and not 0 <= row.loader_id < 255:  # 255: named
        raise ValueError(f"a loader id is 0 to 254, got {row.loader_id!r}")
    target = row.target
    if not isinstance(target, str):
        target = _checked(target)
    with _LOCK:
        for other in _live_rows():
            if other.name == row.name:
                continue
            if row.bit is not None and other.bit == row.bit:
                raise ValueError(f"envelope bit {row.bit} is already the {other.name!r} backend's")
            if row.loader_id is not None and other.loader_id == row.loader_id:
                raise ValueError(
                    f"loader id {row.loader_id} is already the {other.name!r} backend's"
                )
        REGISTRY.register(row.name, target, requires=row.package, replace=replace)
        _ROWS[row.name] = row


def register_backend(name: str, backend: Backend | str, *, replace: bool = False) -> None:
    """Register a backend under ``name``.

    Replacing a built-in keeps its wire facts (envelope bit, loader id): payloads name the
    backend, and the replacement reads them.

    Args:
        name: the name callers pass as ``backend=``; an identifier.
        backend: a :class:`Backend` instance, or a ``"package.module:attribute"`` path imported
            on first use.
        replace: allow replacing an existing registration (built-ins included).

    Raises:
        ValueError: the name is taken (and ``replace`` is false) or is not an identifier.
        TypeError: ``backend`` is not a :class:`Backend`.
    """
    from .base import Backend

    if isinstance(backend, Backend):
        package, streams, drop = backend.requires, backend.streams, backend.supports_drop
    else:  # facts unknown until it is imported; the Backend instance has them then
        package, streams, drop = None, False, False
    with _LOCK:
        old = _ROWS.get(name) if replace and name in REGISTRY.view() else None
        wire = (
            (old.bit, old.loader_id, old.global_prefixes) if old is not None else (None, None, ())
        )
        row = BackendRow(
            name,
            backend,
            package=package,
            bit=wire[0],
            loader_id=wire[1],
            streams=streams,
            supports_drop=drop,
            global_prefixes=wire[2],
        )
        register_row(row, replace=replace)


def unregister_backend(name: str) -> None:
    """Remove the backend registered as ``name``.

    A payload that needs a removed backend then fails to load with
    :class:`~omnipickle.UnknownBackendError` (or, for a built-in's envelope bit,
    :class:`~omnipickle.IncompatiblePayloadError`); :func:`register_row` with the row from
    :data:`BUILTIN_ROWS` puts a built-in back.

    Raises:
        ValueError: ``name`` is ``"auto"`` or ``"pickle"``, which everything else relies on.
        UnknownBackendError: no backend has that name.
    """
    if name in PERMANENT:
        raise ValueError(
            f"the {name!r} backend cannot be unregistered: it is the default backend or the "
            "loader of plain pickle streams; replace it with register_backend(..., replace=True)"
        )
    with _LOCK:
        REGISTRY.unregister(name)  # the row stays, dormant, until the name is registered again


for _row in BUILTIN_ROWS:
    register_row(_row)
del _row


def backends() -> Mapping[str, Entry[Backend]]:
    """A read-only mapping of the registered backend names to their entries."""
    return REGISTRY.view()


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``.

    Raises:
        UnknownBackendError: no backend has that name (the message lists those there are).
        BackendNotInstalledError: the backend's package is not installed.
    """
    return REGISTRY.get(name)


def row_for(name: str) -> BackendRow:
    """The table row of the backend registered as ``name`` (aliases resolved).

    Raises:
        UnknownBackendError: no backend has that name.
    """
    return _ROWS[REGISTRY.canonical(name)]


def bits_for(names: Iterable[str]) -> tuple[int, list[str]]:
    """The envelope bits for the backends ``names``, and the names that have no bit (sorted,
    to be written out in the header's extra field)."""
    if isinstance(names, frozenset):  # what a dump reports: the same few sets, again and again
        bits, unnamed = _REMEMBERED_BITS(names)
        return bits, list(unnamed)
    return _bits_for(names)


def _bits_for(names: Iterable[str]) -> tuple[int, list[str]]:
    """:func:`bits_for`, worked out from the live rows."""
    bits = 0
    unnamed: set[str] = set()
    by_name = {row.name: row for row in _live_rows()}
    for name in names:
        row = by_name.get(name)
        if row is not None and row.bit is not None:
            bits |= row.bit
        else:
            unnamed.add(name)
    return bits, sorted(unnamed)


_REMEMBERED_BITS: Remembered[frozenset[str], tuple[int, list[str]]] = Remembered(
    REGISTRY, _bits_for
)


def names_for_bits(bits: int) -> list[str]:
    """The backends an envelope's bits name, in bit order.

    Raises:
        IncompatiblePayloadError: a bit no registered backend has (a payload written by a later
            release, or needing a backend this process unregistered).
    """
    rows = sorted((row for row in _live_rows() if row.bit is not None), key=lambda r: r.bit or 0)
    names = [row.name for row in rows if bits & (row.bit or 0)]
    unknown = bits & ~sum(row.bit or 0 for row in rows)
    if unknown:
        raise IncompatiblePayloadError(
            f"this payload needs a backend (envelope bits {unknown:#04x}) that this omnipickle "
            "release does not know; load it with the release that wrote it, or a later one"
        )
    return names


def loader_id(name: str) -> int | None:
    """The envelope's loader id for the backend ``name``, or ``None`` (the name is written out)."""
    for row in _live_rows():
        if row.name == name:
            return row.loader_id
    return None


def loader_name(ident: int) -> str:
    """The backend whose envelope loader id is ``ident``.

    Raises:
        IncompatiblePayloadError: no registered backend has that id.
    """
    for row in _live_rows():
        if row.loader_id == ident:
            return row.name
    raise IncompatiblePayloadError(
        f"payload loader id {ident} is unknown to this omnipickle release"
    )


def package_for(name: str) -> str | None:
    """The pip distribution the backend ``name`` needs, or ``None`` (unknown names too)."""
    row = _ROWS.get(name)
    if row is None or name not in REGISTRY.view():
        return None
    return row.package


def global_prefixes(name: str) -> tuple[str, ...]:
    """The modules whose globals the backend ``name``'s payloads name (see
    :attr:`BackendRow.global_prefixes`); ``()`` for unknown names."""
    row = _ROWS.get(name)
    if row is None or name not in REGISTRY.view():
        return ()
    return row.global_prefixes


def check_installed(names: Iterable[str]) -> None:
    """Check that every backend in ``names`` (as a payload's header lists them) can load.

    A backend with an envelope bit is checked by its package alone, without importing it (so a
    payload's needs are known before anything runs); any other name must be registered and
    importable.

    Raises:
        BackendNotInstalledError: a backend's package is missing (the message says what to
            ``pip install``).
        UnknownBackendError: a name no backend is registered under.
    """
    for name in names:
        row = _ROWS.get(name) if name in REGISTRY.view() else None
        if row is None or row.bit is None:
            REGISTRY.get(name)  # unknown or not installed: the registry says which
            continue
        package = row.package
        if (
            package is not None
            and package not in sys.modules
            and importlib.util.find_spec(package) is None
        ):
            raise BackendNotInstalledError(
                f"this payload was written with the {name} backend and needs the "
                f"{package!r} package to load: pip install {package}"
            )


# The old side tables, derived from the rows, for the modules that still read them.
BUILTIN_BITS: dict[str, int] = {r.name: r.bit for r in BUILTIN_ROWS if r.bit is not None}
LOADER_IDS: dict[str, int] = {r.name: r.loader_id for r in BUILTIN_ROWS if r.loader_id is not None}
PACKAGES: dict[str, str] = {r.name: r.package for r in BUILTIN_ROWS if r.package is not None}
ROWS: Mapping[str, BackendRow] = MappingProxyType(_ROWS)
