"""LZ4 frames, through the optional ``lz4`` package (``pip install 'omnipickle[lz4]'``)."""

from __future__ import annotations

from typing import Any

from .base import Buffer, IncrementalCodec, buffered, register_codec

__all__ = ["Lz4Codec"]


class Lz4Codec(IncrementalCodec):
    """LZ4 frames, levels -1-16; ``.lz4`` files."""

    name = "lz4"
    codec_id = 5
    magic = b"\x04\x22\x4d\x18"
    suffixes = (".lz4",)
    default_level = 0
    levels = range(-1, 17)
    requires = "'omnipickle[lz4]'"

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        """One LZ4 frame of ``data``."""
        frame = self._import("lz4.frame")
        out: bytes = frame.compress(data, compression_level=self.check_level(level))
        return out

    def _new_decompressor(self) -> Any:
        return self._import("lz4.frame").LZ4FrameDecompressor()

    def compressobj(self, level: int | None = None) -> Any:
        """lz4.frame's streaming compressor, shaped like zlib's."""
        frame = self._import("lz4.frame")
        return _Lz4Compressobj(frame.LZ4FrameCompressor(compression_level=self.check_level(level)))

    def reader(self, file: Any) -> Any:
        """An ``LZ4FrameFile`` over ``file``, its errors made :class:`CorruptPayloadError`."""
        frame = self._import("lz4.frame")
        return buffered(frame.LZ4FrameFile(file, "rb"), self)

    def _feed(self, decompressor: Any, data: Buffer, limit: int) -> bytes:
        try:
            out: bytes = decompressor.decompress(data, limit)
        except RuntimeError as exc:
            raise ValueError(str(exc)) from exc
        return out


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


register_codec(Lz4Codec.name, Lz4Codec())
