"""Restricted loading's fast path: prove a stream builds plain data, then let C unpickle it.

Restricted loading runs pickle's pure-Python unpickler (:mod:`.unpickler`), because the C
unpickler has no hook for most of its checks. But a stream made *only* of the opcodes below
builds nothing but ``None``, booleans, ints, floats, str, bytes, bytearray, the empty tuple,
lists, dicts and sets: it names no global, calls nothing, builds no tuple (so no key can be
expensive to hash), and writes the memo at bounded indices. For such a stream the C unpickler
does exactly what the pure-Python one does, and there is nothing for the checks to refuse but
what :func:`validate` checks itself:

* every opcode is one of a closed set, read exactly as the C unpickler reads it (the grammar is a
  regular expression over opcodes and their arguments, matched in C by :mod:`re`);
* LONG_BINPUT indices are below ``2**k``, ``k = max(16, n.bit_length())`` for an ``n``-byte
  stream: the C unpickler grows its memo to twice the index, so a bounded index bounds that
  array to about ``32 * n`` bytes (a 7-byte stream could otherwise make it allocate gigabytes);
* frames end on opcode boundaries, no FRAME opens inside a frame, and no length runs past its
  frame or the data, exactly as the pure-Python path refuses them;
* MARKs nest no deeper than the budget's depth, and the stream's object count (one per opcode,
  plus one per empty tuple hashed as a key) cannot exceed the object budget; no allowed callable
  runs, so nothing else is charged.

Anything else (a global, REDUCE, BUILD, a tuple, LONG4, protocol 0 text opcodes, a truncated or
damaged stream, limits too tight for the argument above) is not an error here: :func:`validate`
says no, and the stream is loaded by the pure-Python path, which gives the verdict and the error.
When :func:`validate` says yes, the C unpickler reads only the bytes up to the STOP it found,
with a ``find_class`` and a ``persistent_load`` that refuse everything (never reached: the
grammar has no opcode that calls them); if it raises anyway, the pure-Python path loads the
stream again and reports the error.
"""

from __future__ import annotations

import functools
import io
import pickle
import re
from typing import Any, Final

from ..errors import UnsafePayloadError
from .budget import Limits

__all__ = ["GROUP_DEPTH", "NOT_DATA", "load", "validate"]

NOT_DATA: Final = object()
"""What :func:`load` returns for a stream it does not prove to be plain data."""

GROUP_DEPTH: Final = 2
"""How deep the marks the grammar matches in one piece may nest (the rest are counted one by
one, in :func:`validate`)."""

_ANY = b"[\\s\\S]"
_MARK = ord("(")
_STOP = ord(".")
_FRAME = pickle.FRAME[0]
# Opcodes that close a mark (POP can close one too, when nothing is above it: counting it as
# no close only overestimates the depth, which is safe).
_CLOSERS = frozenset(b"eud1l\x90")
# Opcodes with a length prefix that the grammar leaves to validate() (long strings and bytes):
# the width of the length, little-endian unsigned, as both unpicklers read it.
_SIZED = {ord("X"): 4, ord("B"): 4, 0x8C: 1, ord("C"): 1, 0x8A: 1, 0x8D: 8, 0x8E: 8, 0x96: 8}


def _hex(value: int) -> bytes:
    return b"\\x%02x" % value


def _counted(opcode: int, longest: int, pad: bytes = b"") -> bytes:
    """An opcode with a one-byte length (then ``pad``, the length's zero high bytes) of at most
    ``longest``, then that many bytes: one alternative per length."""
    lengths = (
        _hex(size) + pad + (_ANY + b"{%d}" % size if size else b"") for size in range(longest + 1)
    )
    return _hex(opcode) + b"(?:" + b"|".join(lengths) + b")"


def _long_binput(bits: int | None) -> list[bytes]:
    """LONG_BINPUT with an index below ``2**bits`` (``None``: no LONG_BINPUT at all)."""
    if bits is None:
        return []
    if bits >= 32:
        return [b"r" + _ANY + b"{4}"]
    if bits >= 24:
        return [b"r" + _ANY + b"{3}[\\x00-" + _hex((1 << (bits - 24)) - 1) + b"]"]
    return [b"r" + _ANY + b"{2}[\\x00-" + _hex((1 << (bits - 16)) - 1) + b"]\\x00"]


# One-byte opcodes that push a plain value, change the memo or the stack, or fill a container
# without a mark: NONE, NEWTRUE, NEWFALSE, EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST, EMPTY_SET,
# MEMOIZE, DUP, POP, APPEND, SETITEM.
_ONE_BYTE = b"[" + b"".join(_hex(code) for code in b"N\x88\x89)}]\x8f\x9420as") + b"]"


