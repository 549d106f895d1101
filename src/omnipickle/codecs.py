"""Compression codecs: one small class per codec, registered where it is defined.

A codec has a name, an id byte for the envelope, the magic bytes its output starts with (so
``load`` recognizes compressed files whatever their suffix), the file suffixes that select it,
and ``compress``/``decompress``. Codecs whose package is optional import it on first use and
raise :class:`CodecNotInstalledError` naming the extra to install.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from ._registry import Entry, Registry
from .errors import CodecNotInstalledError, CorruptPayloadError, UnknownCodecError

__all__ = ["Codec", "codec_for_magic", "codec_for_suffix", "codecs", "get_codec", "register_codec"]

Buffer = bytes | bytearray | memoryview


class Codec:
    """Base class of codecs.

    Subclasses set the class attributes and implement :meth:`compress` and :meth:`decompress`.
    ``codec_id`` is the byte written in the envelope: 1-127 are reserved for omnipickle's own
    codecs; a registered codec without one is recorded by name.
    """

    name: ClassVar[str] = ""
    codec_id: ClassVar[int | None] = None
    magic: ClassVar[bytes] = b""
    suffixes: ClassVar[tuple[str, ...]] = ()
    default_level: ClassVar[int | None] = None
    levels: ClassVar[range | None] = None
    requires: ClassVar[str | None] = None
    """What to ``pip install`` when the codec's package is missing."""

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        """Compress ``data`` at ``level`` (``None``: the codec's default)."""
        raise NotImplementedError

    def compressobj(self, level: int | None = None) -> Any:
        """An incremental compressor: ``compress(data) -> bytes`` then ``flush() -> bytes``.

        The default compresses everything at ``flush``; built-in codecs stream.
        """
        return _WholeCompressor(self, level)

    def writer(self, file: Any, level: int | None = None, *, size_hint: int = 0) -> Any:
        """A writable file that compresses into ``file``; ``close()`` ends the compressed
        stream without closing ``file``. ``size_hint`` (the bytes to come) lets a codec use
        several threads for large inputs."""
        return _CompressingWriter(file, self.compressobj(level))

    def reader(self, file: Any) -> Any:
        """A readable binary file that decompresses ``file`` as it is read.

        The default reads ``file`` whole and decompresses it; built-in codecs stream.
        """
        return io.BytesIO(self.decompress(file.read()))

    def decompress(self, data: Buffer, max_size: int | None = None) -> bytes:
        """Decompress ``data``; raise :class:`CorruptPayloadError` if it is damaged.

        ``max_size`` is the size the envelope promises: a stream that would grow past it is
        refused instead of filling memory.
        """
        raise NotImplementedError

    def check_level(self, level: int | None) -> int | None:
        """Validate ``level`` for this codec; ``None`` gives the default."""
        if level is None:
            return self.default_level
        if isinstance(level, bool) or not isinstance(level, int):
            raise TypeError(f"level must be an int, not {type(level).__name__}")
        if self.levels is not None and level not in self.levels:
            raise ValueError(
                f"level {level} is out of range for {self.name}: "
                f"{self.levels.start}..{self.levels.stop - 1}"
            )
        return level

    def _level(self, level: int | None) -> int:
        checked = self.check_level(level)
        assert checked is not None  # every built-in codec has a default level
        return checked

    def _import(self, module: str) -> Any:
        import importlib

        try:
            return importlib.import_module(module)
        except ImportError as exc:
            hint = self.requires or module
            raise CodecNotInstalledError(
                f"the {self.name} codec needs the {module!r} package, which is not installed: "
                f"pip install {hint}"
            ) from exc

    def _damaged(self, exc: BaseException) -> CorruptPayloadError:
        return CorruptPayloadError(f"the {self.name}-compressed payload is damaged: {exc}")

    def damage_errors(self) -> tuple[type[BaseException], ...]:
        """The exception types the codec's package raises for damaged input, beyond the
        standard ``OSError``/``EOFError``/``ValueError``."""
        return ()

    def _check_size(self, out: bytes, max_size: int | None) -> bytes:
        if max_size is not None and len(out) != max_size:
            raise CorruptPayloadError(
                f"the {self.name}-compressed payload decompressed to {len(out)} bytes, "
                f"the header says {max_size}"
            )
        return out


