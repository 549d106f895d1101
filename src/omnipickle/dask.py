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

__all__ = [
    "FAMILY",
    "Shipped",
    "Shipper",
    "call_payload",
    "call_payload_with",
    "load_shipped",
    "map",
    "submit",
]

FAMILY = "omnipickle"
"""The serialization family's name."""


def _family_dumps(obj: Any) -> tuple[dict[str, Any], list[bytes]]:
    return {}, [dumps(obj)]


def _family_loads(header: dict[str, Any], frames: list[bytes | memoryview]) -> Any:
    return loads(b"".join(frames) if len(frames) != 1 else bytes(frames[0]))


register_serialization_family(FAMILY, _family_dumps, _family_loads)  # type: ignore[no-untyped-call]


class Shipped:
    """A task's result, as the worker holds it: pickled, it is an omnipickle payload of
    ``value`` (written with ``options``, :func:`omnipickle.dumps` keywords), and it unpickles as
    ``value`` itself (not as a ``Shipped``)."""

    __slots__ = ("options", "value")

    def __init__(self, value: Any, options: tuple[tuple[str, Any], ...] = ()) -> None:
        self.value = value
        self.options = options

    def __reduce__(self) -> tuple[Any, ...]:
        return (load_shipped, (dumps(self.value, **_keywords(self.options)),))

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
    return call_payload_with((), payload, slots, *futures)


def call_payload_with(
    options: tuple[tuple[str, Any], ...], payload: bytes, slots: tuple[int, ...], *futures: Any
) -> Any:
    """:func:`call_payload`, whose result is written with ``options`` (the
    :func:`omnipickle.dumps` keywords a :class:`Shipper` holds, as ``(name, value)`` pairs)."""
    fn, args, kwargs = loads(payload)
    args = list(args)
    for slot, value in zip(slots, futures, strict=True):
        args[slot] = _unwrap(value)
    result = fn(*args, **kwargs)
    # Scalars and strings travel as they are: Dask's own pickling of them is what omnipickle
    # would write, without a second envelope around them.
    return result if type(result) in _AS_IS else Shipped(result, options)


def _split(args: tuple[Any, ...]) -> tuple[list[Any], tuple[int, ...], list[Future[Any]]]:
    """``args`` with its Dask futures taken out (Dask resolves those itself)."""
    slots = tuple(i for i, arg in enumerate(args) if isinstance(arg, Future))
    plain = [None if i in slots else arg for i, arg in enumerate(args)]
    return plain, slots, [args[i] for i in slots]


def _keywords(options: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return dict(options)


_SUBMIT_OPTIONS = (
    "workers",
    "resources",
    "retries",
    "priority",
    "fifo_timeout",
    "allow_other_workers",
)
"""The keywords of ``Client.submit`` a :class:`Shipper` passes on to Dask."""


class Shipper:
    """:func:`submit` and :func:`map` with options set once: omnipickle's for the payloads,
    Dask's for the tasks.

    Args:
        client: a ``distributed.Client``.
        on_unpicklable: ``"raise"`` (default) or ``"drop"``, as for :func:`omnipickle.dumps`:
            applies to the call in the caller and to its result on the worker.
        compression, level: compress every payload (the call and its result) with this codec,
            given by name (``"zstd"``, ``"lz4"``...: the workers look it up by that name).
        **dask_options: passed to every ``client.submit``: ``workers``, ``resources``,
            ``retries``, ``priority``, ``fifo_timeout``, ``allow_other_workers``.

    Raises:
        TypeError: an option Dask's ``submit`` has that a Shipper does not pass on (``key``:
            Dask names the tasks; ``pure``: every task runs; ``actor``), or one it does not
            have; ``compression`` is not a name.
        ValueError, omnipickle.UnknownCodecError: an omnipickle option is not valid.
    """

    __slots__ = ("_client", "_dask_options", "_options", "_runner")

    def __init__(
        self,
        client: Any,
        *,
        on_unpicklable: str = "raise",
        compression: str | None = None,
        level: int | None = None,
        **dask_options: Any,
    ) -> None:
        unknown = sorted(set(dask_options).difference(_SUBMIT_OPTIONS))
        if unknown:
            raise TypeError(
                f"Shipper passes on only {', '.join(_SUBMIT_OPTIONS)} to Dask, not "
                f"{', '.join(unknown)} (Dask names the tasks itself, and every task runs)"
            )
        if compression is not None and not isinstance(compression, str):
            raise TypeError(
                f"compression must be a codec's name (the workers look it up by name), not "
                f"{type(compression).__name__}"
            )
        given: tuple[tuple[str, Any, Any], ...] = (
            ("on_unpicklable", on_unpicklable, "raise"),
            ("compression", compression, None),
            ("level", level, None),
        )
        options = tuple((name, value) for name, value, default in given if value != default)
        dumps(None, **_keywords(options))  # every option checked now, not at the first task
        self._client = client
        self._options = options
        self._dask_options = {**dask_options, "pure": False}
        # A Shipper with no options sends the same tasks as the module's functions.
        self._runner: tuple[Any, ...] = (call_payload_with, options) if options else (call_payload,)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """As :func:`submit`, with this Shipper's options."""
        plain, slots, futures = _split(args)
        payload = dumps((fn, tuple(plain), kwargs), **_keywords(self._options))
        future: Future[Any] = self._client.submit(
            *self._runner, payload, slots, *futures, **self._dask_options
        )
        return future

    def map(self, fn: Callable[..., Any], /, *iterables: Iterable[Any]) -> list[Future[Any]]:
        """As :func:`map`, with this Shipper's options."""
        options = _keywords(self._options)
        shared = _Loaded(dumps(fn, **options))
        futures = []
        for args in zip(*iterables, strict=False):
            plain, slots, inputs = _split(tuple(args))
            payload = dumps((shared, tuple(plain), {}), **options)
            futures.append(
                self._client.submit(*self._runner, payload, slots, *inputs, **self._dask_options)
            )
        return futures


def submit(client: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
    """``client.submit(fn, *args, **kwargs)``, with ``fn`` and the arguments sent as an
    omnipickle payload and the result brought back as one.

    Positional arguments that are Dask futures (of this function or of ``client.submit``) are
    passed to Dask, which resolves them on the worker; futures nested inside other arguments
    are not. Every keyword goes to ``fn``: for Dask's own options (``workers=``,
    ``retries=``...) and omnipickle's, use a :class:`Shipper`. The task is never pure (each
    call runs).

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
    return Shipper(client).submit(fn, *args, **kwargs)


def map(client: Any, fn: Callable[..., Any], /, *iterables: Iterable[Any]) -> list[Future[Any]]:
    """:func:`submit` of ``fn`` over ``zip(*iterables)``: a list of futures, in order.

    ``fn`` is serialized once for the whole call (each task's payload holds the same bytes of
    it, and the arguments of that task).
    """
    return Shipper(client).map(fn, *iterables)


class _Loaded:
    """``fn`` serialized once, loaded and called on the worker."""

    __slots__ = ("code",)

    def __init__(self, code: bytes) -> None:
        self.code = code

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return loads(self.code)(*args, **kwargs)
