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

import copyreg
import pickle
import types
from typing import Any

from ..errors import PICKLING_FAILURES
from ..resources import has_user_rules
from .builtin_types import plain_path_markers
from .by_value import by_value_modules, importable
from .plain import GETATTR_MARKER, MAIN_MARKER

__all__ = ["ATOMS", "MAX_NODES", "plain_dumps"]

# The types the C pickler writes without a reducer, a reducer_override or the dispatch table.
ATOMS = frozenset({str, int, float, bool, bytes, type(None), bytearray})
_SEQUENCES = frozenset({list, tuple, set, frozenset})

MAX_NODES = 64
"""The most objects :func:`plain_dumps` looks at before it leaves the call to the general path."""

_FEW = 8  # up to this many items, a Python loop checks a dict faster than issuperset does


def _flat(items: Any) -> bool:
    """Whether every item is an atom (``map`` and ``issuperset`` run in C)."""
    try:
        return ATOMS.issuperset(map(type, items))
    except TypeError:  # an item whose type cannot be hashed (its metaclass says so)
        return False


_FunctionType = types.FunctionType


def _graph_classes(obj: Any) -> set[type] | None:
    """The classes of the instances in ``obj`` (an empty set: none, all plain data), when it is
    built, to the bottom, of at most :data:`MAX_NODES` exact built-in atoms, containers and
    instances of classes with a ``__dict__`` (looked into, keys included); else ``None``."""
    stack = [obj]
    budget = MAX_NODES
    classes: set[type] = set()
    while stack:
        item = stack.pop()
        t = type(item)
        try:
            if t in ATOMS:
                continue
        except TypeError:  # its metaclass makes the type unhashable
            return None
        # Items that are all atoms (the usual case) are checked in C and not stacked.
        if t in _SEQUENCES:
            budget -= 1 + len(item)
            if budget < 0:
                return None  # too big: checking its items would cost what the dump saves
            if not _flat(item):
                stack.extend(item)
            continue
        if t is dict:
            state = item
        elif t is _FunctionType or issubclass(t, type):
            return None  # code: by name or by value, auto decides
        else:
            try:
                state = getattr(item, "__dict__", None)
            except Exception:  # noqa: BLE001 - the object's own attribute hooks failed: the
                return None  # general path meets it again and says where
            if type(state) is not dict:
                return None  # slots, C types: the general path decides
            classes.add(t)
        budget -= 1 + len(state)  # a dict, or an instance's __dict__: keys and values
        if budget < 0:
            return None
        if not _flat(state):
            stack.extend(state)
        if not _flat(state.values()):
            stack.extend(state.values())
    return classes


# Classes whose instances pickle writes as the class (by name) and the instance's __dict__,
# nothing else: importable, a plain metaclass, no __slots__, no copyreg entry, and object's own
# __reduce_ex__, __reduce__ and __getstate__, no __getnewargs__. A graph whose instances are all
# of such classes is written from what _graph_classes saw, so its stream needs no second look.
_DEFAULT_REDUCTION: dict[type, bool] = {}
_OBJECT_HOOKS = (
    ("__reduce_ex__", object.__reduce_ex__),
    ("__reduce__", object.__reduce__),
    ("__getstate__", getattr(object, "__getstate__", None)),  # Python 3.11+
    ("__getnewargs_ex__", None),
    ("__getnewargs__", None),
)


def _default_reduction(cls: type) -> bool:
    """Whether pickle writes instances of ``cls`` (importable, with no modules registered to go
    by value) as its name and their ``__dict__``: see :data:`_DEFAULT_REDUCTION`."""
    known = _DEFAULT_REDUCTION.get(cls)
    if known is not None:
        return known
    if not importable(cls):
        return False  # not kept: it may be a class made at run time, which the table would pin
    answer = (
        type(cls) is type
        and cls not in copyreg.dispatch_table
        and all(getattr(cls, name, None) is hook for name, hook in _OBJECT_HOOKS)
        and not any("__slots__" in klass.__dict__ for klass in cls.__mro__)
    )
    # Importable classes live as long as their module: the answer, yes or no, is kept.
    if len(_DEFAULT_REDUCTION) >= 4096:
        _DEFAULT_REDUCTION.clear()
    _DEFAULT_REDUCTION[cls] = answer
    return answer


def plain_dumps(obj: Any, protocol: int) -> bytes | None:
    """``pickle.dumps(obj, protocol)`` when that is exactly what the ``auto`` backend writes for
    ``obj`` and the graph is small; else ``None`` (take the general path)."""
    t = type(obj)
    try:
        atom = t in ATOMS
    except TypeError:
        return None  # its metaclass makes the type unhashable: the general path reports it
    if atom:
        return None if has_user_rules() else pickle.dumps(obj, protocol)
    if t is _FunctionType:
        return None  # by name or by value: auto decides
    # A flat dict or sequence of atoms, the commonest message: a few items looked at one by
    # one (issuperset builds a set of what it is given), more in C.
    try:
        if t is dict:
            if len(obj) <= _FEW:
                flat = True
                for key, value in obj.items():
                    if type(key) not in ATOMS or type(value) not in ATOMS:
                        flat = False
                        break
            else:
                flat = len(obj) <= MAX_NODES and ATOMS.issuperset(map(type, obj))
                flat = flat and ATOMS.issuperset(map(type, obj.values()))
        else:
            flat = t in _SEQUENCES and len(obj) <= MAX_NODES and ATOMS.issuperset(map(type, obj))
    except TypeError:  # an item whose type cannot be hashed (its metaclass says so)
        return None
    if flat:
        return None if has_user_rules() else pickle.dumps(obj, protocol)
    classes = _graph_classes(obj)
    if classes is None or has_user_rules():  # a user's resource rule may cover any type
        return None
    if not classes:
        return pickle.dumps(obj, protocol)
    registered = by_value_modules()
    if not registered and all(_default_reduction(cls) for cls in classes):
        try:
            return pickle.dumps(obj, protocol)
        except PICKLING_FAILURES:
            return None  # e.g. changed while being written: the general path says what
    if not all(importable(cls, registered) for cls in classes):
        return None
    try:
        stream = pickle.dumps(obj, protocol)
    except PICKLING_FAILURES:
        return None  # the general path says where, or carries it another way
    # A class's own reducer may have written anything: look at the stream.
    if MAIN_MARKER in stream or GETATTR_MARKER in stream:
        return None
    if registered and any(name.encode() in stream for name in registered):
        return None
    if any(marker in stream for marker in plain_path_markers()):
        return None  # an ndarray subclass instance, written without its __dict__
    return stream
