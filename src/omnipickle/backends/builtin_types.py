"""auto's reducers for built-in objects that pickle, cloudpickle and dill cannot name or get wrong.

* Type objects of C types without a public name (``type({}.keys())``, ``type(iter([]))``...): by
  a key of :data:`omnipickle._rebuild.TYPE_EXPRESSIONS` (cloudpickle writes them by value, as
  classes it can rebuild, and they cannot be rebuilt).
* Member, getset and classmethod descriptors (``type.__dict__['__name__']``): by their class and
  name, looked up in the class's ``__dict__`` at load (``getattr`` gives the attribute's value,
  or a bound method). Method and wrapper descriptors are left to pickle, whose ``getattr`` gives
  back the very descriptor.
* ``memoryview``: a memoryview again, over a fresh ``bytes`` (read-only) or ``bytearray``
  (writable), with its format and shape where ``memoryview.cast`` can rebuild them.
* Dict views: a view of their dict, so a dict and its view that travel together stay linked.
* Instances of ndarray subclasses: numpy's own pickle, plus the instance's ``__dict__``.
* Enums by value: every member, aliases and multi-bit flags included (cloudpickle passes only the
  members iteration yields, which for a ``Flag`` leaves out ``RW = R | W``).

None of these runs for plain data: the type reducers sit in the dispatch table (a C lookup
by exact type), the class reducer runs only for classes that are not importable by name, and
the ndarray check runs once per type per dump.
"""

from __future__ import annotations

import collections
import functools
import gc
import sys
import types
from collections.abc import Callable
from typing import Any

from .. import _rebuild

__all__ = [
    "REDUCERS",
    "array_reducer",
    "enum_reduce",
    "plain_path_markers",
    "reduce_builtin_type",
]


# --- type objects without a public name --------------------------------------------------------


@functools.cache
def _type_keys() -> dict[type, str]:
    keys: dict[type, str] = {}
    for key, make in _rebuild.TYPE_EXPRESSIONS.items():
        keys.setdefault(make(), key)  # two keys for one type here: the first one is written
    return keys


def reduce_builtin_type(cls: type) -> tuple[Any, ...] | None:
    """``(builtin_type, (key,))`` for a nameless built-in type of the table, else ``None``."""
    if type(cls) is not type:
        return None  # a class with a metaclass (which may not even be hashable): not ours
    key = _type_keys().get(cls)
    if key is None:
        return None
    return (_rebuild.builtin_type, (key,))


# --- descriptors -------------------------------------------------------------------------------


def _reduce_descriptor(obj: Any) -> tuple[Any, ...]:
    owner = obj.__objclass__
    name = obj.__name__
    if owner.__dict__.get(name) is not obj:
        raise TypeError(
            f"cannot pickle {type(obj).__name__} {name!r}: it is not in the __dict__ of its "
            f"class {owner.__qualname__}, so nothing can find it by name"
        )
    return (_rebuild.descriptor, (owner, name))


# --- memoryview --------------------------------------------------------------------------------


def _layout(view: memoryview, data: bytes | bytearray) -> tuple[str, tuple[int, ...] | None]:
    """The format and shape ``memory_view`` can give ``data`` back: ``view``'s own, or, where
    ``memoryview.cast`` refuses them, one dimension, or unsigned bytes."""
    fmt = view.format
    shape = tuple(view.shape or ())
    if view.ndim == 1 and fmt == "B":
        return "B", None
    flat: Any = memoryview(data)  # (typeshed types cast() for literal formats only)
    # Tried here, as the loader will do it: what fails is written in a form that loads.
    try:
        flat.cast(fmt, shape)
    except (TypeError, ValueError):
        pass
    else:
        return fmt, shape
    try:
        flat.cast(fmt)
    except (TypeError, ValueError):
        return "B", None
    return fmt, None


def _reduce_memoryview(view: memoryview) -> tuple[Any, ...]:
    try:
        data: bytes | bytearray = view.tobytes() if view.readonly else bytearray(view)
    except ValueError as exc:
        raise TypeError(f"cannot pickle a released memoryview ({exc})") from exc
    return (_rebuild.memory_view, (data, *_layout(view, data)))


# --- dict views --------------------------------------------------------------------------------


def _view_kinds() -> dict[type, str]:
    odict: collections.OrderedDict[Any, Any] = collections.OrderedDict()
    return {
        type({}.keys()): "keys",
        type({}.values()): "values",
        type({}.items()): "items",
        type(odict.keys()): "odict_keys",
        type(odict.values()): "odict_values",
        type(odict.items()): "odict_items",
    }


_VIEW_KINDS = _view_kinds()


