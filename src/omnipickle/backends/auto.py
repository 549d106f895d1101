"""The ``auto`` backend: the cheapest way to serialize each object, chosen per object.

One stream, one C pickler, several ways to reduce an object:

* Plain data and importable functions, classes and instances: the C pickler, untouched.
* Lambdas, closures, local functions, ``__main__`` code, dynamic classes and modules registered
  by value: by value, with cloudpickle's reducers (cloudpickle is imported the first time one is
  met, never for plain data).
* Types only dill handles (weak references, open files...): dill's reducer, borrowed for that
  object alone, so the object's parts stay in our stream and shared references survive.
* Locks, conditions, semaphores, events, barriers: recreated fresh, with our own reducers.

Two measured facts decide how the pickler is driven:

* The C pickler calls ``reducer_override`` for every object that is not a builtin container or
  atom. For dicts, lists and strings that is never, so :class:`AutoPickler` costs nothing extra;
  for instance-heavy data a Python call per instance costs ~12% or more.
* Restarting a dump that failed half-way (the obvious way to avoid that cost) wastes what was
  done, up to ~1.7x on data with one lambda buried in it.

So a constant-time probe looks at the first items: builtin-only data goes to
:class:`AutoPickler` directly (no restart is ever needed); instance-heavy data first tries the C
pickler with no ``reducer_override`` at all, watching each ~64 KiB frame for a reference to
``__main__`` (which the plain pickler would write by name, loadable only in this process) and
stopping at the first such frame; only then does it fall back to :class:`AutoPickler`.
"""

from __future__ import annotations

import contextvars
import copyreg
import functools
import itertools
import operator
import pickle
import sys
import types
import weakref
from collections.abc import Callable
from typing import Any

from .._reconstruct import import_dill
from ..diagnostics import describe_failure, find_paths, locate_failure, type_name
from ..errors import PICKLING_FAILURES, PicklingError
from ..resources import has_user_rules, refuse, resource_rule
from .base import (
    Backend,
    BufferCallback,
    ChunkSink,
    Pickled,
    WatchedMarkerFound,
    run_pickler,
)

__all__ = [
    "AUTO",
    "AutoBackend",
    "AutoPickler",
    "ChainedTable",
    "DispatchTable",
    "borrowed_reducer",
    "importable",
]

_MAIN_MARKER = b"__main__"
_FIRST_ATTEMPT_FAILURES: tuple[type[BaseException], ...] = (WatchedMarkerFound, *PICKLING_FAILURES)


class _DumpState:
    """What one dump used; reducers record into it through a context variable."""

    __slots__ = ("by_value", "dropped", "uses")

    def __init__(self) -> None:
        self.uses: set[str] = set()
        self.dropped: list[Any] = []
        # Code by value inside a blob dill wrote whole (the pickler's own flag covers the rest).
        self.by_value = False

    def clear(self) -> None:
        """Forget everything recorded (the dump is about to be redone)."""
        self.uses.clear()
        self.dropped.clear()
        self.by_value = False


_STATE: contextvars.ContextVar[_DumpState | None] = contextvars.ContextVar(
    "omnipickle_dump_state", default=None
)


def _note(backend: str) -> None:
    state = _STATE.get()
    if state is not None:
        state.uses.add(backend)


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
    dill = import_dill()
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
    from .dill_backend import dumps_whole  # imports dill: only when a dill-only object is met

    blob, by_value = dumps_whole(obj, pickle.HIGHEST_PROTOCOL)
    state = _STATE.get()
    if by_value and state is not None:
        state.by_value = True
    return (load_dill, (blob,))


def _dill_only_types() -> list[type]:
    return [
        weakref.ReferenceType,
        weakref.ProxyType,
        weakref.CallableProxyType,
        super,
        contextvars.Context,
    ]


_SPECIAL: dict[type, Callable[[Any], Any]] = dict.fromkeys(_dill_only_types(), _reduce_with_dill)


# --- lazily borrowed cloudpickle reducers ---------------------------------------------------


@functools.cache
def _cloudpickle() -> Any:
    import cloudpickle.cloudpickle as cp

    return cp


def _reduce_with_cloudpickle(obj: Any) -> Any:
    """cloudpickle's reducer for a type the standard pickler cannot handle (code, cells...)."""
    _note("cloudpickle")
    return _cloudpickle().Pickler._dispatch_table[type(obj)](obj)


