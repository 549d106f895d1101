"""Restricted loading's fast path: prove a stream simple, then let the C unpickler load it.

Restricted loading runs pickle's pure-Python unpickler (:mod:`.unpickler`), because the C
unpickler has no hook for most of its checks. But a stream made *only* of the opcodes below
does nothing those checks could refuse, so the C unpickler may load it, given the same
``find_class``. :func:`validate` proves it, reading the stream exactly as the C unpickler reads
it (a regular expression over opcodes and their arguments, matched in C by :mod:`re`, with a
little bookkeeping in Python where the expression stops):

* **Plain data**: ``None``, booleans, ints (up to 8 bytes), floats, str, bytes, bytearray, the empty
  tuple, lists, dicts and sets, and the memo. No tuple is built (so no key can be costly to hash:
  a tuple holding itself twice over 40 levels takes 2**40 steps), nothing is called.
* **Instances of plain classes**, as pickle writes them: a global (STACK_GLOBAL or GLOBAL), the
  empty tuple, NEWOBJ, then a new dict filled by SETITEMS (or by one SETITEM) and BUILD, or no
  state at all. BUILD stands nowhere else: after SETITEMS batches its target is the object
  NEWOBJ just made and its state that dict; after a SETITEM its state is the container that
  SETITEM just filled, so never ``None`` or an empty dict, and a BUILD of that on a global (a
  class) fails, as a class's ``__dict__`` cannot be written. The global goes through restricted
  loading's own ``find_class`` (the allow-list, names checked as objects), and then must be a
  class for which :func:`fast_class` holds: one that runs none of its own code while it is
  unpickled, hashed or filled. Any other global sends the stream to the checked path.
* **Bounds**: LONG_BINPUT indices are below ``2**k``, ``k`` about ``n.bit_length()`` for an
  ``n``-byte stream (the C unpickler grows its memo to twice the index: 7 bytes could make it
  clear gigabytes); frames end on opcode boundaries, no FRAME opens inside a frame, no length
  runs past its frame or the data; MARKs nest no deeper than the budget's depth, and each is
  followed by a value (see ``_PUSHERS``); and the limits leave room for everything the checked
  path would count (one object per opcode, two per NEWOBJ, one per empty tuple hashed as a key:
  the limits must allow four objects a byte), so no budget can run out.
* **Keys cheap to insert**: ints fit in 8 bytes (wider ones can be made to share one hash), and
  no two long str or bytes (over 255 bytes) have the same length and ends (two equal ones could
  be inserted side by side as keys, each insertion comparing every byte).
* **No planted methods**: a stream that builds an instance (NEWOBJ) and holds ``__setstate__``,
  ``extend``, ``append`` or ``add`` as a string is not simple: a BUILD could store one of them in
  an instance's ``__dict__``, where the C unpickler's lookup would find and call it.

Anything else (REDUCE, a tuple, other BUILDs, POP, LONG4, protocol 0 text opcodes, a damaged
stream, tight limits) is not an error here: :func:`validate` says no, and the checked path loads
the stream and gives the verdict. When it says yes, the C unpickler reads only the bytes up to
the STOP it found, with a ``persistent_load`` that refuses (no opcode here calls it); if it
raises anyway (a missing memo entry, an unhashable key, a global that is allowed but not a plain
class), the checked path loads the stream again, from the start, and its result or error is the
one returned.
"""

from __future__ import annotations

import functools
import io
import pickle
import re
from collections.abc import Callable
from typing import Any, Final

from ..errors import UnsafePayloadError
from .budget import Limits

__all__ = [
    "GROUP_DEPTH",
    "NOT_SIMPLE",
    "NotSimple",
    "fast_class",
    "load",
    "protocol",
    "validate",
]

NOT_SIMPLE: Final = object()
"""What :func:`load` returns for a stream it does not prove simple."""

GROUP_DEPTH: Final = 2
"""How deep the marks that the expression matches in one piece may nest (the rest are counted
one by one, in :func:`validate`)."""


class NotSimple(Exception):
    """Raised by a ``find_class`` inside the fast path: this global needs the checked path."""