def _reduce_dict_view(view: Any) -> tuple[Any, ...]:
    # A view holds its dict and nothing else (``view.mapping`` is a read-only proxy of it);
    # the garbage collector's view of its references is the one public way to the dict itself.
    referents = gc.get_referents(view)
    if len(referents) != 1 or not isinstance(referents[0], dict):
        raise TypeError(f"cannot pickle {type(view).__name__}: its dict cannot be found")
    return (_rebuild.dict_view, (referents[0], _VIEW_KINDS[type(view)]))


REDUCERS: dict[type, Callable[[Any], Any]] = {
    memoryview: _reduce_memoryview,
    **dict.fromkeys(_VIEW_KINDS, _reduce_dict_view),
    **dict.fromkeys(
        (types.MemberDescriptorType, types.GetSetDescriptorType, types.ClassMethodDescriptorType),
        _reduce_descriptor,
    ),
}
"""The dispatch-table entries for built-in types, by exact type."""


# --- ndarray subclasses ------------------------------------------------------------------------

_NUMPY_REDUCERS = ("__reduce__", "__reduce_ex__")


def _carries_dict(cls: type, ndarray: type) -> bool:
    """Whether auto adds the instance ``__dict__`` to numpy's pickle of ``cls``: a subclass of
    ``ndarray`` that is not numpy's (``memmap`` keeps its open map there) and does not say
    itself how it is pickled, nor inherits that from a class between it and ``ndarray``."""
    if cls is ndarray:
        return False
    for klass in cls.__mro__:
        if klass is ndarray:
            return True
        module = klass.__dict__.get("__module__")
        if (isinstance(module, str) and module.split(".", 1)[0] == "numpy") or any(
            name in klass.__dict__ for name in _NUMPY_REDUCERS
        ):
            return False
    return False


def array_reducer(cls: type, default: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The reducer for instances of exactly ``cls``: ``default`` unless ``cls`` is an ndarray
    subclass whose instances' ``__dict__`` numpy's pickle would leave out."""
    numpy = sys.modules.get("numpy")  # no numpy imported: no ndarray subclass exists
    if numpy is None or not issubclass(cls, numpy.ndarray):
        return default
    if not _carries_dict(cls, numpy.ndarray):
        return default
    return functools.partial(_reduce_array, default=default)


def _reduce_array(obj: Any, default: Callable[[Any], Any]) -> Any:
    rv = default(obj)
    attrs = getattr(obj, "__dict__", None)  # (a subclass with __slots__ may have none)
    if not attrs or not isinstance(rv, tuple) or len(rv) < 2 or any(x is not None for x in rv[3:]):
        return rv
    state = rv[2] if len(rv) > 2 else None
    return (rv[0], rv[1], (state, dict(attrs)), None, None, _rebuild.array_state)


def plain_path_markers() -> tuple[bytes, ...]:
    """What the bare C pickler's output must not contain: the names of the ndarray subclasses
    whose instances it would write without their ``__dict__``.

    The bare pickler (auto's fast path for instance-heavy data) has no dispatch table of ours;
    a frame naming one of these classes makes auto redo the dump with :class:`AutoPickler`, as a
    frame naming ``__main__`` does. Only classes defined outside numpy are walked (numpy's own
    subclasses, and every class below them, keep numpy's pickle), so with no such class this is
    one ``__subclasses__()`` call.
    """
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return ()
    ndarray = numpy.ndarray
    markers: list[bytes] = []
    stack = type.__subclasses__(ndarray)
    while stack:
        cls = stack.pop()
        if _carries_dict(cls, ndarray):
            markers.append(cls.__qualname__.encode())
            stack.extend(type.__subclasses__(cls))
    return tuple(markers)


# --- enums by value ----------------------------------------------------------------------------


def enum_reduce(cls: type, rv: tuple[Any, ...]) -> tuple[Any, ...]:
    """cloudpickle's by-value reduction of the enum ``cls`` (``rv``), with every member.

    cloudpickle lists the members that iterating the enum yields: for a ``Flag`` that leaves
    out multi-bit members (``RW = 3``) and for any enum its aliases. Those stay in the class
    state instead, where setting them fails (``cannot reassign member``) or makes a plain class
    attribute that ``__members__`` lacks. Every name of ``__members__``, in definition order,
    goes to the class constructor here, and none of them stays in the state.
    """
    func, args, state, *rest = rv
    members = {name: member._value_ for name, member in cls.__members__.items()}  # type: ignore[attr-defined]
    clsdict, slotstate = state
    clsdict = {k: v for k, v in clsdict.items() if k not in members}
    return (func, (*args[:3], members, *args[4:]), (clsdict, slotstate), *rest)
