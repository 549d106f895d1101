"""Every function that an omnipickle payload names.

Payloads refer to these by module and name (``omnipickle._reconstruct.make_lock``), so this module
is part of the wire format: a function here is never renamed or removed without leaving a shim
behind, and its signature only ever gains optional parameters.
"""

from __future__ import annotations

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
