"""What every backend provides, and the pieces backends share."""

from __future__ import annotations

import functools
import io
import os
import pickle
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from .._reconstruct import LOAD_HOOKS, deferring
from .._registry import Fields
from ..checksums import Running, checksum, preferred, running
from ..errors import LOAD_FAILURES, PICKLING_FAILURES, PicklingError, load_failure
from .rows import BackendRow

BufferCallback = Callable[[pickle.PickleBuffer], Any] | None


class Pickled(Fields):
    """The result of a backend's ``dumps``: the pickle stream and how it was made.

    Attributes:
        chunks: the stream, in order (joined without copying by the envelope writer).
        length: the total length of ``chunks``.
        crc: the checksum of the stream (in :func:`omnipickle.checksums.preferred`'s
            algorithm) if the backend computed it while writing, else ``None``.
        uses: the backends whose code the stream needs at load time.
        by_value: the stream holds code (functions, classes) serialized by value.
        loader: the backend whose ``loads`` reads the stream.
    """

    __slots__ = ("chunks", "length", "crc", "uses", "by_value", "loader", "extra")  # noqa: RUF023

    def __init__(
        self,
        chunks: list[bytes | bytearray | memoryview],
        length: int,
        crc: int | None,
        uses: frozenset[str],
        by_value: bool,
        loader: str = "pickle",
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.chunks = chunks
        self.length = length
        self.crc = crc
        self.uses = uses
        self.by_value = by_value
        self.loader = loader
        self.extra: dict[str, Any] = {} if extra is None else extra


class Backend(ABC):
    """A way to turn objects into a pickle stream and back.

    Subclasses set ``name`` and ``requires`` (the pip distribution the backend needs, or
    ``None``) and implement :meth:`dumps` and :meth:`loads`.
    """

    name: str = ""
    requires: str | None = None
    streams: bool = False
    """Whether ``dumps`` takes ``sink=`` and writes the stream into it as it is made."""
    supports_drop: bool = False
    """Whether ``dumps`` takes ``on_unpicklable="drop"`` (live resources become ``None``)."""
    defers_hooks: bool = True
    """Whether :meth:`loads` reads through :func:`unpickler`, so that an
    ``omnipickle.Unpickler`` subclass's ``find_class`` and ``persistent_load`` see every global
    and persistent id. A backend that overrides ``loads`` is assumed not to (an Unpickler
    subclass with its own hooks then refuses its payloads) unless it sets this itself."""

    def __init_subclass__(cls, row: BackendRow | None = None, **kwargs: Any) -> None:
        """``class B(Backend, row=ROW)`` takes its facts from its table row (built-ins do), so
        that they are written once."""
        super().__init_subclass__(**kwargs)
        if row is not None:
            cls.name = row.name
            cls.requires = row.package
            cls.streams = row.streams
            cls.supports_drop = row.supports_drop
        if "loads" in cls.__dict__ and "defers_hooks" not in cls.__dict__:
            cls.defers_hooks = False

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
        """Rebuild the object from a stream this backend wrote (default: ``pickle.loads``).

        What the code the stream runs raises (a ``__setstate__``, a missing module) propagates
        as under pickle; what the unpickler raises for the stream itself is an
        :class:`omnipickle.UnpicklingError` that is also that type (see
        :func:`omnipickle.errors.load_failure`).
        """
        try:
            if LOAD_HOOKS.get() is None:
                return pickle.loads(
                    data, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
                )
            reader = unpickler(
                pickle.Unpickler,
                data,
                fix_imports=fix_imports,
                encoding=encoding,
                errors=errors,
                buffers=buffers,
            )
            return reader.load()
        except LOAD_FAILURES as exc:
            # Caught here, in the frame that called the unpickler: see load_failure.
            error = load_failure(exc, size=len(data), ended=bytes(data[-1:]) != b".")
            if error is None:
                raise
            raise error from exc


def unpickler(
    cls: type[pickle.Unpickler],
    data: memoryview,
    *,
    fix_imports: bool,
    encoding: str,
    errors: str,
    buffers: Any,
) -> pickle.Unpickler:
    """An unpickler of class ``cls`` over ``data``; while an ``omnipickle.Unpickler`` subclass
    with its own ``find_class`` or ``persistent_load`` loads, one that defers to them."""
    if LOAD_HOOKS.get() is not None:
        cls = deferring(cls)
    return cls(
        io.BytesIO(data), fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
    )


PicklerFactory = Callable[..., pickle.Pickler]


class BufferRecorder:
    """A user's ``buffer_callback``, recording whether any buffer went out of band (the
    callback returned a false value, as pickle reads it): only then does a payload need
    ``buffers=`` to load."""

    __slots__ = ("out_of_band", "user")

    def __init__(self, user: Callable[[pickle.PickleBuffer], Any]) -> None:
        self.user = user
        self.out_of_band = False

    def __call__(self, buf: pickle.PickleBuffer) -> Any:
        result = self.user(buf)
        if not result:
            self.out_of_band = True
        return result


def run_pickler(
    obj: Any,
    make: PicklerFactory,
    *,
    protocol: int,
    fix_imports: bool,
    buffer_callback: BufferCallback,
    sink: Any = None,
) -> tuple[Any, pickle.Pickler]:
    """Dump ``obj`` with the pickler ``make(file, protocol, fix_imports, buffer_callback)``
    builds, into ``sink`` (default: a new :class:`ChunkSink`); return the sink and the pickler.
    On failure raise :class:`PicklingError` naming the path of the problem."""
    if sink is None:
        sink = ChunkSink()
    pickler = make(sink, protocol, fix_imports, buffer_callback)
    try:
        pickler.dump(obj)
    except PICKLING_FAILURES as exc:
        locate = functools.partial(make, protocol=protocol, fix_imports=fix_imports)
        raise fail(obj, exc, locate) from exc
    finally:
        sink.close()
    return sink, pickler


# Past this many bytes, the CRC of the rest of a stream is computed on a second thread while
# the pickler goes on (the checksums release the GIL for large buffers), on a machine with a
# core to spare, for the cost of starting one thread.
PARALLEL_CRC_AFTER = 4 << 20


class CrcWorker:
    """Computes a running checksum of the chunks it is given, in order, on its own thread."""

    def __init__(self, state: Running) -> None:
        import queue  # only payloads large enough for a checksum thread need it

        self.state = state
        self._queue: queue.SimpleQueue[bytes | bytearray | memoryview | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="omnipickle-crc", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        update = self.state.update
        while (chunk := self._queue.get()) is not None:
            update(chunk)

    def put(self, chunk: bytes | bytearray | memoryview) -> None:
        """Add ``chunk`` (kept by reference: the caller must not change it)."""
        self._queue.put(chunk)

    def finish(self) -> int:
        """Wait for every chunk given so far; return the checksum of them all."""
        self._queue.put(None)
        self._thread.join()
        return self.state.value()


# Bytes ordered from the most to the least frequent in the frames pickle writes of everyday data
# (opcodes, then letters in English text, then digits and capitals); any byte not listed counts
# as rarer than all of them.
_COMMON_BYTES = (
    b"\x00\x94\x8c\x85\x86\x87KJGhqr(u}]eb\x81\x88\x89N etaoinshrdlcumwfgypbvkjxqz"
    b"0123456789ETAOINSHRDLCUMWFGYPBVKJXQZ"
)

_MAX_ANCHORS = 32
"""How many times a marker's rarest byte may show up in one frame, each time without the
marker around it, before :class:`Watch` looks for that marker the plain way (``in``) for the
rest of the dump: the rare byte was not rare in this stream."""


@functools.cache
def _plan(marker: bytes) -> tuple[int, int]:
    """Where to find ``marker`` from: the index of its rarest byte by :data:`_COMMON_BYTES`,
    and that byte; ``(0, -1)`` for an empty marker (``in`` finds it in every frame, as it
    always did). Kept: the markers are a few fixed names and the modules registered by value."""
    if not marker:
        return 0, -1
    unlisted = len(_COMMON_BYTES)
    i = max(
        range(len(marker)),
        key=lambda k: (
            unlisted if marker[k] not in _COMMON_BYTES else _COMMON_BYTES.index(marker[k])
        ),
    )
    return i, marker[i]


class Watch:
    """Byte strings to look for in every frame a dump writes (``markers``): any one of them
    means the stream must be redone another way.

    ``marker in frame`` reads every byte of the frame at about one instruction per byte per
    marker: on instance-heavy data, two markers cost ~3% of the dump. So each marker is found
    from its rarest byte (``bytes.find`` of one byte is ``memchr``, ten times faster), and each
    place that byte appears is checked for the whole marker. Where the rare byte turns out to be
    common in a stream (:data:`_MAX_ANCHORS` false starts in one frame), that marker is
    looked for with ``in`` from then on. Make a new ``Watch`` for every dump.
    """

    __slots__ = ("_plans", "markers")

    def __init__(self, markers: tuple[bytes, ...] = ()) -> None:
        self.markers = markers
        # Per marker: [marker, offset of the byte to find it from, that byte (-1: use ``in``)].
        self._plans: list[list[Any]] = [[marker, *_plan(marker)] for marker in markers]

    def __bool__(self) -> bool:
        return bool(self.markers)

    def check(self, frame: bytes) -> None:
        """Raise :class:`WatchedMarkerFound` with the first marker ``frame`` contains."""
        for plan in self._plans:
            marker, offset, anchor = plan
            if anchor < 0:
                if marker in frame:
                    raise WatchedMarkerFound(marker)
                continue
            find = frame.find
            at = find(anchor, offset)
            false_starts = 0
            while at >= 0:
                if frame.startswith(marker, at - offset):
                    raise WatchedMarkerFound(marker)
                false_starts += 1
                if false_starts == _MAX_ANCHORS:
                    plan[2] = -1  # not rare here: the plain search from now on
                    if find(marker, at - offset + 1) >= 0:
                        raise WatchedMarkerFound(marker)
                    break
                at = find(anchor, at + 1)


NO_WATCH = Watch()
"""A :class:`Watch` of nothing (it never raises)."""


def accept_chunk(
    data: bytes | bytearray | memoryview, watch: Watch
) -> tuple[bytes | memoryview, int]:
    """What a pickler wrote, as kept by a sink: the chunk and its length in bytes.

    Frames (``bytes``) are checked by ``watch``. A large in-band buffer (a ``PickleBuffer``, a
    ``bytearray``) is handed over by the C pickler as it is, outside any frame: it is data,
    never opcodes, so it is not watched, and it has no ``len()``: it is taken as a memoryview.
    """
    if type(data) is bytes:
        if watch is not NO_WATCH:  # not bool(): a Python call on every write of every dump
            watch.check(data)
        return data, len(data)
    view = memoryview(data)
    return view, view.nbytes


class ChunkSink:
    """A write-only file for a pickler: keeps the chunks and a running checksum.

    The C pickler writes one frame (~64 KiB) per call for protocols 4 and 5, so the checksum is
    computed while each frame is still in the cache (or, past :data:`PARALLEL_CRC_AFTER`, on a
    second thread), and ``watch`` (a :class:`Watch` of byte strings that mean the stream must
    be redone another way) can stop a dump early. Call :meth:`close` when done, whether the
    dump succeeded or not.
    """

    __slots__ = ("_sum", "_worker", "chunks", "length", "watch")

    def __init__(self, watch: Watch = NO_WATCH) -> None:
        self.chunks: list[bytes | bytearray | memoryview] = []
        self._sum: Running | None = None  # made at the second chunk (see write)
        self._worker: CrcWorker | None = None
        self.length = 0
        self.watch = watch

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk, n = accept_chunk(data, self.watch)
        # Keep a reference, no copy.
        self.chunks.append(chunk)
        if self._worker is not None:
            self._worker.put(chunk)
        elif len(self.chunks) > 1:
            # The first chunk waits: a small stream (one chunk) may never need this checksum.
            if self._sum is None:
                self._sum = running()
                self._sum.update(self.chunks[0])
            self._sum.update(chunk)
            if self.length > PARALLEL_CRC_AFTER and _CORES > 1:
                self._worker = CrcWorker(self._sum)
        self.length += n
        return n

    @property
    def crc(self) -> int:
        """The checksum of everything written (waits for the checksum thread, if any)."""
        self.close()
        if self._sum is None:  # one chunk, or none
            return checksum(self.chunks[0] if self.chunks else b"", preferred())
        return self._sum.value()

    def close(self) -> None:
        """Stop the checksum thread, if one was started."""
        if self._worker is not None:
            self._worker.finish()
            self._worker = None

    def reset(self) -> None:
        """Forget everything written (a dump is about to be redone)."""
        self.close()
        self.chunks = []
        self._sum = None
        self.length = 0


_CORES = os.cpu_count() or 1


class WatchedMarkerFound(Exception):
    """Internal: a watched byte string appeared in the stream."""


def fail(
    obj: Any, exc: BaseException, make_pickler: Callable[[Any], pickle.Pickler]
) -> PicklingError:
    """Build the :class:`PicklingError` for a failed dump of ``obj``, with the failing path."""
    from ..diagnostics import describe_failure  # the error path only

    return describe_failure(obj, exc, make_pickler)


# files.py still reaches for the old private name; it goes when files.py uses CrcWorker.
