"""Files: atomic writes, and telling paths from file objects.

``dump`` to a path writes a temporary file in the target's folder, flushes and fsyncs it, then
renames it over the target (``os.replace`` is atomic on POSIX and Windows), and finally fsyncs
the folder so the rename itself survives a power cut. A crash at any moment leaves the old file
or the new one; a failed dump leaves the old file untouched and removes its temporary file.
"""

from __future__ import annotations

import contextlib
import io
import os
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
        with os.fdopen(fd, "wb") as f:
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
# Room left at the start of a streamed payload for its header, written last (a page, which also
# aligns what follows for memory mapping).
HEADER_ROOM = 4096
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

    @property
    def stream_offset(self) -> int:
        """Where the stored stream starts in the file (once spilled)."""
        return self.start + HEADER_ROOM

    def write(self, data: bytes | bytearray | memoryview) -> int:
        for marker in self.watch:
            if marker in data:
                from .backends.base import WatchedMarkerFound

                raise WatchedMarkerFound(marker)
        n = data.nbytes if isinstance(data, memoryview) else len(data)
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
