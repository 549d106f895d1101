"""Zstandard, through the ``zstandard`` package (a dependency of omnipickle)."""

from __future__ import annotations

import io
import os
from typing import Any

from .base import (
    Buffer,
    IncrementalCodec,
    buffered,
    check_plausible,
    register_codec,
)

__all__ = ["ZstdCodec"]

_THREADS_AFTER = 256 << 20
_SLICE = 1 << 10  # compressed bytes fed at a time: at most ~32 MiB out


class ZstdCodec(IncrementalCodec):
    """Zstandard, levels -7-22; ``.zst`` and ``.zstd`` files."""

    name = "zstd"
    codec_id = 4
    magic = b"\x28\xb5\x2f\xfd"
    suffixes = (".zst", ".zstd")
    default_level = 3
    levels = range(-7, 23)
    requires = "zstandard"  # a dependency of omnipickle: missing only if uninstalled

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        """One zstd frame of ``data``, without a checksum (the envelope has its own)."""
        zstandard = self._import("zstandard")
        compressor = zstandard.ZstdCompressor(level=self.check_level(level), write_checksum=False)
        out: bytes = compressor.compress(data)
        return out

    def _new_decompressor(self) -> Any:
        return self._import("zstandard").ZstdDecompressor().decompressobj()

    def compressobj(self, level: int | None = None) -> Any:
        """A streaming compressor with the window one-shot compression of large data gets."""
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
        """A stream writer into ``file``, several threads for very large inputs."""
        zstandard = self._import("zstandard")
        # zstd's own threads: on 400 MB of arrays (benchmarks/bench_files.py, two cores) they
        # held 73-92 MB of extra buffers (over the 10% memory bar) for a speed-up that came
        # and went between runs (0.67-1.11 s against 0.81-0.97 s for one thread); kept for
        # machines with cores to spare, past a size no test reaches.
        threads = -1 if size_hint >= _THREADS_AFTER and (os.cpu_count() or 1) > 4 else 0
        compressor = zstandard.ZstdCompressor(
            level=self.check_level(level), write_checksum=False, threads=threads
        )
        # Written straight into ``file``: no compressed copy is held in memory.
        return _ZstdWriter(compressor.stream_writer(file, closefd=False), zstandard.FLUSH_FRAME)

    def damage_errors(self) -> tuple[type[BaseException], ...]:
        return (self._import("zstandard").ZstdError,)

    def reader(self, file: Any) -> Any:
        """A stream reader over ``file`` (one frame), its errors made documented ones."""
        zstandard = self._import("zstandard")
        inner = zstandard.ZstdDecompressor().stream_reader(file, read_across_frames=False)
        return buffered(inner, self)

    def _inflate(self, decompressor: Any, data: Buffer, limit: int) -> tuple[bytes, int]:
        """zstd's decompressobj has no output limit: it is fed a slice at a time, so a frame
        that inflates past ``limit`` overshoots by at most one slice's worth (zstd inflates at
        most about 32,000 times), never by what the whole input holds."""
        zstandard = self._import("zstandard")
        view = memoryview(data).cast("B")
        out = bytearray()
        fed = 0
        try:
            while fed < len(view) and not decompressor.eof and (limit < 0 or len(out) < limit):
                out += decompressor.decompress(view[fed : fed + _SLICE])
                fed += len(view[fed : fed + _SLICE])
        except zstandard.ZstdError as exc:
            raise ValueError(str(exc)) from exc
        unused = len(decompressor.unused_data) if decompressor.eof else 0
        return bytes(out), fed - unused

    def decompress(self, data: Buffer, max_size: int | None = None) -> bytes:
        """Decompress ``data``, reading at most one byte past ``max_size`` (without one, the
        base class feeds it a slice at a time up to :func:`~.base.decompression_limit`)."""
        if max_size is None:
            return super().decompress(data)
        check_plausible(max_size, self.name)
        zstandard = self._import("zstandard")
        # A stream reader reads at most one byte more than the header promises, so a small
        # bomb cannot fill memory first.
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


register_codec(ZstdCodec.name, ZstdCodec())
