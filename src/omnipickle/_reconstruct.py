"""Every function that an omnipickle payload names.

Payloads refer to these by module and name (``omnipickle._reconstruct.make_lock``), so this module
is part of the wire format: a function here is never renamed or removed without leaving a shim
behind, and its signature only ever gains optional parameters.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .dill_import import import_dill

__all__ = [
    "dropped_resource",
    "load_dill",
    "make_barrier",
    "make_bounded_semaphore",
    "make_condition",
    "make_event",
    "make_lock",
    "make_rlock",
    "make_semaphore",
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
    """Rebuild an object that was serialized whole by dill inside an omnipickle stream."""
    return import_dill().loads(blob)


def std_stream(name: str) -> Any:
    """``sys.stdin``, ``sys.stdout`` or ``sys.stderr`` of the loading process."""
    import sys

    return getattr(sys, name)


def reopen_file(
    name: str,
    mode: str,
    position: int,
    closed: bool,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> Any:
    """Reopen a file that was open when it was pickled: same path, mode and position.

    Write modes are reopened without truncating (``w`` becomes ``r+``, ``x`` too), so loading
    never destroys the file's contents; append mode stays append.
    """
    reopen_mode = mode.replace("w", "r+").replace("x", "r+").replace("++", "+")
    binary = "b" in reopen_mode
    if closed:
        f = open(os.devnull, "rb" if binary else "r")  # noqa: SIM115 - handed back closed
        f.close()
        return f
    if binary:
        f = open(name, reopen_mode)  # noqa: SIM115 - the caller owns the handle
    else:
        f = open(name, reopen_mode, encoding=encoding, errors=errors, newline=newline)  # noqa: SIM115
    if "a" not in mode:
        f.seek(position)
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
    from .resources import transient

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
        if isinstance(getattr(cls, name, None), transient):
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
