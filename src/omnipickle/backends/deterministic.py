"""Deterministic pickling: equal objects give equal bytes, in every process, under every hash seed.

:class:`DeterministicPickler` is :class:`~omnipickle.backends.auto.AutoPickler` (so it writes
what auto writes, code by value included, and its payloads load with a plain ``loads``) with
four changes:

* every part reaches the C pickler as its canonical mirror (:mod:`.canonical`): sets in a
  canonical order, equal strings as one object, immutable values never as back-references;
* it reduces every object that is not a builtin container itself (the C pickler would call the
  same reducer), so that what the object reduces to is mirrored too;
* a class sent by value gets a *content* identity: cloudpickle writes a random ``uuid4`` "class
  tracker id" (two loads of one class in one process give one class); here it is a digest of
  the class's own deterministic pickle, with every class in it written without an id;
* with ``strip_source_info``, code objects lose their line numbers (and functions the
  ``__file__`` of their module), so moving code within a file or the file itself changes nothing.

What cannot be made deterministic raises :class:`DeterminismError` naming its path.
"""

from __future__ import annotations

import functools
import io
import types
import weakref
from collections.abc import Callable
from typing import Any

from ..diagnostics import describe_failure, find_paths
from ..errors import PICKLING_FAILURES
from .auto import AutoPickler, recording
from .base import BufferCallback, ChunkSink, Pickled
from .by_value import cloudpickle_module
from .canonical import Canonicalizer, DeterminismError, Standin, Unorderable

__all__ = [
    "DeterminismError",
    "DeterministicPickler",
    "HashSink",
    "dump_deterministic",
    "dumps_deterministic",
]

_FunctionType = types.FunctionType
_CodeType = types.CodeType


class _Dump:
    """What the picklers of one deterministic dump share (the top one and those it starts to
    order sets and to compute class identities)."""

    __slots__ = ("class_ids", "ordering", "strip_source_info")

    def __init__(self, strip_source_info: bool) -> None:
        self.strip_source_info = strip_source_info
        self.ordering: set[int] = set()  # see Canonicalizer
        # id(class) -> (class, content id): each class is digested once per dump (classes can
        # change between dumps, so never across them).
        self.class_ids: dict[int, tuple[type, str]] = {}


