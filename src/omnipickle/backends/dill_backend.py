"""The ``dill`` backend: the whole stream through ``dill.Pickler``."""

from __future__ import annotations

import io
import pickle
from typing import Any

import dill

from .base import Backend, BufferCallback, Pickled, run_pickler, stream_contains

__all__ = ["DILL", "DillBackend"]


def _dill_pickler(
    file: Any, protocol: int, fix_imports: bool = True, buffer_callback: BufferCallback = None
) -> pickle.Pickler:
    pickler: pickle.Pickler = dill.Pickler(
        file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback
    )
    return pickler


class DillBackend(Backend):
    """dill's behaviour for every object (dill's pure-Python pickler: slow, but broad)."""

    name = "dill"
    requires = "dill"

    def dumps(
        self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: BufferCallback
    ) -> Pickled:
        sink, _ = run_pickler(
            obj,
            _dill_pickler,
            protocol=protocol,
            fix_imports=fix_imports,
            buffer_callback=buffer_callback,
        )
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
        # dill's Unpickler maps the names of its own internals; pickle.loads would not.
        unpickler = dill.Unpickler(
            io.BytesIO(data),
            fix_imports=fix_imports,
            encoding=encoding,
            errors=errors,
            buffers=buffers,
        )
        return unpickler.load()


DILL = DillBackend()
