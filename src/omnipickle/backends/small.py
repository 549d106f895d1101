"""The per-call fast path of the ``auto`` backend: small graphs of plain data.

A process pool or a queue sends thousands of tiny payloads a second, and for them the fixed cost
of a call is what counts. When an object is a small graph of nothing but the types the C pickler
saves itself (``None``, numbers, strings, bytes and the built-in containers, exact types only),
the ``auto`` backend would write exactly what ``pickle.dumps`` writes: the C pickler never calls
a reducer for those types, so no rule of ours could apply. :func:`plain_dumps` checks that, all
of it (dictionary keys included), within a small budget, and then calls ``pickle.dumps``.
Anything else, or a graph too large to check cheaply, gets ``None``: the caller takes the
general path, which is as fast as pickle in bulk.
"""

from __future__ import annotations

import pickle
from typing import Any

from ..resources import has_user_rules

__all__ = ["MAX_NODES", "plain_dumps"]

# The types the C pickler writes without a reducer, a reducer_override or the dispatch table.
_ATOMS = frozenset({str, int, float, bool, bytes, type(None), bytearray})
_SEQUENCES = frozenset({list, tuple, set, frozenset})

MAX_NODES = 64
"""The most objects :func:`plain_dumps` looks at before it leaves the call to the general path."""


def _all_plain(obj: Any) -> bool:
    """Whether ``obj`` is built, to the bottom, of at most :data:`MAX_NODES` exact built-in
    atoms and containers."""
    stack = [obj]
    budget = MAX_NODES
    while stack:
        item = stack.pop()
        t = type(item)
        if t in _ATOMS:
            continue
        budget -= 1 + len(item) if (t is dict or t in _SEQUENCES) else 1
        if budget < 0:
            return False
        if t is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif t in _SEQUENCES:
            stack.extend(item)
        else:
            return False
    return True


def plain_dumps(obj: Any, protocol: int) -> bytes | None:
    """``pickle.dumps(obj, protocol)`` when that is exactly what the ``auto`` backend writes for
    ``obj`` and the graph is small; else ``None`` (take the general path)."""
    if type(obj) not in _ATOMS and not _all_plain(obj):
        return None
    if has_user_rules():  # a user's resource rule may cover a type pickle handles
        return None
    return pickle.dumps(obj, protocol)