class DeterministicPickler(AutoPickler):
    """:class:`AutoPickler` writing the same bytes for equal objects (see the module docstring).

    Args:
        file, protocol, fix_imports, buffer_callback: as for :class:`AutoPickler`.
        strip_source_info: leave line numbers out of code objects, and ``__file__`` out of the
            globals functions by value take along.
    """

    # Functions by value keep cloudpickle's field-by-field form: marshal's bytes depend on
    # reference counts, and the form is what this module canonicalizes.
    _marshal_functions = False

    def __init__(
        self,
        file: Any,
        protocol: int | None = None,
        *,
        fix_imports: bool = True,
        buffer_callback: BufferCallback = None,
        strip_source_info: bool = False,
        _dump: _Dump | None = None,
        _anonymous: bool = False,
    ) -> None:
        super().__init__(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)
        self._fix_imports = fix_imports
        self._dump = _dump if _dump is not None else _Dump(strip_source_info)
        # Classes by value written with no tracker id (the pickle their content id digests).
        self._anonymous = _anonymous
        self._canon = Canonicalizer(
            self._key_of, buffers=self.proto >= 5, ordering=self._dump.ordering
        )
        self._keys: tuple[DeterministicPickler, io.BytesIO] | None = None
        self._stripped_globals: dict[int, tuple[Any, dict[str, Any]]] = {}

    def dump(self, obj: Any) -> None:
        """Write the canonical form of ``obj``."""
        try:
            super().dump(self._canon.mirror(obj))
        finally:
            self._canon.clear()
            self._stripped_globals.clear()

    # --- the reductions ---------------------------------------------------------------------

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        if t is Standin:
            if obj.rv is None:  # an immutable value (sets and large bytes come mirrored)
                rv = self._reduce(obj.obj)
                obj.rv = rv if isinstance(rv, str) else self._mirror_rv(rv, fresh_state=True)
            return obj.rv
        if t is _FunctionType:
            rv = super().reducer_override(obj)
            if rv is NotImplemented:
                return rv  # by name
            return self._mirror_rv(self._function_rv(rv))
        if t is _CodeType:
            self.by_value = True  # as AutoPickler records it; the bytes are written here
            if self._dump.strip_source_info:
                obj = _without_locations(obj)
            reducer = self.reducer_for(_CodeType)
            assert reducer is not None
            return self._mirror_rv(reducer(obj))
        if issubclass(t, type):
            rv = super().reducer_override(obj)
            if rv is not NotImplemented:
                return self._mirror_rv(self._class_rv(obj, rv))
            # By name, unless its metaclass has a reducer (copyreg.pickle), which the C
            # pickler would call: call it here, so that what it gives is mirrored too.
            reducer = self.reducer_for(t) if t is not type else None
            if reducer is None:
                return NotImplemented
            rv = reducer(obj)
        else:
            rv = self._reduce(obj)
        return rv if isinstance(rv, str) else self._mirror_rv(rv)

    def _reduce(self, obj: Any) -> Any:
        """What the C pickler would reduce ``obj`` to, with sets in canonical order."""
        t = type(obj)
        if isinstance(obj, (set, frozenset)) and t.__reduce__ in _SET_REDUCE:
            state = getattr(obj, "__dict__", None)
            return (t, (self._canon.ordered(obj),), state or None)
        if t is weakref.WeakSet:
            return (weakref.WeakSet, (self._canon.ordered(obj),))
        reducer = self.reducer_for(t)
        rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(self.proto)
        if isinstance(rv, tuple) and len(rv) >= 2 and rv[0] is _typevar_constructor():
            rv = (rv[0], _with_tracker_id(rv[1], 5, self._class_id_for_typevar(rv[1])), *rv[2:])
        return rv

    def _mirror_rv(self, rv: Any, *, fresh_state: bool = False) -> Any:
        """``rv`` with its parts mirrored. ``fresh_state``: the state dict (an immutable
        value's ``__dict__``, say) is copied anew, so that two occurrences of one value do not
        share it (what it holds keeps its identity)."""
        if not isinstance(rv, tuple):
            return rv  # a name (the pickler looks it up as a global), or NotImplemented
        mirror = self._canon.mirror
        out = [rv[0], mirror(rv[1])]
        if len(rv) > 2:
            state = rv[2]
            if fresh_state and type(state) is tuple:
                out.append(tuple(self._fresh(part) for part in state))
            else:
                out.append(self._fresh(state) if fresh_state else mirror(state))
        if len(rv) > 3:
            items = rv[3]
            out.append(None if items is None else iter([mirror(i) for i in items]))
        if len(rv) > 4:
            pairs = rv[4]
            out.append(None if pairs is None else iter([(mirror(k), mirror(v)) for k, v in pairs]))
        out.extend(rv[5:])
        return tuple(out)

    def _fresh(self, state: Any) -> Any:
        if type(state) is not dict:
            return self._canon.mirror(state)
        mirror = self._canon.mirror
        return {mirror(k): mirror(v) for k, v in state.items()}

    def _function_rv(self, rv: tuple[Any, ...]) -> tuple[Any, ...]:
        """cloudpickle's reduction of a function by value, made canonical."""
        func, newargs, (state, slotstate), *rest = rv
        slotstate = dict(slotstate)
        # Listed in the order sys.modules happens to hold them.
        slotstate["_cloudpickle_submodules"] = sorted(
            slotstate["_cloudpickle_submodules"], key=lambda m: m.__name__
        )
        if self._dump.strip_source_info:
            base_globals = newargs[1]
            if "__file__" in base_globals:
                # One copy per original: functions that share their globals keep sharing them.
                hit = self._stripped_globals.get(id(base_globals))
                if hit is None:
                    copy = {k: v for k, v in base_globals.items() if k != "__file__"}
                    hit = self._stripped_globals[id(base_globals)] = (base_globals, copy)
                newargs = (newargs[0], hit[1], *newargs[2:])
        return (func, newargs, (state, slotstate), *rest)

    def _class_rv(self, cls: type, rv: tuple[Any, ...]) -> tuple[Any, ...]:
        """A class by value with a content identity instead of a random one."""
        func, args, *rest = rv
        index = _tracker_index(func)
        if index is None:
            return rv
        if args[index] is not None:  # None: an unhashable class, never tracked
            args = _with_tracker_id(args, index, None if self._anonymous else self._class_id(cls))
        if rest and isinstance(rest[0], tuple):
            clsdict, slotstate = rest[0]
            # The entries type() itself makes first, then the class body's in their order:
            # the order a class rebuilt from this payload has too, so that its own payload
            # (dumped again after a load) is this one.
            clsdict = {k: clsdict[k] for k in _TYPE_MADE if k in clsdict} | clsdict
            # A cache that copyreg writes into the class the first time one of its instances
            # is pickled (so a class would change by being pickled); rebuilt when needed.
            clsdict.pop("__slotnames__", None)
            if "_abc_impl" in clsdict:  # the subclasses registered with an ABC: a weak set
                clsdict["_abc_impl"] = self._canon.ordered(clsdict["_abc_impl"])
            if self._dump.strip_source_info:
                clsdict.pop("__firstlineno__", None)
            rest = [(clsdict, slotstate), *rest[1:]]
        return (func, args, *rest)

    # --- identities and orders --------------------------------------------------------------

    def _class_id(self, cls: type) -> str:
        """The content id of the class ``cls``: a digest of its pickle with no tracker ids."""
        ids = self._dump.class_ids
        hit = ids.get(id(cls))
        if hit is not None:
            return hit[1]
        class_id = self._digest(cls)
        # Not registered with cloudpickle's tracker, as cloudpickle registers its own ids: a
        # load in this process would then give back this very class *and* set its namespace
        # to the loaded copies of its methods, changing its content (and the next digest).
        ids[id(cls)] = (cls, class_id)
        return class_id

    def _class_id_for_typevar(self, args: tuple[Any, ...]) -> str | None:
        if self._anonymous:
            return None
        return self._digest(args[:5])

    def _digest(self, obj: Any) -> str:
        import hashlib  # only classes by value need it

        state = hashlib.blake2b(digest_size=16)
        sub = self._sub(HashSink(state), anonymous=True)
        sub.dump(obj)
        return state.hexdigest()

    def _key_of(self, obj: Any) -> bytes:
        """The bytes ``obj`` pickles to on its own: what orders the elements of a set."""
        if self._keys is None:
            buffer = io.BytesIO()
            self._keys = (self._sub(buffer, anonymous=self._anonymous), buffer)
        sub, buffer = self._keys
        buffer.seek(0)
        buffer.truncate()
        sub.clear_memo()
        sub.dump(obj)
        return buffer.getvalue()

    def _sub(self, file: Any, *, anonymous: bool) -> DeterministicPickler:
        return DeterministicPickler(
            file, self.proto, fix_imports=self._fix_imports, _dump=self._dump, _anonymous=anonymous
        )


