"""The plain C pickler, and the probe that decides when auto can start with it.

Instance-heavy data is first dumped by the bare C pickler, with no ``reducer_override`` (a
Python call per instance costs ~12%); :func:`probe` tells, from a bounded look at the first
items, when that is worth trying. Bound methods need one more check than the bare pickler makes
(pickle writes them by a name it never looks up): :class:`PlainTable`, a ``dispatch_table`` that
makes it, at ~5% on instance-heavy data.
"""

from __future__ import annotations

import copyreg
import itertools
import operator
import pickle
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .builtin_types import REDUCERS
from .by_value import NAME_CHECKED, importable

if TYPE_CHECKING:
    from .base import BufferCallback

__all__ = [
    "BUILTIN",
    "CODE",
    "GETATTR_MARKER",
    "INSTANCES",
    "MAIN_MARKER",
    "METHODS",
    "PlainTable",
    "plain_pickler",
    "probe",
]

MAIN_MARKER = b"__main__"
"""In a stream the bare pickler wrote: something was written by reference to ``__main__``."""
GETATTR_MARKER = b"getattr"
"""The name pickle writes every bound method with, the first time (later ones use its memo)."""

_FunctionType = types.FunctionType
_MethodType = types.MethodType


class PlainTable(dict[type, Callable[[Any], Any]]):
    """The plain pickler's ``dispatch_table``: ``copyreg``'s, plus the types pickle writes by a
    name it never checks (bound methods, ``lru_cache`` functions), each written by value when
    its name does not lead back to it.

    A miss stores ``__reduce_ex__`` (through ``operator.methodcaller``, a C callable) for the
    type, which is what the C pickler calls with no table, so later instances of the type are
    found in C with no exception raised and cleared.
    """

    __slots__ = ("_default",)

    def __init__(self, protocol: int) -> None:
        super().__init__(copyreg.dispatch_table)
        for cls, reducer in NAME_CHECKED.items():
            self.setdefault(cls, reducer)
        # Descriptors too: pickle writes a member descriptor as getattr(cls, name), which a
        # metaclass attribute of that name shadows.
        for cls, reducer in REDUCERS.items():
            self.setdefault(cls, reducer)
        self._default = operator.methodcaller("__reduce_ex__", protocol)

    def __missing__(self, cls: type) -> Callable[[Any], Any]:
        if issubclass(cls, type):
            raise KeyError(cls)  # classes with a metaclass are saved by name with no entry
        self[cls] = self._default
        return self._default


def plain_pickler(
    file: Any,
    protocol: int,
    fix_imports: bool = True,
    buffer_callback: BufferCallback = None,
    *,
    table: type[PlainTable] | None = None,
) -> pickle.Pickler:
    """The bare C pickler: no ``reducer_override``, and no ``dispatch_table`` unless ``table``
    is given (:class:`PlainTable`).

    A dispatch table costs a failed lookup (a ``KeyError`` raised and cleared in C) or a call
    per instance; without one the pickler reads ``copyreg``'s table with no exception on a
    miss. Everything auto handles specially (locks, weak references, files, live resources,
    code) fails here, natively, and the dump goes to :class:`AutoPickler`.
    """
    pickler = pickle.Pickler(
        file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback
    )
    if table is not None:
        # What the C pickler makes of a negative protocol, for __reduce_ex__.
        pickler.dispatch_table = table(pickle.HIGHEST_PROTOCOL if protocol < 0 else protocol)
    return pickler


# --- the probe ---------------------------------------------------------------------------------

# Types the C pickler saves without calling reducer_override.
_BUILTIN = frozenset(
    {str, int, float, bool, bytes, type(None), bytearray, dict, list, tuple, set, frozenset}
)
_CONTAINERS = (list, tuple, set, frozenset)
_PROBE_NODES = 64
_PROBE_FANOUT = 8

CODE, METHODS, INSTANCES, BUILTIN = "code", "methods", "instances", "builtin"


def probe(obj: Any, by_value: frozenset[str] = frozenset()) -> str:
    """A bounded look at the first items of ``obj``: what kind of data is this?

    Returns ``CODE`` if it visibly holds code that must go by value (a lambda, an instance of
    a ``__main__`` class), ``METHODS`` if it holds bound methods (whose names the plain
    pickler must check), ``INSTANCES`` if it holds instances of other classes (so that a
    ``reducer_override`` would be called per instance), else ``BUILTIN``.
    """
    queue = [obj]
    seen = 0
    kind = BUILTIN
    methods = False
    while queue and seen < _PROBE_NODES:
        item = queue.pop(0)
        seen += 1
        t = type(item)
        try:
            builtin = t in _BUILTIN
        except TypeError:
            return CODE  # an unhashable class: let the pickler that reports failures see it
        if builtin:
            if t is dict:
                queue.extend(itertools.islice(item.values(), _PROBE_FANOUT))
            elif t in _CONTAINERS:
                queue.extend(itertools.islice(item, _PROBE_FANOUT))
            continue
        if t is _MethodType:
            methods = True  # for the plain pickler with the table that checks its name
            queue.extend((item.__func__, item.__self__))
            continue
        try:
            if t is _FunctionType or isinstance(item, type):
                if not importable(item, by_value):
                    return CODE
                continue
            if not importable(t, by_value):
                return CODE
            kind = INSTANCES
            state = getattr(item, "__dict__", None)
        except Exception:  # noqa: BLE001 - the object's own attribute hooks failed
            # (a __getattribute__ that recurses forever, say): the pickler meets the same
            # failure and reports it with its path and type; the probe only guesses.
            return CODE
        if type(state) is dict:
            queue.extend(itertools.islice(state.values(), _PROBE_FANOUT))
    return METHODS if methods else kind
