"""The ``auto`` backend: the cheapest way to serialize each object, chosen per object.

Two measured facts shape it:

* A C pickler with *any* Python ``reducer_override`` pays for a Python call on every instance it
  meets (~12% on instance-heavy data, and cloudpickle's checks cost far more). So the first
  attempt is a plain C ``pickle.Pickler`` whose only addition is a ``dispatch_table`` that is a
  plain ``dict`` (looked up in C, keyed by exact type) holding our reducers for locks, events,
  weakrefs and friends. Plain data and importable objects never leave C.
* The plain pickler cannot serialize lambdas, closures or dynamic classes (it raises), and it
  would write ``__main__`` functions and classes *by reference*, which loads only in the same
  process. Raising is caught; a reference to ``__main__`` (or a module registered by value) is
  seen by watching the bytes of each ~64 KiB frame as the pickler hands it over, so the attempt
  stops at the first frame that needs code by value. A short probe of the object's first items
  sends obviously code-heavy data (a list of closures, of ``__main__`` instances) straight to the
  second pickler without a first attempt.

The second pickler reduces functions and classes that cannot be found by name by value, with
cloudpickle's reducers, in the same stream: everything else still goes through the C paths.
Objects only dill can handle go to dill one by one (dill's reducer is borrowed for that object
and its parts stay in our stream, so shared references survive).
"""

from __future__ import annotations

import contextvars
import copyreg
import functools
import io
import pickle
import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

from .base import (
    PICKLING_FAILURES,
    Backend,
    BufferCallback,
    ChunkSink,
    Pickled,
    WatchedMarkerFound,
    fail,
)

__all__ = ["AUTO", "AutoBackend"]

_MAIN_MARKER = b"__main__"
_FIRST_ATTEMPT_FAILURES: tuple[type[BaseException], ...] = (WatchedMarkerFound, *PICKLING_FAILURES)


class _DumpState:
    """What one dump used; reducers record into it through a context variable."""

    __slots__ = ("uses",)

    def __init__(self) -> None:
        self.uses: set[str] = set()


_STATE: contextvars.ContextVar[_DumpState | None] = contextvars.ContextVar(
    "omnipickle_dump_state", default=None
)


def _note(backend: str) -> None:
    state = _STATE.get()
    if state is not None:
        state.uses.add(backend)


# --- reducers for synchronization primitives: recreated fresh, no dill needed ---------------


def _reduce_lock(obj: Any) -> tuple[Any, ...]:
    from .._reconstruct import make_lock

    return (make_lock, ())


def _reduce_rlock(obj: Any) -> tuple[Any, ...]:
    from .._reconstruct import make_rlock

    return (make_rlock, ())


def _reduce_condition(obj: threading.Condition) -> tuple[Any, ...]:
    from .._reconstruct import make_condition

    return (make_condition, (obj._lock,))  # type: ignore[attr-defined]


def _reduce_semaphore(obj: threading.Semaphore) -> tuple[Any, ...]:
    from .._reconstruct import make_semaphore

    return (make_semaphore, (obj._value,))


def _reduce_bounded_semaphore(obj: threading.BoundedSemaphore) -> tuple[Any, ...]:
    from .._reconstruct import make_bounded_semaphore

    return (make_bounded_semaphore, (obj._value, obj._initial_value))  # type: ignore[attr-defined]


def _reduce_event(obj: threading.Event) -> tuple[Any, ...]:
    from .._reconstruct import make_event

    return (make_event, (obj.is_set(),))


def _reduce_barrier(obj: threading.Barrier) -> tuple[Any, ...]:
    from .._reconstruct import make_barrier

    return (make_barrier, (obj.parties, obj._action, obj._timeout))  # type: ignore[attr-defined]


# --- objects only dill handles ---------------------------------------------------------------


class _DillRecorder:
    """Stands in for a dill pickler so dill's reducer tells us its reduce tuple.

    dill's per-type savers mostly end in ``pickler.save_reduce(func, args, ...)``; recording that
    call lets the parts (a weakref's referent, say) be saved by *our* pickler, sharing its memo.
    """

    _trace_depth = None  # dill's trace logger reads it

    def __init__(self) -> None:
        self.result: tuple[Any, ...] | None = None

    def save_reduce(
        self,
        func: Any,
        args: Any,
        state: Any = None,
        listitems: Any = None,
        dictitems: Any = None,
        state_setter: Any = None,
        obj: Any = None,
    ) -> None:
        self.result = (func, args, state, listitems, dictitems, state_setter)


def _reduce_with_dill(obj: Any) -> tuple[Any, ...]:
    _note("dill")
    import dill

    saver = dill.Pickler.dispatch.get(type(obj))
    if saver is not None:
        recorder = _DillRecorder()
        try:
            saver(recorder, obj)
        except (AttributeError, TypeError):
            recorder.result = None  # the saver needs a real dill pickler: use dill whole below
        if recorder.result is not None:
            return recorder.result
    from .._reconstruct import load_dill

    return (load_dill, (dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL),))