def _cloudpickle_only_types() -> list[type]:
    import abc
    import collections
    import dataclasses
    import typing

    odict: collections.OrderedDict[Any, Any] = collections.OrderedDict()
    return [
        types.CellType,
        types.CodeType,
        types.ModuleType,
        types.MappingProxyType,
        types.GetSetDescriptorType,
        property,
        classmethod,
        staticmethod,
        abc.abstractproperty,
        abc.abstractclassmethod,
        abc.abstractstaticmethod,
        typing.TypeVar,
        type({}.keys()),
        type({}.values()),
        type({}.items()),
        type(odict.keys()),
        type(odict.values()),
        type(odict.items()),
        memoryview,
        weakref.WeakSet,
        dataclasses._FIELD_BASE,  # type: ignore[attr-defined]
    ]


_TABLE: dict[type, Callable[[Any], Any]] = {
    **dict.fromkeys(_cloudpickle_only_types(), _reduce_with_cloudpickle),
    **_SPECIAL,
}


def borrowed_reducer(cls: type) -> str | None:
    """Whose reducer auto borrows for instances of exactly ``cls``: ``"dill"``,
    ``"cloudpickle"``, or ``None`` (the standard machinery, or a resource rule)."""
    reducer = _TABLE.get(cls)
    if reducer is _reduce_with_dill:
        return "dill"
    if reducer is _reduce_with_cloudpickle:
        return "cloudpickle"
    return None


# --- the dispatch table: per-type decisions, made once per type ----------------------------


def _drop_live_resource(obj: Any) -> tuple[Any, ...]:
    """Replace a live resource by a placeholder that loads as ``None`` (or a re-attached
    object) and remember it, so that the envelope can say what was dropped and where."""
    from .._reconstruct import dropped_resource

    state = _STATE.get()
    index = 0
    if state is not None:
        index = len(state.dropped)
        state.dropped.append(obj)
    return (dropped_resource, (index,))


class DispatchTable(dict[type, Callable[[Any], Any]]):
    """The pickler's ``dispatch_table``: a dict, so the C pickler looks types up in C.

    The first time a type is missing, :meth:`__missing__` decides what it gets (a reducer of
    the resource registry, a refusal or a drop for live resources, subclasses included, or the
    type's own ``__reduce_ex__`` through ``operator.methodcaller``, a C callable) and stores
    it, so every later instance of that type is dispatched without running Python code.
    """

    __slots__ = ("_default", "_drop")

    def __init__(self, protocol: int, *, drop: bool = False) -> None:
        super().__init__(copyreg.dispatch_table)
        self.update(_TABLE)
        self._default = operator.methodcaller("__reduce_ex__", protocol)
        self._drop = drop

    def __missing__(self, cls: type) -> Callable[[Any], Any]:
        if issubclass(cls, type):
            # Classes with a metaclass: the pickler saves them by name (or reducer_override
            # by value) only when the table has no entry, so leave none.
            raise KeyError(cls)
        rule = resource_rule(cls)  # type: ignore[arg-type]
        reducer: Callable[[Any], Any]
        if rule is None:
            reducer = self._default
        elif rule.action == "drop":
            reducer = _drop_live_resource if self._drop else refuse
        else:
            assert rule.reducer is not None
            reducer = rule.reducer
        self[cls] = reducer
        return reducer


# The slot the C pickler reads its table from (AutoPickler's property stands in front of it).
_C_DISPATCH_TABLE: Any = pickle.Pickler.__dict__["dispatch_table"]


class ChainedTable:
    """A dispatch table made of a user's table, consulted first, and auto's own.

    The user's table is read at each lookup, never copied: entries added to it after it was
    set (``p.dispatch_table[MyType] = reduce_my_type``, as the pickle documentation shows) are
    honoured.
    """

    __slots__ = ("first", "then")

    def __init__(self, first: Any, then: DispatchTable) -> None:
        self.first = first
        self.then = then

    def __getitem__(self, cls: type) -> Callable[[Any], Any]:
        try:
            reducer: Callable[[Any], Any] = self.first[cls]
        except KeyError:
            return self.then[cls]
        return reducer


def _has_reducer(table: Any, cls: type) -> bool:
    try:
        table[cls]
    except KeyError:
        return False
    return True


