"""What every backend provides, and the pieces backends share."""

from __future__ import annotations

import functools
import pickle
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import PicklingError

BufferCallback = Callable[[pickle.PickleBuffer], Any] | None

# The exceptions that mean "this object cannot be pickled this way", as opposed to an error
# raised on purpose by user code (a __reduce__ raising ValueError keeps its type).
PICKLING_FAILURES: tuple[type[BaseException], ...] = (
    pickle.PicklingError,
    TypeError,
    AttributeError,
    RecursionError,
)


@dataclass
class Pickled:
    """The result of a backend's ``dumps``: the pickle stream and how it was made.

    Attributes:
        chunks: the stream, in order (joined without copying by the envelope writer).
        length: the total length of ``chunks``.
        crc: CRC-32 of the stream if the backend computed it while writing, else ``None``.
        uses: the backends whose code the stream needs at load time.
        by_value: the stream holds code (functions, classes) serialized by value.
        loader: the backend whose ``loads`` reads the stream.
    """

    chunks: list[bytes | bytearray | memoryview]
    length: int
    crc: int | None
    uses: frozenset[str]
    by_value: bool
    loader: str = "pickle"
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """A way to turn objects into a pickle stream and back.

    Subclasses set ``name`` and ``requires`` (the pip distribution the backend needs, or
    ``None``) and implement :meth:`dumps` and :meth:`loads`.
    """

    name: str = ""
    requires: str | None = None

    @abstractmethod
    def dumps(
        self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: BufferCallback
    ) -> Pickled:
        """Serialize ``obj``; raise :class:`omnipickle.PicklingError` naming the path."""

    def loads(
        self,
        data: memoryview,
        *,
        fix_imports: bool,
        encoding: str,
        errors: str,
        buffers: Any,
    ) -> Any:
        """Rebuild the object from a stream this backend wrote (default: ``pickle.loads``)."""
        return pickle.loads(
            data, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
        )


PicklerFactory = Callable[..., pickle.Pickler]


def run_pickler(
    obj: Any,
    make: PicklerFactory,
    *,
    protocol: int,
    fix_imports: bool,
    buffer_callback: BufferCallback,
) -> tuple[ChunkSink, pickle.Pickler]:
    """Dump ``obj`` with the pickler ``make(file, protocol, fix_imports, buffer_callback)``
    builds; return the sink and the pickler. On failure raise :class:`PicklingError` naming
    the path of the problem."""
    sink = ChunkSink()
    pickler = make(sink, protocol, fix_imports, buffer_callback)
    try:
        pickler.dump(obj)
    except PICKLING_FAILURES as exc:
        locate = functools.partial(make, protocol=protocol, fix_imports=fix_imports)
        raise fail(obj, exc, locate) from exc
    return sink, pickler


class ChunkSink:
    """A write-only file for a pickler: keeps the chunks and a running CRC-32.

    The C pickler writes one frame (~64 KiB) per call for protocols 4 and 5, so the checksum is
    computed while each frame is still in the cache, and ``watch`` (byte strings that mean the
    stream must be redone another way) can stop a dump early.
    """

    __slots__ = ("chunks", "crc", "length", "watch")

    def __init__(self, watch: tuple[bytes, ...] = ()) -> None:
        self.chunks: list[bytes | bytearray | memoryview] = []
        self.crc = 0
        self.length = 0
        self.watch = watch

    def write(self, data: bytes | bytearray | memoryview) -> int:
        for marker in self.watch:
            if marker in data:
                raise WatchedMarkerFound(marker)
        # The C pickler hands large bytes objects over as they are; keep a reference, no copy.
        self.chunks.append(data)
        self.crc = zlib.crc32(data, self.crc)
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.length += n
        return n


def stream_contains(chunks: list[bytes | bytearray | memoryview], *markers: bytes) -> bool:
    """Whether any of ``markers`` occurs in the stream (a marker never spans two frames: the
    picklers only cut frames between opcodes)."""
    for chunk in chunks:
        data = bytes(chunk) if isinstance(chunk, memoryview) else chunk
        if any(marker in data for marker in markers):
            return True
    return False


class NullSink:
    """A file that discards what is written (used to test-pickle parts of a graph)."""

    __slots__ = ()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return len(data)


class WatchedMarkerFound(Exception):
    """Internal: a watched byte string appeared in the stream."""


def fail(
    obj: Any, exc: BaseException, make_pickler: Callable[[Any], pickle.Pickler]
) -> PicklingError:
    """Build the :class:`PicklingError` for a failed dump of ``obj``, with the failing path."""
    from ..explain import describe_failure

    return describe_failure(obj, exc, make_pickler)
