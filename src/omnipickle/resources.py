"""Live resources: transient attributes, the helper mixins, and the resource registry.

An object that holds a database connection, a socket or a thread cannot be pickled as it is:
the resource lives in this process only. omnipickle offers three ways to say what to do:

* :class:`TransientMixin`: the class lists attributes in ``__transient__``; they are left out
  of the pickled state and come back as ``None``, or the class's ``__restore__`` hook rebuilds
  them after loading.
* :func:`transient`: a descriptor; the attribute is never pickled and is rebuilt lazily by
  ``factory(self)`` on first use after loading (once, even with threads racing for it).
* :class:`ResourceAwareMixin`: no list needed; at dump time, attributes holding live resources
  (by the registry below) are left out, with the same ``__restore__`` hook.

The registry (:func:`register_resource`) says what each resource type becomes: ``recreate`` (a
fresh equivalent: locks and friends), ``reopen`` (files, by path, mode and position) or
``drop`` (sockets, connections, threads...: ``dumps`` raises, or with
``on_unpicklable="drop"`` the object comes back as ``None``).
"""

from __future__ import annotations

import difflib
import functools
import io
import sys
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import OmnipickleError

__all__ = [
    "ACTIONS",
    "ResourceAwareMixin",
    "ResourceRebuildError",
    "TransientMixin",
    "register_resource",
    "resource_rule",
    "transient",
]

ACTIONS = ("recreate", "reopen", "drop")
Reducer = Callable[[Any], Any]


class ResourceRebuildError(OmnipickleError, RuntimeError):
    """A ``transient`` factory raised while rebuilding an attribute (the cause is chained)."""


# --- the registry ----------------------------------------


@dataclass(frozen=True)
class ResourceRule:
    """What a resource type becomes when pickled.

    Attributes:
        target: the type, or its dotted name (``"psycopg.Connection"``) when it is registered
            without being imported.
        action: ``"recreate"``, ``"reopen"`` or ``"drop"``.
        reducer: for ``recreate``/``reopen``, a function returning the object's reduce tuple.
        builtin: registered by omnipickle itself.
    """

    target: type | str
    action: str
    reducer: Reducer | None = None
    builtin: bool = False


_RULES: dict[type | str, ResourceRule] = {}
_RULES_LOCK = threading.Lock()
_USER_RULES = 0  # how many rules were registered by users (auto skips its fast path then)


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_resource(
    target: type | str,
    action: str,
    *,
    reducer: Reducer | None = None,
    replace: bool = False,
) -> None:
    """Say what instances of ``target`` (and its subclasses) become when pickled.

    Args:
        target: a type, or a dotted name (``"package.module.Class"``) so that a third-party
            type can be registered without importing it.
        action: ``"recreate"``, ``"reopen"`` or ``"drop"``.
        reducer: for ``"recreate"`` and ``"reopen"``: ``reducer(obj)`` returns a reduce tuple
            (as ``__reduce__`` would) that rebuilds a fresh equivalent at load time.
        replace: allow replacing an existing rule (built-in ones included).

    Raises:
        TypeError: ``target`` is neither a type nor a dotted name; ``reducer`` is not callable.
        ValueError: an unknown action (the message lists them), a missing or superfluous
            reducer, or a rule already registered for ``target`` (without ``replace``).
    """
    global _USER_RULES
    rule = _make_rule(target, action, reducer, builtin=False)
    with _RULES_LOCK:
        if target in _RULES and not replace:
            raise ValueError(
                f"a resource rule for {_name(target)} is already registered "
                f"({_RULES[target].action}); pass replace=True to replace it"
            )
        _RULES[target] = rule
        _USER_RULES += 1
        resource_rule.cache_clear()


def unregister_resource(target: type | str) -> None:
    """Remove the rule for ``target``; ``KeyError`` if there is none."""
    with _RULES_LOCK:
        del _RULES[target]
        resource_rule.cache_clear()


def _name(target: type | str) -> str:
    return target if isinstance(target, str) else _dotted(target)


def _make_rule(
    target: type | str, action: str, reducer: Reducer | None, *, builtin: bool
) -> ResourceRule:
    if isinstance(target, str):
        parts = target.split(".")
        if len(parts) < 2 or not all(p.isidentifier() for p in parts):
            raise TypeError(
                f"a resource target must be a type or a dotted name like 'package.Class', "
                f"got {target!r}"
            )
    elif not isinstance(target, type):
        raise TypeError(
            f"a resource target must be a type or a dotted name, not {type(target).__name__}"
        )
    if action not in ACTIONS:
        raise ValueError(
            f"unknown resource action {action!r}; the actions are: {', '.join(ACTIONS)}"
        )
    if action == "drop" and reducer is not None:
        raise ValueError("a 'drop' rule takes no reducer: the object becomes None")
    if action != "drop":
        if reducer is None:
            raise ValueError(f"a {action!r} rule needs a reducer(obj) returning a reduce tuple")
        if not callable(reducer):
            raise TypeError("reducer must be callable")
    return ResourceRule(target, action, reducer, builtin)


