"""The registry machinery shared by backends, codecs and resource rules.

:class:`Table` holds entries by key with the strict verbs every registry has: registering over
a key is refused unless ``replace=True``, unregistering an unknown key raises the registry's own
error, the entries are shown through a read-only view, and a change notifies the owner (which
drops its caches and restores its fast paths). :class:`Registry` is a table of named
implementations: built-ins are recorded as dotted paths (``"pkg.module:Name"``) and imported on
first use, so that importing omnipickle imports no optional package; an unknown name and a known
name whose package is missing are different errors.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

Snapshot = tuple[dict[Any, Any], ...]


class Fields:
    """A row of named fields: what ``@dataclass`` gives (``repr`` and ``==`` over the fields,
    no hash), for the rows the package makes at import and on every call.

    Not a dataclass because the :mod:`dataclasses` module imports :mod:`inspect` (and with it
    ``ast``, ``dis`` and ``tokenize``), and builds each class by compiling code: together that
    cost more than the rest of the package's import. A subclass names its fields in
    ``__slots__`` and sets them in its ``__init__``.
    """

    __slots__: tuple[str, ...] = ()
    __hash__ = None  # type: ignore[assignment]  # mutable, as an eq=True dataclass

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Fields)
        return self._values() == other._values()


class Record(Fields):
    """Frozen :class:`Fields`: what ``@dataclass(frozen=True)`` gives (assignment refused, a
    hash over the fields). The fields are in ``__slots__`` in the order ``__init__`` takes
    them, which sets them with :meth:`_set`."""

    __slots__: tuple[str, ...] = ()

    def _set(self, *values: Any) -> None:
        """Set the fields, in ``__slots__`` order (``__init__`` only)."""
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def __hash__(self) -> int:  # type: ignore[override]  # frozen: hashable again
        return hash(self._values())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Slots without __dict__ would be restored by setattr, which is refused.
        return (type(self), self._values())


class Table(Generic[K, V]):
    """Entries by key, with strict verbs.

    Subclasses refine what happens through the hooks :meth:`_admit`, :meth:`_stored` and
    :meth:`_removed`, all called with the lock held.

    Args:
        kind: what is registered ("codec", "resource rule"), for messages.
        unknown: the exception type for a key that is not registered.
        describe: how a key reads in a message (``"named 'gzip'"``, ``"for socket.socket"``).
        on_change: called after every change, with the lock held (so that it sees one
            consistent state; it must not change the table).
    """

    def __init__(
        self,
        kind: str,
        unknown: type[Exception],
        *,
        describe: Callable[[K], str] = lambda key: f"named {key!r}",
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._kind = kind
        self._unknown = unknown
        self._describe = describe
        self._on_change = on_change
        self.generation = 0
        """Counts the changes: whoever caches what it resolved compares it."""
        self._entries: dict[K, V] = {}
        # Registration is rare; the lock only keeps two threads from interleaving a
        # check-then-set on the same key.
        self._lock = threading.Lock()

    def put(self, key: K, value: V, *, replace: bool = False) -> None:
        """Store ``value`` under ``key``; ``ValueError`` if it is taken and not ``replace``."""
        self.put_all(((key, value),), replace=replace)

    def put_all(self, items: Iterable[tuple[K, V]], *, replace: bool = False) -> None:
        """:meth:`put` each ``(key, value)`` in turn, with one change notice for them all (a
        table of built-ins filled at import); a refused item stops there, the ones before it
        stay."""
        with self._lock:
            stored = False
            try:
                for key, value in items:
                    self._admit(key, value, replace=replace)
                    previous = self._entries.get(key)
                    self._entries[key] = value
                    self._stored(key, value, previous)
                    stored = True
            finally:
                if stored:
                    self._changed()

    def remove(self, key: K) -> V:
        """Remove and return the entry for ``key``; the unknown-key error if there is none."""
        with self._lock:
            if key not in self._entries:
                raise self._unknown(self._unknown_message(key))
            value = self._entries.pop(key)
            self._removed(key, value)
            self._changed()
        return value

    def find(self, key: K) -> V | None:
        """The entry for ``key``, or ``None``."""
        return self._entries.get(key)

    def keys(self) -> tuple[K, ...]:
        """The registered keys, in registration order."""
        return tuple(self._entries)

    def view(self) -> Mapping[K, V]:
        """A read-only view of the entries."""
        return MappingProxyType(self._entries)

    def snapshot(self) -> Snapshot:
        """A copy of the table's state, for :meth:`restore` (tests put registries back)."""
        with self._lock:
            return tuple(dict(part) for part in self._state())

    def restore(self, snapshot: Snapshot) -> None:
        """Put back the state :meth:`snapshot` returned."""
        with self._lock:
            for live, saved in zip(self._state(), snapshot, strict=True):
                live.clear()
                live.update(saved)
            self._changed()

    # --- hooks ----------------------------------------------------------------------------

    def _state(self) -> tuple[dict[Any, Any], ...]:
        """Every dict the table's state lives in (subclasses add theirs)."""
        return (self._entries,)

    def _admit(self, key: K, value: V, *, replace: bool) -> None:
        """Refuse ``value`` for ``key`` with ``ValueError``."""
        if not replace and key in self._entries:
            raise ValueError(
                f"a {self._kind} {self._describe(key)} is already registered; "
                f"pass replace=True to replace it"
            )

    def _stored(self, key: K, value: V, previous: V | None) -> None:
        """``value`` was stored under ``key`` in place of ``previous``."""

    def _removed(self, key: K, value: V) -> None:
        """The entry ``value`` of ``key`` was removed."""

    def _unknown_message(self, key: K) -> str:
        return f"no {self._kind} {self._describe(key)} is registered"

    def _changed(self) -> None:
        self.generation += 1
        if self._on_change is not None:
            self._on_change()


