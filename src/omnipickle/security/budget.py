"""Budgets for restricted loading: how much memory, how many objects and how deep a payload may go.

Parsing a pickle stream is linear in its size: every opcode is at least one byte and builds at
most one object. What is not linear is *amplification*: an allowed callable applied to an
argument that shares references (``str`` of a list of ``[x, x]`` pairs nested 30 deep walks 2**30
elements; the stream is a few hundred bytes), ``bytes(10**12)``, a tuple nested a million deep
used as a dict key (hashing it recurses in C). So a restricted load counts:

* one object per opcode;
* before an allowed callable runs, or a tuple is hashed as a dict or set key, the *expanded*
  size of what it will walk: every element, each time it is reached (shared references count
  every time, as the callable would visit them), and the bytes of the strings and buffers in it;
* the nesting depth of marks and of anything walked;
* the work of hashing and comparing each dict key and set item inserted (:meth:`Budget.keys`):
  a big int is hashed again at every insertion (ints, ranges, Fractions and tuples cache no
  hash), equal but distinct keys are compared in full, and keys whose hash the payload chooses
  (ints beyond 60 bits, tuples, frozensets, complex numbers, Decimals, UUIDs, ranges...) can
  all collide in one container, where each insertion compares with every earlier one.

Limits scale with the payload's size (:class:`Limits`): a legitimate payload's parse stays far
inside them, and an amplifying one is stopped before the callable runs, with a
:class:`~omnipickle.errors.BudgetExceededError`.
"""

from __future__ import annotations

import dataclasses
import decimal
import fractions
import operator
import types
from collections import deque
from collections.abc import Container, Iterable
from typing import Any

from ..errors import BudgetExceededError

__all__ = ["Budget", "Limits", "default_limits", "items_of", "set_default_limits"]

_MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Limits:
    """The limits of one restricted load, as a base plus so much per byte of the payload.

    A payload of ``n`` bytes may use ``memory + memory_per_byte * n`` bytes of amplified data
    and ``objects + objects_per_byte * n`` objects (opcodes plus elements walked by allowed
    callables), and nest ``depth`` levels. ``None`` switches a limit off.

    Attributes:
        memory: the base memory budget, in bytes (64 MiB).
        memory_per_byte: memory allowed per byte of payload (32).
        objects: the base object budget (200,000).
        objects_per_byte: objects allowed per byte of payload (8).
        depth: the deepest nesting of marks, and of what an allowed callable walks (10,000).
    """

    memory: int | None = 64 * _MIB
    memory_per_byte: int = 32
    objects: int | None = 200_000
    objects_per_byte: int = 8
    depth: int | None = 10_000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.name in ("memory", "objects", "depth"):
                continue
            if type(value) is not int or value < 0:
                raise ValueError(
                    f"Limits.{field.name} must be a non-negative int"
                    f"{' or None' if field.name in ('memory', 'objects', 'depth') else ''}, "
                    f"not {value!r}"
                )


_default = Limits()


def default_limits() -> Limits:
    """The limits restricted loads use when none are passed (``limits=None``)."""
    return _default


def set_default_limits(limits: Limits) -> Limits:
    """Make ``limits`` the default of every later restricted load in this process.

    Args:
        limits: the new defaults (``omnipickle.loads(..., restricted=True)`` uses them too).

    Returns:
        The previous defaults, to put back.

    Raises:
        TypeError: ``limits`` is not a :class:`Limits`.
    """
    global _default
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, not {type(limits).__name__}")
    previous, _default = _default, limits
    return previous


def _cap(base: int | None, per_byte: int, size: int) -> int | None:
    return None if base is None else base + per_byte * size


# A Decimal's huge exponent costs nothing until something converts it to an int or a Fraction
# (int(Decimal("1e999999999")) computes 10**999999999).
_MAX_DECIMAL_EXPONENT = 10_000


# Keys and set items: an int of more bits than this hashes in more than one step (and is charged
# its bytes); distinct ints of at most _DISTINCT_BITS bits never hash alike (their hash is their
# value modulo 2**61 - 1), so only wider ones, tuples and frozensets can be made to collide.
_WIDE_INT_BITS = 64
_DISTINCT_BITS = 60
# A str or bytes key is charged its length when longer than this (its hash is cached, but
# inserting it next to an equal, distinct one compares every byte).
_LONG_TEXT = 256
# Collisions are counted in containers of more entries than this (in smaller ones they cost
# at most that many comparisons an insertion).
_FEW_KEYS = 64


