"""Every function that an omnipickle payload names.

Payloads refer to these by module and name (``omnipickle._reconstruct.make_lock``), so this module
is part of the wire format: a function here is never renamed or removed without leaving a shim
behind, and its signature only ever gains optional parameters. It imports nothing of the package
(every other module may import it), so loading a payload never depends on how the rest is laid
out.
"""

from __future__ import annotations

import contextvars
import copyreg
import functools
import importlib
import io
import os
import pickle
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = [
    "LOAD_HOOKS",
    "LoadHooks",
    "ResourceFailures",
    "deferring",
    "dropped_resource",
    "import_dill",
    "install_failures",
    "load_dill",
    "make_barrier",
    "make_bounded_semaphore",
    "make_condition",
    "make_event",
    "make_lock",
    "make_lru_cache",
    "make_method",
    "make_rlock",
    "make_semaphore",
    "make_thread",
    "reopen_file",
    "restore_state",
    "std_stream",
]

# The live objects a caller handed to loads(..., resources=...), by drop index, while that
# load runs (a context variable: concurrent loads in other threads do not see them).
REATTACH: contextvars.ContextVar[Sequence[Any] | None] = contextvars.ContextVar(
    "omnipickle_reattach", default=None
)


def make_lock() -> Any:
    """A fresh, unlocked ``threading.Lock`` (what a pickled lock becomes)."""
    return threading.Lock()


def make_rlock() -> Any:
    """A fresh, unlocked ``threading.RLock``."""
    return threading.RLock()


def make_condition(lock: Any) -> threading.Condition:
    """A ``threading.Condition`` over ``lock`` (itself recreated), with no waiters."""
    return threading.Condition(lock)


def make_semaphore(value: int) -> threading.Semaphore:
    """A ``threading.Semaphore`` with the counter it had when it was pickled."""
    return threading.Semaphore(value)


def make_bounded_semaphore(value: int, initial: int) -> threading.BoundedSemaphore:
    """A ``threading.BoundedSemaphore`` with its bound and its counter."""
    if not (isinstance(value, int) and isinstance(initial, int) and 0 <= value <= initial):
        raise ValueError(f"a bounded semaphore needs 0 <= value <= bound, got {value}, {initial}")
    sem = threading.BoundedSemaphore(initial)
    # Set the counter directly (taking it down one acquire at a time would loop `initial`
    # times, and a payload may ask for a bound of 10**12).
    sem._value = value
    return sem


def make_event(flag: bool) -> threading.Event:
    """A ``threading.Event`` that keeps its flag."""
    event = threading.Event()
    if flag:
        event.set()
    return event


def make_barrier(
    parties: int, action: Callable[[], Any] | None, timeout: float | None
) -> threading.Barrier:
    """A fresh ``threading.Barrier`` with the same parties, action and timeout."""
    return threading.Barrier(parties, action, timeout)


def load_dill(blob: bytes) -> Any:
    """Rebuild an object that was serialized whole by dill inside an omnipickle stream.

    While an ``omnipickle.Unpickler`` subclass with its own ``find_class`` or
    ``persistent_load`` loads (:data:`LOAD_HOOKS`), the blob's globals go through those hooks
    too: a subclass that refuses ``os.system`` refuses it inside the blob as well.
    """
    dill = import_dill()
    if LOAD_HOOKS.get() is None:
        return dill.loads(blob)
    return deferring(dill.Unpickler)(io.BytesIO(blob)).load()


def make_method(func: Any, obj: Any) -> types.MethodType:
    """``func`` bound to ``obj``: a bound method whose name does not lead back to it."""
    return types.MethodType(func, obj)


def make_lru_cache(func: Callable[..., Any], maxsize: int | None, typed: bool) -> Any:
    """``functools.lru_cache(maxsize, typed)(func)``: a cached function, with an empty cache."""
    return functools.lru_cache(maxsize=maxsize, typed=typed)(func)


def std_stream(name: str) -> Any:
    """``sys.stdin``, ``sys.stdout`` or ``sys.stderr`` of the loading process."""
    import sys

    return getattr(sys, name)


def make_thread(
    cls: type[threading.Thread],
    target: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str,
    daemon: bool,
) -> threading.Thread:
    """A thread that was not running when it was pickled, unstarted: same class, target,
    arguments, name and daemon flag (its other attributes are set by the state that follows).

    The class's own ``__init__`` is not called (its arguments are not known); ``Thread``'s is.
    """
    if not (isinstance(cls, type) and issubclass(cls, threading.Thread)):
        raise TypeError(f"make_thread needs a threading.Thread subclass, not {cls!r}")
    thread = cls.__new__(cls)
    threading.Thread.__init__(
        thread, target=target, name=name, args=args, kwargs=kwargs, daemon=daemon
    )
    return thread