def _register_builtin(target: type | str, action: str, reducer: Reducer | None = None) -> None:
    _RULES[target] = _make_rule(target, action, reducer, builtin=True)


def has_user_rules() -> bool:
    """Whether users registered resource rules (they may cover types pickle handles)."""
    return _USER_RULES > 0


def _lookup(klass: type) -> ResourceRule | None:
    rule = _RULES.get(klass)
    if rule is None:
        rule = _RULES.get(_dotted(klass))
    return rule


@functools.lru_cache(maxsize=1024)
def resource_rule(cls: type) -> ResourceRule | None:
    """The rule for instances of ``cls``: its own, an ancestor's, or the DB-API look-alike one.

    An exact-type rule wins over an ancestor's, so a subclass can be registered differently.
    """
    for klass in cls.__mro__:
        rule = _lookup(klass)
        if rule is not None:
            return rule
    if _looks_like_dbapi_connection(cls):
        return ResourceRule(cls, "drop", None, builtin=True)
    return None


def _looks_like_dbapi_connection(cls: type) -> bool:
    """PEP 249: a connection has cursor(), commit(), rollback() and close()."""
    return all(
        callable(getattr(cls, name, None)) for name in ("cursor", "commit", "rollback", "close")
    )


def is_live_resource(obj: Any) -> bool:
    """Whether ``obj`` is a resource that cannot travel (a ``drop`` rule applies)."""
    rule = resource_rule(type(obj))  # type: ignore[arg-type]
    return rule is not None and rule.action == "drop"


# --- built-in rules ----------------------------------------


def _reduce_lock(obj: Any) -> tuple[Any, ...]:
    from ._reconstruct import make_lock

    return (make_lock, ())


def _reduce_rlock(obj: Any) -> tuple[Any, ...]:
    from ._reconstruct import make_rlock

    return (make_rlock, ())


def _reduce_condition(obj: threading.Condition) -> tuple[Any, ...]:
    from ._reconstruct import make_condition

    return (make_condition, (obj._lock,))  # type: ignore[attr-defined]


def _reduce_semaphore(obj: threading.Semaphore) -> tuple[Any, ...]:
    from ._reconstruct import make_semaphore

    return (make_semaphore, (obj._value,))


def _reduce_bounded_semaphore(obj: threading.BoundedSemaphore) -> tuple[Any, ...]:
    from ._reconstruct import make_bounded_semaphore

    return (make_bounded_semaphore, (obj._value, obj._initial_value))  # type: ignore[attr-defined]


def _reduce_event(obj: threading.Event) -> tuple[Any, ...]:
    from ._reconstruct import make_event

    return (make_event, (obj.is_set(),))


def _reduce_barrier(obj: threading.Barrier) -> tuple[Any, ...]:
    from ._reconstruct import make_barrier

    return (make_barrier, (obj.parties, obj._action, obj._timeout))  # type: ignore[attr-defined]


_STD_STREAMS = ("stdin", "stdout", "stderr")


def _reduce_file(obj: Any) -> tuple[Any, ...]:
    """Reopen at load time: same path, mode and position (dill loses the position)."""
    from ._reconstruct import reopen_file, std_stream

    for stream in _STD_STREAMS:
        if obj is getattr(sys, stream, None) or obj is getattr(sys, f"__{stream}__", None):
            return (std_stream, (stream,))
    name: Any = getattr(obj, "name", None)
    if not isinstance(name, str):
        raise TypeError(
            f"cannot pickle {type(obj).__name__} with no file name (name={name!r}): "
            "only files opened by path can be reopened"
        )
    mode = getattr(obj, "mode", "rb")
    if isinstance(obj, io.FileIO) and "b" not in mode:
        mode += "b"
    if obj.closed:
        return (reopen_file, (name, mode, 0, True))
    obj.flush()
    position = obj.tell()
    if isinstance(obj, io.TextIOWrapper):
        return (reopen_file, (name, mode, position, False, obj.encoding, obj.errors, None))
    return (reopen_file, (name, mode, position, False))


