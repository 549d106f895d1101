"""The ``auto`` backend: the cheapest way to serialize each object, chosen per object.

One stream, one C pickler, several ways to reduce an object:

* Plain data and importable functions, classes and instances: the C pickler, untouched.
* Lambdas, closures, local functions, ``__main__`` code, dynamic classes and modules registered
  by value: by value, with cloudpickle's reducers (cloudpickle is imported the first time one is
  met, never for plain data). Bound methods and ``lru_cache`` functions go by name only when
  that name leads back to them. Those decisions are in :mod:`.by_value`.
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
stopping at the first such frame; only then does it fall back to :class:`AutoPickler`. A frame
that names ``getattr`` (a bound method, which the bare pickler writes by name unchecked) has the
dump redone by the C pickler with :class:`PlainTable`, which checks.
"""

from __future__ import annotations

import contextlib
import contextvars
import copyreg
import functools
import itertools
import marshal
import operator
import pickle
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from .. import _rebuild
from .._reconstruct import import_dill
from ..checksums import SMALL
from ..errors import PICKLING_FAILURES, PicklingError
from ..resources import has_user_rules, refuse, resource_rule, rules_generation
from . import builtin_types
from .base import (
    NO_WATCH,
    Backend,
    BufferCallback,
    ChunkSink,
    Pickled,
    Watch,
    WatchedMarkerFound,
    run_pickler,
)
from .by_value import (
    NAME_CHECKED,
    by_value_class_constructors,
    by_value_modules,
    class_reduce,
    cloudpickle_module,
    importable,
)
from .plain import (
    CODE,
    GETATTR_MARKER,
    INSTANCES,
    MAIN_MARKER,
    METHODS,
    PlainTable,
    plain_pickler,
    probe,
)

__all__ = [
    "AUTO",
    "AutoBackend",
    "AutoPickler",
    "ChainedTable",
    "DispatchTable",
    "borrowed_reducer",
    "importable",
    "recording",
]


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


@contextlib.contextmanager
def recording() -> Iterator[_DumpState]:
    """Record which backends the reducers use (``.uses``), and whether a blob dill wrote whole
    holds code by value (``.by_value``), while the block dumps: for picklers built on
    :class:`AutoPickler` that are driven from elsewhere (the deterministic pickler)."""
    state = _DumpState()
    token = _STATE.set(state)
    try:
        yield state
    finally:
        _STATE.reset(token)


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


def _reduce_with_cloudpickle(obj: Any) -> Any:
    """cloudpickle's reducer for a type the standard pickler cannot handle (code, cells...)."""
    _note("cloudpickle")
    return cloudpickle_module().Pickler._dispatch_table[type(obj)](obj)