def _class_reduce(cls: type) -> Any:
    """cloudpickle's by-value class reducer, with two of its losses repaired.

    cloudpickle rebuilds a class with a plain namespace, so a class with ``__slots__`` comes
    back with a ``__dict__`` (its instances silently grow one) and a nested class loses its
    ``__qualname__`` (``Outer.Inner`` becomes ``Inner``). Both are passed to the class
    constructor here, as the original ``class`` statement did.
    """
    cp = _cloudpickle()
    rv = cp._class_reduce(cls)
    if rv is NotImplemented or rv[0] is not cp._make_skeleton_class:
        return rv  # by reference, a builtin oddity (NoneType...), or an enum by value
    func, args, *rest = rv
    type_kwargs = dict(args[3])
    type_kwargs["__qualname__"] = cls.__qualname__
    # typing.NamedTuple's metaclass makes its own (empty) __slots__ and refuses a given one.
    if "__slots__" in cls.__dict__ and not _is_typed_namedtuple(cls):
        type_kwargs["__slots__"] = cls.__dict__["__slots__"]
    return (func, (*args[:3], type_kwargs, *args[4:]), *rest)


def _is_typed_namedtuple(cls: type) -> bool:
    import typing

    return any(base is typing.NamedTuple for base in cls.__dict__.get("__orig_bases__", ()))


# --- by reference or by value ----------------------------------------------------------------


def _by_value_modules() -> frozenset[str]:
    cloudpickle = sys.modules.get("cloudpickle")
    if cloudpickle is None:
        return frozenset()
    return frozenset(cloudpickle.list_registry_pickle_by_value())


def _registered(module: str, by_value: frozenset[str]) -> bool:
    if not by_value:
        return False
    parts = module.split(".")
    return any(".".join(parts[:i]) in by_value for i in range(1, len(parts) + 1))


def importable(obj: Any, by_value: frozenset[str] = frozenset()) -> bool:
    """Whether the function or class ``obj`` loads by name in a fresh interpreter."""
    module_name = getattr(obj, "__module__", None)
    if not isinstance(module_name, str) or module_name == "__main__":
        return False
    if _registered(module_name, by_value):
        return False
    module = sys.modules.get(module_name)
    qualname = getattr(obj, "__qualname__", None)
    if module is None or not isinstance(qualname, str) or "<" in qualname:
        return False
    found: Any = module
    try:
        for part in qualname.split("."):
            found = getattr(found, part)
    except AttributeError:
        return False
    return found is obj


# --- the pickler -----------------------------------------------------------------------------


class AutoPickler(pickle.Pickler):
    """The C pickler, plus code by value, dill-only types and recreated primitives.

    Writes a plain pickle stream (no envelope). Subclasses may define ``dispatch_table``,
    ``reducer_override`` (call ``super().reducer_override(obj)`` to keep code by value) and
    ``persistent_id`` as with :class:`pickle.Pickler`; a ``dispatch_table`` (a subclass's class
    attribute, or one set on the instance) is consulted before auto's own, which still covers
    every type it does not.

    Args:
        file: a binary file object (anything with ``write``).
        protocol: as for :class:`pickle.Pickler` (default: the highest).
        fix_imports, buffer_callback: as for :class:`pickle.Pickler`.
    """

    # Whether live resources become placeholders (on_unpicklable="drop") instead of errors.
    _drop_resources = False

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
        # Built per pickler so that copyreg registrations made after import are honoured.
        self._auto_table = DispatchTable(protocol, drop=self._drop_resources)
        # A subclass's __init__ may have set dispatch_table before calling this one.
        self._user_table: Any = self.__dict__.get("_user_table")
        super().__init__(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)
        if _subclass_defines(type(self), "dispatch_table", AutoPickler):
            self._install(self.dispatch_table)  # the subclass's own, as pickle would use it
        else:
            self._install(self._user_table)
        self.proto = protocol
        self.globals_ref: dict[int, dict[str, Any]] = {}
        self.by_value = False
        self._by_value_modules = _by_value_modules()

    @property
    def dispatch_table(self) -> Any:
        """The reducers by type, as for :class:`pickle.Pickler`.

        A table you set (on the instance, or as a class attribute of a subclass) is consulted
        first; for the types it does not cover, auto's own still applies (code by value, locks
        recreated, live resources refused or dropped). A copy of this table (``dict(...)``, as
        loky makes) assigned back keeps all of that.
        """
        return self._user_table if self._user_table is not None else self._auto_table

    @dispatch_table.setter
    def dispatch_table(self, table: Any) -> None:
        self._user_table = table
        if "_auto_table" in self.__dict__:
            self._install(table)

    def _install(self, table: Any) -> None:
        """Give the C pickler the table it looks types up in."""
        ours = self._auto_table
        self._lookup: Any = ours if table is None or table is ours else ChainedTable(table, ours)
        _C_DISPATCH_TABLE.__set__(self, self._lookup)

    def reducer_override(self, obj: Any) -> Any:
        """Reduce functions and classes that cannot be found by name by value.

        ``by_value`` is set from what the reducers do, never from the bytes written: every
        function written by value brings its code object here (the C pickler asks this method
        before the dispatch table, which has cloudpickle's code reducer), and a class counts
        when it is rebuilt from its namespace.
        """
        t = type(obj)
        if t is _FunctionType:
            if importable(obj, self._by_value_modules):
                return NotImplemented
            # Not importable by name: by value (cloudpickle's reducer, without its own check,
            # which would look the function up a second time).
            _note("cloudpickle")
            return _cloudpickle().Pickler._dynamic_function_reduce(self, obj)
        if t is _CodeType:
            self.by_value = True
            return NotImplemented
        if issubclass(t, type):
            if importable(obj, self._by_value_modules) or (
                t is not type and _has_reducer(self._lookup, t)
            ):
                # By name, or by the reducer registered for its metaclass (copyreg.pickle).
                return NotImplemented
            rv = _class_reduce(obj)
            if rv is not NotImplemented:
                _note("cloudpickle")
                if rv[0] in _by_value_class_constructors():
                    self.by_value = True
            return rv
        return NotImplemented

    # cloudpickle's function reducer calls these on the pickler it is given.
    def _dynamic_function_reduce(self, func: Any) -> Any:
        return _cloudpickle().Pickler._dynamic_function_reduce(self, func)

    def _function_getnewargs(self, func: Any) -> Any:
        return _cloudpickle().Pickler._function_getnewargs(self, func)


