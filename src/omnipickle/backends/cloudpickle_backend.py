"""The ``cloudpickle`` backend: the whole stream through ``cloudpickle.Pickler``."""

from __future__ import annotations

import types
from typing import Any

import cloudpickle
import cloudpickle.cloudpickle as cloudpickle_module

from .base import Backend, BufferCallback, Pickled, run_pickler
from .rows import builtin_row

__all__ = ["CLOUDPICKLE", "CloudpickleBackend", "RecordingCloudPickler"]

# The constructors cloudpickle's class reducer rebuilds a class by value with (a class it finds
# by name is saved by reference, or by ``type``/``_builtin_type`` for the builtin oddities).
_BY_VALUE_CLASS = (cloudpickle_module._make_skeleton_class, cloudpickle_module._make_skeleton_enum)
_CLOUDPICKLE_OVERRIDE = cloudpickle.Pickler.reducer_override
_CLOUDPICKLE_TABLE = cloudpickle_module.Pickler._dispatch_table
_FunctionType = types.FunctionType
_CodeType = types.CodeType


class RecordingCloudPickler(cloudpickle.Pickler):  # type: ignore[misc]
    """``cloudpickle.Pickler`` that records what its reducers did, as they do it.

    Attributes:
        by_value: code (a code object, or a class rebuilt from its namespace) was written by
            value.
        used: one of cloudpickle's reducers wrote something (the stream names cloudpickle).
    """

    def __init__(
        self,
        file: Any,
        protocol: int | None = None,
        fix_imports: bool = True,
        buffer_callback: BufferCallback = None,
    ) -> None:
        # cloudpickle.Pickler takes no fix_imports; it only matters for protocols < 3.
        super().__init__(file, protocol=protocol, buffer_callback=buffer_callback)
        self.by_value = False
        self.used = False

    def reducer_override(self, obj: Any) -> Any:
        """cloudpickle's own, recording by-value code and any use of cloudpickle's reducers.

        Called for every object that is not a builtin container or atom, so it answers for
        instances without calling cloudpickle's method (which would return ``NotImplemented``
        for them too): no second Python frame per instance.
        """
        t = type(obj)
        if t is _FunctionType or issubclass(t, type):
            rv = _CLOUDPICKLE_OVERRIDE(self, obj)
            if rv is not NotImplemented:
                self.used = True
                if t is not _FunctionType and rv[0] in _BY_VALUE_CLASS:
                    self.by_value = True
            return rv
        if t is _CodeType:
            # Every function written by value brings its code object here (the C pickler asks
            # reducer_override before the dispatch table, which has cloudpickle's code
            # reducer): the one sure sign of code by value.
            self.by_value = self.used = True
        elif t in _CLOUDPICKLE_TABLE:
            self.used = True
        return NotImplemented


class CloudpickleBackend(Backend, row=builtin_row("cloudpickle")):
    """cloudpickle's behaviour for every object: the C pickler plus its reducers."""

    def dumps(
        self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: BufferCallback
    ) -> Pickled:
        sink, pickler = run_pickler(
            obj,
            RecordingCloudPickler,
            protocol=protocol,
            fix_imports=fix_imports,
            buffer_callback=buffer_callback,
        )
        assert isinstance(pickler, RecordingCloudPickler)
        uses = frozenset({"pickle", "cloudpickle"} if pickler.used else {"pickle"})
        return Pickled(sink.chunks, sink.length, sink.crc, uses, by_value=pickler.by_value)


CLOUDPICKLE = CloudpickleBackend()
