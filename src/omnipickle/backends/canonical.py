"""Canonical forms of object graphs, so that equal objects pickle to equal bytes.

The C pickler writes a graph as it finds it, and three things about how it finds it are not
part of the value: the order a set iterates in (it changes with ``PYTHONHASHSEED``), which
equal strings, bytes and tuples happen to be one object (the memo writes a second reference to
one object as a back-reference, and an equal copy in full), and the identity of immutable
values such as numpy dtypes. None of them can be changed from inside the C pickler: it saves
exact sets, strings and tuples itself, without asking ``reducer_override``.

So :class:`Canonicalizer` hands the pickler a *canonical mirror* of each part instead: lists
and dicts are copied (one copy per original, so shared ones stay shared and cycles stay
cycles), strings are interned and bytes deduplicated (equal ones become one object, whatever
they were before), tuples of atoms are deduplicated by their exact value and other tuples are
rebuilt at each occurrence, sets and frozensets become stand-ins that rebuild them from their
elements in a canonical order, and immutable values of other types become a fresh stand-in at
each occurrence (never a back-reference). Instances and everything else stay as they are: the
pickler meets them in ``reducer_override``, which mirrors what they reduce to the same way.

The canonical order of a set's elements: natural order when they are all ``str``, all
``bytes`` or all ``int``; IEEE-754 bytes for all-``float`` sets; otherwise the bytes each
element pickles to on its own (deterministically), never ``hash`` or ``str``.
"""

from __future__ import annotations

import itertools
import operator
import pickle
import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import PicklingError

__all__ = ["Canonicalizer", "DeterminismError", "Standin", "Unorderable"]


class DeterminismError(PicklingError):
    """A part of the object cannot be serialized deterministically (``deterministic=True``).

    The message names the part's path (``root['cfg'] is a set of unorderable items: ...``);
    ``path`` and ``type_name`` are set as for :class:`PicklingError`.
    """


class Unorderable(Exception):
    """Internal: the set ``culprit`` has no canonical order (turned into a
    :class:`DeterminismError` naming its path by whoever started the dump)."""

    def __init__(self, culprit: Any, detail: str) -> None:
        super().__init__(detail)
        self.culprit = culprit
        self.detail = detail


class Standin:
    """What the pickler is given in place of a set, a frozenset or an immutable value.

    ``rv`` is the reduction to write (computed by the pickler on first use when ``None``).
    ``__class__`` answers the original's class: the C pickler checks it against the class a
    ``copyreg.__newobj__`` reduction names.
    """

    __slots__ = ("obj", "rv")

    def __init__(self, obj: Any, rv: tuple[Any, ...] | None = None) -> None:
        self.obj = obj
        self.rv = rv

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self.obj)


# Saved by the C pickler as they are, with no memo entry (numbers, None) or no parts
# (bytearray and PickleBuffer are mutable: their identity is part of the value, as for lists).
_PASS = frozenset({int, float, bool, type(None), bytearray, pickle.PickleBuffer})
# Atoms whose equal instances are interchangeable (a tie between two of them in a set is
# harmless: they write the same bytes and are never referenced back).
_INTERCHANGEABLE = frozenset({int, float, bool, complex, str, bytes, type(None)})
_EXACT_ATOMS = frozenset({str, bytes, int, bool, type(None)})
_DOUBLE = struct.Struct("<d")
# What a set's reference to itself is written as in its elements' canonical bytes (only there:
# those bytes order the set and are never loaded).
_CYCLE = ("omnipickle: the set being ordered",)
# Bytes at least this long are not deduplicated (that would hash them): each occurrence is
# written on its own, through a PickleBuffer, so it is still never copied.
LARGE_BYTES = 1 << 16

# Immutable value types (by module, so that a module nobody imported is never imported: none of
# its values can be in the graph). Each occurrence is written in full, never as a back-reference.
_VALUE_TYPES: dict[str, tuple[str, ...]] = {
    "builtins": ("complex", "range", "slice"),
    "datetime": ("date", "datetime", "time", "timedelta", "timezone"),
    "decimal": ("Decimal",),
    "fractions": ("Fraction",),
    "uuid": ("UUID",),
    "pathlib": ("PurePath",),
    "ipaddress": ("IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network"),
}
_OBJECT, _VALUE = 0, 1