_MARK = ord("(")
_STOP = ord(".")
_SETITEM = ord("s")
_SETITEMS = ord("u")
_BUILD = ord("b")
_NEWOBJ = pickle.NEWOBJ[0]
_EMPTY_DICT = ord("}")
_FRAME = pickle.FRAME[0]
_PROTO = pickle.PROTO[0]
_MEMOIZE = pickle.MEMOIZE[0]
_BINPUT = ord("q")
_LONG_BINPUT = ord("r")
# Opcodes that close a mark, and those of them that fill a container (APPENDS, SETITEMS,
# ADDITEMS).
_CLOSERS = frozenset(b"eud1l\x90")
_BATCHES = frozenset(b"eu\x90")
# Opcodes with a length prefix that the expression leaves to validate() (long strings and
# bytes): the width of the length, little-endian unsigned, as both unpicklers read it.
_SIZED = {ord("X"): 4, ord("B"): 4, 0x8C: 1, ord("C"): 1, 0x8A: 1, 0x8D: 8, 0x8E: 8, 0x96: 8}
# Opcodes that push one value and take none from the stack, by their first byte. Every MARK must
# be followed by one: then what the mark closes is never empty, and every opcode after it
# leaves at least one value above the mark (or fails, in both unpicklers alike). An empty
# APPENDS or ADDITEMS is where the two differ: the C unpickler does nothing, pickle.py looks up
# ``append`` or ``add`` and fails, and restricted loading refuses one on a global.
_PUSHERS = frozenset(b"N\x88\x89)}]\x8fKhMJjGc") | frozenset(_SIZED)
# Where a by-hand instance stands: after NEWOBJ (memo ops, then the state's EMPTY_DICT), after
# the dict (memo ops, then a MARK, BUILD or the one item of a SETITEM), after a SETITEMS on the
# dict (a MARK or BUILD).
_AFTER_NEWOBJ, _AFTER_DICT, _AFTER_ITEMS = 1, 2, 3
# What validate() keeps open: a mark (plain, or one whose SETITEMS fills an instance's state),
# or the one key and value of an instance's state, ended by SETITEM then BUILD (not a mark).
_PLAIN, _STATE, _PAIR = 1, 2, 3


def _lit(value: int) -> bytes:
    return re.escape(bytes([value]))


# The methods both unpicklers look up by name on the object an opcode fills (BUILD's
# ``__setstate__``, APPEND's ``extend`` or ``append``, ADDITEMS' ``add``). A fast class has none
# of them, but an earlier BUILD can store one in an instance's ``__dict__``, where the lookup
# finds it and calls it: a stream in which one of these names is a string and an instance is
# built (NEWOBJ) goes to the checked path, which refuses such a call.
_LOOKED_UP = frozenset({b"__setstate__", b"extend", b"append", b"add"})
_TEXT = frozenset({0x8C, ord("X"), 0x8D})  # SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
_ANY_NEWOBJ = re.compile(re.escape(bytes([_NEWOBJ])))


# LONG1 of at most 8 bytes: distinct ints below 2**63 in size hash alike at most a few at a
# time (an int's hash is its value modulo 2**61 - 1); wider ones can all collide in one dict,
# where each insertion compares with every earlier one (20,000 such keys take seconds).
_LONG1_BYTES = 8
# str and bytes longer than the expression reads: two equal ones (by length and ends) could be
# inserted next to each other again and again as keys, each insertion comparing every byte.
_LONG_TEXT = 255
_BYTES = frozenset({ord("B"), 0x8E})  # BINBYTES, BINBYTES8


def _counted(opcode: int, longest: int, pad: bytes = b"", text: bool = False) -> bytes:
    """An opcode with a one-byte length (then ``pad``, the length's zero high bytes) of at most
    ``longest``, then that many bytes: one alternative per length. With ``text``, not the
    strings in :data:`_LOOKED_UP` (:func:`validate` reads those)."""

    def argument(size: int) -> bytes:
        words = [word for word in _LOOKED_UP if len(word) == size] if text else []
        avoid = b"(?!" + b"|".join(re.escape(word) for word in words) + b")" if words else b""
        return _lit(size) + pad + avoid + (b".{%d}" % size if size else b"")

    lengths = (argument(size) for size in range(longest + 1))
    return _lit(opcode) + b"(?:" + b"|".join(lengths) + b")"


