"""Which code loads by name in a fresh interpreter, and how the rest is written by value.

A function, class, bound method or ``functools.lru_cache`` wrapper is written by name (as
pickle writes it: same bytes, same speed) only when that name leads back to the very same
object; otherwise it is written by value. For functions and classes that is cloudpickle's
reducers (imported the first time one is met); for bound methods and cache wrappers it is a
function of :mod:`omnipickle._reconstruct` over the parts, each of which the pickler then
writes the cheapest way again (by name when it can).
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable
from typing import Any

from .._reconstruct import make_lru_cache, make_method
from .builtin_types import enum_reduce

__all__ = [
    "NAME_CHECKED",
    "by_value_class_constructors",
    "by_value_modules",
    "class_reduce",
    "cloudpickle_module",
    "importable",
    "reduce_lru_cache",
    "reduce_method",
]


@functools.cache
def cloudpickle_module() -> Any:
    """``cloudpickle.cloudpickle``, imported the first time code goes by value."""
    import cloudpickle.cloudpickle as cp

    return cp


@functools.cache
def by_value_class_constructors() -> tuple[Any, ...]:
    """The functions a class rebuilt from its namespace is made with (code by value)."""
    cp = cloudpickle_module()
    return (cp._make_skeleton_class, cp._make_skeleton_enum)


# --- by reference or by value ----------------------------------------------------------------


def by_value_modules() -> frozenset[str]:
    """The modules registered with ``cloudpickle.register_pickle_by_value`` (none if
    cloudpickle was never imported)."""
    # Not imported, or still being imported by another thread (its module is in sys.modules
    # before its functions are): nothing can be registered yet.
    listing = getattr(sys.modules.get("cloudpickle"), "list_registry_pickle_by_value", None)
    return frozenset(listing()) if listing is not None else frozenset()


def _registered(module: str, by_value: frozenset[str]) -> bool:
    if not by_value:
        return False
    parts = module.split(".")
    return any(".".join(parts[:i]) in by_value for i in range(1, len(parts) + 1))


# Modules whose functions and classes never move: the reconstructors every by-value payload
# names (a lambda brings three of cloudpickle's). Once found by name, they are known by identity.
_STABLE_MODULES = frozenset({"cloudpickle.cloudpickle", "omnipickle._reconstruct", "copyreg"})
_KNOWN_IMPORTABLE: dict[int, Any] = {}


def importable(obj: Any, by_value: frozenset[str] = frozenset()) -> bool:
    """Whether the function or class ``obj`` loads by name in a fresh interpreter."""
    if not by_value and _KNOWN_IMPORTABLE.get(id(obj)) is obj:
        return True
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
    if found is not obj:
        return False
    if module_name in _STABLE_MODULES:
        _KNOWN_IMPORTABLE[id(obj)] = obj  # kept alive by its module anyway
    return True


# --- classes ---------------------------------------------------------------------------------


def class_reduce(cls: type) -> Any:
    """cloudpickle's by-value class reducer, with three of its losses repaired.

    cloudpickle rebuilds a class with a plain namespace, so a class with ``__slots__`` comes
    back with a ``__dict__`` (its instances silently grow one) and a nested class loses its
    ``__qualname__`` (``Outer.Inner`` becomes ``Inner``). Both are passed to the class
    constructor here, as the original ``class`` statement did. And a class that cannot be
    hashed (its metaclass defines ``__eq__`` without ``__hash__``) makes cloudpickle fail: it
    keys its class registry by class.
    """
    cp = cloudpickle_module()
    try:
        hash(cls)
    except TypeError:
        rv = _unhashable_class_reduce(cp, cls)
    else:
        rv = cp._class_reduce(cls)
    if rv is not NotImplemented and rv[0] is cp._make_skeleton_enum:
        return enum_reduce(cls, rv)  # every member, multi-bit flags and aliases included
    if rv is NotImplemented or rv[0] is not cp._make_skeleton_class:
        return rv  # by reference, or a builtin oddity (NoneType...)
    func, args, *rest = rv
    type_kwargs = dict(args[3])
    type_kwargs["__qualname__"] = cls.__qualname__
    # typing.NamedTuple's metaclass makes its own (empty) __slots__ and refuses a given one.
    if "__slots__" in cls.__dict__ and not _is_typed_namedtuple(cls):
        type_kwargs["__slots__"] = cls.__dict__["__slots__"]
    return (func, (*args[:3], type_kwargs, *args[4:]), *rest)


def _unhashable_class_reduce(cp: Any, cls: type) -> Any:
    """What cloudpickle writes for a class by value, without its class tracker.

    The tracker (which makes two loads of one class in one process give one class) is a
    weak-key dictionary of classes, at dump time and at load time; with no tracker id,
    ``_make_skeleton_class`` never hashes the class. So each payload that holds an unhashable
    class makes its own copy of it when loaded (within one payload, it is one class).
    """
    import enum

    if issubclass(cls, enum.Enum):
        return cp._class_reduce(cls)  # enums are rebuilt another way; theirs is hashable
    type_kwargs: dict[str, Any] = {}
    if "__module__" in cls.__dict__:
        type_kwargs["__module__"] = cls.__module__
    instance_dict = cls.__dict__.get("__dict__")
    if isinstance(instance_dict, property):
        type_kwargs["__dict__"] = instance_dict
    args = (type(cls), cls.__name__, cp._get_bases(cls), type_kwargs, None, None)
    return (cp._make_skeleton_class, args, cp._class_getstate(cls), None, None, cp._class_setstate)


def _is_typed_namedtuple(cls: type) -> bool:
    import typing

    return any(base is typing.NamedTuple for base in cls.__dict__.get("__orig_bases__", ()))


# --- bound methods ---------------------------------------------------------------------------


def reduce_method(method: types.MethodType) -> tuple[Any, ...]:
    """A bound method by name (``getattr(obj, name)``, exactly what pickle writes) when that
    name leads back to it, else by value: its function and its object, bound again at load.

    The name does not lead back for a method made by a decorator without
    ``functools.wraps``, a lambda set as a class attribute, ``types.MethodType(f, obj)``, a
    function whose ``__name__`` was changed, or one patched onto an importable class (which
    the loading process imports without the patch).
    """
    obj = method.__self__
    name = method.__name__
    if _leads_back(method, obj, name):
        return (getattr, (obj, name))
    return (make_method, (method.__func__, obj))


def _leads_back(method: types.MethodType, obj: Any, name: str) -> bool:
    try:
        found = getattr(obj, name)
    except Exception:  # noqa: BLE001 - whatever the lookup raises, a load would raise too
        return False
    func = method.__func__
    if (
        found is method  # stored as it is (in the object's __dict__...): see below
        or type(found) is not types.MethodType
        or found.__func__ is not func
        or found.__self__ is not obj
    ):
        # A method stored on its own object is reached while that object's state is being
        # written, so by name it would be looked up before the object has it.
        return False
    owner = _defining_class(obj, name)
    if owner is None:
        return False  # made by __getattr__, or found on the object itself: not by its class
    registered = by_value_modules()
    if not importable(owner, registered):
        return True  # the class travels by value, and its namespace with it
    # An importable class is imported at load as its module makes it: the function must be
    # part of that, not patched onto it later from elsewhere (from __main__, say).
    return (
        getattr(func, "__qualname__", None) == f"{owner.__qualname__}.{name}"
        or getattr(func, "__module__", None) == owner.__module__
        or importable(func, registered)
    )


def _defining_class(obj: Any, name: str) -> type | None:
    """The class whose namespace ``getattr(obj, name)`` finds ``name`` in (a class's own
    classes, then its metaclass's, when ``obj`` is a class)."""
    classes = (obj, type(obj)) if isinstance(obj, type) else (type(obj),)
    for cls in classes:
        for klass in cls.__mro__:
            if name in klass.__dict__:
                return klass
    return None


# --- functools.lru_cache ---------------------------------------------------------------------

# What lru_cache sets on its wrapper itself (functools.update_wrapper), so a load makes it again.
_WRAPPER_SET = frozenset({*functools.WRAPPER_ASSIGNMENTS, "__wrapped__"})


def reduce_lru_cache(wrapper: Any) -> Any:
    """An ``lru_cache``/``cache`` function by name when its name leads back to it (as pickle),
    else by value: the function it wraps and its parameters, with an empty cache."""
    if importable(wrapper, by_value_modules()):
        return wrapper.__reduce__()
    params = wrapper.cache_parameters()
    func = wrapper.__wrapped__
    own = {
        key: value
        for key, value in wrapper.__dict__.items()
        if key not in _WRAPPER_SET and getattr(func, key, _ABSENT) is not value
    }
    return (make_lru_cache, (func, params["maxsize"], params["typed"]), own or None)


_ABSENT = object()

_LruCacheWrapper: type = type(functools.lru_cache(lambda: None))

NAME_CHECKED: dict[type, Callable[[Any], Any]] = {
    types.MethodType: reduce_method,
    _LruCacheWrapper: reduce_lru_cache,
}
"""Reducers for the types pickle writes by name without checking that the name leads back
(each checks, and writes by name when it does)."""