class ResourceFailures(Protocol):
    """How a reconstructor reports a resource it cannot rebuild where the payload loads.

    The package's error and warning types are defined above this module (which imports nothing
    of the package), so ``omnipickle.resources`` installs them (:func:`install_failures`) when
    the package is imported.
    """

    def reopen_failed(self, exc: OSError, name: str, mode: str) -> BaseException:
        """The exception to raise (``from exc``) for a file that cannot be reopened."""

    def reopen_dropped(self, exc: OSError, name: str, mode: str) -> None:
        """Say (warn) that a file that cannot be reopened loads as ``None``."""


_failures: ResourceFailures | None = None


def install_failures(failures: ResourceFailures) -> None:
    """Set how reconstructors report what they cannot rebuild (see :class:`ResourceFailures`)."""
    global _failures
    _failures = failures


def reopen_file(
    name: str,
    mode: str,
    position: int,
    closed: bool,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    drop: bool = False,
    buffering: int = -1,
) -> Any:
    """Reopen a file that was open when it was pickled: same path, mode and position.

    Write modes are reopened without truncating (``w`` becomes ``r+``, ``x`` too) and nothing
    is created (a missing file stays missing, in append mode too), so loading never changes the
    file system; append mode stays append. A file that was closed comes back closed, with its
    name and mode (nothing is opened at its path). ``buffering=0`` gives a raw ``FileIO``.

    A file that cannot be reopened (missing, not readable...) raises the error
    :func:`install_failures` installed (``omnipickle.resources.ResourceReopenError``, naming
    the file), or, with ``drop`` (the payload was dumped with ``on_unpicklable="drop"``), loads
    as ``None`` with a warning.
    """
    if closed:
        return _closed_file(name, mode, encoding, errors, newline, buffering)
    reopen_mode = mode.replace("w", "r+").replace("x", "r+").replace("++", "+")
    try:
        # encoding, errors and newline are None for a binary file (as open() wants them).
        f = open(  # noqa: SIM115 - the caller owns the handle
            name, reopen_mode, buffering, encoding, errors, newline, opener=_open_existing
        )
    except OSError as exc:
        if _failures is None:
            raise
        if drop:
            _failures.reopen_dropped(exc, name, mode)
            return None
        raise _failures.reopen_failed(exc, name, mode) from exc
    if "a" not in mode:
        f.seek(position)
    return f


def _open_existing(path: str, flags: int) -> int:
    return os.open(path, flags & ~os.O_CREAT)


def _closed_file(
    name: str,
    mode: str,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
    buffering: int,
) -> Any:
    """A closed file object of the kind ``open(name, mode, buffering)`` gives, named ``name``.

    It is opened on a descriptor of the null device (so nothing at ``name`` is touched, and
    ``w`` truncates nothing), renamed, and closed.
    """
    fd = os.open(os.devnull, os.O_RDWR)
    try:
        f = open(fd, mode, buffering, encoding, errors, newline)  # noqa: SIM115 - handed back closed
    except (ValueError, OSError):
        os.close(fd)
        raise
    raw: Any = f if isinstance(f, io.FileIO) else getattr(f, "raw", None)
    if raw is None:  # a text file: its buffer's raw file
        raw = f.buffer.raw  # type: ignore[attr-defined]
    raw.name = name
    f.close()
    return f


def dropped_resource(index: int) -> Any:
    """What a dropped live resource loads as: ``None``, or what the caller re-attached."""
    reattach = REATTACH.get()
    if reattach is None or not 0 <= index < len(reattach):
        return None
    return reattach[index]


def restore_state(obj: Any, state: tuple[Any, tuple[str, ...]]) -> None:
    """Set an object's state after transient attributes were left out of it.

    ``state`` is ``(inner, names)``: the object's own state without the attributes in
    ``names``. The class's ``__setstate__`` (if any) receives ``inner``; otherwise it is set as
    pickle would (missing keys stay missing, keys the class can no longer hold are skipped).
    Attributes in ``names`` that are still unset become ``None`` (those served by a
    ``transient`` descriptor stay unset: it rebuilds them on first use). Finally the class's
    ``__restore__`` hook, if any, is called.
    """
    inner, names = state
    cls = type(obj)
    setstate = getattr(cls, "__setstate__", None)
    if setstate is not None:
        setstate(obj, inner)
    else:
        parts = inner if isinstance(inner, tuple) else (inner, None)
        for part in parts:
            if not part:
                continue
            for key, value in part.items():
                try:
                    object.__setattr__(obj, key, value)
                except AttributeError:
                    continue  # an attribute this version of the class no longer has
    for name in names:
        if getattr(type(getattr(cls, name, None)), "__omnipickle_transient__", False):
            continue
        try:
            object.__getattribute__(obj, name)
        except AttributeError:
            try:
                object.__setattr__(obj, name, None)
            except AttributeError:
                continue
    hook = getattr(cls, "__restore__", None)
    if hook is not None:
        hook(obj)


# --- the hooks of a drop-in Unpickler ----------------------------------------------------------
#
# ``omnipickle.Unpickler`` subclasses keep pickle's ``find_class`` and ``persistent_load`` for
# every stream a load runs: the payload's own, and every stream nested in it (``load_dill``
# blobs), whichever unpickler class reads it. Nested unpicklers cannot be handed the outer one,
# so the hooks travel in a context variable, set while such a subclass loads. They live here
# because ``load_dill``, which payloads name, reads them.