def _long_binput(bits: int | None) -> bytes:
    """LONG_BINPUT with an index below ``2**bits`` (``None``: no LONG_BINPUT)."""
    if bits is None:
        return b""
    if bits >= 32:
        return b"|r.{4}"
    if bits >= 24:
        return b"|r.{3}[\\x00-" + _lit((1 << (bits - 24)) - 1) + b"]"
    return b"|r..[\\x00-" + _lit((1 << (bits - 16)) - 1) + b"]\\x00"


def _tokens(setitem: bytes, bits: int | None) -> bytes:
    """The opcodes (with their arguments) of the simple set, as alternatives, SETITEM written
    as ``setitem``.

    One-byte opcodes that push a value, change the memo or the stack, fill a container without a
    mark, or name a global from the stack: NONE, NEWTRUE, NEWFALSE, EMPTY_TUPLE, EMPTY_DICT,
    EMPTY_LIST, EMPTY_SET, MEMOIZE, DUP, APPEND, STACK_GLOBAL. Not POP: it can close a mark,
    which would let a SETITEMS reach below an instance's state.
    """
    one_byte = b"[" + b"".join(_lit(code) for code in b"N\x88\x89)}]\x8f\x942a\x93") + b"]"
    memo = b"(?:\\x94|q." + _long_binput(bits) + b")"
    # The most frequent first: the regular expression tries them in turn.
    alternatives = [
        one_byte,
        b"h.",  # BINGET
        _counted(0x8C, 255, text=True),  # SHORT_BINUNICODE
        b"K.",  # BININT1
        b"G.{8}",  # BINFLOAT
        b"M..",  # BININT2
        b"q.",  # BINPUT
        # BINUNICODE, as protocols 1 to 3 write str
        _counted(ord("X"), 255, b"\\x00{3}", text=True),
        b"J.{4}",  # BININT
        setitem,
        # NEWOBJ with no state after it (an instance whose __dict__ is empty): one followed by
        # a new dict is an instance with a state, read as a whole, or by validate(), which also
        # reads one that a frame's end follows (the state may be in the next frame).
        b"\\x81(?!" + memo + b"*+(?:\\}|\\Z))",
        b"j.{4}",  # LONG_BINGET (the C unpickler checks the index)
        b"c[^\\n]{1,512}\\n[^\\n]{1,512}\\n",  # GLOBAL (protocols 0 to 3)
        _counted(ord("C"), 64),  # SHORT_BINBYTES
        _counted(0x8A, _LONG1_BYTES),  # LONG1
    ]
    return b"|".join(alternatives) + _long_binput(bits)


@functools.cache
def _grammar(bits: int | None, pair: bool) -> re.Pattern[bytes]:
    """A run of simple opcodes: marks nested up to :data:`GROUP_DEPTH`, and whole instances.

    With ``pair``, the run stops at a SETITEM followed by BUILD (the end of an instance's
    one-item state). Every alternative starts with a different opcode byte and every repetition
    is possessive: the run reads the stream as the C unpickler does, left to right (an
    instance's state is tried as marks first, then as one item, then as empty).
    """
    # The alternatives of an opcode, and of one inside a one-item state (where a SETITEM that
    # BUILD follows ends the state).
    tokens, last = _tokens(b"s", bits), _tokens(b"s(?!b|\\Z)", bits)
    memo = b"(?:\\x94|q." + _long_binput(bits) + b")"
    # A batch that fills a container may be followed by empty ones (the C pickler writes one
    # after a dict's or a set's last full batch of 1,000): on the same target, which the batch
    # before filled, so there they change nothing in either unpickler.
    closer = b"(?:[dl1]|e(?:\\(e)*+|u(?:\\(u)*+|\\x90(?:\\(\\x90)*+)"
    # A mark is followed by an opcode that pushes a value (see _PUSHERS).
    mark = b"\\((?=[" + b"".join(_lit(code) for code in sorted(_PUSHERS)) + b"])"
    atom, pair_atom = b"(?:" + tokens + b")", b"(?:" + last + b")"
    for _ in range(GROUP_DEPTH):
        group = mark + atom + b"*+" + closer
        # NEWOBJ, its state: a new dict, filled by SETITEMS, or by one SETITEM; then BUILD.
        instance = (
            b"\\x81" + memo + b"*+\\}" + memo + b"*+"
            b"(?:(?:" + mark + atom + b"*+u(?:\\(u)*+)++|" + pair_atom + b"*+s|)b"
        )
        atom, pair_atom = (
            b"(?:" + tokens + b"|" + group + b"|" + instance + b")",
            b"(?:" + last + b"|" + group + b"|" + instance + b")",
        )
    return re.compile((pair_atom if pair else atom) + b"++", re.DOTALL)


