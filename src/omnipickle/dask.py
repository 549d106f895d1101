"""Dask distributed: ship code and arguments to a cluster as omnipickle payloads.

Dask pickles tasks with its own scheme (cloudpickle), which a serialization family cannot
change: :func:`submit` and :func:`map` therefore send the callable and its arguments as one
omnipickle payload, run by :func:`call_payload` on the worker, and the result comes back as an
omnipickle payload too (a :class:`Shipped` result unpickles as the result itself; numbers,
strings, bytes and ``None`` come back as Dask sends them). What
omnipickle carries and cloudpickle does not (recreated locks, transient connections rebuilt in
the worker, ``__slots__`` of ``__main__`` classes) then reaches the workers.

Importing this module also registers the serialization family ``"omnipickle"`` with
``distributed.protocol``, for ``Client(serializers=["omnipickle", ...])`` and
``distributed.protocol.serialize(x, serializers=["omnipickle"])``.

The names a task or a result names (:func:`call_payload`, :func:`load_shipped`) are kept
stable, as the functions of ``omnipickle._reconstruct`` are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from distributed import Future
from distributed.protocol.serialize import register_serialization_family

from .api import dumps, loads

__all__ = ["FAMILY", "Shipped", "call_payload", "load_shipped", "map", "submit"]

FAMILY = "omnipickle"
"""The serialization family's name."""


def _family_dumps(obj: Any) -> tuple[dict[str, Any], list[bytes]]:
    return {}, [dumps(obj)]


def _family_loads(header: dict[str, Any], frames: list[bytes | memoryview]) -> Any:
    return loads(b"".join(frames) if len(frames) != 1 else bytes(frames[0]))


register_serialization_family(FAMILY, _family_dumps, _family_loads)  # type: ignore[no-untyped-call]


class Shipped:
    """A task's result, as the worker holds it: pickled, it is an omnipickle payload of
    ``value``, and it unpickles as ``value`` itself (not as a ``Shipped``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (load_shipped, (dumps(self.value),))

    def __repr__(self) -> str:
        return f"omnipickle.dask.Shipped({self.value!r})"


def load_shipped(payload: bytes) -> Any:
    """What a pickled :class:`Shipped` loads with: the value in ``payload``."""
    return loads(payload)


def _unwrap(value: Any) -> Any:
    # A result that stayed on its worker is still a Shipped when a later task uses it.
    return value.value if isinstance(value, Shipped) else value


_AS_IS = frozenset({int, float, complex, bool, str, bytes, type(None)})


def call_payload(payload: bytes, slots: tuple[int, ...], *futures: Any) -> Any:
    """Run the call in ``payload`` (made by :func:`submit`) on a worker.

    Args:
        payload: an omnipickle payload of ``(fn, args, kwargs)``.
        slots: the positions in ``args`` that Dask futures fill.
        futures: their values, resolved by Dask, in that order.

    Returns:
        The result, as a :class:`Shipped` (or as itself, if it is a number, a string, bytes
        or ``None``).
    """
    fn, args, kwargs = loads(payload)
    args = list(args)
    for slot, value in zip(slots, futures, strict=True):
        args[slot] = _unwrap(value)
    result = fn(*args, **kwargs)
    # Scalars and strings travel as they are: Dask's own pickling of them is what omnipickle
    # would write, without a second envelope around them.
    return result if type(result) in _AS_IS else Shipped(result)


def _split(args: tuple[Any, ...]) -> tuple[list[Any], tuple[int, ...], list[Future[Any]]]:
    """``args`` with its Dask futures taken out (Dask resolves those itself)."""
    slots = tuple(i for i, arg in enumerate(args) if isinstance(arg, Future))
    plain = [None if i in slots else arg for i, arg in enumerate(args)]
    return plain, slots, [args[i] for i in slots]


def submit(client: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
    """``client.submit(fn, *args, **kwargs)``, with ``fn`` and the arguments sent as an
    omnipickle payload and the result brought back as one.

    Positional arguments that are Dask futures (of this function or of ``client.submit``) are
    passed to Dask, which resolves them on the worker; futures nested inside other arguments
    are not. Dask's own options (``key=``, ``pure=``, ``workers=``, ``resources=``,
    ``retries=``, ``priority=``) cannot be given here: ``kwargs`` all go to ``fn``. The task is
    never pure (each call runs).

    Args:
        client: a ``distributed.Client``.
        fn: any callable omnipickle serializes: a lambda, a closure, a ``__main__`` function.
        args, kwargs: its arguments.

    Returns:
        A ``distributed.Future``; its ``result()`` is ``fn``'s return value.

    Raises:
        omnipickle.PicklingError: ``fn`` or an argument cannot be serialized (raised here, in
            the caller, with its path).
    """
    plain, slots, futures = _split(args)
    payload = dumps((fn, tuple(plain), kwargs))
    future: Future[Any] = client.submit(call_payload, payload, slots, *futures, pure=False)
    return future


def map(client: Any, fn: Callable[..., Any], /, *iterables: Iterable[Any]) -> list[Future[Any]]:
    """:func:`submit` of ``fn`` over ``zip(*iterables)``: a list of futures, in order.

    ``fn`` is serialized once for the whole call (each task's payload holds the same bytes of
    it, and the arguments of that task).
    """
    shared = _Loaded(dumps(fn))
    futures = []
    for args in zip(*iterables, strict=False):
        plain, slots, inputs = _split(tuple(args))
        payload = dumps((shared, tuple(plain), {}))
        futures.append(client.submit(call_payload, payload, slots, *inputs, pure=False))
    return futures


class _Loaded:
    """``fn`` serialized once, loaded and called on the worker."""

    __slots__ = ("code",)

    def __init__(self, code: bytes) -> None:
        self.code = code

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return loads(self.code)(*args, **kwargs)
