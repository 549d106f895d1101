"""The resource registry: what each resource type becomes when pickled.

A rule says ``recreate`` (a fresh equivalent: locks and friends, threads that are not running),
``reopen`` (files, by path, mode and position) or ``drop`` (sockets, connections...: ``dumps``
raises, or with ``on_unpicklable="drop"`` the object comes back as ``None``). A ``recreate`` or
``reopen`` reducer may refuse one object (a running thread, a pipe): it is then treated as under
a ``drop`` rule. Rules are keyed by type or by
dotted name (so a third-party type is covered without importing it) and apply to subclasses.
"""

from __future__ import annotations

import functools
import pickle
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

from .._registry import Record, Table

__all__ = [
    "ACTIONS",
    "USER_RULES",
    "ResourceRule",
    "has_user_rules",
    "install_builtin_rules",
    "is_live_resource",
    "lookup",
    "refuse",
    "register_resource",
    "resource_rule",
    "rules_generation",
    "unregister_resource",
]

ACTIONS = ("recreate", "reopen", "drop")
Reducer = Callable[[Any], Any]
Target = type | str


class ResourceRule(Record):
    """What a resource type becomes when pickled.

    Attributes:
        target: the type, or its dotted name (``"psycopg.Connection"``) when it is registered
            without being imported.
        action: ``"recreate"``, ``"reopen"`` or ``"drop"``.
        reducer: for ``recreate``/``reopen``, a function returning the object's reduce tuple.
        builtin: registered by omnipickle itself.
    """

    __slots__ = ("target", "action", "reducer", "builtin")  # noqa: RUF023
    target: Target
    action: str
    reducer: Reducer | None
    builtin: bool

    def __init__(
        self, target: Target, action: str, reducer: Reducer | None = None, builtin: bool = False
    ) -> None:
        self._set(target, action, reducer, builtin)


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(target: Target) -> str:
    return f"for {target if isinstance(target, str) else _dotted(target)}"


class _Rules(Table[Target, ResourceRule]):
    """The rule table; a rule registered with ``replace=True`` hides the one it replaced, which
    applies again when the new one is unregistered (a built-in rule comes back)."""

    def __init__(self) -> None:
        super().__init__("resource rule", KeyError, describe=_describe, on_change=_rules_changed)
        self._hidden: dict[Target, tuple[ResourceRule, ...]] = {}

    def _state(self) -> tuple[dict[Any, Any], ...]:
        return (self._entries, self._hidden)

    def _admit(self, key: Target, value: ResourceRule, *, replace: bool) -> None:
        existing = self._entries.get(key)
        if existing is not None and not replace:
            raise ValueError(
                f"a resource rule {_describe(key)} is already registered ({existing.action}); "
                f"pass replace=True to replace it"
            )

    def _stored(self, key: Target, value: ResourceRule, previous: ResourceRule | None) -> None:
        if previous is not None:
            self._hidden[key] = (*self._hidden.get(key, ()), previous)

    def _removed(self, key: Target, value: ResourceRule) -> None:
        hidden = self._hidden.pop(key, ())
        if hidden:
            self._entries[key] = hidden[-1]
            if len(hidden) > 1:
                self._hidden[key] = hidden[:-1]


class _UserRules:
    """How many rules in force users registered (``count``): while there is none, the auto
    backend may pickle plain data with the C pickler alone (no rule can apply to the types
    pickle handles itself). An object, so that the C fast path of ``dumps`` reads it too."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


USER_RULES = _UserRules()


def _rules_changed() -> None:
    USER_RULES.count = sum(not rule.builtin for rule in RULES.view().values())
    resource_rule.cache_clear()


RULES = _Rules()


def make_rule(
    target: Target, action: str, reducer: Reducer | None = None, *, builtin: bool = False
) -> ResourceRule:
    """A validated :class:`ResourceRule` (the checks :func:`register_resource` documents)."""
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


def register_resource(
    target: Target,
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
        replace: allow replacing an existing rule (built-in ones included); unregistering
            the new rule brings the replaced one back.

    Raises:
        TypeError: ``target`` is neither a type nor a dotted name; ``reducer`` is not callable.
        ValueError: an unknown action (the message lists them), a missing or superfluous
            reducer, or a rule already registered for ``target`` (without ``replace``).
    """
    RULES.put(target, make_rule(target, action, reducer), replace=replace)


