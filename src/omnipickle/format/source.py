"""Reading bytes for the payload reader: exact reads that feed a verifier as the bytes land,
decompression straight into the buffers the unpickler gets, and a reader for plain pickles that
stops where the unpickler does."""

from __future__ import annotations

import io
import os
from stat import S_ISREG
from typing import IO, Any

from ..checksums import Running, checksum
from ..codecs import Codec
from ..errors import CorruptPayloadError, TruncatedPayloadError
from . import as_view
from .signing import Verifier

__all__ = ["Input", "PrefixedReader", "as_view", "file_size", "take", "truncated_body"]

# Files are read in slices of this size: a header promising terabytes costs nothing until the
# bytes are really there.
SLICE = 8 << 20
# Past this many times its stored size, a decompressed part is not allocated up front.
_EAGER_RATIO = 64


def truncated_body(total: int, available: int) -> TruncatedPayloadError:
    return TruncatedPayloadError(
        f"truncated payload: the header promises {total} bytes, got {available}"
    )


class Input:
    """Reads exactly what is asked of a binary file, feeding a verifier as bytes land."""

    def __init__(self, file: IO[bytes], size: int | None, count: int) -> None:
        self.file = file
        self.size = size  # bytes of the payload's file from its start, when known
        self.verifier: Verifier | None = None
        self.count = count  # bytes of the payload read so far
        self.total = 0  # what the header promises, once it is known
        self.damaged: CorruptPayloadError | None = None

    def damage(self, error: CorruptPayloadError) -> None:
        """Record damage found while reading, to be raised after the signature is checked."""
        if self.damaged is None:
            self.damaged = error

    def upto(self, n: int) -> bytes:
        """At most ``n`` bytes: fewer only at the end of the file."""
        chunks = []
        done = 0
        while done < n:
            chunk = self.file.read(n - done)
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
        data = b"".join(chunks)
        self.count += len(data)
        return data

    def exactly(self, n: int, what: str = "payload", prefix: bytes = b"") -> bytearray:
        """Exactly ``n`` bytes of the payload (whose header promised :attr:`total`), after
        ``prefix`` in the same new buffer (bytes already read, not fed to the verifier again)."""
        if self.size is not None and n > self.size - self.count:
            raise truncated_body(self.total, self.size)
        # Allocated as the bytes arrive when the file's size is unknown: a lying header gets
        # what the file holds, not what it promises.
        if self.size is not None:
            data = bytearray(len(prefix) + n)  # one allocation: the file holds them
            data[: len(prefix)] = prefix
        else:
            data = bytearray(prefix)
        view = memoryview(data)[len(prefix) :] if self.size is not None else None
        done = 0
        while done < n:
            want = min(SLICE, n - done)
            if view is not None:
                got = self.file.readinto(view[done : done + want])  # type: ignore[attr-defined]
            else:
                chunk = self.file.read(want)
                got = len(chunk) if chunk else 0
                data += chunk or b""
            if not got:
                raise truncated_body(self.total, self.count + done)
            done += got
        self.count += n
        if self.verifier is not None:
            self.verifier.update(memoryview(data)[len(prefix) :])
        return data


def file_size(file: IO[bytes]) -> int | None:
    """Bytes left in ``file`` from its position, if it is a regular file."""
    try:
        stat = os.fstat(file.fileno())
        if not S_ISREG(stat.st_mode):
            return None
        return stat.st_size - file.tell()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


class _Window(io.RawIOBase):
    """The next ``length`` bytes of the input, read through ``inp`` (so they are counted and
    fed to the verifier) and checksummed, for a decompressing reader to pull from."""

    def __init__(self, inp: Input, length: int, what: str, algorithm: int) -> None:
        super().__init__()
        self._inp = inp
        self._left = length
        self._what = what
        self.sum = Running(algorithm)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(memoryview(buffer)), self._left, SLICE)
        if want <= 0:
            return 0
        data = self._inp.exactly(want, self._what)
        memoryview(buffer).cast("B")[:want] = data
        self.sum.update(data)
        self._left -= want
        return want

    def drain(self) -> None:
        """Read (and so count and verify) what the decompressor left unread."""
        while self._left:
            self.sum.update(self._inp.exactly(min(self._left, SLICE), self._what))
            self._left -= min(self._left, SLICE)