def _dill_only_types() -> list[type]:
    found: list[type] = [
        weakref.ReferenceType,
        weakref.ProxyType,
        weakref.CallableProxyType,
        io.FileIO,
        io.BufferedReader,
        io.BufferedWriter,
        io.BufferedRandom,
        io.TextIOWrapper,
        super,
        contextvars.Context,
    ]
    return found


_SPECIAL: dict[type, Callable[[Any], Any]] = {
    type(threading.Lock()): _reduce_lock,
    type(threading.RLock()): _reduce_rlock,
    threading.Condition: _reduce_condition,
    threading.Semaphore: _reduce_semaphore,
    threading.BoundedSemaphore: _reduce_bounded_semaphore,
    threading.Event: _reduce_event,
    threading.Barrier: _reduce_barrier,
    **dict.fromkeys(_dill_only_types(), _reduce_with_dill),
}


def special_reducers() -> dict[type, Callable[[Any], Any]]:
    """The per-type reducers auto adds to the pickler's dispatch table (a copy)."""
    return dict(_SPECIAL)


# --- the probe and the watched markers -------------------------------------------------------


def _by_value_modules() -> frozenset[str]:
    cloudpickle = sys.modules.get("cloudpickle")
    if cloudpickle is None:
        return frozenset()
    return frozenset(cloudpickle.list_registry_pickle_by_value())


def _needs_value(obj: Any, by_value: frozenset[str]) -> bool:
    """True if the function or class ``obj`` cannot be pickled by reference elsewhere."""
    module = getattr(obj, "__module__", None)
    if module is None or module == "__main__":
        return True
    qualname = getattr(obj, "__qualname__", "")
    if "<" in qualname:  # <lambda>, <locals>
        return True
    return bool(by_value) and (module in by_value or module.split(".")[0] in by_value)


_ATOMS = frozenset({str, int, float, bool, bytes, type(None), complex, bytearray})


def _probe(obj: Any, by_value: frozenset[str], depth: int = 0) -> bool:
    """A constant-time look at the first items: does this obviously need code by value?"""
    t = type(obj)
    if t in _ATOMS:
        return False
    if t is list or t is tuple:
        return bool(obj) and depth < 3 and _probe(obj[0], by_value, depth + 1)
    if t is dict:
        if not obj or depth >= 3:
            return False
        first = next(iter(obj.values()))
        return _probe(first, by_value, depth + 1)
    if t is types.FunctionType or isinstance(obj, type):
        return _needs_value(obj, by_value)
    return _needs_value(t, by_value)


# --- the second pickler ----------------------------------------------------------------------


class _ReplayingCallback:
    """Calls the user's ``buffer_callback`` once per buffer, even if the dump is redone."""

    __slots__ = ("pos", "results", "user")

    def __init__(self, user: Callable[[pickle.PickleBuffer], Any]) -> None:
        self.user = user
        self.results: list[Any] = []
        self.pos = 0

    def __call__(self, buf: pickle.PickleBuffer) -> Any:
        if self.pos < len(self.results):
            result = self.results[self.pos]
        else:
            result = self.user(buf)
            self.results.append(result)
        self.pos += 1
        return result

    def rewind(self) -> None:
        self.pos = 0


def _tracked(reducer: Callable[[Any], Any], backend: str) -> Callable[[Any], Any]:
    @functools.wraps(reducer)
    def reduce(obj: Any) -> Any:
        _note(backend)
        return reducer(obj)

    return reduce


@functools.cache
def _value_pickler_class() -> type[pickle.Pickler]:
    """The pickler that serializes code by value (built on first need: imports cloudpickle)."""
    import cloudpickle
    from cloudpickle import cloudpickle as cp

    base: type[pickle.Pickler] = cloudpickle.Pickler
    class_reduce = cp._class_reduce
    table = {t: _tracked(f, "cloudpickle") for t, f in base._dispatch_table.items()}  # type: ignore[attr-defined]
    function_type = types.FunctionType

    class ValuePickler(base):  # type: ignore[valid-type,misc]
        def __init__(
            self,
            file: Any,
            protocol: int,
            fix_imports: bool = True,
            buffer_callback: BufferCallback = None,
        ) -> None:
            # A plain dict: looked up in C (cloudpickle's ChainMap is not). The C pickler reads
            # dispatch_table once, in __init__, so it must be in place before that call.
            self.dispatch_table = {**copyreg.dispatch_table, **table, **_SPECIAL}
            pickle.Pickler.__init__(
                self, file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback
            )
            # cloudpickle's own state (shared globals of functions pickled together).
            self.globals_ref: dict[int, dict[str, Any]] = {}
            self.proto = protocol

        def reducer_override(self, obj: Any) -> Any:
            t = type(obj)
            if t is function_type:
                rv = self._function_reduce(obj)
            elif issubclass(t, type):
                rv = class_reduce(obj)
            else:
                return NotImplemented
            if rv is not NotImplemented:
                _note("cloudpickle")
            return rv

        def dump(self, obj: Any) -> None:
            # cloudpickle's dump turns RecursionError into a plain PicklingError; we want
            # the original so the error report can say what happened.
            pickle.Pickler.dump(self, obj)

    return ValuePickler