def _int_bytes(value: int) -> int:
    """What hashing ``value`` costs, in bytes: nothing for an int of at most 64 bits."""
    bits = value.bit_length()
    return bits >> 3 if bits > _WIDE_INT_BITS else 0


# Keys whose hash the payload cannot choose, or can make collide only a few hundred at a time
# (a float's hash is its value modulo 2**61 - 1 too, but a float has 53 bits of mantissa: at
# most about 200 of them share a hash), and singletons (equal means identical). Every other key
# (complex, Decimal, Fraction, UUID, range, timedelta, instances...) is counted for collisions:
# 20,000 colliding complex numbers, Decimals or UUIDs each took 2 to 12 s to insert.
_UNCHOSEN = frozenset({float, type(None), bool, type(...), type(NotImplemented)})


def _hash_bytes(key: Any) -> int:
    """What hashing ``key`` costs beyond a step, in bytes, for the keys that keep no hash and
    hash wide ints each time: a range (its start, stop and step), a Fraction."""
    kind = type(key)
    if kind is range:
        return _int_bytes(key.start) + _int_bytes(key.stop) + _int_bytes(key.step)
    if kind is fractions.Fraction:
        return _int_bytes(key.numerator) + _int_bytes(key.denominator)
    return 0


# The views of a dict (OrderedDict's are subclasses).
_VIEWS: tuple[type[Any], ...] = (type({}.keys()), type({}.values()), type({}.items()))
_ITERATED = frozenset({list, tuple, deque, set, frozenset, range})


def items_of(obj: Any) -> list[Any] | None:
    """The items iterating ``obj`` gives, for the containers that are iterated in C, without
    running code of the payload's classes: a list, tuple, deque, set, frozenset, range, or a
    view of a dict (``None`` for anything else). Call it only on what the budget has walked:
    a range of a billion ints is a billion items."""
    if type(obj) in _ITERATED or isinstance(obj, _VIEWS):
        return list(obj)
    return None


