"""Transient attributes: the helper mixins and the ``transient`` descriptor.

An object that holds a database connection, a socket or a thread cannot be pickled as it is:
the resource lives in this process only. Three ways to say what to do:

* :class:`TransientMixin`: the class lists attributes in ``__transient__``; they are left out
  of the pickled state and come back as ``None``, or the class's ``__restore__`` hook rebuilds
  them after loading.
* :class:`transient`: a descriptor; the attribute is never pickled and is rebuilt lazily by
  ``factory(self)`` on first use after loading (once, even with threads racing for it).
* :class:`ResourceAwareMixin`: no list needed; at dump time, attributes holding live resources
  (by the resource rules) are left out, with the same ``__restore__`` hook.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from .._reconstruct import restore_state
from ..errors import OmnipickleError
from .rules import is_live_resource

__all__ = [
    "ResourceAwareMixin",
    "ResourceRebuildError",
    "TransientMixin",
    "mixin_state",
    "reduce_without",
    "transient",
    "transient_names",
]


class ResourceRebuildError(OmnipickleError, RuntimeError):
    """A ``transient`` factory raised while rebuilding an attribute (the cause is chained)."""


def transient_names(cls: type) -> frozenset[str]:
    """Every attribute name ``cls`` and its bases mark transient (mixin lists and descriptors)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        names.update(klass.__dict__.get("__transient__", ()))
        names.update(klass.__dict__.get("__transient_descriptors__", ()))
    return frozenset(names)


def _edit_attributes(
    state: Any, cls: type, names: frozenset[str], values: dict[str, Any] | None = None
) -> Any:
    """``state`` without the attributes in ``names`` and with those in ``values`` set to
    those values (in every shape pickle uses)."""
    values = values or {}
    if not names and not values:
        return state
    if isinstance(state, dict):
        return {k: values.get(k, v) for k, v in state.items() if k not in names}
    if (
        isinstance(state, tuple)
        and len(state) == 2
        and (state[0] is None or isinstance(state[0], dict))
        and (state[1] is None or isinstance(state[1], dict))
    ):
        return tuple(_edit_attributes(part, cls, names, values) if part else part for part in state)
    if isinstance(state, list) and hasattr(cls, "__dataclass_fields__"):
        # dataclass(frozen=True, slots=True) pickles a list of field values, in field order.
        import dataclasses  # a dataclass exists, so the module is imported already

        fields = [f.name for f in dataclasses.fields(cls)]
        if len(fields) == len(state):
            return [
                None if f in names else values.get(f, v) for f, v in zip(fields, state, strict=True)
            ]
    return state


def reduce_without(
    obj: Any,
    protocol: int,
    drop: Callable[[Any], frozenset[str]],
    replace: Callable[[Any], dict[str, Any]] | None = None,
) -> Any:
    """``obj``'s ordinary reduce tuple, minus the attributes ``drop(obj)`` names, plus a state
    setter that restores them as ``None`` and calls ``__restore__``.

    ``replace(obj)``, if given, maps attribute names to the values to pickle instead (a list
    attribute without the sockets in it, say).
    """
    rv = object.__reduce_ex__(obj, protocol)
    if not isinstance(rv, tuple) or len(rv) < 2:
        return rv
    func, args, state, listitems, dictitems = (*rv, None, None, None)[:5]
    edited = _edit_state(obj, state, drop, replace)
    return (func, args, edited, listitems, dictitems, restore_state)


def _edit_state(
    obj: Any,
    state: Any,
    drop: Callable[[Any], frozenset[str]],
    replace: Callable[[Any], dict[str, Any]] | None,
) -> tuple[Any, tuple[str, ...]]:
    """``(state without the attributes drop(obj) names, their names)``: what
    ``_reconstruct.restore_state`` takes."""
    names = drop(obj)
    values = replace(obj) if replace is not None else None
    return (_edit_attributes(state, type(obj), names, values), tuple(sorted(names)))


def mixin_state(obj: Any, state: Any) -> tuple[Any, tuple[str, ...]] | None:
    """``state`` (``obj``'s own) as the mixins of its class would pickle it, for
    ``_reconstruct.restore_state``; ``None`` if the class uses neither a mixin nor
    :class:`transient`.

    For resource rules that rebuild an object themselves (threads): the attributes the class
    marks transient, or that hold live resources under :class:`ResourceAwareMixin`, are left
    out there too.
    """
    if isinstance(obj, ResourceAwareMixin):
        return _edit_state(obj, state, _live_attributes, _containers_without_live)
    if isinstance(obj, TransientMixin) or transient_names(type(obj)):
        return _edit_state(obj, state, lambda o: transient_names(type(o)), None)
    return None