def value_pickler(
    file: Any, protocol: int, fix_imports: bool = True, buffer_callback: BufferCallback = None
) -> pickle.Pickler:
    """A pickler that writes code by value where needed and everything else as pickle does."""
    return _value_pickler_class()(file, protocol, fix_imports, buffer_callback)


def plain_pickler(
    file: Any, protocol: int, fix_imports: bool = True, buffer_callback: BufferCallback = None
) -> pickle.Pickler:
    """The C pickler with auto's per-type reducers and nothing else."""
    p = pickle.Pickler(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)
    p.dispatch_table = {**copyreg.dispatch_table, **_SPECIAL}
    return p


class AutoBackend(Backend):
    """Per object: the C pickler, code by value, dill, or a recreated primitive."""

    name = "auto"
    requires = None

    def dumps(
        self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: BufferCallback
    ) -> Pickled:
        callback = _ReplayingCallback(buffer_callback) if buffer_callback is not None else None
        by_value_modules = _by_value_modules()
        state = _DumpState()
        token = _STATE.set(state)
        try:
            if not _probe(obj, by_value_modules):
                watch = (_MAIN_MARKER, *(m.encode() for m in by_value_modules))
                sink = ChunkSink(watch)
                try:
                    plain_pickler(sink, protocol, fix_imports, callback).dump(obj)
                except _FIRST_ATTEMPT_FAILURES:
                    pass  # needs code by value, or fails anyway: the second pickler says where
                else:
                    uses = frozenset({"pickle", *state.uses})
                    return Pickled(sink.chunks, sink.length, sink.crc, uses, by_value=False)
                if callback is not None:
                    callback.rewind()
                state.uses.clear()
            sink = ChunkSink()
            make = functools.partial(
                value_pickler, protocol=protocol, fix_imports=fix_imports, buffer_callback=callback
            )
            try:
                make(sink).dump(obj)
            except PICKLING_FAILURES as exc:
                probe = functools.partial(value_pickler, protocol=protocol, fix_imports=fix_imports)
                raise fail(obj, exc, probe) from exc
            by_value = "cloudpickle" in state.uses
            uses = frozenset({"pickle", *state.uses})
            return Pickled(sink.chunks, sink.length, sink.crc, uses, by_value=by_value)
        finally:
            _STATE.reset(token)

    def loads(
        self,
        data: memoryview,
        *,
        fix_imports: bool,
        encoding: str,
        errors: str,
        buffers: Any,
    ) -> Any:
        return pickle.loads(
            data, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
        )


AUTO = AutoBackend()


@functools.cache
def public_pickler_class() -> type[pickle.Pickler]:
    """``omnipickle.Pickler``: auto's by-value pickler with pickle's constructor.

    Built on first access (it subclasses cloudpickle's pickler, so it imports cloudpickle).
    """
    base = _value_pickler_class()

    class Pickler(base):  # type: ignore[valid-type,misc]
        """A drop-in ``pickle.Pickler`` that also writes lambdas, closures and ``__main__``
        code by value and recreates locks; it writes plain pickle streams (no envelope).

        Subclasses may define ``dispatch_table``, ``reducer_override`` and ``persistent_id`` as
        with :class:`pickle.Pickler`.
        """

        def __init__(
            self,
            file: Any,
            protocol: int | None = None,
            *,
            fix_imports: bool = True,
            buffer_callback: BufferCallback = None,
        ) -> None:
            if protocol is None or protocol < 0:
                protocol = pickle.HIGHEST_PROTOCOL
            own_table = _subclass_defines(type(self), "dispatch_table", Pickler)
            table: Any = getattr(self, "dispatch_table", None) if own_table else None
            super().__init__(file, protocol, fix_imports, buffer_callback)
            if table is not None:
                # A subclass's own table wins; re-run the C initializer so it reads it.
                self.dispatch_table = table
                pickle.Pickler.__init__(
                    self, file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback
                )

    Pickler.__module__ = "omnipickle"
    Pickler.__qualname__ = "Pickler"
    return Pickler


def _subclass_defines(cls: type, name: str, stop: type) -> bool:
    for klass in cls.__mro__:
        if klass is stop:
            return False
        if name in klass.__dict__:
            return True
    return False