class Budget:
    """What one restricted load has used, against its limits.

    Args:
        limits: the limits.
        size: the payload's size in bytes.

    Attributes:
        objects: objects counted so far.
        memory: bytes counted so far.
        max_objects, max_memory, max_depth: the limits for this payload (``None``: no limit).
    """

    __slots__ = (
        "_hashes",
        "_targets",
        "_texts",
        "max_depth",
        "max_memory",
        "max_objects",
        "memory",
        "objects",
    )

    def __init__(self, limits: Limits, size: int) -> None:
        self.max_objects = _cap(limits.objects, limits.objects_per_byte, size)
        self.max_memory = _cap(limits.memory, limits.memory_per_byte, size)
        self.max_depth = limits.depth
        self.objects = 0
        self.memory = 0
        # Chosen hashes inserted so far, by container (its id) and hash: how many; and the
        # containers (kept alive, so that their ids stay theirs).
        self._hashes: dict[int, dict[int, int]] = {}
        self._targets: dict[int, object] = {}
        # Long str and bytes keys met so far, by their type, length and ends.
        self._texts: dict[tuple[type, int, Any, Any], Any] = {}

    def exceeded(self, what: str, used: str, limit: int | None) -> BudgetExceededError:
        """The error for ``what`` needing ``used`` of a resource limited to ``limit``."""
        return BudgetExceededError(
            f"restricted loading refused the payload: {what} needs {used}, over its limit of "
            f"{limit}; if you trust this payload, pass larger limits (limits=Limits(...))"
        )

    def charge(self, objects: int, memory: int, what: str) -> None:
        """Count ``objects`` and ``memory`` bytes used by ``what``, or raise if over a limit.

        Raises:
            BudgetExceededError: a limit is exceeded.
        """
        self.objects += objects
        self.memory += memory
        if self.max_objects is not None and self.objects > self.max_objects:
            raise self.exceeded(what, f"more than {self.objects} objects", self.max_objects)
        if self.max_memory is not None and self.memory > self.max_memory:
            raise self.exceeded(what, f"more than {self.memory} bytes", self.max_memory)

    def check_depth(self, depth: int, what: str) -> None:
        """Refuse nesting ``depth`` levels deep, if that is over the limit.

        Raises:
            BudgetExceededError: ``depth`` is over the limit.
        """
        if self.max_depth is not None and depth > self.max_depth:
            raise self.exceeded(what, f"{depth} levels of nesting", self.max_depth)

    def call(
        self,
        args: Any,
        kwargs: Any,
        callee: object,
        *,
        sizes: bool = False,
        skip: Container[int] = frozenset(),
    ) -> None:
        """Charge the arguments of a call of ``callee``: what :meth:`walk` of ``(args, kwargs)``
        charges, counted without walking when they are a flat tuple (no keywords, no item with
        items of its own) that fits the budget.

        Raises:
            BudgetExceededError: the expansion exceeds a limit, or nests too deep.
        """
        if (
            type(args) is tuple
            and kwargs is None
            and not sizes
            and (self.max_depth is None or self.max_depth > 1)
            and id(args) not in skip
        ):
            # walk() counts the tuple (1 + len objects, 8 bytes an item), None, and each item.
            objects, memory = 2 + len(args), 8 * len(args)
            for item in args:
                kind = type(item)
                if kind is str or kind is bytes:
                    objects += 1
                    memory += len(item)
                    continue
                if kind is int:
                    objects += 1
                    memory += _int_bytes(item)
                    continue
                if kind in _LEAVES:
                    objects += 1
                    continue
                n, nbytes, children = _measure(item, False)
                if children is not None:
                    break
                objects += n
                memory += nbytes
            else:
                if (self.max_objects is None or self.objects + objects <= self.max_objects) and (
                    self.max_memory is None or self.memory + memory <= self.max_memory
                ):
                    self.objects += objects
                    self.memory += memory
                    return
        self.walk((args, kwargs), f"calling {callee}", sizes=sizes, skip=skip)

    def keys(self, keys: list[Any], target: object, what: str) -> None:
        """Charge inserting ``keys`` into ``target`` (a dict, a set, or ``None``: a new one).

        Each key is charged what hashing and comparing it costs: the bytes of an int beyond 64
        bits (hashed anew each time), and of the ints of a range or a Fraction; the length of a
        str or bytes over 256 characters (compared in full beside an equal one; not again for
        the very object met before); the expanded size of a tuple or frozenset (as
        :meth:`walk`); and, in a container of more than 64 entries, for every key whose hash
        the payload chooses (all but str, bytes, ints of up to 60 bits, floats and singletons),
        one comparison with each earlier key of the same hash in the same container (``k``
        such keys cost ``k**2 / 2``, as the container's probing does).

        Raises:
            BudgetExceededError: the work exceeds a limit.
        """
        walked = [key for key in keys if type(key) is tuple or type(key) is frozenset]
        if walked:  # before they are hashed here
            self.walk(walked, what)
        size = len(target) if isinstance(target, (dict, set, frozenset)) else 0
        track = size + len(keys) > _FEW_KEYS
        hashes: dict[int, int] = {}
        if track and target is not None:
            hashes = self._hashes.setdefault(id(target), hashes)
            self._targets[id(target)] = target
        objects = memory = 0
        room = None if self.max_memory is None else self.max_memory - self.memory
        for key in keys:
            kind = type(key)
            if kind is str or kind is bytes:
                if len(key) > _LONG_TEXT and self._new_text(key):
                    memory += len(key)
                continue
            if kind is int:
                cost = _int_bytes(key)
                memory += cost
                if key.bit_length() <= _DISTINCT_BITS:
                    continue
            elif kind is tuple or kind is frozenset:
                cost = 1 + len(key)
            elif kind in _UNCHOSEN:
                continue
            else:
                cost = _hash_bytes(key)
                memory += cost
            if room is not None and memory > room:
                break  # charged below: raises before anything else is hashed
            if track:
                try:
                    slot = hash(key)
                except TypeError:  # unhashable: the insertion fails
                    continue
                seen = hashes.get(slot, 0)
                hashes[slot] = seen + 1
                objects += seen
                memory += seen * cost
        if objects or memory:
            self.charge(objects, memory, what)

    def _new_text(self, key: str | bytes) -> bool:
        """Whether a long ``key`` may be compared in full on insertion: not the very object of
        that length and those ends met before (that one compares by identity)."""
        sign = (type(key), len(key), key[:32], key[-32:])
        known = self._texts.get(sign)
        if known is key:
            return False
        if known is None:
            self._texts[sign] = key
        return True

    def walk(
        self,
        roots: Iterable[Any],
        what: str,
        *,
        sizes: bool = False,
        skip: Container[int] = frozenset(),
    ) -> None:
        """Charge the expanded size of ``roots``: what a callable walking them would visit.

        Shared references are counted each time they are reached, and a cycle until the budget
        runs out, because that is what ``str``, ``list``, ``hash`` and the like would do. The
        walk itself stops as soon as a limit is exceeded, so it costs no more than the limit.

        Args:
            roots: the arguments (or keys) to be walked.
            what: names the call, for the message.
            sizes: the callable allocates an int argument's worth of bytes (``bytes(n)``).
            skip: ids of objects not to walk into (the process's own, such as a module's
                namespace the payload was handed: their size is not the payload's doing).

        Raises:
            BudgetExceededError: the expansion exceeds a limit, or nests too deep.
        """
        objects = memory = 0
        room_objects = None if self.max_objects is None else self.max_objects - self.objects
        room_memory = None if self.max_memory is None else self.max_memory - self.memory
        # A cycle is not walked again below itself: str and repr print it as [...], and the
        # other walkers (list, set, hash...) go one level down or meet only immutables.
        path: set[int] = set()
        pending: list[tuple[Any, int]] = [(root, 1) for root in roots]
        while pending:
            obj, depth = pending.pop()
            if depth < 0:  # leaving obj
                path.discard(id(obj))
                continue
            n, nbytes, children = _measure(obj, sizes)
            objects += n
            memory += nbytes
            if (room_objects is not None and objects > room_objects) or (
                room_memory is not None and memory > room_memory
            ):
                self.charge(objects, memory, what)  # raises
            if children is not None and id(obj) not in path and id(obj) not in skip:
                if self.max_depth is not None and depth >= self.max_depth:
                    self.check_depth(depth + 1, what)
                path.add(id(obj))
                pending.append((obj, -1))
                pending.extend((child, depth + 1) for child in children)
        self.charge(objects, memory, what)