def _all_attribute_names(cls: type) -> set[str]:
    """Names the class or a base could give its instances: assigned in any method (their
    code's names), slots, annotations, class attributes, dataclass fields."""
    found: set[str] = set()

    def code_names(code: types.CodeType) -> Iterator[str]:
        yield from code.co_names
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                yield from code_names(const)

    for klass in cls.__mro__:
        if klass is object:
            continue
        found.update(klass.__dict__)
        found.update(
            getattr(klass, "__annotations__", {}) if "__annotations__" in klass.__dict__ else ()
        )
        slots = klass.__dict__.get("__slots__", ())
        found.update((slots,) if isinstance(slots, str) else slots)
        for value in klass.__dict__.values():
            func = getattr(value, "__func__", value)
            for f in (func, getattr(value, "fget", None), getattr(value, "fset", None)):
                code = getattr(f, "__code__", None)
                if isinstance(code, types.CodeType):
                    found.update(code_names(code))
    return found


def _check_transient_declaration(cls: type) -> None:
    declared = cls.__dict__.get("__transient__")
    if declared is None:
        return
    if isinstance(declared, str) or not isinstance(declared, (tuple, list, frozenset, set)):
        raise TypeError(
            f"{cls.__qualname__}.__transient__ must be a tuple of attribute names, e.g. "
            f"('conn',), not {type(declared).__name__} {declared!r}"
        )
    bad = [name for name in declared if not isinstance(name, str) or not name.isidentifier()]
    if bad:
        raise TypeError(
            f"{cls.__qualname__}.__transient__ must hold attribute names (identifiers), got {bad!r}"
        )
    known = _all_attribute_names(cls)
    for name in declared:
        if name not in known:
            import difflib  # only a misspelled name needs it

            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"{cls.__qualname__}.__transient__ names {name!r}, an attribute that no method "
                f"of {cls.__qualname__} ever sets{hint}"
            )


# --- the mixins ----------------------------------------


class TransientMixin:
    """Leave the attributes named in ``__transient__`` out of the pickled state.

    They come back as ``None``; if the class defines ``__restore__(self)``, it is called after
    the state is set and can rebuild them (reconnect, reopen). ``__transient__`` of every base
    class is merged. Works with ``__slots__``, dataclasses (``slots=True`` and ``frozen=True``
    included), classes with their own ``__getstate__``/``__setstate__``, and classes defined in
    ``__main__`` (which travel by value).

    Example::

        class Repository(omnipickle.TransientMixin):
            __transient__ = ("conn",)

            def __init__(self, path):
                self.path = path
                self.conn = sqlite3.connect(path)

            def __restore__(self):
                self.conn = sqlite3.connect(self.path)

    Raises:
        TypeError: at class definition, if ``__transient__`` is not a tuple of names.
        ValueError: at class definition, if it names an attribute no method of the class sets.
    """

    __slots__ = ()
    __transient__: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_transient_declaration(cls)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return reduce_without(self, protocol, lambda obj: transient_names(type(obj)))


class ResourceAwareMixin:
    """Leave out, at dump time, every attribute that holds a live resource.

    No list is needed: an attribute whose value a ``drop`` rule of the registry covers (a
    socket, a database connection, a running thread...) is left out of the state and comes back
    as ``None``; ``__restore__(self)``, if defined, is called after loading to rebuild it.
    Inside a list, tuple, dict, set or frozenset attribute (and the containers in it, up to
    four levels deep), each live resource is left out of a copy of the container: it becomes
    ``None`` in a list, tuple or dict value, and a set or dict key that is one is left out.
    Resources that can be recreated (locks) or reopened (files) are kept and are.
    """

    __slots__ = ()

    def __reduce_ex__(self, protocol: Any) -> Any:
        return reduce_without(self, protocol, _live_attributes, _containers_without_live)


def _attribute_values(obj: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}
    state.update(getattr(obj, "__dict__", {}))
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if hasattr(obj, slot):
                state[slot] = getattr(obj, slot)
    return state


def _live_attributes(obj: Any) -> frozenset[str]:
    names = set(transient_names(type(obj)))
    names.update(name for name, value in _attribute_values(obj).items() if is_live_resource(value))
    return frozenset(names)


def _containers_without_live(obj: Any) -> dict[str, Any]:
    """The container attributes of ``obj`` that hold live resources, as copies without them."""
    skip = transient_names(type(obj))
    found: dict[str, Any] = {}
    for name, value in _attribute_values(obj).items():
        if name in skip or type(value) not in _CONTAINERS:
            continue
        cleaned = _without_live(value, _CONTAINER_DEPTH)
        if cleaned is not value:
            found[name] = cleaned
    return found


# Containers looked into (exact types: a subclass may not be rebuilt from its items), and how
# deep: a container in a container in an attribute... down to this many levels.
_CONTAINERS = frozenset({list, tuple, dict, set, frozenset})
_CONTAINER_DEPTH = 4
# What is never a resource and never holds one (skipped without a registry look-up).
_ATOMS = frozenset({str, bytes, int, float, bool, complex, type(None), bytearray})
_LIVE = object()