def unregister_resource(target: Target) -> None:
    """Remove the rule for ``target``; the rule it replaced, if any, applies again.

    Once no user rule is left, the auto backend's fast path for plain data comes back.

    Raises:
        KeyError: no rule is registered for ``target``.
    """
    RULES.remove(target)


def install_builtin_rules(rows: Iterable[tuple[Target, str, Reducer | None]]) -> None:
    """Register omnipickle's own rules, one ``(target, action, reducer)`` row each."""
    RULES.put_all(
        (target, make_rule(target, action, reducer, builtin=True))
        for target, action, reducer in rows
    )


def rules_generation() -> int:
    """A number that changes whenever a rule is registered or removed (for caches of what the
    rules decided)."""
    return RULES.generation


def has_user_rules() -> bool:
    """Whether user-registered rules are in force (they may cover types pickle handles)."""
    return USER_RULES.count > 0


def lookup(klass: type) -> ResourceRule | None:
    """The rule registered for exactly ``klass`` (by type first, then by dotted name)."""
    rule = RULES.find(klass)
    if rule is None:
        rule = RULES.find(_dotted(klass))
    return rule


@functools.lru_cache(maxsize=1024)
def resource_rule(cls: type) -> ResourceRule | None:
    """The rule for instances of ``cls``: its own, an ancestor's, or the DB-API look-alike one.

    An exact-type rule wins over an ancestor's, so a subclass can be registered differently.
    """
    for klass in cls.__mro__:
        rule = lookup(klass)
        if rule is not None:
            return rule
    if _looks_like_dbapi_connection(cls):
        return ResourceRule(cls, "drop", None, builtin=True)
    return None


_PICKLING_HOOKS = ("__reduce__", "__reduce_ex__", "__getstate__", "__getnewargs__")


def _looks_like_dbapi_connection(cls: type) -> bool:
    """PEP 249: a connection has cursor(), commit(), rollback() and close(). A class that says
    in Python how it is pickled (its own ``__reduce__``, ``__getstate__``...) is not taken for
    one: pickle carries it as it is, and dropping it would lose its data."""
    if any(
        isinstance(vars(klass).get(name), (types.FunctionType, classmethod, staticmethod))
        for klass in cls.__mro__[:-1]
        for name in _PICKLING_HOOKS
    ):
        return False
    return all(
        callable(getattr(cls, name, None)) for name in ("cursor", "commit", "rollback", "close")
    )


def is_live_resource(obj: Any) -> bool:
    """Whether ``obj`` is a resource that cannot travel.

    That is: a ``drop`` rule applies to it, or the reducer of its ``recreate``/``reopen`` rule
    refuses this very object (a running thread, a pipe opened from a descriptor). The reducer
    is called to find out, so it should have no side effects beyond flushing.
    """
    rule = resource_rule(type(obj))  # type: ignore[arg-type]
    if rule is None:
        return False
    if rule.action == "drop" or rule.reducer is None:
        return True
    try:
        rule.reducer(obj)
    except _REFUSALS:
        return True
    return False


# What a resource reducer raises for an object it cannot rebuild (refuse() raises TypeError; a
# file that cannot be asked its position raises OSError).
_REFUSALS: tuple[type[BaseException], ...] = (TypeError, pickle.PicklingError, OSError)


def refuse(obj: Any, why: str = "it is a live resource") -> Any:
    """The reducer of a ``drop`` rule when dropping is not asked for: raise ``TypeError``.

    One exception: the process object that multiprocessing (or loky) is starting, which it
    pickles for the child under spawn and forkserver, is reduced as pickle would.

    Args:
        obj: the object refused.
        why: the reason, for the message (what comes after the type).

    Raises:
        TypeError: for everything else, naming the type.
    """
    # Without this, a Thread or Popen would pickle "successfully" through its __dict__ (its
    # locks being recreatable) and load as a zombie that looks alive.
    if _spawning_process(obj):
        return obj.__reduce_ex__(2)
    raise TypeError(f"cannot pickle {type(obj).__qualname__!r} object: {why}")


def _spawning_process(obj: Any) -> bool:
    """Whether ``obj`` is a process that multiprocessing (or loky) is starting right now: it
    pickles the process object for the child, which is how spawn and forkserver work when
    omnipickle's pickler is the one they use."""
    context = sys.modules.get("multiprocessing.context")
    return (
        context is not None
        and context.get_spawning_popen() is not None
        and isinstance(obj, context.process.BaseProcess)
    )