def _cloudpickle_only_types() -> list[type]:
    import abc
    import dataclasses
    import typing

    return [
        types.CellType,
        types.CodeType,
        types.ModuleType,
        types.MappingProxyType,
        property,
        classmethod,
        staticmethod,
        abc.abstractproperty,
        abc.abstractclassmethod,
        abc.abstractstaticmethod,
        typing.TypeVar,
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
        # Lowest first, each update in C: memoryviews, dict views and descriptors; then the
        # methods and cached functions whose names are checked; then copyreg's registrations
        # (a user's comes before those two); then auto's own table.
        super().__init__(builtin_types.REDUCERS)
        self.update(NAME_CHECKED)
        self.update(copyreg.dispatch_table)
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
            reducer = builtin_types.array_reducer(cls, self._default)  # ndarray subclasses
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
        # The marshal bytes of the code objects of functions written by value, by id (each
        # entry keeps its code object alive, so the id stays its own): emptied with the memo
        # (clear_memo), whose bytes objects it names.
        self._code_bytes: dict[int, tuple[types.CodeType, bytes]] = {}
        self.by_value = False
        self._by_value_modules = by_value_modules()

    def clear_memo(self) -> None:
        """As :meth:`pickle.Pickler.clear_memo`; the code objects kept for it go too."""
        super().clear_memo()
        self._code_bytes.clear()

    def new_memo(self) -> None:
        """:meth:`clear_memo` with a new, small memo table. ``clear_memo`` keeps the table at
        the size it grew to and wipes every slot of it; after a large dump, replacing it costs
        what freeing it costs, once."""
        self.memo = {}
        self._code_bytes.clear()

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

    def reducer_for(self, cls: type) -> Callable[[Any], Any] | None:
        """The reducer the dispatch tables give instances of ``cls`` (the one the C pickler
        calls when :meth:`reducer_override` declines), or ``None`` for a class with a
        metaclass and no entry (the pickler saves it by name)."""
        try:
            reducer: Callable[[Any], Any] = self._lookup[cls]
        except KeyError:
            return None
        return reducer

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
            return self._function_by_value(obj)
        if t is _CodeType:
            self.by_value = True
            return _reduce_code(obj)
        if issubclass(t, type):
            if t is type and not obj.__flags__ & _HEAP_TYPE:
                # A type defined in C (CodeType, dict views...): it cannot change, nor can how
                # it is written, so that is decided once.
                static = _STATIC_TYPES.get(obj)
                if static is None:
                    static = _STATIC_TYPES[obj] = self._reduce_class(obj)
                rv, cloudpickle_used = static
                if cloudpickle_used:
                    _note("cloudpickle")
                return rv
            rv, cloudpickle_used = self._reduce_class(obj)
            if cloudpickle_used:
                _note("cloudpickle")
                if rv[0] in by_value_class_constructors():
                    self.by_value = True
            return rv
        return NotImplemented

    def _reduce_class(self, cls: type) -> tuple[Any, bool]:
        """How to write the class ``cls``: by name (``NotImplemented``), a reduce tuple, and
        whether cloudpickle's reducer gave it."""
        if importable(cls, self._by_value_modules) or (
            type(cls) is not type and _has_reducer(self._lookup, type(cls))
        ):
            # By name, or by the reducer registered for its metaclass (copyreg.pickle).
            return NotImplemented, False
        builtin = builtin_types.reduce_builtin_type(cls)  # type({}.keys())...
        if builtin is not None:
            return builtin, False
        rv = class_reduce(cls)
        return rv, rv is not NotImplemented

    def _function_by_value(self, func: types.FunctionType) -> Any:
        """A function that cannot be found by name, by value.

        Written for :func:`omnipickle._rebuild.function`: the code as marshal bytes, then the
        state, with one global for both, which the unpickler resolves once. What the state
        holds is what cloudpickle's reducer keeps (the globals the code uses, the submodules it
        reaches, the closure's contents, the attributes), so functions load as they do with it,
        in about half the time. A code object marshal cannot write and a closure with an empty
        cell take cloudpickle's own reducer, as do deterministic dumps (``_marshal_functions``).
        """
        cp = cloudpickle_module()
        if not self._marshal_functions:
            _note("cloudpickle")
            return cp.Pickler._dynamic_function_reduce(self, func)
        code = func.__code__
        closure = func.__closure__
        try:
            known = self._code_bytes.get(id(code))
            if known is None:
                # One bytes object per code object: pickle's memo writes it once per payload.
                known = self._code_bytes[id(code)] = (code, _marshal_dumps(code))
            code_bytes = known[1]
            values = None if closure is None else tuple([cell.cell_contents for cell in closure])
        except ValueError:  # an unmarshallable constant, or an empty cell
            _note("cloudpickle")
            return cp.Pickler._dynamic_function_reduce(self, func)
        self.by_value = True
        module_globals = func.__globals__
        # Functions of one module share one namespace in the payload, as with cloudpickle.
        namespace = self.globals_ref.setdefault(id(module_globals), {})
        if not namespace:
            for name in _NAMESPACE_KEYS:
                if name in module_globals:
                    namespace[name] = module_globals[name]
        refs = {
            name: module_globals[name]
            for name in cp._extract_code_globals(code)
            if name in module_globals
        }
        # In the order diagnostics walks a function's parts, so that a part that cannot
        # be written is the one a failed dump's message names.
        extra: dict[str, Any] = {}
        if func.__dict__:
            extra["__dict__"] = func.__dict__
        if func.__annotations__:
            extra["__annotations__"] = func.__annotations__
        if func.__kwdefaults__ is not None:
            extra["__kwdefaults__"] = func.__kwdefaults__
        type_params = getattr(func, "__type_params__", None)  # Python 3.12+
        if type_params:
            extra["__type_params__"] = type_params
        submodules = cp._find_imported_submodules(
            code, itertools.chain(refs.values(), values or ())
        )
        if submodules:
            extra["submodules"] = submodules
        name = func.__name__
        state = (
            extra or None,
            func.__defaults__,
            values,
            refs,
            func.__qualname__,
            func.__module__,
            func.__doc__,
        )
        cells = None if closure is None else len(closure)
        args = (code_bytes, namespace, None if name == code.co_name else name, cells)
        return _rebuild_function, args, state, None, None, _rebuild_function

    # Whether functions by value go as marshal bytes (deterministic dumps keep cloudpickle's
    # field-by-field form: marshal's bytes depend on reference counts).
    _marshal_functions = True

    # cloudpickle's function reducer calls these on the pickler it is given.
    def _dynamic_function_reduce(self, func: Any) -> Any:
        return cloudpickle_module().Pickler._dynamic_function_reduce(self, func)

    def _function_getnewargs(self, func: Any) -> Any:
        return cloudpickle_module().Pickler._function_getnewargs(self, func)


_FunctionType = types.FunctionType
_CodeType = types.CodeType


def _reduce_code(code: types.CodeType) -> Any:
    """A code object as ``marshal.loads`` of its bytes: the format Python itself stores code in,
    written and read in C (cloudpickle's reducer passes each of its ~20 fields through the
    pickler). Code by value loads only under the Python minor version that wrote it, as marshal
    requires. A code object marshal cannot write (a constant set by hand that is not of a type
    the compiler makes) goes to cloudpickle's reducer."""
    try:
        return _marshal_loads, (_marshal_dumps(code),)
    except ValueError:
        return NotImplemented


_marshal_loads = marshal.loads
_marshal_dumps = marshal.dumps
_rebuild_function = _rebuild.function
# What a by-value function's namespace starts with, for relative imports (as cloudpickle).
_NAMESPACE_KEYS = ("__package__", "__name__", "__path__", "__file__")
_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set for classes made by a class statement or type()
# How each type defined in C is written (there are a few hundred at most).
_STATIC_TYPES: dict[type, tuple[Any, bool]] = {}


def _subclass_defines(cls: type, name: str, stop: type) -> bool:
    for klass in cls.__mro__:
        if klass is stop:
            return False
        if name in klass.__dict__:
            return True
    return False


def auto_pickler(
    file: Any, protocol: int, fix_imports: bool = True, buffer_callback: BufferCallback = None
) -> AutoPickler:
    """An :class:`AutoPickler` (positional arguments, for the error locator)."""
    return AutoPickler(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)


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
    ``drop_ids`` (found unpicklable by an earlier attempt), become placeholders.

    A resource whose ``recreate``/``reopen`` rule refuses it (a running thread, a pipe opened
    from a descriptor) is dropped on the spot, without a second attempt; a file reopened at
    load time loads as ``None`` (with a warning) if it cannot be reopened there.
    """

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
        t = type(obj)
        rule = resource_rule(t)  # type: ignore[arg-type]
        # A copyreg registration wins over a resource rule, as in the dispatch table.
        if rule is not None and rule.reducer is not None and t not in copyreg.dispatch_table:
            try:
                rv = rule.reducer(obj)
            except _RESOURCE_REFUSALS:
                return _drop_live_resource(obj)
            return _reopen_or_drop(rv)
        return super().reducer_override(obj)


# What a resource reducer raises for an object it cannot rebuild (see resources.refuse).
_RESOURCE_REFUSALS: tuple[type[BaseException], ...] = (*PICKLING_FAILURES, OSError)


def _reopen_or_drop(rv: Any) -> Any:
    """A built-in file reopening that loads as ``None`` (and warns) where it cannot reopen."""
    from .._reconstruct import reopen_file

    if not (isinstance(rv, tuple) and len(rv) == 2 and rv[0] is reopen_file):
        return rv
    args = rv[1]
    if len(args) < 4 or args[3]:  # closed: nothing is reopened
        return rv
    # reopen_file(name, mode, position, closed, encoding, errors, newline, drop, buffering)
    args = (*args, *(None,) * (7 - len(args)))
    return (reopen_file, (*args[:7], True, *args[8:]))


def _cannot_drop(
    obj: Any, exc: BaseException, cause: BaseException, locate: Any, path: str, culprit: Any
) -> Any:
    """The error for a part the drop policy could not leave out: the caller's own message
    type (from ``describe_failure``), with a message that does not advise the policy in use."""
    from ..diagnostics import describe_failure, failure_reason, type_name  # the error path only

    error = describe_failure(obj, exc, locate)
    reason = failure_reason(culprit, cause)
    error.args = (
        f'cannot serialize {type_name(culprit)} at {path}: {reason}; on_unpicklable="drop" '
        "could not leave it out: leave it out of what you serialize, or give its class a "
        "__reduce__; omnipickle.explain(obj) lists every such part",
    )
    return error


# A graph with more distinct unpicklable objects than this is not worth dumping one by one.
_MAX_DROP_ROUNDS = 64


def _dump_plain(
    obj: Any,
    protocol: int,
    fix_imports: bool,
    callback: _ReplayingCallback | None,
    state: _DumpState,
    sink: Any,
    registered: frozenset[str],
    kind: str,
) -> Pickled | None:
    """Dump with the plain C pickler; ``None`` (and ``sink`` emptied) if the stream needs
    :class:`AutoPickler`.

    Pickle writes a bound method by name (``getattr(obj, name)``) without checking that the
    name leads back to it; :class:`PlainTable` checks, but costs ~5% on instance-heavy data.
    So unless the probe saw bound methods (``kind`` is ``METHODS``), the first attempt has no
    table, and a stream that names ``getattr`` is redone with one.
    """
    watch = (
        MAIN_MARKER,
        *(m.encode() for m in registered),
        *builtin_types.plain_path_markers(),  # ndarray subclasses with a __dict__
    )
    attempts: list[tuple[type[PlainTable] | None, tuple[bytes, ...]]] = [(PlainTable, watch)]
    if kind != METHODS:
        attempts.insert(0, (None, (*watch, GETATTR_MARKER)))
    for table, markers in attempts:
        sink.watch = Watch(markers)
        try:
            plain_pickler(sink, protocol, fix_imports, callback, table=table).dump(obj)
        except WatchedMarkerFound as exc:
            found = exc.args[0]
        except PICKLING_FAILURES:
            found = None  # needs code by value, or fails anyway: the next pickler says where
        else:
            uses = frozenset({"pickle", *state.uses})
            return Pickled(sink.chunks, sink.length, sink.crc, uses, by_value=False)
        finally:
            sink.close()
            sink.watch = NO_WATCH
        sink.reset()
        if callback is not None:
            callback.rewind()
        state.clear()
        if found != GETATTR_MARKER:
            break
    return None


# --- one pickler per thread, reused ------------------------------------------------------------
# Building an AutoPickler (its dispatch table, copied from copyreg's and filled type by type
# as the dumps go) costs more than pickling a small lambda. A thread keeps the last one it
# built, with what the table was built from; it is taken only while none of that has changed.


class _Kept:
    """A thread's reusable pickler, its sink, and what its table was built from."""

    __slots__ = ("copyreg_table", "fix_imports", "pickler", "protocol", "rules", "sink")

    def __init__(self, protocol: int, fix_imports: bool) -> None:
        self.protocol = protocol
        self.fix_imports = fix_imports
        self.copyreg_table = dict(copyreg.dispatch_table)
        self.rules = rules_generation()
        self.sink = ChunkSink()
        self.pickler = AutoPickler(self.sink, protocol, fix_imports=fix_imports)

    def current(self, protocol: int, fix_imports: bool) -> bool:
        return (
            protocol == self.protocol
            and fix_imports is self.fix_imports
            and self.rules == rules_generation()
            and copyreg.dispatch_table == self.copyreg_table
        )


_KEPT = threading.local()

_SHRINK_MEMO_AFTER = 1 << 10
"""A kept pickler gets a new memo table (~90 ns) after a stream longer than this (bytes). The
table keeps the size it grew to, and ``clear_memo`` wipes all of it: after a 2 KB stream of a
thousand objects it takes 1.5 us, after 200,000 dicts over 1 ms, on every later dump."""


def _reused_pickler(
    obj: Any, protocol: int, fix_imports: bool, registered: frozenset[str]
) -> tuple[list[Any], int, int | None, bool] | None:
    """Dump ``obj`` with this thread's kept pickler: the chunks, length, checksum and whether
    code went by value; ``None`` if it failed (the caller redoes it with a new pickler, which
    reports the failure where it is)."""
    kept: _Kept | None = getattr(_KEPT, "kept", None)
    _KEPT.kept = None  # taken: a dumps nested in this one (a reducer's) builds its own
    if kept is None or not kept.current(protocol, fix_imports):
        kept = _Kept(protocol, fix_imports)
    pickler, sink = kept.pickler, kept.sink
    pickler.globals_ref = {}
    pickler.by_value = False
    pickler._by_value_modules = registered
    try:
        pickler.dump(obj)
    except Exception:  # noqa: BLE001 - redone by the caller; this pickler is not kept
        sink.close()
        return None
    except BaseException:  # KeyboardInterrupt, SystemExit...: not redone, not kept
        sink.close()
        raise
    finally:
        # Let go of what was dumped (see _SHRINK_MEMO_AFTER).
        if sink.length > _SHRINK_MEMO_AFTER:
            pickler.new_memo()
        else:
            pickler.clear_memo()
    # A small stream's envelope is checksummed with CRC-32 where it is built: no sum here.
    crc = sink.crc if sink.length >= SMALL else None
    result = sink.chunks, sink.length, crc, pickler.by_value
    sink.reset()
    _KEPT.kept = kept
    return result


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
        fresh_sink = sink is None
        if sink is None:
            sink = ChunkSink()
        registered = by_value_modules()
        state = _DumpState()
        token = _STATE.set(state)
        try:
            if on_unpicklable == "drop":
                return self._dump_dropping(obj, protocol, fix_imports, callback, state, sink)
            # User-registered resource rules may cover types pickle handles natively: then
            # every object must go through the dispatch table.
            # (A function at the root goes to AutoPickler whatever the probe would say.)
            kind = (
                CODE if type(obj) is _FunctionType or has_user_rules() else probe(obj, registered)
            )
            if kind in (INSTANCES, METHODS):
                plain = _dump_plain(
                    obj, protocol, fix_imports, callback, state, sink, registered, kind
                )
                if plain is not None:
                    return plain
            if callback is None and fresh_sink:
                reused = _reused_pickler(obj, protocol, fix_imports, registered)
                if reused is not None:
                    chunks, length, crc, by_value = reused
                    uses = frozenset({"pickle", *state.uses})
                    return Pickled(chunks, length, crc, uses, by_value=state.by_value or by_value)
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
        from ..diagnostics import describe_failure, find_paths, locate_failure, type_name

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
                if isinstance(exc, RecursionError):
                    # Too deep is not a part that cannot travel: dropping the part where the
                    # pickler gave up would silently cut the graph there.
                    raise describe_failure(obj, exc, locate) from exc
                path, culprit, cause = locate_failure(obj, exc, locate)
                if id(culprit) in drop_ids:
                    raise _cannot_drop(obj, exc, cause, locate, path, culprit) from exc
                # The root too: dumps(pipe, on_unpicklable="drop") loads as None.
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
