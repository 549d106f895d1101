"""Files: atomic writes, and telling paths from file objects.

``dump`` to a path writes a temporary file in the target's folder, flushes and fsyncs it, then
renames it over the target (``os.replace`` is atomic on POSIX and Windows), and finally fsyncs
the folder so the rename itself survives a power cut. A crash at any moment leaves the old file
or the new one; a failed dump leaves the old file untouched and removes its temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import mmap
import os
import pickle
import queue
import tempfile
import threading
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any

__all__ = ["FileSink", "atomic_writer", "check_binary_file", "is_path"]

PathLike = str | os.PathLike[str]


def is_path(file: Any) -> bool:
    """Whether ``file`` names a file (``str`` or ``os.PathLike``) rather than being one."""
    return isinstance(file, (str, os.PathLike))


def check_binary_file(file: Any, mode: str) -> None:
    """Raise ``TypeError`` unless ``file`` is a binary file object open for ``mode`` (r/w)."""
    needed = "write" if mode == "w" else "read"
    if isinstance(file, io.TextIOBase):
        raise TypeError(
            f"file must be opened in binary mode ('{mode}b'), not text mode: open(..., '{mode}b')"
        )
    if isinstance(file, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"file must be a path or a binary file object, not {type(file).__name__}; "
            f"to {needed} bytes use omnipickle.{'dumps' if mode == 'w' else 'loads'}"
        )
    if not callable(getattr(file, needed, None)):
        raise TypeError(
            f"file must be a path or a binary file object with a {needed}() method, "
            f"not {type(file).__name__}"
        )


@contextlib.contextmanager
def atomic_writer(path: PathLike) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` is left as it was.
    """
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    prefix = f".{os.path.basename(target)}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        # Readable too: a signed payload is read back to compute its signature.
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _keep_mode(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def write_parts(file: IO[bytes], parts: Iterable[bytes | bytearray | memoryview]) -> None:
    """Write each part to ``file``."""
    for part in parts:
        file.write(part)


def _keep_mode(target: str, tmp: str) -> None:
    # mkstemp creates 0600 files; a replaced file keeps its mode, a new one gets the usual
    # default (0666 less the umask), as open() would have given it.
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)


def _umask() -> int:
    # os.umask() can only be read by setting it, which races with other threads; Linux
    # reports it in /proc instead.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_dir(folder: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows: folders cannot be opened for fsync
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- streaming a payload to a file ----------------------------------------------------------------

# Payloads whose stream stays under this size are assembled in memory and written compactly;
# past it (or when large buffers go to sections) they are written to the file as they are made.
SPILL_AFTER = 1 << 20
# Room left at the start of a streamed payload for its header, written last. A header that
# needs more (hundreds of sections or dropped resources) moves the body along once.
HEADER_ROOM = 1024
# Frames waiting for the compression thread, at most (the pickler waits beyond that).
_QUEUE_FRAMES = 32