def _install_builtin_rules() -> None:
    recreate: dict[Any, Reducer] = {
        type(threading.Lock()): _reduce_lock,
        type(threading.RLock()): _reduce_rlock,
        threading.Condition: _reduce_condition,
        threading.Semaphore: _reduce_semaphore,
        threading.BoundedSemaphore: _reduce_bounded_semaphore,
        threading.Event: _reduce_event,
        threading.Barrier: _reduce_barrier,
    }
    for cls, reducer in recreate.items():
        _register_builtin(cls, "recreate", reducer)
    for cls in (
        io.FileIO,
        io.BufferedReader,
        io.BufferedWriter,
        io.BufferedRandom,
        io.TextIOWrapper,
    ):
        _register_builtin(cls, "reopen", _reduce_file)
    for cls in (
        types.GeneratorType,
        types.CoroutineType,
        types.AsyncGeneratorType,
        types.FrameType,
        types.TracebackType,
        threading.Thread,
    ):
        _register_builtin(cls, "drop")
    # By name: checked against the types' dotted names, so nothing is imported to register them.
    for dotted in (
        "socket.socket",
        "ssl.SSLSocket",
        "ssl.SSLObject",
        "sqlite3.Connection",
        "sqlite3.Cursor",
        "sqlite3.Blob",
        "subprocess.Popen",
        "multiprocessing.process.BaseProcess",
        "multiprocessing.connection.Connection",
        "multiprocessing.pool.Pool",
        "concurrent.futures._base.Executor",
        "asyncio.events.AbstractEventLoop",
        "asyncio.futures.Future",
        "_asyncio.Future",
        "_asyncio.Task",
        "selectors.BaseSelector",
        "select.epoll",
        "select.poll",
        "select.kqueue",
        "select.devpoll",
        "mmap.mmap",
        "tempfile._TemporaryFileWrapper",
        "tempfile.SpooledTemporaryFile",
        "queue.SimpleQueue",
        "_queue.SimpleQueue",
        "_thread._local",
        "_thread.LockType",
    ):
        _register_builtin(dotted, "drop")


_install_builtin_rules()


def _refuse(obj: Any) -> Any:
    # Without this, a Thread or Popen would pickle "successfully" through its __dict__ (its
    # locks being recreatable) and load as a zombie that looks alive.
    raise TypeError(f"cannot pickle {type(obj).__qualname__!r} object: it is a live resource")


# --- transient attributes: the shared machinery ----------------------------------------


def transient_names(cls: type) -> frozenset[str]:
    """Every attribute name ``cls`` and its bases mark transient (mixin lists and descriptors)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        names.update(klass.__dict__.get("__transient__", ()))
        names.update(klass.__dict__.get("__transient_descriptors__", ()))
    return frozenset(names)


def _strip_state(state: Any, names: frozenset[str], cls: type) -> Any:
    """``state`` without the attributes in ``names`` (in every shape pickle uses)."""
    if not names:
        return state
    if isinstance(state, dict):
        return {k: v for k, v in state.items() if k not in names}
    if (
        isinstance(state, tuple)
        and len(state) == 2
        and (state[0] is None or isinstance(state[0], dict))
        and (state[1] is None or isinstance(state[1], dict))
    ):
        return tuple(_strip_state(part, names, cls) if part else part for part in state)
    if isinstance(state, list) and hasattr(cls, "__dataclass_fields__"):
        # dataclass(frozen=True, slots=True) pickles a list of field values, in field order.
        import dataclasses

        fields = [f.name for f in dataclasses.fields(cls)]
        if len(fields) == len(state):
            return [None if f in names else v for f, v in zip(fields, state, strict=True)]
    return state


def reduce_without(obj: Any, protocol: int, drop: Callable[[Any], frozenset[str]]) -> Any:
    """``obj``'s ordinary reduce tuple, minus the attributes ``drop(obj)`` names, plus a state
    setter that restores them as ``None`` and calls ``__restore__``."""
    from ._reconstruct import restore_state

    rv = object.__reduce_ex__(obj, protocol)
    if not isinstance(rv, tuple) or len(rv) < 2:
        return rv
    func, args, state, listitems, dictitems = (*rv, None, None, None)[:5]
    names = drop(obj)
    return (
        func,
        args,
        (_strip_state(state, names, type(obj)), tuple(sorted(names))),
        listitems,
        dictitems,
        restore_state,
    )


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
    socket, a database connection, a thread...) is left out of the state and comes back as
    ``None``; ``__restore__(self)``, if defined, is called after loading to rebuild it.
    Resources that can be recreated (locks) or reopened (files) are kept and are.
    """

    __slots__ = ()

    def __reduce_ex__(self, protocol: Any) -> Any:
        return reduce_without(self, protocol, _live_attributes)


def _live_attributes(obj: Any) -> frozenset[str]:
    names = set(transient_names(type(obj)))
    state: dict[str, Any] = {}
    state.update(getattr(obj, "__dict__", {}))
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if hasattr(obj, slot):
                state[slot] = getattr(obj, slot)
    names.update(name for name, value in state.items() if is_live_resource(value))
    return frozenset(names)


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

    The owner class needs a ``__dict__`` (no ``__slots__`` without ``"__dict__"``).
    """

    def __init__(self, factory: Callable[[Any], Any]) -> None:
        if not callable(factory):
            raise TypeError(f"transient() needs a callable factory(self), not {factory!r}")
        self.factory = factory
        self.name = ""
        self.owner = ""
        self._guard = threading.Lock()
        self._building: dict[int, threading.Lock] = {}

    def __set_name__(self, owner: type, name: str) -> None:
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

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value

    def __delete__(self, obj: Any) -> None:
        obj.__dict__.pop(self.name, None)


# Temporary shim: the resources split makes this the public name (dropped in the merge).
refuse = _refuse
