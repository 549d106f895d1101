"""The ``pickle`` backend: the standard library's C pickler, nothing added."""

from __future__ import annotations

import pickle
from typing import Any

from .base import Backend, BufferCallback, Pickled, run_pickler
from .rows import builtin_row

__all__ = ["PICKLE", "PickleBackend"]


def _stdlib_pickler(
    file: Any, protocol: int, fix_imports: bool = True, buffer_callback: BufferCallback = None
) -> pickle.Pickler:
    return pickle.Pickler(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)


class PickleBackend(Backend, row=builtin_row("pickle")):
    """Exactly what ``pickle.dumps`` does: functions and classes by reference only.

    Useful when a payload must load with nothing but the standard library. Unlike ``auto``, a
    function defined in ``__main__`` is written by reference (as pickle does) and so only loads
    in a process whose ``__main__`` defines it.
    """

    def dumps(
        self,
        obj: Any,
        *,
        protocol: int,
        fix_imports: bool,
        buffer_callback: BufferCallback,
        sink: Any = None,
    ) -> Pickled:
        sink, _ = run_pickler(
            obj,
            _stdlib_pickler,
            protocol=protocol,
            fix_imports=fix_imports,
            buffer_callback=buffer_callback,
            sink=sink,
        )
        return Pickled(sink.chunks, sink.length, sink.crc, frozenset({"pickle"}), by_value=False)


PICKLE = PickleBackend()