def _without_live(value: Any, depth: int) -> Any:
    """``value`` itself, ``_LIVE`` if it is a live resource, or a copy of the container without
    the live resources in it (``None`` in their place, left out of sets and dict keys)."""
    t = type(value)
    if t in _ATOMS:
        return value
    if t not in _CONTAINERS:
        return _LIVE if is_live_resource(value) else value
    if depth == 0:
        return value
    if t is dict:
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new_key = _without_live(key, depth - 1)
            new_item = _without_live(item, depth - 1)
            changed = changed or new_key is not key or new_item is not item
            if new_key is not _LIVE:
                out[new_key] = None if new_item is _LIVE else new_item
        return out if changed else value
    items = [_without_live(item, depth - 1) for item in value]
    if all(new is old for new, old in zip(items, value, strict=True)):
        return value
    if t is list or t is tuple:
        return t(None if item is _LIVE else item for item in items)
    return t(item for item in items if item is not _LIVE)


# --- the transient descriptor ----------------------------------------

_MISSING = object()


class transient:
    """An attribute that is never pickled and is rebuilt lazily by ``factory(self)``.

    On first access (after construction or after loading) ``factory(self)`` builds the value,
    once, even with several threads racing for it; assigning sets it as usual. If the factory
    raises, :class:`ResourceRebuildError` names the class and attribute (the cause chained) and
    the next access tries again.

    Example::

        class Repository:
            conn = omnipickle.transient(lambda self: sqlite3.connect(self.path))

            def __init__(self, path):
                self.path = path

    The value is kept in the instance's ``__dict__``: a class whose instances have none
    (``__slots__`` without ``"__dict__"``) is refused when it is defined.

    Raises:
        TypeError: ``factory`` is not callable; or, when the class is defined, its instances
            have no ``__dict__`` (on Python 3.11, Python wraps an error raised while a class
            is defined in a ``RuntimeError``: the ``TypeError`` is its ``__cause__``).
    """

    # What ``_reconstruct.restore_state`` recognizes the descriptor by: the wire-format module
    # imports nothing of the package, so it cannot check the type itself.
    __omnipickle_transient__: ClassVar[bool] = True

    def __init__(self, factory: Callable[[Any], Any]) -> None:
        if not callable(factory):
            raise TypeError(f"transient() needs a callable factory(self), not {factory!r}")
        self.factory = factory
        self.name = ""
        self.owner = ""
        self._guard = threading.Lock()
        self._building: dict[int, threading.Lock] = {}

    def __set_name__(self, owner: type, name: str) -> None:
        if not owner.__dictoffset__:
            # Checked now, not on first access: the value could never be stored.
            raise TypeError(
                f"transient() cannot serve {owner.__qualname__}.{name}: instances of "
                f"{owner.__qualname__} have no __dict__ (its __slots__ leave it out), where "
                f"the rebuilt value is kept; add '__dict__' to __slots__, or make {name!r} a "
                f"slot and list it in __transient__ with omnipickle.TransientMixin"
            )
        self.name = name
        self.owner = owner.__qualname__
        declared = owner.__dict__.get("__transient_descriptors__", ())
        # type.__setattr__: a class-level attribute, set the way a class statement would.
        type.__setattr__(owner, "__transient_descriptors__", (*declared, name))
        if (
            "__reduce_ex__" not in owner.__dict__
            and "__reduce__" not in owner.__dict__
            and not (issubclass(owner, (TransientMixin, ResourceAwareMixin)))
        ):
            type.__setattr__(owner, "__reduce_ex__", TransientMixin.__reduce_ex__)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        state = obj.__dict__
        value = state.get(self.name, _MISSING)
        if value is not _MISSING:
            return value
        with self._guard:
            lock = self._building.setdefault(id(obj), threading.Lock())
        try:
            with lock:
                value = state.get(self.name, _MISSING)
                if value is _MISSING:
                    try:
                        value = self.factory(obj)
                    except Exception as exc:
                        raise ResourceRebuildError(
                            f"rebuilding {self.owner}.{self.name} failed: "
                            f"{type(exc).__name__}: {exc}; the next access will try again"
                        ) from exc
                    state[self.name] = value
        finally:
            with self._guard:
                self._building.pop(id(obj), None)
        return value

    def __getstate__(self) -> dict[str, Any]:
        # The descriptor travels with its class when the class goes by value (a class of
        # __main__ through cloudpickle, Ray, loky's default pickler): the locks stay behind, as
        # any pickler but omnipickle's refuses a lock, and a lock held here means nothing there.
        return {"factory": self.factory, "name": self.name, "owner": self.owner}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Earlier releases pickled the whole __dict__, locks included: those keys are ignored.
        self.factory = state["factory"]
        self.name = state["name"]
        self.owner = state["owner"]
        self._guard = threading.Lock()
        self._building = {}

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value

    def __delete__(self, obj: Any) -> None:
        obj.__dict__.pop(self.name, None)
