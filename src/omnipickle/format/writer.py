"""The payload writer: the one way a pickle stream becomes an envelope, in memory or in a file.

:func:`encode` builds a payload in memory (``dumps``, and small ``dump``s). :class:`FileWriter`
writes one to a seekable file as it is made: the backend pickles into :attr:`FileWriter.sink`,
which keeps small streams in memory and streams large ones to the file (compressed on a second
thread); large out-of-band buffers (numpy arrays...) go to sections straight from their memory;
the header is written last, into room left for it at the start.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from .._registry import Remembered
from ..backends import PICKLE_BIT, PICKLE_LOADER_ID, Pickled, bits_for, loader_id
from ..backends import REGISTRY as BACKENDS
from ..backends.base import NO_WATCH, BufferRecorder, CrcWorker, Watch, accept_chunk
from ..checksums import SMALL, algorithm_for, preferred, running
from ..codecs import Codec
from . import header as layout
from .header import FLAG_BY_VALUE, FLAG_OUT_OF_BAND, FLAG_SECTIONS, FLAG_SIGNED, NAMED
from .signing import key_id, sign
from .versions import backend_versions

if TYPE_CHECKING:
    import queue

__all__ = ["FileSink", "FileWriter", "encode", "write_parts"]

Part = bytes | bytearray | memoryview

# Payloads whose stream stays under this size are assembled in memory and written compactly;
# past it (or when large buffers go to sections) they are written to the file as they are made.
SPILL_AFTER = 1 << 20
# Room left at the start of a streamed payload for its header, written last. A header that
# needs more (hundreds of sections or dropped resources) moves the body along once.
HEADER_ROOM = 1024
# Frames waiting for the compression thread, at most (the pickler waits beyond that).
_QUEUE_FRAMES = 32
# Out-of-band buffers at least this large become sections of their own; smaller ones stay in the
# stream.
SECTION_MIN = 1 << 16
# Sections start at multiples of this (relative to the payload), so arrays memory-mapped from the
# file are aligned for any dtype.
SECTION_ALIGN = 64
_SLICE = 32 << 20  # fewer hand-overs to the checksum thread; views, never copies
_PICKLE_ONLY = frozenset({"pickle"})


def write_parts(file: IO[bytes], parts: Iterable[Part]) -> None:
    """Write each part to ``file``."""
    for part in parts:
        file.write(part)


def _checksum(parts: Iterable[Part], algorithm: int) -> int:
    state = running(algorithm)
    for part in parts:
        state.update(part)
    return state.value()


def proto_lead(first: Part, protocol: int) -> bytes:
    """The PROTO opcode a stream starts with (``b""`` if it has none): format 2 writes it in
    front of the header, so that the whole payload is one pickle stream whose first opcode is
    PROTO, as protocols 2 and later require and pickle tools check."""
    head = bytes(memoryview(first)[:2])
    return head if protocol >= 2 and head == bytes([0x80, protocol]) else b""


def header_for(
    pickled: Pickled,
    protocol: int,
    codec: Codec | None,
    *,
    key: bytes | None,
    out_of_band: bool,
    stored_length: int,
    checksum: int,
    extra: dict[str, Any] | None = None,
    sections: bool = False,
    size: int | None = None,
    lead: bytes = b"",
    algorithm: int | None = None,
) -> bytes:
    """The envelope header for ``pickled`` (see docs/format.md), after ``lead`` (the stream's
    PROTO opcode, moved in front of the header of an uncompressed payload); ``checksum`` is of
    ``algorithm`` (default: :func:`~omnipickle.checksums.preferred`)."""
    fields: dict[str, Any] = dict(pickled.extra)
    fields.update(extra or {})
    if key is not None:
        fields["kid"] = key_id(key)
    # Plain data (the common case, and per-call cost) needs no look-up: "pickle" cannot be
    # unregistered, and its wire numbers come from its row.
    named: list[str] = []
    if pickled.uses == _PICKLE_ONLY:
        bits = PICKLE_BIT
    else:
        bits, named = bits_for(pickled.uses)
        # Code by value names the backends' own functions: what loads it may need the same.
        versions = backend_versions(pickled.uses)
        if versions:
            fields["versions"] = versions
    if named:
        fields["backends"] = named
    ident = PICKLE_LOADER_ID if pickled.loader == "pickle" else loader_id(pickled.loader)
    loader = NAMED if ident is None else ident
    if ident is None:
        fields["loader"] = pickled.loader
    codec_id = 0
    if codec is not None:
        codec_id = codec.codec_id if codec.codec_id is not None else NAMED
        if codec_id == NAMED:
            fields["codec"] = codec.name
    flags = (FLAG_BY_VALUE if pickled.by_value else 0) | (FLAG_OUT_OF_BAND if out_of_band else 0)
    flags |= (FLAG_SIGNED if key is not None else 0) | (FLAG_SECTIONS if sections else 0)
    return layout.build_header(
        flags=flags,
        checksum_algorithm=preferred() if algorithm is None else algorithm,
        protocol=protocol,
        loader=loader,
        backend_bits=bits,
        codec_id=codec_id,
        stored_length=stored_length,
        raw_length=pickled.length,
        checksum=checksum,
        extra=fields or None,
        size=size,
        lead=lead,
    )


def encode(
    pickled: Pickled,
    protocol: int,
    codec: Codec | None,
    level: int | None,
    key: bytes | None,
    out_of_band: bool,
) -> list[Part]:
    """The payload for ``pickled``, as parts to be written (or joined) in order."""
    if codec is None and key is None and not out_of_band:
        small = _small_payload(pickled, protocol)
        if small is not None:
            return [small]
    lead = b""
    if codec is None:
        stored: list[Part] = pickled.chunks
        lead = proto_lead(stored[0], protocol) if stored else b""
        stored_length = pickled.length - len(lead)
        algorithm = algorithm_for(stored_length)
        if pickled.crc is not None and algorithm == preferred():
            checksum = pickled.crc
        else:
            checksum = _checksum(stored, algorithm)
        if lead:
            stored = [memoryview(stored[0])[len(lead) :], *stored[1:]]
    else:
        compressed = codec.compress(b"".join(pickled.chunks), level)
        stored = [compressed]
        stored_length = len(compressed)
        algorithm = algorithm_for(stored_length)
        checksum = _checksum(stored, algorithm)
    header = header_for(
        pickled,
        protocol,
        codec,
        key=key,
        out_of_band=out_of_band,
        stored_length=stored_length,
        checksum=checksum,
        lead=lead,
        algorithm=algorithm,
    )
    parts: list[Part] = [header, *stored]
    if key is not None:
        parts.append(sign(key, parts))
    return parts


def _small_payload(pickled: Pickled, protocol: int) -> bytes | None:
    """The envelope of a small stream in one chunk, uncompressed and unsigned, whose header
    needs no more than flags and the backends' versions, built from its constant parts
    (``header.plain_payload``): the same bytes as the general path's. ``None`` otherwise."""
    chunks = pickled.chunks
    if len(chunks) != 1 or pickled.extra or pickled.loader != "pickle" or protocol < 2:
        return None
    stream = chunks[0]
    if type(stream) is not bytes or len(stream) >= SMALL or stream[:2] != _PROTO_LEADS[protocol]:
        return None
    if pickled.uses == _PICKLE_ONLY:
        bits, extra = PICKLE_BIT, b""
    else:
        known = _SMALL_HEADERS(pickled.uses)
        if known is None:
            return None
        bits, extra = known
    flags = FLAG_BY_VALUE if pickled.by_value else 0
    return layout.plain_payload(stream, protocol, PICKLE_LOADER_ID, bits, flags, extra)


