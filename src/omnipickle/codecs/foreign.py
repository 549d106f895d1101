"""Whole-file formats other tools write, which omnipickle reads but never writes.

compress_pickle's ``zipfile`` (a zip archive of one file), joblib's default compression (a raw
zlib stream) and joblib's ``lzma`` (the legacy ``.lzma`` format). None of them starts like a
pickle stream, so ``load`` recognizes them by their first bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from ..errors import CorruptPayloadError
from .base import Buffer

__all__ = ["decompress_foreign", "is_foreign"]


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


def _is_zip(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04")


def _is_zlib(head: bytes) -> bool:
    # RFC 1950: deflate with a window of at most 32 KiB, and a header checksum.
    return len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0


def _is_lzma_alone(head: bytes) -> bool:
    return head.startswith(b"\x5d\x00\x00")


# (test on the first bytes, decompress, name), tried in order.
_FORMATS: tuple[tuple[Callable[[bytes], bool], Callable[[Buffer], bytes], str], ...] = (
    (_is_zip, _zip_single_member, "zip"),
    (_is_zlib, _zlib_stream, "zlib"),
    (_is_lzma_alone, _lzma_alone, "lzma-alone"),
)


def is_foreign(head: Buffer) -> bool:
    """Whether ``head`` starts a format :func:`decompress_foreign` reads."""
    first = bytes(memoryview(head)[:8])
    return any(test(first) for test, _, _ in _FORMATS)


def decompress_foreign(data: Buffer) -> bytes | None:
    """The pickle inside ``data`` if another tool compressed it in a format we only read.

    Raises:
        CorruptPayloadError: ``data`` starts like one of those formats but is damaged.
    """
    head = bytes(memoryview(data)[:8])
    for test, decompress, name in _FORMATS:
        if test(head):
            try:
                return decompress(data)
            except CorruptPayloadError:
                raise
            except (OSError, EOFError, ValueError, KeyError) as exc:
                raise CorruptPayloadError(f"the {name}-compressed data is damaged: {exc}") from exc
    return None
