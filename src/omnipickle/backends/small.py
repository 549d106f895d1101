"""The per-call fast path of the ``auto`` backend: small graphs of plain data and instances.

A process pool or a queue sends thousands of tiny payloads a second, and for them the fixed cost
of a call is what counts. :func:`plain_dumps` looks at the whole graph within a small budget
(dictionary keys included) and takes two kinds of it to ``pickle.dumps``, which then writes
exactly what the ``auto`` backend would:

- nothing but the types the C pickler saves itself (``None``, numbers, strings, bytes and the
  built-in containers, exact types only): it never calls a reducer for those, so no rule of
  ours could apply;
- those and instances of importable classes with a ``__dict__``: what ``auto`` first hands to
  the bare C pickler anyway (``_dump_plain``), and the same rule decides. What pickle cannot
  carry fails there and takes the general path; a stream that names ``__main__``, ``getattr``
  (a bound method), a module registered to go by value or an ndarray subclass whose instances
  carry attributes (``builtin_types.plain_path_markers``) is thrown away for it.

Anything else, or a graph too large to check cheaply, gets ``None``: the caller takes the
general path, which is as fast as pickle in bulk.
"""

from __future__ import annotations

import pickle
import types
from typing import Any

from ..errors import PICKLING_FAILURES
from ..resources import has_user_rules
from .builtin_types import plain_path_markers
from .by_value import by_value_modules, importable
from .plain import GETATTR_MARKER, MAIN_MARKER

__all__ = ["MAX_NODES", "plain_dumps"]

# The types the C pickler writes without a reducer, a reducer_override or the dispatch table.
_ATOMS = frozenset({str, int, float, bool, bytes, type(None), bytearray})
_SEQUENCES = frozenset({list, tuple, set, frozenset})

MAX_NODES = 64
"""The most objects :func:`plain_dumps` looks at before it leaves the call to the general path."""


def _flat(items: Any) -> bool:
    """Whether every item is an atom (``map`` and ``issuperset`` run in C)."""
    try:
        return _ATOMS.issuperset(map(type, items))
    except TypeError:  # an item whose type cannot be hashed (its metaclass says so)
        return False


_FunctionType = types.FunctionType


def _graph_classes(obj: Any) -> set[type] | None:
    """The classes of the instances in ``obj`` (an empty set: none, all plain data), when it is
    built, to the bottom, of at most :data:`MAX_NODES` exact built-in atoms, containers and
    instances of classes with a ``__dict__`` (looked into); else ``None``."""
    stack = [obj]
    budget = MAX_NODES
    classes: set[type] = set()
    while stack:
        item = stack.pop()
        t = type(item)
        try:
            if t in _ATOMS:
                continue
        except TypeError:  # its metaclass makes the type unhashable
            return None
        if t is dict:
            budget -= 1 + len(item)
            stack.extend(item)
            stack.extend(item.values())
        elif t in _SEQUENCES:
            budget -= 1 + len(item)
            stack.extend(item)
        elif t is _FunctionType or issubclass(t, type):
            return None  # code: by name or by value, auto decides
        else:
            try:
                state = getattr(item, "__dict__", None)
            except Exception:  # noqa: BLE001 - the object's own attribute hooks failed: the
                return None  # general path meets it again and says where
            if type(state) is not dict:
                return None  # slots, C types: the general path decides
            budget -= 1 + len(state)
            stack.extend(state.values())
            classes.add(t)
        if budget < 0:
            return None
    return classes


def plain_dumps(obj: Any, protocol: int) -> bytes | None:
    """``pickle.dumps(obj, protocol)`` when that is exactly what the ``auto`` backend writes for
    ``obj`` and the graph is small; else ``None`` (take the general path)."""
    t = type(obj)
    try:
        atom = t in _ATOMS
    except TypeError:
        return None  # its metaclass makes the type unhashable: the general path reports it
    if atom or (
        # A flat dict or sequence of atoms, the commonest message, checked in C.
        (t is dict and len(obj) <= MAX_NODES and _flat(obj) and _flat(obj.values()))
        or (t in _SEQUENCES and len(obj) <= MAX_NODES and _flat(obj))
    ):
        classes: set[type] | None = set()
    else:
        classes = _graph_classes(obj)
        if classes is None:
            return None
    if has_user_rules():  # a user's resource rule may cover a type pickle handles
        return None
    if not classes:
        return pickle.dumps(obj, protocol)
    registered = by_value_modules()
    if not all(importable(cls, registered) for cls in classes):
        return None
    try:
        stream = pickle.dumps(obj, protocol)
    except PICKLING_FAILURES:
        return None  # the general path says where, or carries it another way
    if MAIN_MARKER in stream or GETATTR_MARKER in stream:
        return None
    if registered and any(name.encode() in stream for name in registered):
        return None
    if any(marker in stream for marker in plain_path_markers()):
        return None  # an ndarray subclass instance, written without its __dict__
    return stream