def _bits(data: Any, size: int) -> int | None:
    """The LONG_BINPUT bound for this stream: none from protocol 4 on (pickle writes MEMOIZE),
    else ``2**k`` with ``k`` the stream's bit length rounded down to an even number (so that a
    few expressions serve every size), at least 16."""
    if size >= 2 and data[0] == _PROTO and data[1] >= 4:
        return None
    return max(16, size.bit_length() & ~1)


def protocol(data: bytes | bytearray | memoryview) -> int:
    """The protocol a stream declares in its first opcode (0: none, or unreadable)."""
    try:
        head = memoryview(data).cast("B")[:2]
    except TypeError:
        return 0
    return head[1] if len(head) == 2 and head[0] == _PROTO else 0


def _memo_op(view: memoryview, pos: int, end: int, bits: int | None) -> int:
    """The end of the memo opcode at ``pos`` (``-1``: there is none)."""
    op = view[pos]
    if op == _MEMOIZE:
        return pos + 1
    if op == _BINPUT:
        return pos + 2 if pos + 2 <= end else -1
    if op == _LONG_BINPUT and bits is not None and pos + 5 <= end:
        return pos + 5 if int.from_bytes(view[pos + 1 : pos + 5], "little") >> bits == 0 else -1
    return -1


def _next_opcode(view: memoryview, pos: int, end: int) -> int:
    """The opcode at ``pos``, past the headers of frames that start there (``-1``: none)."""
    size = view.nbytes
    while pos == end < size:  # at the end of a frame: another frame, or bytes outside frames
        if view[pos] != _FRAME:
            return view[pos]
        if pos + 9 > size:
            return -1
        end = pos + 9 + int.from_bytes(view[pos + 1 : pos + 9], "little")
        pos += 9
    return view[pos] if pos < min(end, size) else -1


def _room(limits: Limits, size: int) -> int | None:
    """How deep :func:`validate` may count marks (``None``: no limit; ``-1``: no fast path)."""
    objects = None if limits.objects is None else limits.objects + limits.objects_per_byte * size
    memory = None if limits.memory is None else limits.memory + limits.memory_per_byte * size
    # Memory is not charged at all on this path; four bytes a byte is a margin.
    if (objects is not None and objects < 4 * size) or (memory is not None and memory < 4 * size):
        return -1
    return None if limits.depth is None else limits.depth - GROUP_DEPTH