def take(
    inp: Input,
    stored: int,
    raw: int,
    codec: Codec | None,
    what: str,
    algorithm: int,
    prefix: bytes = b"",
    lead: int = 0,
) -> tuple[bytearray, int]:
    """Read ``stored`` bytes of the input and return them decompressed (``raw`` bytes, straight
    into the buffer they end up in, never more) with the checksum of the stored bytes (of
    ``algorithm``, the payload's).

    Uncompressed, the buffer starts with ``prefix`` (format 2: the header's wrapping, which is
    part of the pickle stream), and the checksum covers its first ``lead`` bytes too (the
    stream's PROTO opcode, written before the header).
    """
    if codec is None:
        data = inp.exactly(stored, what, prefix=prefix)
        return data, checksum(memoryview(data)[len(prefix) :], algorithm, prefix[:lead])
    window = _Window(inp, stored, what, algorithm)
    source = codec.reader(window)
    try:
        # Only when the file's size is known does its length check vouch for ``stored``: over a
        # pipe, a header promising a terabyte stored would make the eager buffer a lie too.
        if inp.size is not None and raw <= max(stored * _EAGER_RATIO, SLICE):
            # The usual case: straight into the one buffer the unpickler gets.
            out = bytearray(raw)
            view = memoryview(out)
            got = 0
            while got < raw:
                n = source.readinto(view[got:])
                if not n:
                    break
                got += n
        else:
            # A header promising far more than its stored bytes could plausibly hold: the
            # buffer grows with what really comes out, so a lie costs what it delivers.
            out = bytearray()
            while len(out) < raw:
                chunk = source.read(min(SLICE, raw - len(out)))
                if not chunk:
                    break
                out += chunk
            got = len(out)
        whole = got == raw and not source.read(1)
    except CorruptPayloadError:
        whole = False
        out = bytearray()
    # Damage is reported once every byte was read: a bad signature or checksum, which say more,
    # take precedence, and the file is left just after the payload either way.
    window.drain()
    if not whole:
        inp.damage(
            CorruptPayloadError(
                f"corrupt payload: a {codec.name}-compressed {what} does not decompress to the "
                f"{raw} bytes its header promises"
            )
        )
    return out, window.sum.value()


class PrefixedReader:
    """A read-only file that yields ``prefix`` and then the rest of ``file``.

    Only ``read``, ``readinto`` and ``readline`` are offered, so an unpickler reads no further
    than the end of its own stream and the next payload in the file stays where it is.
    """

    def __init__(self, prefix: bytes, file: IO[bytes]) -> None:
        self._prefix = prefix
        self._file = file
        self.head = prefix
        self.consumed = 0
        self.exhausted = False
        """The file ran out while a read wanted more (the stream, if it failed, was cut)."""

    def read(self, n: int = -1) -> bytes:
        data = self._read(n)
        self.consumed += len(data)
        if n < 0 or len(data) < n:
            self.exhausted = True
        return data

    def _read(self, n: int) -> bytes:
        if not self._prefix:
            return self._file.read(n)
        if n < 0:
            data, self._prefix = self._prefix + self._file.read(), b""
            return data
        data, self._prefix = self._prefix[:n], self._prefix[n:]
        if len(data) < n:
            data += self._file.read(n - len(data))
        return data

    def give_back(self) -> None:
        """Put back, when the file can seek, what was read ahead and not consumed (a pickle
        shorter than the bytes read to recognise it leaves the start of the next one here)."""
        if self._prefix:
            try:
                self._file.seek(-len(self._prefix), io.SEEK_CUR)
            except (AttributeError, OSError, ValueError):
                return  # a pipe: what was read ahead cannot go back
            self._prefix = b""

    def readinto(self, buf: Any) -> int:
        data = self.read(len(memoryview(buf)))
        memoryview(buf)[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        line = self._readline()
        self.consumed += len(line)
        if not line.endswith(b"\n"):
            self.exhausted = True
        return line

    def _readline(self) -> bytes:
        if not self._prefix:
            return self._file.readline()
        newline = self._prefix.find(b"\n")
        if newline >= 0:
            line, self._prefix = self._prefix[: newline + 1], self._prefix[newline + 1 :]
            return line
        line, self._prefix = self._prefix, b""
        return line + self._file.readline()