class FileSink:
    """A pickler's output file that keeps small streams in memory and streams large ones.

    Until :data:`SPILL_AFTER` bytes it collects chunks like :class:`ChunkSink` (``spilled`` is
    False and ``chunks`` holds the stream). Past it, it reserves :data:`HEADER_ROOM` bytes at the
    start of ``out`` and writes every frame as the pickler hands it over, compressed with
    ``codec`` on a second thread when there is a core to spare (the compressors release the
    GIL), computing the CRC-32 of what is stored as it goes. ``watch`` and :meth:`reset` behave
    as :class:`ChunkSink`'s, so a dump can be redone.
    """

    def __init__(self, out: IO[bytes], codec: Any, level: int | None) -> None:
        self.out = out
        self.start = out.tell()
        self.codec = codec
        self.level = level
        self.watch: tuple[bytes, ...] = ()
        self._fresh()

    def _fresh(self) -> None:
        self.chunks: list[bytes | bytearray | memoryview] = []
        self.length = 0
        self.stored = 0
        self.spilled = False
        self._crc = 0
        self._compressor = self.codec.compressobj(self.level) if self.codec is not None else None
        self._queue: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        from .backends.base import accept_chunk

        data, n = accept_chunk(data, self.watch)
        self.length += n
        if not self.spilled:
            self.chunks.append(data)
            if self.length > SPILL_AFTER:
                self._spill()
            return n
        if self._queue is not None:
            self._raise_worker_error()
            self._queue.put(data)
        else:
            self._store(data)
        return n

    def _spill(self) -> None:
        self.spilled = True
        self._closed = False  # the stream may have been closed while it was in memory
        self.out.write(bytes(HEADER_ROOM))
        pending, self.chunks = self.chunks, []
        if (os.cpu_count() or 1) > 1:
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
            self._crc = zlib.crc32(out, self._crc)
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
                self._crc = zlib.crc32(tail, self._crc)
                self.stored += len(tail)

    @property
    def crc(self) -> int | None:
        """CRC-32 of the stored stream once spilled (``None`` before: computed later)."""
        self.close()
        return self._crc if self.spilled else None

    def reset(self) -> None:
        """Forget the stream written so far (a dump is about to be redone)."""
        # A disk error here will be met again, and reported, by the redone dump.
        with contextlib.suppress(OSError):
            self.close()
        self.out.seek(self.start)
        self.out.truncate()
        self._fresh()


def copy_range(file: IO[bytes], start: int, length: int, chunk: int = 8 << 20) -> Iterator[bytes]:
    """Read ``length`` bytes of ``file`` from ``start``, ``chunk`` at a time."""
    file.seek(start)
    remaining = length
    while remaining > 0:
        data = file.read(min(chunk, remaining))
        if not data:
            raise EOFError(f"the file ended {remaining} bytes early")
        remaining -= len(data)
        yield data


# --- dump to a file: the stream and its sections, as they are made --------------------------------

# Out-of-band buffers at least this large become sections of their own; smaller ones stay in the
# stream.
SECTION_MIN = 1 << 16
# Sections start at multiples of this (relative to the payload), so arrays memory-mapped from the
# file are aligned for any dtype.
SECTION_ALIGN = 64
_SLICE = 32 << 20  # fewer hand-overs to the checksum thread; views, never copies


