"""bzip2, from the standard library."""

from __future__ import annotations

from typing import Any

from .base import Buffer, IncrementalCodec, buffered, register_codec

__all__ = ["Bz2Codec"]


class Bz2Codec(IncrementalCodec):
    """bzip2, levels 1-9; ``.bz2`` files."""

    name = "bz2"
    codec_id = 2
    magic = b"BZh"
    suffixes = (".bz2",)
    default_level = 9
    levels = range(1, 10)

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        """bzip2 ``data``."""
        import bz2

        return bz2.compress(data, self._level(level))

    def _new_decompressor(self) -> Any:
        import bz2

        return bz2.BZ2Decompressor()

    def compressobj(self, level: int | None = None) -> Any:
        """bz2's streaming compressor."""
        import bz2

        return bz2.BZ2Compressor(self._level(level))

    def reader(self, file: Any) -> Any:
        """A ``BZ2File`` over ``file``, its errors made :class:`CorruptPayloadError`."""
        import bz2

        return buffered(bz2.BZ2File(file, "rb"), self)


register_codec(Bz2Codec.name, Bz2Codec())
