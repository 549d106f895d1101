"""The ``dill`` backend: the whole stream through ``dill.Pickler``."""

from __future__ import annotations

import io
import types
from typing import Any

from .._reconstruct import import_dill
from .base import Backend, BufferCallback, Pickled, run_pickler, unpickler
from .rows import builtin_row

__all__ = ["DILL", "DillBackend", "RecordingDillPickler"]

dill = import_dill()
_DillPickler: Any = dill.Pickler

# dill rebuilds a class by value with this constructor (one found by name is saved by reference).
_CREATE_TYPE = dill._dill._create_type


class RecordingDillPickler(_DillPickler):  # type: ignore[misc]
    """``dill.Pickler`` that records what its savers did, as they do it.

    Every dill saver that writes something by value ends in ``save_reduce``; a code object, or
    a class rebuilt from its namespace, passed there is code by value.

    Attributes:
        by_value: code (a code object, or a class rebuilt from its namespace) was written by
            value.
    """

    def __init__(
        self,
        file: Any,
        protocol: int | None = None,
        fix_imports: bool = True,
        buffer_callback: BufferCallback = None,
    ) -> None:
        super().__init__(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)
        self.by_value = False

    def save_reduce(self, func: Any, args: Any, *rest: Any, obj: Any = None, **kw: Any) -> None:
        """pickle's ``save_reduce``, noting code written by value."""
        if type(obj) is types.CodeType or func is _CREATE_TYPE:
            self.by_value = True
        super().save_reduce(func, args, *rest, obj=obj, **kw)


class DillBackend(Backend, row=builtin_row("dill")):
    """dill's behaviour for every object (dill's pure-Python pickler: slow, but broad)."""

    defers_hooks = True

    def dumps(
        self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: BufferCallback
    ) -> Pickled:
        sink, pickler = run_pickler(
            obj,
            RecordingDillPickler,
            protocol=protocol,
            fix_imports=fix_imports,
            buffer_callback=buffer_callback,
        )
        assert isinstance(pickler, RecordingDillPickler)
        uses = frozenset({"pickle", "dill"})
        return Pickled(
            sink.chunks, sink.length, sink.crc, uses, by_value=pickler.by_value, loader="dill"
        )

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
        return unpickler(
            dill.Unpickler,
            data,
            fix_imports=fix_imports,
            encoding=encoding,
            errors=errors,
            buffers=buffers,
        ).load()


def dumps_whole(obj: Any, protocol: int) -> tuple[bytes, bool]:
    """``obj`` dumped by dill alone, and whether code went by value (for auto, which embeds
    such a blob when a dill saver needs a real dill pickler)."""
    buffer = io.BytesIO()
    pickler = RecordingDillPickler(buffer, protocol)
    pickler.dump(obj)
    return buffer.getvalue(), pickler.by_value


DILL = DillBackend()