@functools.cache
def _grammar(bits: int | None) -> re.Pattern[bytes]:
    """A run of plain-data opcodes, with marks nested up to :data:`GROUP_DEPTH` inside it.

    Every alternative starts with a different opcode byte, and every repetition is possessive:
    the match never backtracks, and reads the stream as the C unpickler does, left to right.
    """
    token = (
        b"(?:"
        + b"|".join(
            [
                _ONE_BYTE,
                b"K" + _ANY,  # BININT1
                b"h" + _ANY,  # BINGET
                b"q" + _ANY,  # BINPUT
                b"M" + _ANY + b"{2}",  # BININT2
                b"J" + _ANY + b"{4}",  # BININT
                b"j" + _ANY + b"{4}",  # LONG_BINGET (the C unpickler checks the index)
                b"G" + _ANY + b"{8}",  # BINFLOAT
                *_long_binput(bits),
                b"\\x80[\\x00-\\x05]",  # PROTO
                _counted(0x8C, 255),  # SHORT_BINUNICODE
                # BINUNICODE, as protocols 1 to 3 write every str
                _counted(ord("X"), 255, b"\\x00\\x00\\x00"),
                _counted(ord("C"), 64),  # SHORT_BINBYTES
                _counted(0x8A, 32),  # LONG1
            ]
        )
        + b")"
    )
    closer = b"[" + b"".join(_hex(code) for code in sorted(_CLOSERS)) + b"]"
    group = b""
    for _ in range(GROUP_DEPTH):
        inner = token if not group else b"(?:" + token + b"|" + group + b")"
        group = b"\\(" + inner + b"*+" + closer
    return re.compile(b"(?:" + token + b"|" + group + b")++")


def _bits(data: Any, size: int) -> int | None:
    """The LONG_BINPUT bound for this stream: none from protocol 4 on (pickle writes MEMOIZE)."""
    if size >= 2 and data[0] == pickle.PROTO[0] and data[1] >= 4:
        return None
    return max(16, size.bit_length())


def validate(data: bytes | bytearray | memoryview, limits: Limits) -> int | None:
    """Where the STOP of ``data`` ends, if the stream is plain data within ``limits``.

    Args:
        data: a bare pickle stream.
        limits: the restricted load's limits (its budget for a stream of ``len(data)`` bytes).

    Returns:
        The offset just past the stream's STOP, or ``None``: the stream is not proved plain
        data (the pure-Python path must load it, and decides).
    """
    try:
        view = memoryview(data).cast("B")
    except TypeError:  # not C-contiguous: the pure-Python path reads it
        return None
    size = view.nbytes
    if limits.objects is not None and limits.objects + limits.objects_per_byte * size < 2 * size:
        return None
    room = None if limits.depth is None else limits.depth - GROUP_DEPTH
    if room is not None and room < 0:
        return None
    run = _grammar(_bits(view, size)).match
    pos = depth = 0
    frame_end = -1  # inside no frame
    end = size
    while True:
        if pos == frame_end:
            frame_end, end = -1, size
        found = run(view, pos, end)
        if found is not None:
            pos = found.end()
            if pos == frame_end:
                continue
        if pos >= end:
            return None  # no STOP in the data
        op = view[pos]
        if op == _MARK:
            depth += 1
            if room is not None and depth > room:
                return None
            pos += 1
        elif op in _CLOSERS:
            depth -= 1
            if depth < 0:
                return None
            pos += 1
        elif op == _STOP:
            return pos + 1
        elif op == _FRAME:
            if frame_end >= 0 or pos + 9 > end:
                return None  # a FRAME inside a frame, or a truncated one
            length = int.from_bytes(view[pos + 1 : pos + 9], "little")
            pos += 9
            if length > end - pos:
                return None
            frame_end = end = pos + length
        elif op in _SIZED:
            width = _SIZED[op]
            if pos + 1 + width > end:
                return None
            length = int.from_bytes(view[pos + 1 : pos + 1 + width], "little")
            pos += 1 + width
            if length > end - pos:
                return None
            pos += length
        else:
            return None


class _NoGlobals(pickle.Unpickler):
    """The C unpickler, for streams :func:`validate` proved plain data: it names no global."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePayloadError(f"restricted loading refused the global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePayloadError("restricted loading refused a persistent id")


def load(data: bytes | bytearray | memoryview, limits: Limits) -> Any:
    """The object ``data`` builds, if :func:`validate` proves it plain data; else :data:`NOT_DATA`.

    Also :data:`NOT_DATA` when the C unpickler raises on it: the pure-Python path then loads the
    stream again, and its error is the one reported.
    """
    stop = validate(data, limits)
    if stop is None:
        return NOT_DATA
    view = memoryview(data).cast("B")
    head = data if stop == view.nbytes and isinstance(data, bytes) else bytes(view[:stop])
    try:
        return _NoGlobals(io.BufferedReader(io.BytesIO(head))).load()
    except Exception:  # noqa: BLE001 - any failure: the checked path loads it and says why
        return NOT_DATA