class HashSink:
    """A write-only file whose ``write`` feeds ``hasher.update`` exactly what the pickler gives
    it: frames, and each large in-band buffer as it is (a ``PickleBuffer`` or ``bytearray``,
    hashed through the buffer protocol, in place)."""

    __slots__ = ("_update",)

    def __init__(self, hasher: Any) -> None:
        self._update: Callable[[Any], Any] = hasher.update

    def write(self, data: Any) -> int:
        self._update(data)
        return memoryview(data).nbytes


_TYPE_MADE = ("__module__", "__qualname__", "__doc__")
_SET_REDUCE: tuple[Any, ...] = (set.__reduce__, frozenset.__reduce__)


def _tracker_index(func: Any) -> int | None:
    """Where cloudpickle's class constructor ``func`` takes its class tracker id."""
    cp = cloudpickle_module()
    if func is cp._make_skeleton_class:
        return 4  # (type_constructor, name, bases, type_kwargs, class_tracker_id, extra)
    if func is cp._make_skeleton_enum:
        return 5  # (bases, name, qualname, members, module, class_tracker_id, extra)
    return None


def _typevar_constructor() -> Any:
    # Only a TypeVar defined by value (in __main__) reduces to it; cloudpickle is imported then.
    return cloudpickle_module()._make_typevar