def _small_header(uses: frozenset[str]) -> tuple[int, bytes] | None:
    """The backend bits and the extra field (the backends' versions) of a small payload whose
    stream used ``uses``; ``None`` if the header must name a backend (no wire bit)."""
    bits, named = bits_for(uses)
    if named:
        return None
    versions = backend_versions(uses)
    return bits, layout.extra_field({"versions": versions}) if versions else b""


_SMALL_HEADERS: Remembered[frozenset[str], tuple[int, bytes] | None] = Remembered(
    BACKENDS, _small_header
)


_PROTO_LEADS = {proto: bytes((0x80, proto)) for proto in range(pickle.HIGHEST_PROTOCOL + 1)}


class FileSink:
    """A pickler's output file that keeps small streams in memory and streams large ones.

    Until :data:`SPILL_AFTER` bytes it collects chunks (``spilled`` is False and ``chunks`` holds
    the stream). Past it, it reserves :data:`HEADER_ROOM` bytes at the start of ``out`` and
    writes every frame as the pickler hands it over, compressed with ``codec`` on a second
    thread when there is a core to spare (the compressors release the GIL), computing the
    checksum of what is stored as it goes. ``watch`` and :meth:`reset` behave as the backends'
    ``ChunkSink``'s, so a dump can be redone.
    """

    def __init__(
        self, out: IO[bytes], codec: Codec | None, level: int | None, protocol: int | None = None
    ) -> None:
        self.out = out
        self.start = out.tell()
        self.codec = codec
        self.level = level
        self.protocol = protocol
        self.watch: Watch = NO_WATCH
        self._fresh()

    def _fresh(self) -> None:
        self.lead = b""
        self.chunks: list[bytes | bytearray | memoryview] = []
        self.length = 0
        self.stored = 0
        self.spilled = False
        self._sum = running()
        self._compressor = self.codec.compressobj(self.level) if self.codec is not None else None
        self._queue: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        data, n = accept_chunk(data, self.watch)
        self.length += n
        if not self.spilled:
            self.chunks.append(data)
            if self.length > SPILL_AFTER:
                self.spill()
            return n
        if self._queue is not None:
            self._raise_worker_error()
            self._queue.put(data)
        else:
            self._store(data)
        return n

    def spill(self) -> None:
        """Start writing to the file: what was kept in memory goes first."""
        self.spilled = True
        self._closed = False  # the stream may have been closed while it was in memory
        self.out.write(bytes(HEADER_ROOM))
        pending, self.chunks = self.chunks, []
        if self.codec is None and pending and self.protocol is not None:
            # The stream's PROTO goes in front of the header (format 2); the checksum still
            # covers the stream from its first byte.
            self.lead = proto_lead(pending[0], self.protocol)
            if self.lead:
                pending[0] = memoryview(pending[0])[len(self.lead) :]
                self._sum.update(self.lead)
        if (os.cpu_count() or 1) > 1:
            import queue  # only a dump large enough to spill to a file needs the writer thread

            self._queue = queue.Queue(maxsize=_QUEUE_FRAMES)
            self._thread = threading.Thread(target=self._run, name="omnipickle-writer", daemon=True)
            self._thread.start()
            for chunk in pending:
                self._queue.put(chunk)
        else:
            for chunk in pending:
                self._store(chunk)

    def _store(self, data: Any) -> None:
        out = self._compressor.compress(data) if self._compressor is not None else data
        if out:
            self.out.write(out)
            self._sum.update(out)
            self.stored += len(out)

    def _run(self) -> None:
        assert self._queue is not None
        while (chunk := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so that the pickler never blocks on a full queue
            try:
                self._store(chunk)
            except BaseException as exc:  # noqa: BLE001 - handed to the pickling thread
                self._error = exc

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Finish the stream: wait for the writer thread, flush the compressor."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            assert self._queue is not None
            self._queue.put(None)
            self._thread.join()
            self._thread = None
            self._raise_worker_error()
        if self.spilled and self._compressor is not None:
            tail = self._compressor.flush()
            self._compressor = None
            if tail:
                self.out.write(tail)
                self._sum.update(tail)
                self.stored += len(tail)

    @property
    def crc(self) -> int | None:
        """The checksum of the stored stream once spilled (``None`` before: computed later)."""
        self.close()
        return self._sum.value() if self.spilled else None

    def reset(self) -> None:
        """Forget the stream written so far (a dump is about to be redone)."""
        # A disk error here will be met again, and reported, by the redone dump.
        with contextlib.suppress(OSError):
            self.close()
        self.out.seek(self.start)
        self.out.truncate()
        self._fresh()


def _copy_range(file: IO[bytes], start: int, length: int, chunk: int = 8 << 20) -> Iterator[bytes]:
    """Read ``length`` bytes of ``file`` from ``start``, ``chunk`` at a time."""
    file.seek(start)
    remaining = length
    while remaining > 0:
        data = file.read(min(chunk, remaining))
        if not data:
            raise EOFError(f"the file ended {remaining} bytes early")
        remaining -= len(data)
        yield data


class FileWriter:
    """Writes one payload to the seekable, readable binary file ``out`` while it is pickled.

    Pickle into :attr:`sink` with :attr:`buffer_callback`, then call :meth:`finish` with what
    the backend returned (or :meth:`abort` if it raised).
    """

    def __init__(
        self,
        out: IO[bytes],
        *,
        protocol: int,
        codec: Codec | None,
        level: int | None,
        key: bytes | None,
        buffer_callback: Any,
    ) -> None:
        self.out = out
        self.start = out.tell()
        self.protocol = protocol
        self.codec = codec
        self.level = level
        self.key = key
        self.sink = FileSink(out, codec, level, protocol)
        # The payload is flagged as needing buffers= only if one of the user's did go out of
        # band (a callback that keeps them all in-band makes a payload that loads alone).
        self._recorder = BufferRecorder(buffer_callback) if buffer_callback is not None else None
        self.buffers: list[pickle.PickleBuffer] = []
        self.buffer_callback: Any = self._recorder
        if buffer_callback is None and protocol >= 5:
            self.buffer_callback = self._to_section

    def _to_section(self, buf: pickle.PickleBuffer) -> bool:
        if buf.raw().nbytes >= SECTION_MIN:
            self.buffers.append(buf)
            return False  # out of band: a section
        return True

    @property
    def user_buffers(self) -> bool:
        """Whether the user's ``buffer_callback`` put a buffer out of band."""
        return self._recorder is not None and self._recorder.out_of_band

    def abort(self) -> None:
        """Forget what was written: the file is back where it was."""
        self.sink.reset()
        self.buffers = []

    def finish(self, pickled: Pickled) -> None:
        """Write what is left: the stream's tail, the sections, the header, the signature."""
        sink, out, start = self.sink, self.out, self.start
        if not sink.spilled and not self.buffers:
            write_parts(
                out,
                encode(pickled, self.protocol, self.codec, self.level, self.key, self.user_buffers),
            )
            return
        if not sink.spilled:
            sink.spill()
        sink.close()
        # Every section is known before any is written: the room the header needs is made now,
        # when only the stream (small beside the arrays that became sections) has to move.
        room = self._make_room(pickled, out.tell() - start)
        entries = [self._write_section(buf) for buf in self.buffers]
        end = out.tell() - start
        extra: dict[str, Any] = {"end": end}
        if entries:
            extra["sections"] = entries
        # _make_room sized the room for this header at its widest: it fits.
        header = header_for(
            pickled,
            self.protocol,
            self.codec,
            key=self.key,
            out_of_band=self.user_buffers,
            stored_length=sink.stored,
            checksum=sink.crc or 0,
            extra=extra,
            sections=bool(entries),
            size=room,
            lead=sink.lead,
        )
        out.seek(start)
        out.write(header)
        out.seek(start + end)
        if self.key is not None:
            tag = sign(self.key, _copy_range(out, start, end))
            out.seek(start + end)
            out.write(tag)

    def _make_room(self, pickled: Pickled, written: int) -> int:
        """Grow the room left for the header to what it can need with every section listed
        (each number at its widest), moving the ``written`` bytes after it once; return it."""
        widest = (1 << 63) - 1
        entry = {"offset": widest, "stored": widest, "raw": widest, "crc": (1 << 32) - 1}
        worst = header_for(
            pickled,
            self.protocol,
            self.codec,
            key=self.key,
            out_of_band=self.user_buffers,
            stored_length=widest,
            checksum=0,
            extra={"end": widest, "sections": [entry] * len(self.buffers)},
            sections=bool(self.buffers),
            lead=self.sink.lead,
        )
        if len(worst) <= HEADER_ROOM:
            return HEADER_ROOM
        room = -(-len(worst) // HEADER_ROOM) * HEADER_ROOM
        _shift(self.out, self.start + HEADER_ROOM, written - HEADER_ROOM, room - HEADER_ROOM)
        self.out.seek(self.start + written + room - HEADER_ROOM)
        return room

    def _write_section(self, buf: pickle.PickleBuffer) -> dict[str, int]:
        """Write one buffer, aligned, compressed or not; return its section entry."""
        out, start = self.out, self.start
        pad = -(out.tell() - start) % SECTION_ALIGN
        if pad:
            out.write(bytes(pad))
        offset = out.tell() - start
        data = buf.raw()
        if self.codec is None:
            # The checksum of one slice is computed on a second thread while the next is
            # written (both release the GIL), so a large array costs about what writing it
            # costs.
            worker = CrcWorker(running())
            try:
                for i in range(0, data.nbytes, _SLICE):
                    piece = data[i : i + _SLICE]
                    worker.put(piece)
                    out.write(piece)
            finally:
                crc = worker.finish()
            stored = data.nbytes
        else:
            counter = _CountingWriter(out)
            writer = self.codec.writer(counter, self.level, size_hint=data.nbytes)
            for i in range(0, data.nbytes, _SLICE):
                writer.write(data[i : i + _SLICE])
            writer.close()
            stored, crc = counter.count, counter.crc
        return {"offset": offset, "stored": stored, "raw": data.nbytes, "crc": crc}


class _CountingWriter:
    """Writes through to ``out``, counting the bytes and their checksum."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.count = 0
        self._sum = running()

    @property
    def crc(self) -> int:
        return self._sum.value()

    def write(self, data: Any) -> int:
        self._out.write(data)
        n = memoryview(data).nbytes
        self._sum.update(data)
        self.count += n
        return n


def _shift(out: IO[bytes], offset: int, length: int, delta: int) -> None:
    """Move ``length`` bytes at ``offset`` forward by ``delta``, from the end backwards."""
    position = offset + length
    while position > offset:
        size = min(_SLICE, position - offset)
        position -= size
        out.seek(position)
        data = out.read(size)
        out.seek(position + delta)
        out.write(data)
    out.seek(offset)
    out.write(bytes(delta))