def validate(data: bytes | bytearray | memoryview, limits: Limits) -> int | None:
    """Where the STOP of ``data`` ends, if the stream is simple (see the module) within ``limits``.

    Args:
        data: a bare pickle stream.
        limits: the restricted load's limits (its budget for a stream of ``len(data)`` bytes).

    Returns:
        The offset just past the stream's STOP, or ``None``: the stream is not proved simple
        (the checked path must load it, and decides).
    """
    try:
        view = memoryview(data).cast("B")
    except TypeError:  # not C-contiguous: the checked path reads it
        return None
    size = view.nbytes
    room = _room(limits, size)
    if room is not None and room < 0:
        return None
    pos = 0
    if size >= 2 and view[0] == _PROTO:  # a PROTO anywhere else is refused
        if view[1] > pickle.HIGHEST_PROTOCOL:
            return None
        pos = 2
    bits = _bits(view, size)
    run = _grammar(bits, False).match
    open_: list[int] = []  # what the expression left open, innermost last (_PLAIN...)
    depth = 0  # how many of those are marks
    expect = 0  # inside a by-hand instance: what comes next
    frame_end = -1  # inside no frame
    end = size
    looked_up = False  # a string of _LOOKED_UP was read
    long_texts: set[tuple[bool, int, bytes, bytes]] = set()  # the long str and bytes read
    while True:
        if pos == frame_end:
            frame_end, end = -1, size
        if not expect:
            pair = bool(open_) and open_[-1] == _PAIR
            found = (_grammar(bits, True).match if pair else run)(view, pos, end)
            if found is not None:
                pos = found.end()
                if pos == frame_end:
                    continue
        if pos >= end:
            return None  # no STOP in the data
        op = view[pos]
        if op == _FRAME:
            if frame_end >= 0 or pos + 9 > end:
                return None  # a FRAME inside a frame, or a truncated one
            length = int.from_bytes(view[pos + 1 : pos + 9], "little")
            pos += 9
            if length > end - pos:
                return None
            frame_end = end = pos + length
        elif expect:
            # An instance the expression could not take whole (a frame or a deep state cuts
            # it): NEWOBJ, memo ops, EMPTY_DICT, memo ops, then (MARK ... SETITEMS)* BUILD,
            # or one key and value then SETITEM BUILD, or BUILD.
            after = _memo_op(view, pos, end, bits) if expect != _AFTER_ITEMS else -1
            if after >= 0:
                pos = after
            elif expect == _AFTER_NEWOBJ:  # the state's dict, or no state at all
                if op == _EMPTY_DICT:
                    expect, pos = _AFTER_DICT, pos + 1
                else:
                    expect = 0
            elif op == _BUILD:
                expect, pos = 0, pos + 1
            elif op == _MARK:
                if _next_opcode(view, pos + 1, end) not in _PUSHERS:
                    return None
                open_.append(_STATE)
                depth += 1
                if room is not None and depth > room:
                    return None
                expect, pos = 0, pos + 1
            elif expect == _AFTER_DICT:
                open_.append(_PAIR)  # the key and value follow, read as any other opcodes
                expect = 0
            else:
                return None
        elif op == _SETITEM:  # only where a pair run stops: SETITEM, then BUILD
            if not (open_ and open_[-1] == _PAIR) or _next_opcode(view, pos + 1, end) != _BUILD:
                return None
            open_.pop()
            expect, pos = _AFTER_ITEMS, pos + 1
        elif op == _MARK:
            if _next_opcode(view, pos + 1, end) not in _PUSHERS:
                return None
            open_.append(_PLAIN)
            depth += 1
            if room is not None and depth > room:
                return None
            pos += 1
        elif op in _CLOSERS:
            kind = open_.pop() if open_ else _PAIR
            if kind == _PAIR:
                return None  # a closer with no mark open in the same instance's state
            depth -= 1
            if kind == _STATE:  # the end of a batch of an instance's state: SETITEMS only
                if op != _SETITEMS:
                    return None
                expect = _AFTER_ITEMS
            pos += 1
            if op in _BATCHES:  # empty batches after it, on the same target (see _grammar)
                while pos + 2 <= end and view[pos] == _MARK and view[pos + 1] == op:
                    pos += 2
        elif op == _NEWOBJ:
            expect, pos = _AFTER_NEWOBJ, pos + 1
        elif op == _STOP:
            if looked_up and _ANY_NEWOBJ.search(view, 0, pos) is not None:
                return None
            return pos + 1
        elif op in _SIZED:
            width = _SIZED[op]
            if pos + 1 + width > end:
                return None
            length = int.from_bytes(view[pos + 1 : pos + 1 + width], "little")
            pos += 1 + width
            if length > end - pos:
                return None
            if op in _TEXT and length <= 12 and bytes(view[pos : pos + length]) in _LOOKED_UP:
                looked_up = True
            elif op == 0x8A and length > _LONG1_BYTES:
                return None
            elif length > _LONG_TEXT and (op in _TEXT or op in _BYTES):
                sign = (
                    op in _TEXT,
                    length,
                    bytes(view[pos : pos + 32]),
                    bytes(view[pos + length - 32 : pos + length]),
                )
                if sign in long_texts:
                    return None
                long_texts.add(sign)
            pos += length
        else:
            return None