def _with_tracker_id(args: tuple[Any, ...], index: int, value: str | None) -> tuple[Any, ...]:
    return (*args[:index], value, *args[index + 1 :])


def _without_locations(code: types.CodeType) -> types.CodeType:
    """``code`` with no line numbers: first line 1, and every instruction "no location"
    (CPython's location table, 3.11 and later: one byte covers up to 8 code units)."""
    units = len(code.co_code) // 2
    table = bytes([0xFF]) * (units // 8)
    if units % 8:
        table += bytes([0xF8 | (units % 8 - 1)])
    return code.replace(co_firstlineno=1, co_linetable=table)


# --- the entry points ------------------------------------------------------------------------


def _unorderable_error(root: Any, exc: Unorderable) -> DeterminismError:
    (path,) = find_paths(root, [exc.culprit])
    tname = type(exc.culprit).__qualname__
    return DeterminismError(
        f"{path} is a set of unorderable items: {exc.detail}", path=path, type_name=tname
    )


def dump_deterministic(
    obj: Any,
    sink: Any,
    *,
    protocol: int,
    fix_imports: bool = True,
    buffer_callback: BufferCallback = None,
    strip_source_info: bool = False,
) -> tuple[frozenset[str], bool]:
    """Write the deterministic pickle of ``obj`` into ``sink`` (anything with ``write``).

    Returns:
        The backends the stream needs at load time, and whether it holds code by value.

    Raises:
        DeterminismError: a part of ``obj`` has no canonical form; the message names it.
        PicklingError: a part cannot be serialized at all (as for ``dumps``).
    """

    def make(
        file: Any, protocol: int, fix_imports: bool = True, buffer_callback: Any = None
    ) -> Any:
        return DeterministicPickler(
            file,
            protocol,
            fix_imports=fix_imports,
            buffer_callback=buffer_callback,
            strip_source_info=strip_source_info,
        )

    with recording() as state:
        pickler = make(sink, protocol, fix_imports, buffer_callback)
        try:
            pickler.dump(obj)
        except Unorderable as exc:
            raise _unorderable_error(obj, exc) from None
        except PICKLING_FAILURES as exc:
            locate = functools.partial(make, protocol=protocol, fix_imports=fix_imports)
            raise describe_failure(obj, exc, locate) from exc
        finally:
            close = getattr(sink, "close", None)
            if close is not None:
                close()
        return frozenset({"pickle", *state.uses}), state.by_value or pickler.by_value


def dumps_deterministic(
    obj: Any,
    *,
    protocol: int,
    fix_imports: bool,
    buffer_callback: BufferCallback,
    strip_source_info: bool = False,
    sink: Any = None,
) -> Pickled:
    """What ``AutoBackend.dumps`` returns, written deterministically (``dumps`` and ``dump``
    with ``deterministic=True`` call it)."""
    if sink is None:
        sink = ChunkSink()
    uses, by_value = dump_deterministic(
        obj,
        sink,
        protocol=protocol,
        fix_imports=fix_imports,
        buffer_callback=buffer_callback,
        strip_source_info=strip_source_info,
    )
    return Pickled(sink.chunks, sink.length, sink.crc, uses, by_value=by_value)
