"""``omnipickle.wrap(fn)``: a callable that any pool can carry.

The standard library's ``multiprocessing.Pool`` and ``concurrent.futures.ProcessPoolExecutor``
pickle their tasks with the standard pickler, which writes functions by name: a lambda, a
closure or a function of ``__main__`` fails there (or, under ``spawn`` and ``forkserver``, loads
only if the worker can import it by that name). A :class:`Wrapped` function pickles itself as an
omnipickle payload, so whatever pickles it carries the function by value.

Pickled wrappers name :func:`load_wrapped`: that name is kept stable, as the functions of
``omnipickle._reconstruct`` are.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from .api import dumps, loads

__all__ = ["Wrapped", "load_wrapped", "wrap"]


class Wrapped:
    """A callable that calls ``fn`` and pickles as an omnipickle payload of it.

    Made by :func:`wrap`. It looks like ``fn`` (``__name__``, ``__qualname__``, ``__doc__``,
    ``__module__`` and ``__wrapped__``, as :func:`functools.wraps` sets them), and is called
    like it. Each time it is pickled, ``fn`` is serialized anew (a closure's current values
    travel, not those it had when it was wrapped).
    """

    __wrapped__: Callable[..., Any]

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"omnipickle.wrap() needs a callable, not {type(fn).__name__}")
        functools.update_wrapper(self, fn)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"omnipickle.wrap({self.__wrapped__!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (load_wrapped, (dumps(self.__wrapped__),))

    # Without these, copy would round-trip the function through a payload (what __reduce__
    # says): slow, and a copy of a function is the function itself.
    def __copy__(self) -> Wrapped:
        return Wrapped(self.__wrapped__)

    def __deepcopy__(self, memo: dict[int, Any]) -> Wrapped:
        return Wrapped(copy.deepcopy(self.__wrapped__, memo))


def wrap(fn: Callable[..., Any]) -> Wrapped:
    """A callable that calls ``fn`` and that the standard pickler carries by value.

    ``multiprocessing.Pool().map(omnipickle.wrap(lambda x: x + 1), range(10))`` works with
    every start method: the pool pickles the wrapper, the wrapper pickles ``fn`` with
    :func:`omnipickle.dumps`, and the worker loads it with :func:`omnipickle.loads` (omnipickle
    must be importable there). Wrapping a wrapper returns it unchanged.

    Args:
        fn: any callable :func:`omnipickle.dumps` can serialize: a lambda, a closure, a bound
            method, a function or class of ``__main__``, an object with a ``__call__``.

    Returns:
        The wrapper (a :class:`Wrapped`).

    Raises:
        TypeError: ``fn`` is not callable.
    """
    if isinstance(fn, Wrapped):
        return fn
    return Wrapped(fn)


def load_wrapped(payload: bytes) -> Wrapped:
    """What a pickled :class:`Wrapped` loads with: the wrapper, around the function in
    ``payload`` (an omnipickle payload)."""
    return Wrapped(loads(payload))
