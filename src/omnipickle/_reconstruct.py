"""Every function that an omnipickle payload names.

Payloads refer to these by module and name (``omnipickle._reconstruct.make_lock``), so this module
is part of the wire format: a function here is never renamed or removed without leaving a shim
behind, and its signature only ever gains optional parameters.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "load_dill",
    "make_barrier",
    "make_bounded_semaphore",
    "make_condition",
    "make_event",
    "make_lock",
    "make_rlock",
    "make_semaphore",
    "reopen_file",
    "std_stream",
]


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
    sem = threading.BoundedSemaphore(initial)
    # Take back what was taken before pickling, so the counter matches and the bound holds.
    for _ in range(max(0, initial - value)):
        sem.acquire(blocking=False)
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
    import dill

    return dill.loads(blob)


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
