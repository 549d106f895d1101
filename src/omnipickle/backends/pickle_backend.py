"""The ``pickle`` backend: the standard library's C pickler, nothing added."""

from __future__ import annotations

import functools
import pickle
from typing import Any

from .base import PICKLING_FAILURES, Backend, BufferCallback, ChunkSink, Pickled, fail

__all__ = ["PICKLE", "PickleBackend"]


def _stdlib_pickler(
    file: Any, protocol: int, fix_imports: bool = True, buffer_callback: BufferCallback = None
) -> pickle.Pickler:
    return pickle.Pickler(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)


class PickleBackend(Backend):
    """Exactly what ``pickle.dumps`` does: functions and classes by reference only.

    Useful when a payload must load with nothing but the standard library. Unlike ``auto``, a
    function defined in ``__main__`` is written by reference (as pickle does) and so only loads
    in a process whose ``__main__`` defines it.
    """

    name = "pickle"
    requires = None

    def dumps(
        self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: BufferCallback
    ) -> Pickled:
        sink = ChunkSink()
        try:
            _stdlib_pickler(sink, protocol, fix_imports, buffer_callback).dump(obj)
        except PICKLING_FAILURES as exc:
            probe = functools.partial(_stdlib_pickler, protocol=protocol, fix_imports=fix_imports)
            raise fail(obj, exc, probe) from exc
        return Pickled(sink.chunks, sink.length, sink.crc, frozenset({"pickle"}), by_value=False)

    def loads(
        self,
        data: memoryview,
        *,
        fix_imports: bool,
        encoding: str,
        errors: str,
        buffers: Any,
    ) -> Any:
        return pickle.loads(
            data, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
        )


PICKLE = PickleBackend()