# Names under which a class would run its own code while the C unpickler builds, fills or drops
# its instances, or applies an opcode to the class itself: each must be what ``object`` has.
_HOOKS = tuple(
    (name, getattr(object, name, None))
    for name in (
        "__setstate__",
        "__new__",
        "__setattr__",
        "__delattr__",
        "__getattribute__",
        "__getattr__",
        "__setitem__",
        "__del__",
        "extend",
        "append",
        "add",
    )
)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement (or by type())
_DICT_SLOT = type(vars(type("_Plain", (), {}))["__dict__"])  # the getset descriptor


def fast_class(obj: Any) -> bool:
    """Whether the C unpickler may build, fill and hash instances of ``obj`` for the fast path.

    True for a class made by a class statement (metaclass ``type``, every base too, ``object``
    last) that has none of the hooks through which it would run its own code while unpickled
    (``__setstate__``, ``__new__``, ``__setattr__``, ``__delattr__``, ``__getattribute__``,
    ``__getattr__``, ``__setitem__``, ``__del__``, ``append``/``extend``/``add``: each must be
    ``object``'s, or absent; ``__dict__`` must be the one Python makes), and hashes as ``object``
    does or not at all (``__hash__ = None``,
    as dataclasses set it). Instances of such a class come out of either unpickler the same, and
    no code of the class runs while they are built (the fast path builds them with a dict state
    only: NEWOBJ, then BUILD on a new dict, which sets ``__dict__`` entries directly).
    """
    if type(obj) is not type:
        return False
    mro = obj.__mro__
    if mro[-1] is not object:
        return False
    for klass in mro[:-1]:
        if type(klass) is not type or not klass.__flags__ & _HEAPTYPE:
            return False
        # BUILD reads the instance's __dict__: the slot Python makes, or none (slots only).
        own = vars(klass).get("__dict__")
        if own is not None and type(own) is not _DICT_SLOT:
            return False
    for name, plain in _HOOKS:
        if getattr(obj, name, None) is not plain:
            return False
    hashed: Any = obj.__hash__
    equal: Any = obj.__eq__
    return hashed is None or (hashed is object.__hash__ and equal is object.__eq__)


class _Fast(pickle.Unpickler):
    """The C unpickler, for streams :func:`validate` proved simple."""

    resolve: Callable[[str, str], Any]

    def find_class(self, module: str, name: str) -> Any:
        found = self.resolve(module, name)
        if not fast_class(found):
            raise NotSimple(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePayloadError("restricted loading refused a persistent id")


def load(
    data: bytes | bytearray | memoryview, limits: Limits, find_class: Callable[[str, str], Any]
) -> Any:
    """The object ``data`` builds, if :func:`validate` proves it simple; else :data:`NOT_SIMPLE`.

    Args:
        data: a bare pickle stream.
        limits: the restricted load's limits.
        find_class: restricted loading's own (the allow-list); what it returns must also be a
            :func:`fast_class`, or the checked path loads the stream.

    Returns:
        The object, or :data:`NOT_SIMPLE` when the stream is not proved simple or the C
        unpickler raised on it (``find_class`` refused a global, say): the checked path must
        then load it from the start.
    """
    stop = validate(data, limits)
    if stop is None:
        return NOT_SIMPLE
    view = memoryview(data).cast("B")
    head = data if stop == view.nbytes and isinstance(data, bytes) else bytes(view[:stop])
    file: Any = io.BytesIO(head)
    if stop > 1 << 16 and view[0] == _PROTO and view[1] < 4:
        file = io.BufferedReader(file)  # no frames: let the unpickler read ahead
    unpickler = _Fast(file)
    unpickler.resolve = find_class
    try:
        return unpickler.load()
    except Exception:  # noqa: BLE001 - any failure (a refused global too): the checked path
        return NOT_SIMPLE  # reads the stream again and gives its own verdict
