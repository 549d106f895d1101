"""gzip (zlib's deflate in a gzip wrapper), from the standard library."""

from __future__ import annotations

from typing import Any

from .base import Buffer, IncrementalCodec, buffered, register_codec

__all__ = ["GzipCodec"]


class GzipCodec(IncrementalCodec):
    """gzip, levels 0-9; ``.gz`` and ``.gzip`` files."""

    name = "gzip"
    codec_id = 1
    magic = b"\x1f\x8b"
    suffixes = (".gz", ".gzip")
    default_level = 6
    levels = range(0, 10)

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        """gzip ``data``, with no timestamp (the same object gives the same bytes)."""
        import gzip

        return gzip.compress(data, compresslevel=self._level(level), mtime=0)

    def _new_decompressor(self) -> Any:
        import zlib

        return _GzipDecompressor(zlib.decompressobj(16 + zlib.MAX_WBITS))

    def compressobj(self, level: int | None = None) -> Any:
        """zlib's streaming compressor, writing the gzip wrapper."""
        import zlib

        return zlib.compressobj(self._level(level), zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def reader(self, file: Any) -> Any:
        """A ``GzipFile`` over ``file``, its errors made :class:`CorruptPayloadError`."""
        import gzip

        return buffered(gzip.GzipFile(fileobj=file, mode="rb"), self)


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

    @property
    def unused_data(self) -> bytes:
        return bytes(self._inner.unused_data)


register_codec(GzipCodec.name, GzipCodec())