class Entry(Record, Generic[T]):
    """One registered name: either a loaded implementation or where to import it from.

    Attributes:
        name: the registered name.
        target: the implementation, or its ``"package.module:Name"`` path.
        requires: the pip distribution the implementation needs, for the install hint.
    """

    __slots__ = ("name", "target", "requires")  # noqa: RUF023
    name: str
    target: str | T
    requires: str | None

    def __init__(self, name: str, target: str | T, requires: str | None) -> None:
        self._set(name, target, requires)


class Registry(Table[str, Entry[T]]):
    """Named implementations with strict verbs.

    Args:
        kind: what is registered ("backend", "codec"), for messages.
        unknown: the exception type for an unknown name.
        missing: the exception type for a known name whose package is not installed.
        check: validates an implementation before it is registered; raises ``TypeError``.
        unique: an attribute of the implementations that no two names may share (the codec
            id written in envelopes); ``None`` values are not compared.
        on_change: called after every change, with the lock held.
    """

    def __init__(
        self,
        kind: str,
        unknown: type[Exception],
        missing: type[Exception],
        check: Callable[[object], None],
        *,
        unique: str | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(kind, unknown, on_change=on_change)
        self._missing = missing
        self._check = check
        self._unique = unique
        self._loaded: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self, name: str, impl: str | T, *, requires: str | None = None, replace: bool = False
    ) -> None:
        """Register ``impl`` (an object or a ``"module:attr"`` path) under ``name``.

        Raises:
            ValueError: ``name`` is not an identifier, is taken (without ``replace``), or
                ``impl`` has the ``unique`` attribute value another name has.
            TypeError: ``impl`` fails the registry's check.
        """
        if not isinstance(name, str) or not name or not name.isidentifier():
            raise ValueError(f"a {self._kind} name must be a non-empty identifier, got {name!r}")
        if isinstance(impl, str):
            if ":" not in impl:
                raise ValueError(
                    f"a {self._kind} given by path must look like 'package.module:Name', "
                    f"got {impl!r}"
                )
        else:
            self._check(impl)
        self.put(name, Entry(name, impl, requires), replace=replace)

    def alias(self, alias: str, name: str) -> None:
        """Make ``alias`` another name for the registered ``name``."""
        with self._lock:
            self._aliases[alias] = name

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases; the registry's unknown-name error if it is not there."""
        self.remove(name)

    def canonical(self, name: str) -> str:
        """The registered name ``name`` stands for (resolving aliases)."""
        if not isinstance(name, str):
            raise TypeError(f"a {self._kind} name must be a str, not {type(name).__name__}")
        name = self._aliases.get(name, name)
        if name not in self._entries:
            raise self._unknown(self._unknown_message(name))
        return name

    def get(self, name: str) -> T:
        """The implementation for ``name``, imported on first use."""
        name = self.canonical(name)
        try:
            return self._loaded[name]
        except KeyError:
            pass
        entry = self._entries[name]
        assert isinstance(entry.target, str)
        module_name, _, attr = entry.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = entry.requires or getattr(exc, "name", None) or module_name
            raise self._missing(
                f"the {self._kind} {name!r} needs the {missing!r} package, which is not "
                f"installed: pip install {missing}"
            ) from exc
        impl: T = getattr(module, attr)
        with self._lock:
            # A path hides its unique value until it is imported: checked now, once.
            self._check_unique(name, impl)
            self._loaded[name] = impl
        return impl

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return self.keys()

    def _state(self) -> tuple[dict[Any, Any], ...]:
        return (self._entries, self._loaded, self._aliases)

    def _admit(self, key: str, value: Entry[T], *, replace: bool) -> None:
        if not replace and key in self._aliases:
            raise ValueError(
                f"a {self._kind} named {key!r} is already registered (another name of "
                f"{self._aliases[key]!r}); pass replace=True to replace it"
            )
        super()._admit(key, value, replace=replace)
        if not isinstance(value.target, str):
            self._check_unique(key, value.target)

    def _check_unique(self, name: str, impl: T) -> None:
        if self._unique is None:
            return
        value = getattr(impl, self._unique, None)
        if value is None:
            return
        for other, loaded in self._loaded.items():
            if other != name and getattr(loaded, self._unique, None) == value:
                raise ValueError(
                    f"the {self._kind} {name!r} has {self._unique} {value!r}, which the "
                    f"{self._kind} {other!r} already has; each {self._kind} needs its own"
                )

    def _stored(self, key: str, value: Entry[T], previous: Entry[T] | None) -> None:
        self._aliases.pop(key, None)
        self._loaded.pop(key, None)
        if not isinstance(value.target, str):
            self._loaded[key] = value.target

    def _removed(self, key: str, value: Entry[T]) -> None:
        self._loaded.pop(key, None)
        for alias, target in list(self._aliases.items()):
            if target == key:
                del self._aliases[alias]

    def _unknown_message(self, key: str) -> str:
        known = ", ".join(repr(n) for n in (*self._entries, *self._aliases))
        return f"unknown {self._kind} {key!r}; the registered {self._kind}s are: {known}"


class Remembered(Generic[K, V]):
    """``compute(key)``, remembered while ``table`` is unchanged (its generation): for answers a
    dump asks again and again about the same few keys (the backends a dump used).

    Holds at most ``limit`` answers; past that it starts again. Treat what it returns as
    read-only (callers copy what they hand out).
    """

    def __init__(self, table: Table[Any, Any], compute: Callable[[K], V], limit: int = 64) -> None:
        self._table = table
        self._compute = compute
        self._limit = limit
        self._known: dict[tuple[K, int], V] = {}

    def __call__(self, key: K) -> V:
        slot = (key, self._table.generation)
        try:
            return self._known[slot]
        except KeyError:
            pass
        value = self._compute(key)
        if len(self._known) >= self._limit:
            self._known.clear()
        self._known[slot] = value
        return value