def _value_bases() -> tuple[type, ...]:
    found: list[type] = []
    for module_name, names in _VALUE_TYPES.items():
        module = sys.modules.get(module_name)
        if module is not None:
            found.extend(getattr(module, name) for name in names)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        found.extend((numpy.dtype, numpy.generic))
    return tuple(found)


def _kind(cls: type) -> int:
    """Whether instances of ``cls`` are immutable values (written in full at each occurrence)
    or objects (whose identity is kept, as pickle keeps it)."""
    if issubclass(cls, _value_bases()):
        # pathlib's concrete paths and datetime's classes are subclasses of the listed ones;
        # a user's subclass with a __dict__ of its own is an object.
        return _VALUE if cls.__module__ in _VALUE_TYPES or not _has_dict(cls) else _OBJECT
    if issubclass(cls, (tuple, frozenset, str, bytes, int, float)) and not _has_dict(cls):
        return _VALUE  # named tuples, and other subclasses of atoms with no attributes
    params = getattr(cls, "__dataclass_params__", None)
    if params is not None and getattr(params, "frozen", False):
        return _VALUE
    return _OBJECT


def _has_dict(cls: type) -> bool:
    return bool(getattr(cls, "__dictoffset__", 1))


def _exact_key(t: tuple[Any, ...]) -> Any:
    """A key equal only for tuples of exactly the same atoms (``1``, ``1.0`` and ``True`` are
    different, and so are ``0.0`` and ``-0.0``), or ``None`` if ``t`` holds anything else."""
    parts: list[Any] = []
    for item in t:
        it = type(item)
        if it in _EXACT_ATOMS:
            parts.append((it, item))
        elif it is float:
            parts.append(_DOUBLE.pack(item))
        elif it is tuple:
            inner = _exact_key(item)
            if inner is None:
                return None
            parts.append(inner)
        else:
            return None
    return tuple(parts)


