"""A small registry of named implementations, shared by backends and codecs.

Built-in implementations are recorded as dotted paths (``"pkg.module:Name"``) and imported on
first use, so that importing omnipickle imports no optional package. Registering over an existing
name is refused unless ``replace=True``; an unknown name and a known name whose package is missing
are different errors.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: either a loaded implementation or where to import it from."""

    name: str
    target: str | T
    requires: str | None
    """The pip distribution the implementation needs, for the install hint."""


class Registry(Generic[T]):
    """Named implementations with strict verbs.

    Args:
        kind: what is registered ("backend", "codec"), for messages.
        unknown: the exception type for an unknown name.
        missing: the exception type for a known name whose package is not installed.
        check: validates an implementation before it is registered; raises ``TypeError``.
    """

    def __init__(
        self,
        kind: str,
        unknown: type[Exception],
        missing: type[Exception],
        check: Callable[[object], None],
    ) -> None:
        self._kind = kind
        self._unknown = unknown
        self._missing = missing
        self._check = check
        self._entries: dict[str, Entry[T]] = {}
        self._loaded: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        # Registration is rare and loading is idempotent; the lock only keeps two threads
        # from interleaving a check-then-set on the same name.
        self._lock = threading.Lock()

    def register(
        self, name: str, impl: str | T, *, requires: str | None = None, replace: bool = False
    ) -> None:
        """Register ``impl`` (an object or a ``"module:attr"`` path) under ``name``."""
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
        with self._lock:
            if not replace and (name in self._entries or name in self._aliases):
                raise ValueError(
                    f"a {self._kind} named {name!r} is already registered; "
                    f"pass replace=True to replace it"
                )
            self._aliases.pop(name, None)
            self._entries[name] = Entry(name, impl, requires)
            self._loaded.pop(name, None)
            if not isinstance(impl, str):
                self._loaded[name] = impl

    def alias(self, alias: str, name: str) -> None:
        """Make ``alias`` another name for the registered ``name``."""
        with self._lock:
            self._aliases[alias] = name

    def unregister(self, name: str) -> None:
        """Remove ``name``; raises the registry's unknown-name error if it is not there."""
        with self._lock:
            if name not in self._entries:
                raise self._unknown(self._unknown_message(name))
            del self._entries[name]
            self._loaded.pop(name, None)
            for alias, target in list(self._aliases.items()):
                if target == name:
                    del self._aliases[alias]

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
        self._loaded[name] = impl
        return impl

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._entries)

    def view(self) -> Mapping[str, Entry[T]]:
        """A read-only view of the entries."""
        return MappingProxyType(self._entries)

    def _unknown_message(self, name: str) -> str:
        known = ", ".join(repr(n) for n in (*self._entries, *self._aliases))
        return f"unknown {self._kind} {name!r}; the registered {self._kind}s are: {known}"