_LEAVES = frozenset({type(None), bool, float, complex})


def _measure(obj: Any, sizes: bool) -> tuple[int, int, Iterable[Any] | None]:
    """``(objects, bytes, children)`` of one object met in a walk."""
    kind = type(obj)
    if kind is int and not sizes:
        return 1, _int_bytes(obj), None
    if kind in _LEAVES:
        return 1, 0, None
    if kind is tuple or kind is list:
        return 1 + len(obj), 8 * len(obj), obj
    if kind is str or kind is bytes or kind is bytearray:
        return 1, len(obj), None
    if isinstance(obj, (tuple, list, set, frozenset, deque)):
        return 1 + len(obj), 8 * len(obj), obj
    if isinstance(obj, _VIEWS):  # walked as what iterating it gives (list(view) copies it)
        return 1 + len(obj), 8 * len(obj), obj
    if isinstance(obj, dict):
        return 1 + 2 * len(obj), 16 * len(obj), (*obj.keys(), *obj.values())
    if isinstance(obj, (str, bytes, bytearray)):
        return 1, len(obj), None
    if isinstance(obj, range):
        try:
            n = len(obj)
        except OverflowError:  # longer than sys.maxsize
            n = 1 << 62
        return n, 32 * n, None
    if isinstance(obj, decimal.Decimal):
        if obj.is_finite() and abs(obj.adjusted()) > _MAX_DECIMAL_EXPONENT:
            # Converting it would compute a power of ten with that many digits.
            return 1 << 62, 1 << 62, None
        return 1, 0, None
    if isinstance(obj, memoryview):
        return 1, obj.nbytes, None
    if kind.__module__ == "numpy" and kind.__name__ == "ndarray":
        # Iterating an array makes one object per element.
        size = int(obj.size)
        return 1 + size, 32 * size, None
    if sizes and kind is not bool and hasattr(kind, "__index__"):
        try:
            n = operator.index(obj)
        except TypeError:
            n = 0
        return 1, max(n, 0), None
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
        return 1, 0, None
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        return 1, 0, (state,)
    return 1, 0, None
