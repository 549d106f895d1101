"""What is a pickle at all: data whose first opcodes parse, and do what an unpickler could do.

``info``, ``scan`` and ``verify_signature`` describe data as a pickle stream, and must not call a
text file or random bytes one. :func:`check_looks_like_pickle` reads the start of the data with
pickletools' parser (the opcodes and their arguments, as the unpickler reads them) and follows
what each opcode takes from the stack and leaves on it, the marks and the memo entries, without
building anything: an opcode that does not exist, an argument that cannot be one, a value taken
from an empty stack or a memo entry read before it was set is no pickle. Random bytes almost
always trip one of these within their first few bytes; a real pickle never does.
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import CorruptPayloadError

__all__ = ["SNIFF_SIZE", "check_looks_like_pickle"]

SNIFF_SIZE = 1 << 16
"""How much of the data is parsed."""


def check_looks_like_pickle(stream: bytes | memoryview) -> None:
    """Refuse data whose first :data:`SNIFF_SIZE` bytes are no pickle (the rest, if given, is
    not read).

    Data that runs out while its opcodes still parse is a pickle cut short: it is left to the
    unpickler (or the scan) to call truncated.

    Raises:
        CorruptPayloadError: what the start of the data does is no pickle's; the message says
            "not an omnipickle payload or a pickle stream", or "damaged pickle stream" for data
            that starts as protocols 2 and later do.
    """
    import io
    import pickle
    import pickletools  # plain data only: not imported with omnipickle

    prefix = bytes(stream[:SNIFF_SIZE])
    file = io.BytesIO(prefix)
    follower = _Follower(_effects(pickletools))
    try:
        problem = follower.run(pickletools.genops(file), file)
    except ValueError as exc:
        # Decided by where the parser stood: with every byte read, stopped at an opcode (or at
        # the end), the data ran out: a pickle cut short. Unless it is cut inside its first
        # opcode, which is a few bytes, of a pickle or of anything: only PROTO (protocols 2
        # and later) is taken for a pickle's start there.
        at = follower.next
        known = _effects(pickletools)  # every opcode pickletools knows
        started = at > 0 or prefix[:1] == b"\x80"
        if (
            started
            and file.tell() == len(prefix)
            and (at == len(prefix) or chr(prefix[at]) in known)
        ):
            return
        problem = str(exc)
    if problem is None:
        return
    if len(prefix) > 1 and prefix[0] == 0x80 and prefix[1] <= pickle.HIGHEST_PROTOCOL:
        raise CorruptPayloadError(f"damaged pickle stream: {problem}")
    raise CorruptPayloadError(
        f"not an omnipickle payload or a pickle stream (it starts with {prefix[:8]!r}): {problem}"
    )


_OTHER, _READ, _WRITE, _MEMOIZE, _POP = range(5)
_KINDS = {
    "GET": _READ,
    "BINGET": _READ,
    "LONG_BINGET": _READ,
    "PUT": _WRITE,
    "BINPUT": _WRITE,
    "LONG_BINPUT": _WRITE,
    "MEMOIZE": _MEMOIZE,
    "POP": _POP,
}
_Effect = tuple[int | None, int, int, bool, int]


@functools.cache
def _effects(pickletools: Any) -> dict[str, _Effect]:
    """For each opcode: how many values it needs below the last mark if it takes everything
    down to it (else ``None``), how many it takes, how many it leaves, whether it is a mark,
    and what it does with the memo (or whether it is POP)."""
    mark = pickletools.markobject
    table = {}
    for op in pickletools.opcodes:
        before, after = op.stack_before, op.stack_after
        below = before.index(mark) if mark in before else None
        kind = _KINDS.get(op.name, _OTHER)
        table[op.code] = (below, len(before), len(after), mark in after, kind)
    return table


class _Follower:
    """Follows the stack, the marks and the memo through a stream's opcodes."""

    def __init__(self, effects: dict[str, _Effect]) -> None:
        self.effects = effects
        self.next = 0  # where the next opcode starts

    def run(self, ops: Any, file: Any) -> str | None:
        """What goes wrong in ``ops`` (read from ``file``), or ``None``."""
        effects = self.effects
        stack = 0  # values above the last mark
        marks: list[int] = []  # the values below each mark
        memo: set[Any] = set()
        for op, arg, pos in ops:
            below, taken, given, pushes_mark, kind = effects[op.code]
            if below is not None:  # takes every value down to the last mark, and the mark
                if not marks:
                    return f"{op.name} at byte {pos} needs a MARK before it, and there is none"
                stack, taken = marks.pop(), below
            elif kind == _POP and stack == 0 and marks:
                stack, taken = marks.pop(), 0  # POP right after MARK takes the mark
            if taken > stack:
                return f"{op.name} at byte {pos} takes {taken} value(s) from a stack of {stack}"
            if pushes_mark:
                marks.append(stack - taken)
                stack = 0
            else:
                stack += given - taken
            if kind == _READ and arg not in memo:
                return f"{op.name} at byte {pos} reads memo entry {arg}, which was never set"
            if kind == _WRITE:
                memo.add(arg)
            elif kind == _MEMOIZE:
                memo.add(len(memo))
            self.next = file.tell()
        return None