class LoadHooks(Protocol):
    """What every unpickler of one load defers to (an ``omnipickle.Unpickler`` subclass)."""

    def find_class(self, native: Callable[[str, str], Any], module: str, name: str) -> Any:
        """The global ``module.name``; ``native`` is the reading unpickler's own lookup."""

    def persistent_load(self, pid: Any) -> Any:
        """The object a persistent id stands for."""


LOAD_HOOKS: contextvars.ContextVar[LoadHooks | None] = contextvars.ContextVar(
    "omnipickle_load_hooks", default=None
)


_DEFERRING: dict[type[pickle.Unpickler], type[pickle.Unpickler]] = {}


def deferring(base: type[pickle.Unpickler]) -> type[pickle.Unpickler]:
    """A subclass of the unpickler class ``base`` whose ``find_class`` and ``persistent_load``
    defer to :data:`LOAD_HOOKS` (and behave as ``base``'s when none are set); made once per
    class."""
    made = _DEFERRING.get(base)
    if made is None:
        made = _DEFERRING.setdefault(base, _make_deferring(base))
    return made


def _make_deferring(base: type[pickle.Unpickler]) -> type[pickle.Unpickler]:

    class Deferring(base):  # type: ignore[valid-type,misc]
        def find_class(self, module: str, name: str) -> Any:
            native = super().find_class
            hooks = LOAD_HOOKS.get()
            if hooks is None:
                return native(module, name)
            return hooks.find_class(native, module, name)

        def persistent_load(self, pid: Any) -> Any:
            hooks = LOAD_HOOKS.get()
            if hooks is None:
                # What pickle itself raises for a persistent id nobody can load.
                raise pickle.UnpicklingError("A load persistent id instruction was encountered")
            return hooks.persistent_load(pid)

    Deferring.__name__ = Deferring.__qualname__ = f"Deferring{base.__name__}"
    return Deferring


# --- the one place omnipickle imports dill ------------------------------------------------------
#
# ``import dill`` extends the standard library's pure-Python pickler (``dill/__init__.py`` calls
# ``extend()``, which copies dill's ~50 savers into ``pickle._Pickler.dispatch``), so that after it
# every ``pickle._Pickler`` in the process pickles differently. omnipickle uses dill only through
# ``dill.Pickler``, ``dill.Unpickler`` and ``dill.loads``, which keep their own dispatch table, so
# what dill changes in the standard library is put back as it was right after the import. A
# program that imports dill itself gets dill's usual behaviour: when dill is already imported,
# ``import_dill`` returns it and touches nothing. It lives here because ``load_dill`` (named by
# payloads) needs it and this module imports nothing of the package; every other module may use it.

_LOCK = threading.Lock()


def _mutable_tables() -> list[dict[Any, Any]]:
    """The dicts of the standard library an importing package may write into."""
    tables: list[dict[Any, Any]] = [
        pickle._Pickler.dispatch,
        pickle._Unpickler.dispatch,
        copyreg.dispatch_table,
        copyreg._extension_registry,  # type: ignore[attr-defined]
        copyreg._inverted_registry,  # type: ignore[attr-defined]
        copyreg._extension_cache,  # type: ignore[attr-defined]
        vars(pickle),
        vars(copyreg),
    ]
    # The C Pickler has no class-level dispatch_table today; a future one must survive too.
    c_table = getattr(pickle.Pickler, "dispatch_table", None)
    if isinstance(c_table, dict):
        tables.append(c_table)
    return tables


def import_dill() -> types.ModuleType:
    """``dill``, imported so that the standard library's picklers stay exactly as they were.

    Thread-safe: the snapshot, the import and the restore happen under one lock, so two threads
    meeting dill for the first time cannot restore each other's half-made snapshot.

    Returns:
        The ``dill`` module.

    Raises:
        ImportError: dill is not installed (whatever dill changed before failing is undone).
    """
    if _DILL:
        return _DILL[0]
    with _LOCK:
        if _DILL:
            return _DILL[0]
        if "dill" in sys.modules:
            # Imported by someone else, perhaps still running on another thread: the import
            # system waits for a module that is being initialized, sys.modules does not.
            _DILL.append(importlib.import_module("dill"))
            return _DILL[0]
        tables = _mutable_tables()
        saved = [dict(table) for table in tables]
        try:
            _DILL.append(importlib.import_module("dill"))
            return _DILL[0]
        finally:
            for table, before in zip(tables, saved, strict=True):
                _restore(table, before)


# dill once import_dill has imported it whole (sys.modules has it before it is whole).
_DILL: list[types.ModuleType] = []


def _restore(table: dict[Any, Any], before: dict[Any, Any]) -> None:
    """Put ``table`` back to ``before`` in place (other modules hold this very dict), key by
    key, so that a reader on another thread never sees it empty."""
    for key in [key for key in table if key not in before]:
        del table[key]
    for key, value in before.items():
        if table.get(key, _ABSENT) is not value:
            table[key] = value


_ABSENT = object()
