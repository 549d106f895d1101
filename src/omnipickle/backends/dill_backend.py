"""The ``dill`` backend: the whole stream through ``dill.Pickler``."""

from __future__ import annotations

import functools
import io
import pickle
from typing import Any

import dill

from .base import (
    PICKLING_FAILURES,
    Backend,
    BufferCallback,
    ChunkSink,
    Pickled,
    fail,
    stream_contains,
)

__all__ = ["DILL", "DillBackend"]


def _dill_pickler(
    file: Any, protocol: int, fix_imports: bool = True, buffer_callback: BufferCallback = None
) -> pickle.Pickler:
    return dill.Pickler(  # type: ignore[no-any-return]
        file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback
    )


class DillBackend(Backend):
    """dill's behaviour for every object (dill's pure-Python pickler: slow, but broad)."""

    name = "dill"
    requires = "dill"

    def dumps(
        self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: BufferCallback
    ) -> Pickled:
        sink = ChunkSink()
        try:
            _dill_pickler(sink, protocol, fix_imports, buffer_callback).dump(obj)
        except PICKLING_FAILURES as exc:
            probe = functools.partial(_dill_pickler, protocol=protocol, fix_imports=fix_imports)
            raise fail(obj, exc, probe) from exc
        # dill writes code through its own constructors; their names in the stream say so.
        by_value = stream_contains(sink.chunks, b"_create_code", b"_create_type")
        uses = frozenset({"pickle", "dill"})
        return Pickled(sink.chunks, sink.length, sink.crc, uses, by_value=by_value, loader="dill")

    def loads(
        self,
        data: memoryview,
        *,
        fix_imports: bool,
        encoding: str,
        errors: str,
        buffers: Any,
    ) -> Any:
        unpickler = dill.Unpickler(
            io.BytesIO(data),
            fix_imports=fix_imports,
            encoding=encoding,
            errors=errors,
            buffers=buffers,
        )
        return unpickler.load()


DILL = DillBackend()
