"""The ``cloudpickle`` backend: the whole stream through ``cloudpickle.Pickler``."""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle

from .base import Backend, BufferCallback, Pickled, run_pickler, stream_contains

__all__ = ["CLOUDPICKLE", "CloudpickleBackend"]


def _cloud_pickler(
    file: Any, protocol: int, fix_imports: bool = True, buffer_callback: BufferCallback = None
) -> pickle.Pickler:
    # cloudpickle.Pickler takes no fix_imports; it only matters for protocols < 3.
    pickler: pickle.Pickler = cloudpickle.Pickler(
        file, protocol=protocol, buffer_callback=buffer_callback
    )
    return pickler


class CloudpickleBackend(Backend):
    """cloudpickle's behaviour for every object: the C pickler plus its reducers."""

    name = "cloudpickle"
    requires = "cloudpickle"

    def dumps(
        self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: BufferCallback
    ) -> Pickled:
        sink, _ = run_pickler(
            obj,
            _cloud_pickler,
            protocol=protocol,
            fix_imports=fix_imports,
            buffer_callback=buffer_callback,
        )
        # cloudpickle does not report whether its reducers were used; its own module name in
        # the stream (every by-value reducer is a global of the cloudpickle package) does.
        used = stream_contains(sink.chunks, b"cloudpickle")
        uses = frozenset({"pickle", "cloudpickle"} if used else {"pickle"})
        return Pickled(sink.chunks, sink.length, sink.crc, uses, by_value=used)


CLOUDPICKLE = CloudpickleBackend()