def dump_to_file(obj: Any, out: IO[bytes], protocol: int | None, opts: Any) -> None:
    """Write one payload to the seekable binary file ``out``, streaming when it is large.

    Small payloads are assembled in memory and written compactly (as ``dumps`` makes them).
    Large ones are written while pickling (compressed on a second thread), with large
    out-of-band buffers (numpy arrays...) written as sections straight from their memory, and
    the header written last into room left for it.
    """
    from . import api

    prep = api._prepare(protocol, opts)
    # Streaming writes the header last, and may read the file back (to sign it, or to make
    # room for a large header): a file we cannot read gets the payload built in memory.
    if opts.raw or not prep.backend.streams or not _readable(out):
        write_parts(out, api._encode(obj, protocol, opts))
        return
    start = out.tell()
    sink = FileSink(out, prep.codec, prep.level)
    buffers: list[pickle.PickleBuffer] = []
    callback = opts.buffer_callback
    if callback is None and prep.protocol >= 5:

        def callback(buf: pickle.PickleBuffer) -> bool:
            if buf.raw().nbytes >= SECTION_MIN:
                buffers.append(buf)
                return False  # out of band: a section
            return True

    try:
        pickled = api._pickle_with(obj, prep, opts, callback, sink=sink)
    except BaseException:
        sink.reset()
        raise
    user_buffers = opts.buffer_callback is not None
    if not sink.spilled and not buffers:
        parts = api._wrap(pickled, prep.protocol, prep.codec, prep.level, prep.key, user_buffers)
        write_parts(out, parts)
        return
    if not sink.spilled:
        sink._spill()
    sink.close()
    entries = [_write_section(out, start, buf, prep.codec, prep.level) for buf in buffers]
    end = out.tell() - start
    extra: dict[str, Any] = {"end": end}
    if entries:
        extra["sections"] = entries
    room = HEADER_ROOM
    while True:
        try:
            header = api._header(
                pickled,
                prep.protocol,
                prep.codec,
                key=prep.key,
                out_of_band=user_buffers,
                stored_length=sink.stored,
                checksum=sink.crc or 0,
                extra=extra,
                sections=bool(entries),
                size=room,
            )
            break
        except ValueError:
            # More metadata than the room left (hundreds of sections or dropped resources):
            # move the body along, once.
            grow = HEADER_ROOM * (1 + (room // HEADER_ROOM))
            _shift(out, start + room, end - room, grow - room)
            delta = grow - room
            room = grow
            end += delta
            extra["end"] = end
            for entry in entries:
                entry["offset"] += delta
    out.seek(start)
    out.write(header)
    out.seek(start + end)
    if prep.key is not None:
        mac = hmac.new(prep.key, digestmod=hashlib.sha256)
        for piece in copy_range(out, start, end):
            mac.update(piece)
        out.seek(start + end)
        out.write(mac.digest())


def _readable(file: Any) -> bool:
    try:
        return bool(file.readable())
    except (AttributeError, OSError, ValueError):
        return False


def _write_section(
    out: IO[bytes], start: int, buf: pickle.PickleBuffer, codec: Any, level: int | None
) -> dict[str, int]:
    """Write one buffer, aligned, compressed or not; return its section entry."""
    pad = -(out.tell() - start) % SECTION_ALIGN
    if pad:
        out.write(bytes(pad))
    offset = out.tell() - start
    data = buf.raw()
    stored = 0
    crc = 0
    if codec is None:
        # The checksum of one slice is computed on a second thread while the next is written
        # (both release the GIL), so a large array costs about what writing it costs.
        from .backends.base import _CrcWorker

        worker = _CrcWorker(0)
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
        writer = codec.writer(counter, level, size_hint=data.nbytes)
        for i in range(0, data.nbytes, _SLICE):
            writer.write(data[i : i + _SLICE])
        writer.close()
        stored, crc = counter.count, counter.crc
    return {"offset": offset, "stored": stored, "raw": data.nbytes, "crc": crc}


class _CountingWriter:
    """Writes through to ``out``, counting the bytes and their CRC-32."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.count = 0
        self.crc = 0

    def write(self, data: Any) -> int:
        self._out.write(data)
        n = memoryview(data).nbytes
        self.crc = zlib.crc32(data, self.crc)
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


# --- load from a path: streamed, or memory-mapped -------------------------------------------------

# Payloads at least this large are loaded from the file as they are unpickled instead of being
# read into memory first.
STREAM_LOAD_AFTER = 8 << 20
_MMAP_MODES = {"r": mmap.ACCESS_READ, "c": mmap.ACCESS_COPY}


class _Bounded(io.RawIOBase):
    """A read-only window ``[start, start + length)`` of ``file``."""

    def __init__(self, file: IO[bytes], start: int, length: int) -> None:
        super().__init__()
        self._file = file
        self._position = start
        self._end = start + length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._end - self._position)
        if want <= 0:
            return 0
        self._file.seek(self._position)
        got = self._file.readinto(view[:want])  # type: ignore[attr-defined]
        if not got:
            return 0
        self._position += got
        return int(got)


def _bounded(file: IO[bytes], start: int, length: int) -> io.BufferedReader:
    return io.BufferedReader(_Bounded(file, start, length), buffer_size=1 << 16)


def load_from_path(path: Any, opts: Any, mmap_mode: str | None) -> Any:
    """Load the payload in the file at ``path``.

    Large omnipickle payloads are checked (signature, checksums) and then unpickled from the
    file as it is read, never held whole in memory; their sections are read straight into the
    buffers they become. With ``mmap_mode``, the file is memory-mapped and large buffers (numpy
    arrays) are views of it.
    """
    from . import api, envelope
    from .errors import TruncatedPayloadError

    if mmap_mode is not None and mmap_mode not in _MMAP_MODES:
        raise ValueError(f"mmap_mode must be None, 'r' or 'c', not {mmap_mode!r}")
    with open(path, "rb") as f:
        head = f.read(envelope.HEADER_SIZE)
        if not envelope.is_envelope(head):
            if mmap_mode is not None:
                raise ValueError(
                    f"{os.fspath(path)} is not an omnipickle payload written by dump(); only "
                    "those can be memory-mapped: load it without mmap_mode"
                )
            return api._loads_view(memoryview(head + f.read()), opts)
        extra_size = int.from_bytes(head[20:24], "little")
        header = envelope.parse_header(head + f.read(min(extra_size, 1 << 20)))
        size = os.fstat(f.fileno()).st_size
        if mmap_mode is not None:
            codec = api._header_codec(header)
            if codec is not None:
                raise ValueError(
                    f"{os.fspath(path)} is {codec.name}-compressed and cannot be memory-mapped: "
                    "load it without mmap_mode, or dump it with compression=None"
                )
            if size < header.total_length:
                raise TruncatedPayloadError(
                    f"truncated payload: the header promises {header.total_length} bytes, "
                    f"the file has {size}"
                )
            mapped = mmap.mmap(f.fileno(), 0, access=_MMAP_MODES[mmap_mode])
            return api._load_envelope(memoryview(mapped), opts, mapped=True)
        if header.total_length < STREAM_LOAD_AFTER or size < header.total_length:
            f.seek(0)
            return api._loads_view(memoryview(f.read()), opts)
        return _load_streaming(f, header, opts)


def _load_streaming(f: IO[bytes], header: Any, opts: Any) -> Any:
    from . import api, envelope
    from .errors import CorruptPayloadError, SignatureError

    if opts.key is not None:
        if not header.signed:
            raise SignatureError("a key was given but the payload is not signed")
        f.seek(header.body_end)
        tag = f.read(32)
        pieces = copy_range(f, 0, header.body_end)
        if not api.signature_matches(opts.key, header.extra.get("kid"), pieces, tag):
            raise SignatureError(
                "the payload's signature does not verify: wrong key, or the payload was altered"
            )
    crc = 0
    for piece in copy_range(f, header.payload_offset, header.stored_length):
        crc = zlib.crc32(piece, crc)
    if crc != header.checksum:
        raise CorruptPayloadError(
            f"corrupt payload: checksum mismatch over {header.stored_length} bytes "
            f"(stored {header.checksum:#010x}, computed {crc:#010x})"
        )
    codec = api._preflight(header, opts)
    buffers = [_read_section(f, section, codec) for section in envelope.sections(header)]
    reader: Any = _bounded(f, header.payload_offset, header.stored_length)
    if codec is not None:
        reader = codec.reader(reader)
    return api._unpickle(header, opts, reader, buffers or opts.buffers)


def _read_section(f: IO[bytes], section: Any, codec: Any) -> bytearray:
    """Read one section into a new buffer, checking its checksum first."""
    from .errors import CorruptPayloadError

    crc = 0
    if codec is None:
        if section.stored != section.raw:
            raise CorruptPayloadError(
                f"corrupt header: an uncompressed section of {section.stored} bytes claims "
                f"{section.raw}"
            )
        data = bytearray(section.raw)
        view = memoryview(data)
        f.seek(section.offset)
        done = 0
        while done < section.raw:
            got = f.readinto(view[done : done + _SLICE])  # type: ignore[attr-defined]
            if not got:
                raise CorruptPayloadError(f"the file ends inside the section at {section.offset}")
            crc = zlib.crc32(view[done : done + got], crc)
            done += got
    else:
        for piece in copy_range(f, section.offset, section.stored):
            crc = zlib.crc32(piece, crc)
        data = bytearray(section.raw)
        reader = codec.reader(_bounded(f, section.offset, section.stored))
        got = reader.readinto(data)
        while got < section.raw:
            more = reader.readinto(memoryview(data)[got:])
            if not more:
                break
            got += more
        if got != section.raw:
            raise CorruptPayloadError(
                f"the section at {section.offset} decompressed to {got} bytes, not {section.raw}"
            )
    if crc != section.crc:
        raise CorruptPayloadError(
            f"corrupt payload: checksum mismatch in the section at {section.offset} "
            f"(stored {section.crc:#010x}, computed {crc:#010x})"
        )
    return data