_FunctionType = types.FunctionType
_CodeType = types.CodeType


@functools.cache
def _by_value_class_constructors() -> tuple[Any, ...]:
    cp = _cloudpickle()
    return (cp._make_skeleton_class, cp._make_skeleton_enum)


def _subclass_defines(cls: type, name: str, stop: type) -> bool:
    for klass in cls.__mro__:
        if klass is stop:
            return False
        if name in klass.__dict__:
            return True
    return False


def plain_pickler(
    file: Any, protocol: int, fix_imports: bool = True, buffer_callback: BufferCallback = None
) -> pickle.Pickler:
    """The bare C pickler: no ``reducer_override`` and no ``dispatch_table``.

    A dispatch table would cost a failed lookup (a ``KeyError`` raised and cleared in C) or a
    call per instance; without one the pickler reads ``copyreg``'s table with no exception on a
    miss. Everything auto handles specially (locks, weak references, files, live resources,
    code) fails here, natively, and the dump goes to :class:`AutoPickler`.
    """
    return pickle.Pickler(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)


def auto_pickler(
    file: Any, protocol: int, fix_imports: bool = True, buffer_callback: BufferCallback = None
) -> AutoPickler:
    """An :class:`AutoPickler` (positional arguments, for the error locator)."""
    return AutoPickler(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)


# --- the probe ---------------------------------------------------------------------------------

# Types the C pickler saves without calling reducer_override.
_BUILTIN = frozenset(
    {str, int, float, bool, bytes, type(None), bytearray, dict, list, tuple, set, frozenset}
)
_CONTAINERS = (list, tuple, set, frozenset)
_PROBE_NODES = 64
_PROBE_FANOUT = 8

CODE, INSTANCES, BUILTIN = "code", "instances", "builtin"


def probe(obj: Any, by_value: frozenset[str] = frozenset()) -> str:
    """A bounded look at the first items of ``obj``: what kind of data is this?

    Returns ``CODE`` if it visibly holds code that must go by value (a lambda, an instance of
    a ``__main__`` class), ``INSTANCES`` if it holds instances of other classes (so that a
    ``reducer_override`` would be called per instance), else ``BUILTIN``.
    """
    queue = [obj]
    seen = 0
    kind = BUILTIN
    while queue and seen < _PROBE_NODES:
        item = queue.pop(0)
        seen += 1
        t = type(item)
        if t in _BUILTIN:
            if t is dict:
                queue.extend(itertools.islice(item.values(), _PROBE_FANOUT))
            elif t in _CONTAINERS:
                queue.extend(itertools.islice(item, _PROBE_FANOUT))
            continue
        try:
            if t is _FunctionType or isinstance(item, type):
                if not importable(item, by_value):
                    return CODE
                continue
            if not importable(t, by_value):
                return CODE
            kind = INSTANCES
            state = getattr(item, "__dict__", None)
        except Exception:  # noqa: BLE001 - the object's own attribute hooks failed
            # (a __getattribute__ that recurses forever, say): the pickler meets the same
            # failure and reports it with its path and type; the probe only guesses.
            return CODE
        if type(state) is dict:
            queue.extend(itertools.islice(state.values(), _PROBE_FANOUT))
    return kind


