"""xz (LZMA2), from the standard library; also known as ``xz``."""

from __future__ import annotations

from typing import Any

from .base import REGISTRY, Buffer, IncrementalCodec, buffered, register_codec

__all__ = ["LzmaCodec"]


class LzmaCodec(IncrementalCodec):
    """xz, presets 0-9; ``.xz`` and ``.lzma`` files."""

    name = "lzma"
    codec_id = 3
    magic = b"\xfd7zXZ\x00"
    suffixes = (".xz", ".lzma")
    default_level = 6
    levels = range(0, 10)

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        """xz ``data`` at preset ``level``."""
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

    def damage_errors(self) -> tuple[type[BaseException], ...]:
        import lzma

        return (lzma.LZMAError,)

    def compressobj(self, level: int | None = None) -> Any:
        """lzma's streaming compressor."""
        import lzma

        return lzma.LZMACompressor(preset=self.check_level(level))

    def reader(self, file: Any) -> Any:
        """An ``LZMAFile`` over ``file``, its errors made :class:`CorruptPayloadError`."""
        import lzma

        return buffered(lzma.LZMAFile(file, "rb"), self)


register_codec(LzmaCodec.name, LzmaCodec())
REGISTRY.alias("xz", LzmaCodec.name)