class Canonicalizer:
    """Builds canonical mirrors for one dump (see the module docstring).

    Args:
        key_of: the canonical bytes of one object, pickled on its own (orders sets).
        buffers: the protocol has ``PickleBuffer`` (5 and later): large bytes are written
            through one instead of being deduplicated.
        ordering: the ids of the sets whose elements are being ordered, shared by every
            canonicalizer of one dump: an element that holds its own set (through an object)
            meets it again while its canonical bytes are computed, and that reference is
            written as a fixed marker instead of recursing forever.
    """

    __slots__ = (
        "_buffers",
        "_bytes",
        "_frozen",
        "_key_of",
        "_kinds",
        "_memo",
        "_ordering",
        "_tuples",
        "mirror",
    )

    def __init__(
        self,
        key_of: Callable[[Any], bytes],
        *,
        buffers: bool = True,
        ordering: set[int] | None = None,
    ) -> None:
        self._key_of = key_of
        self._buffers = buffers
        self._ordering = ordering if ordering is not None else set()
        self._kinds: dict[type, int] = {}
        self._memo: dict[int, tuple[Any, Any]] = {}
        self._tuples: dict[Any, tuple[Any, ...]] = {}
        self._bytes: dict[bytes, bytes] = {}
        self._frozen: dict[int, tuple[Any, list[Any]]] = {}
        self.mirror = self._mirror

    def clear(self) -> None:
        """Forget every mirror (the originals they keep alive too)."""
        self._memo.clear()
        self._tuples.clear()
        self._bytes.clear()
        self._frozen.clear()

    # --- one object ----------------------------------------------------------------------

    def _mirror(self, x: Any) -> Any:
        t = type(x)
        if t in _PASS:
            return x
        if t is str:
            return sys.intern(x)
        if t is dict:
            return self._dict(x)
        if t is list:
            return self._list(x)
        if t is tuple:
            return self._tuple(x)
        if t is bytes:
            return self._bytes_of(x)
        if t is set:
            return self._set(x)
        if t is frozenset:
            if id(x) in self._ordering:
                return Standin(x, (frozenset, (_CYCLE,)))
            return Standin(x, (frozenset, (self._ordered_mirror(x),)))
        if t is Standin:
            return x
        kind = self._kinds.get(t)
        if kind is None:
            kind = self._kinds[t] = _kind(t)
        return Standin(x) if kind == _VALUE else x

    # Explicit loops, with atoms and strings handled inline: most containers are small, and
    # for them a loop costs less than a few C calls (set(map(type, ...)) and the like).

    def _dict(self, d: dict[Any, Any]) -> dict[Any, Any]:
        memo = self._memo
        hit = memo.get(id(d))
        if hit is not None:
            return hit[1]  # type: ignore[no-any-return]
        out: dict[Any, Any] = {}
        memo[id(d)] = (d, out)  # before the items: a dict may hold itself
        mirror, intern, passed = self._mirror, sys.intern, _PASS
        for k, v in d.items():
            tk = type(k)
            key = intern(k) if tk is str else k if tk in passed else mirror(k)
            tv = type(v)
            out[key] = intern(v) if tv is str else v if tv in passed else mirror(v)
        return out

    def _list(self, lst: list[Any]) -> list[Any]:
        memo = self._memo
        hit = memo.get(id(lst))
        if hit is not None:
            return hit[1]  # type: ignore[no-any-return]
        passed = _PASS
        if len(lst) > 32:
            plain = set(map(type, lst)) <= passed
        else:
            plain = True
            for item in lst:
                if type(item) not in passed:
                    plain = False
                    break
        if plain:
            return lst  # nothing to change: the pickler gets the original (shared stays shared)
        out: list[Any] = []
        memo[id(lst)] = (lst, out)
        mirror, intern = self._mirror, sys.intern
        out.extend([intern(v) if type(v) is str else mirror(v) for v in lst])
        return out

    def _tuple(self, t: tuple[Any, ...]) -> tuple[Any, ...]:
        if not t:
            return t
        mirrored = tuple(map(self._mirror, t))
        key = _exact_key(mirrored)
        if key is None:
            return mirrored  # rebuilt at each occurrence: never a back-reference
        return self._tuples.setdefault(key, mirrored)

    def _bytes_of(self, b: bytes) -> Any:
        if len(b) >= LARGE_BYTES and self._buffers:
            return Standin(b, (bytes, (pickle.PickleBuffer(b),)))
        return self._bytes.setdefault(b, b)

    def _set(self, s: set[Any]) -> Standin:
        memo = self._memo
        hit = memo.get(id(s))
        if hit is not None:
            return hit[1]  # type: ignore[no-any-return]
        if id(s) in self._ordering:
            return Standin(s, (set, (_CYCLE,)))
        out = Standin(s, (set, (self._ordered_mirror(s),)))
        memo[id(s)] = (s, out)
        return out

    # --- sets ---------------------------------------------------------------------------

    def _ordered_mirror(self, items: set[Any] | frozenset[Any]) -> tuple[Any, ...]:
        """The mirrors of ``items``' elements in canonical order."""
        if type(items) is frozenset:
            # One frozenset is often referenced many times (as a dict key, say): order it once.
            hit = self._frozen.get(id(items))
            if hit is None:
                hit = self._frozen[id(items)] = (items, self.ordered(items))
            ordered = hit[1]
        else:
            ordered = self.ordered(items)
        return tuple(map(self._mirror, ordered))

    def ordered(self, items: Iterable[Any]) -> list[Any]:
        """``items`` (a set's elements) in canonical order.

        Raises:
            Unorderable: two elements are different objects that pickle to the same bytes,
                and neither is an interchangeable atom.
        """
        elements = list(items)
        types = set(map(type, elements))
        if len(types) == 1:
            (only,) = types
            if only is str or only is bytes or only is int:
                return sorted(elements)
            if only is float:
                return sorted(elements, key=_DOUBLE.pack)
        self._ordering.add(id(items))
        try:
            keys = [self._key_of(e) for e in elements]
        finally:
            self._ordering.discard(id(items))
        keyed = sorted(zip(keys, elements, strict=True), key=operator.itemgetter(0))
        for (k1, e1), (k2, e2) in itertools.pairwise(keyed):
            if k1 == k2 and e1 is not e2 and type(e1) not in _INTERCHANGEABLE:
                raise Unorderable(
                    items,
                    f"two of its elements are different {_type_name(e1)} objects that "
                    "serialize to the same bytes, so no order between them is canonical; give "
                    "their class __eq__ and __hash__ by value (then the set holds one of them), "
                    "or keep them in a list",
                )
        return [e for _, e in keyed]


def _type_name(obj: Any) -> str:
    t = type(obj)
    module = getattr(t, "__module__", "builtins")
    return t.__qualname__ if module == "builtins" else f"{module}.{t.__qualname__}"