# --- the backend -------------------------------------------------------------------------------


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


class _DroppingPickler(AutoPickler):
    """:class:`AutoPickler` for ``on_unpicklable="drop"``: live resources, and the objects in
    ``drop_ids`` (found unpicklable by an earlier attempt), become placeholders."""

    _drop_resources = True

    def __init__(
        self,
        file: Any,
        protocol: int,
        fix_imports: bool = True,
        buffer_callback: BufferCallback = None,
        drop_ids: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)
        self._drop_ids = drop_ids

    def reducer_override(self, obj: Any) -> Any:
        if id(obj) in self._drop_ids:
            return _drop_live_resource(obj)
        return super().reducer_override(obj)


# A graph with more distinct unpicklable objects than this is not worth dumping one by one.
_MAX_DROP_ROUNDS = 64


class AutoBackend(Backend):
    """Per object: the C pickler, code by value, dill, or a recreated primitive."""

    name = "auto"
    requires = None
    supports_drop = True
    streams = True

    def dumps(
        self,
        obj: Any,
        *,
        protocol: int,
        fix_imports: bool,
        buffer_callback: BufferCallback,
        on_unpicklable: str = "raise",
        sink: Any = None,
    ) -> Pickled:
        callback = _ReplayingCallback(buffer_callback) if buffer_callback is not None else None
        if sink is None:
            sink = ChunkSink()
        by_value_modules = _by_value_modules()
        state = _DumpState()
        token = _STATE.set(state)
        try:
            if on_unpicklable == "drop":
                return self._dump_dropping(obj, protocol, fix_imports, callback, state, sink)
            # User-registered resource rules may cover types pickle handles natively: then
            # every object must go through the dispatch table.
            if not has_user_rules() and probe(obj, by_value_modules) == INSTANCES:
                sink.watch = (_MAIN_MARKER, *(m.encode() for m in by_value_modules))
                try:
                    plain_pickler(sink, protocol, fix_imports, callback).dump(obj)
                except _FIRST_ATTEMPT_FAILURES:
                    pass  # needs code by value, or fails anyway: the next pickler says where
                else:
                    uses = frozenset({"pickle", *state.uses})
                    return Pickled(sink.chunks, sink.length, sink.crc, uses, by_value=False)
                finally:
                    sink.close()
                    sink.watch = ()
                sink.reset()
                if callback is not None:
                    callback.rewind()
                state.clear()
            sink, pickler = run_pickler(
                obj,
                auto_pickler,
                protocol=protocol,
                fix_imports=fix_imports,
                buffer_callback=callback,
                sink=sink,
            )
            uses = frozenset({"pickle", *state.uses})
            by_value = state.by_value or (isinstance(pickler, AutoPickler) and pickler.by_value)
            return Pickled(sink.chunks, sink.length, sink.crc, uses, by_value=by_value)
        finally:
            _STATE.reset(token)

    def _dump_dropping(
        self,
        obj: Any,
        protocol: int,
        fix_imports: bool,
        callback: _ReplayingCallback | None,
        state: _DumpState,
        sink: Any,
    ) -> Pickled:
        drop_ids: set[int] = set()
        for _ in range(_MAX_DROP_ROUNDS):
            state.clear()
            sink.reset()
            if callback is not None:
                callback.rewind()
            make = functools.partial(_DroppingPickler, drop_ids=frozenset(drop_ids))
            pickler = make(sink, protocol, fix_imports, callback)
            try:
                pickler.dump(obj)
            except PICKLING_FAILURES as exc:
                locate = functools.partial(make, protocol=protocol, fix_imports=fix_imports)
                _, culprit, _ = locate_failure(obj, exc, locate)
                if culprit is obj or id(culprit) in drop_ids:
                    raise describe_failure(obj, exc, locate) from exc
                drop_ids.add(id(culprit))
                continue
            finally:
                sink.close()
            paths = find_paths(obj, state.dropped)
            dropped = [
                {"path": path, "type": type_name(o)}
                for path, o in zip(paths, state.dropped, strict=True)
            ]
            uses = frozenset({"pickle", *state.uses})
            extra = {"dropped": dropped} if dropped else {}
            by_value = state.by_value or pickler.by_value
            return Pickled(sink.chunks, sink.length, sink.crc, uses, by_value=by_value, extra=extra)
        raise PicklingError(
            f"cannot serialize the object: more than {_MAX_DROP_ROUNDS} different parts of it "
            "cannot be serialized; omnipickle.explain(obj) lists them"
        )


AUTO = AutoBackend()