def _check_plausible(max_size: int | None, name: str) -> None:
    if max_size is not None and not 0 <= max_size < sys.maxsize // 2:
        raise CorruptPayloadError(
            f"corrupt header: the {name}-compressed payload claims {max_size} bytes"
        )


class _WholeCompressor:
    """``compressobj`` for a codec that only compresses whole buffers."""

    def __init__(self, codec: Codec, level: int | None) -> None:
        self._codec = codec
        self._level = level
        self._parts: list[bytes] = []

    def compress(self, data: Buffer) -> bytes:
        self._parts.append(bytes(data))
        return b""

    def flush(self) -> bytes:
        return self._codec.compress(b"".join(self._parts), self._level)


class _CompressingWriter:
    """``Codec.writer`` on top of a ``compressobj``."""

    def __init__(self, file: Any, compressor: Any) -> None:
        self._file = file
        self._compressor = compressor

    def write(self, data: Buffer) -> int:
        view = memoryview(data).cast("B")
        # In 1 MiB pieces: a compressor hands back about as much as it is given, and a whole
        # array at once would be a second copy of it in memory.
        for start in range(0, view.nbytes, 1 << 20):
            out = self._compressor.compress(view[start : start + (1 << 20)])
            if out:
                self._file.write(out)
        return view.nbytes

    def close(self) -> None:
        tail = self._compressor.flush()
        if tail:
            self._file.write(tail)


class _ZstdWriter:
    """zstandard's stream writer, ended (not closed) by ``close``."""

    def __init__(self, inner: Any, flush_frame: int) -> None:
        self._inner = inner
        self._flush_frame = flush_frame

    def write(self, data: Buffer) -> int:
        written: int = self._inner.write(data)
        return written

    def close(self) -> None:
        self._inner.flush(self._flush_frame)


class _Lz4Compressobj:
    """lz4.frame's compressor with the ``compress``/``flush`` shape of zlib's."""

    def __init__(self, compressor: Any) -> None:
        self._compressor = compressor
        self._started = False

    def compress(self, data: Buffer) -> bytes:
        head = b""
        if not self._started:
            head = self._compressor.begin()
            self._started = True
        out: bytes = head + self._compressor.compress(data)
        return out

    def flush(self) -> bytes:
        head = b"" if self._started else self._compressor.begin()
        self._started = True
        out: bytes = head + self._compressor.flush()
        return out


class _DamageTranslatingReader(io.RawIOBase):
    """A decompressing reader whose errors become :class:`CorruptPayloadError`."""

    def __init__(self, inner: Any, codec: Codec) -> None:
        super().__init__()
        self._inner = inner
        self._codec = codec

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Straight into the caller's buffer (a whole array, say): no temporary copy of it.
        view = memoryview(buffer).cast("B")[: 8 << 20]
        try:
            n: int = self._inner.readinto(view)
        except CorruptPayloadError:
            raise
        except (OSError, EOFError, ValueError, RuntimeError, *self._codec.damage_errors()) as exc:
            raise self._codec._damaged(exc) from exc
        return n


class _IncrementalCodec(Codec):
    """A codec with an incremental decompressor (``decompress(data[, limit])`` and ``eof``).

    Subclasses provide :meth:`_new_decompressor`; :meth:`_feed` turns the package's own error
    into ``ValueError``.
    """

    def _new_decompressor(self) -> Any:
        raise NotImplementedError

    def _feed(self, decompressor: Any, data: Buffer, limit: int) -> bytes:
        out: bytes = (
            decompressor.decompress(data, limit) if limit >= 0 else decompressor.decompress(data)
        )
        return out

    def decompress(self, data: Buffer, max_size: int | None = None) -> bytes:
        _check_plausible(max_size, self.name)
        decompressor = self._new_decompressor()
        # One byte more than promised: a stream that is too long is caught, not trusted.
        limit = -1 if max_size is None else max_size + 1
        try:
            out = self._feed(decompressor, data, limit)
        except (OSError, EOFError, ValueError, MemoryError) as exc:
            raise self._damaged(exc) from exc
        if not decompressor.eof:
            raise CorruptPayloadError(f"the {self.name}-compressed payload is truncated")
        return self._check_size(out, max_size)


class GzipCodec(_IncrementalCodec):
    """gzip (zlib's deflate in a gzip wrapper), from the standard library."""

    name = "gzip"
    codec_id = 1
    magic = b"\x1f\x8b"
    suffixes = (".gz", ".gzip")
    default_level = 6
    levels = range(0, 10)

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        import gzip

        # mtime=0: the same object gives the same bytes.
        return gzip.compress(data, compresslevel=self._level(level), mtime=0)

    def _new_decompressor(self) -> Any:
        import zlib

        return _GzipDecompressor(zlib.decompressobj(16 + zlib.MAX_WBITS))

    def compressobj(self, level: int | None = None) -> Any:
        import zlib

        return zlib.compressobj(self._level(level), zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def reader(self, file: Any) -> Any:
        import gzip

        return _buffered(gzip.GzipFile(fileobj=file, mode="rb"), self)


class _GzipDecompressor:
    """zlib's decompressobj with the ``eof``/``decompress(data, limit)`` shape of bz2/lzma."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def decompress(self, data: Buffer, limit: int = -1) -> bytes:
        import zlib

        try:
            out: bytes = self._inner.decompress(data, max(limit, 0))
        except zlib.error as exc:
            raise ValueError(str(exc)) from exc
        return out

    @property
    def eof(self) -> bool:
        return bool(self._inner.eof)


class Bz2Codec(_IncrementalCodec):
    """bzip2, from the standard library."""

    name = "bz2"
    codec_id = 2
    magic = b"BZh"
    suffixes = (".bz2",)
    default_level = 9
    levels = range(1, 10)

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        import bz2

        return bz2.compress(data, self._level(level))

    def _new_decompressor(self) -> Any:
        import bz2

        return bz2.BZ2Decompressor()

    def compressobj(self, level: int | None = None) -> Any:
        import bz2

        return bz2.BZ2Compressor(self._level(level))

    def reader(self, file: Any) -> Any:
        import bz2

        return _buffered(bz2.BZ2File(file, "rb"), self)


class LzmaCodec(_IncrementalCodec):
    """xz (LZMA2), from the standard library; also known as ``xz``."""

    name = "lzma"
    codec_id = 3
    magic = b"\xfd7zXZ\x00"
    suffixes = (".xz", ".lzma")
    default_level = 6
    levels = range(0, 10)

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        import lzma

        return lzma.compress(data, preset=self.check_level(level))

    def _new_decompressor(self) -> Any:
        import lzma

        return lzma.LZMADecompressor()

    def _feed(self, decompressor: Any, data: Buffer, limit: int) -> bytes:
        import lzma

        try:
            return super()._feed(decompressor, data, limit)
        except lzma.LZMAError as exc:
            raise ValueError(str(exc)) from exc

    def compressobj(self, level: int | None = None) -> Any:
        import lzma

        return lzma.LZMACompressor(preset=self.check_level(level))

    def reader(self, file: Any) -> Any:
        import lzma

        return _buffered(lzma.LZMAFile(file, "rb"), self)


class ZstdCodec(_IncrementalCodec):
    """Zstandard, through the ``zstandard`` package (a dependency of omnipickle)."""

    name = "zstd"
    codec_id = 4
    magic = b"\x28\xb5\x2f\xfd"
    suffixes = (".zst", ".zstd")
    default_level = 3
    levels = range(-7, 23)
    requires = "zstandard"  # a dependency of omnipickle: missing only if uninstalled

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        zstandard = self._import("zstandard")
        compressor = zstandard.ZstdCompressor(level=self.check_level(level), write_checksum=False)
        out: bytes = compressor.compress(data)
        return out

    def _new_decompressor(self) -> Any:
        return self._import("zstandard").ZstdDecompressor().decompressobj()

    def compressobj(self, level: int | None = None) -> Any:
        zstandard = self._import("zstandard")
        checked = self._level(level)
        # A stream of unknown size gets zstd's parameters for small inputs; an 8 MiB window
        # (what it picks for large known sizes) makes streamed files no bigger than one-shot
        # compression of the whole stream.
        default = zstandard.ZstdCompressionParameters.from_level(checked)
        params = zstandard.ZstdCompressionParameters.from_level(
            checked, window_log=max(default.window_log, 23)
        )
        return zstandard.ZstdCompressor(compression_params=params).compressobj()

    def writer(self, file: Any, level: int | None = None, *, size_hint: int = 0) -> Any:
        zstandard = self._import("zstandard")
        # zstd's own threads: on 400 MB of arrays (benchmarks/bench_files.py, two cores) they
        # held 73-92 MB of extra buffers (over the 10% memory bar) for a speed-up that came
        # and went between runs (0.67-1.11 s against 0.81-0.97 s for one thread); kept for
        # machines with cores to spare, past a size no test reaches.
        threads = -1 if size_hint >= _ZSTD_THREADS_AFTER and (os.cpu_count() or 1) > 4 else 0
        compressor = zstandard.ZstdCompressor(
            level=self.check_level(level), write_checksum=False, threads=threads
        )
        # Written straight into ``file``: no compressed copy is held in memory.
        return _ZstdWriter(compressor.stream_writer(file, closefd=False), zstandard.FLUSH_FRAME)

    def damage_errors(self) -> tuple[type[BaseException], ...]:
        return (self._import("zstandard").ZstdError,)

    def reader(self, file: Any) -> Any:
        zstandard = self._import("zstandard")
        inner = zstandard.ZstdDecompressor().stream_reader(file, read_across_frames=False)
        return _buffered(inner, self)

    def _feed(self, decompressor: Any, data: Buffer, limit: int) -> bytes:
        zstandard = self._import("zstandard")
        try:
            out: bytes = decompressor.decompress(data)
        except zstandard.ZstdError as exc:
            raise ValueError(str(exc)) from exc
        return out

    def decompress(self, data: Buffer, max_size: int | None = None) -> bytes:
        if max_size is None:
            return super().decompress(data)
        _check_plausible(max_size, self.name)
        zstandard = self._import("zstandard")
        # decompressobj has no output limit: read at most one byte more than the header
        # promises through a stream reader, so a small bomb cannot fill memory first.
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(data), read_across_frames=False
        )
        chunks = []
        remaining = max_size + 1
        try:
            while remaining > 0:
                chunk = reader.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        except zstandard.ZstdError as exc:
            raise self._damaged(exc) from exc
        return self._check_size(b"".join(chunks), max_size)


class Lz4Codec(_IncrementalCodec):
    """LZ4 frames, through the ``lz4`` package (``pip install 'omnipickle[lz4]'``)."""

    name = "lz4"
    codec_id = 5
    magic = b"\x04\x22\x4d\x18"
    suffixes = (".lz4",)
    default_level = 0
    levels = range(-1, 17)
    requires = "'omnipickle[lz4]'"

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        frame = self._import("lz4.frame")
        out: bytes = frame.compress(data, compression_level=self.check_level(level))
        return out

    def _new_decompressor(self) -> Any:
        return self._import("lz4.frame").LZ4FrameDecompressor()

    def compressobj(self, level: int | None = None) -> Any:
        frame = self._import("lz4.frame")
        return _Lz4Compressobj(frame.LZ4FrameCompressor(compression_level=self.check_level(level)))

    def reader(self, file: Any) -> Any:
        frame = self._import("lz4.frame")
        return _buffered(frame.LZ4FrameFile(file, "rb"), self)

    def _feed(self, decompressor: Any, data: Buffer, limit: int) -> bytes:
        try:
            out: bytes = decompressor.decompress(data, limit)
        except RuntimeError as exc:
            raise ValueError(str(exc)) from exc
        return out


_ZSTD_THREADS_AFTER = 256 << 20


def _buffered(inner: Any, codec: Codec) -> io.BufferedReader:
    """``inner`` (a decompressing file) behind a buffer, its errors made documented ones."""
    return io.BufferedReader(_DamageTranslatingReader(inner, codec), buffer_size=1 << 16)


def _check(impl: object) -> None:
    if not isinstance(impl, Codec):
        raise TypeError(
            f"a codec must be an instance of omnipickle.codecs.Codec, not {type(impl).__name__}"
        )


REGISTRY: Registry[Codec] = Registry("codec", UnknownCodecError, CodecNotInstalledError, _check)
for _codec in (GzipCodec(), Bz2Codec(), LzmaCodec(), ZstdCodec(), Lz4Codec()):
    REGISTRY.register(_codec.name, _codec)
REGISTRY.alias("xz", "lzma")
del _codec


def register_codec(name: str, codec: Codec | str, *, replace: bool = False) -> None:
    """Register a codec under ``name``.

    Args:
        name: the name callers pass as ``compression=``; an identifier.
        codec: a :class:`Codec` instance, or a ``"package.module:attribute"`` path.
        replace: allow replacing an existing registration.

    Raises:
        ValueError: the name is taken (and ``replace`` is false) or is not an identifier.
        TypeError: ``codec`` is not a :class:`Codec`.
    """
    REGISTRY.register(name, codec, replace=replace)


def codecs() -> Mapping[str, Entry[Codec]]:
    """A read-only mapping of the registered codec names to their entries."""
    return REGISTRY.view()


def get_codec(name: str) -> Codec:
    """The codec registered as ``name`` (``"xz"`` is ``"lzma"``).

    Raises:
        UnknownCodecError: no codec has that name (the message lists those there are).
    """
    return REGISTRY.get(name)


def codec_by_id(codec_id: int) -> Codec | None:
    """The built-in codec with envelope id ``codec_id``, if any."""
    for name in REGISTRY.names():
        codec = REGISTRY.get(name)
        if codec.codec_id == codec_id:
            return codec
    return None


def codec_for_magic(head: Buffer) -> Codec | None:
    """The codec whose magic bytes ``head`` starts with, if any."""
    head = bytes(head[:8])
    for name in REGISTRY.names():
        try:
            codec = REGISTRY.get(name)
        except CodecNotInstalledError:
            continue
        if codec.magic and head.startswith(codec.magic):
            return codec
    return None


def codec_for_suffix(path: str) -> Codec | None:
    """The codec a file name's suffix selects (``.gz``, ``.zst``...), or ``None``."""
    lower = path.lower()
    for name in REGISTRY.names():
        try:
            codec = REGISTRY.get(name)
        except CodecNotInstalledError:
            continue
        if any(lower.endswith(s) for s in codec.suffixes):
            return codec
    return None


# --- formats other tools write, read but never written ---------------------------------------


def _zip_single_member(data: Buffer) -> bytes:
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
            names = archive.namelist()
            if len(names) != 1:
                raise CorruptPayloadError(
                    f"a zip archive holding {len(names)} files is not a compressed pickle "
                    "(compress_pickle writes exactly one)"
                )
            return archive.read(names[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise ValueError(str(exc)) from exc


def _zlib_stream(data: Buffer) -> bytes:
    import zlib

    decompressor = zlib.decompressobj()
    try:
        out = decompressor.decompress(data)
    except zlib.error as exc:
        raise ValueError(str(exc)) from exc
    if not decompressor.eof:
        raise CorruptPayloadError("the zlib-compressed data is truncated")
    return out


def _lzma_alone(data: Buffer) -> bytes:
    import lzma

    try:
        return lzma.decompress(data, format=lzma.FORMAT_ALONE)
    except lzma.LZMAError as exc:
        raise ValueError(str(exc)) from exc


def _is_zlib(head: bytes) -> bool:
    # RFC 1950: deflate with a window of at most 32 KiB, and a header checksum.
    return len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0


# (test on the first bytes, decompress, name): zip archives of one file (compress_pickle's
# "zipfile"), raw zlib streams (joblib's default compression) and legacy .lzma files (joblib's
# "lzma"). None of them starts like a pickle stream.
_FOREIGN = (
    (lambda head: head.startswith(b"PK\x03\x04"), _zip_single_member, "zip"),
    (_is_zlib, _zlib_stream, "zlib"),
    (lambda head: head.startswith(b"\x5d\x00\x00"), _lzma_alone, "lzma-alone"),
)


def is_foreign(head: Buffer) -> bool:
    """Whether ``head`` starts a format :func:`decompress_foreign` reads."""
    first = bytes(memoryview(head)[:8])
    return any(test(first) for test, _, _ in _FOREIGN)


def decompress_foreign(data: Buffer) -> bytes | None:
    """The pickle inside ``data`` if another tool compressed it in a format we only read."""
    head = bytes(memoryview(data)[:8])
    for test, decompress, name in _FOREIGN:
        if test(head):
            try:
                return decompress(data)
            except CorruptPayloadError:
                raise
            except (OSError, EOFError, ValueError, KeyError) as exc:
                raise CorruptPayloadError(f"the {name}-compressed data is damaged: {exc}") from exc
    return None
