"""Whole-file formats other tools write, which omnipickle reads but never writes.

compress_pickle's ``zipfile`` (a zip archive of one file), joblib's default compression (a raw
zlib stream) and joblib's ``lzma`` (the legacy ``.lzma`` format). None of them starts like a
pickle stream, so ``load`` recognizes them by their first bytes. None declares a size that could
be trusted, so each is decompressed a slice at a time up to
:func:`~.base.decompression_limit`.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from ..errors import CorruptPayloadError
from .base import Buffer, decompression_bomb, decompression_limit

__all__ = ["decompress_foreign", "is_foreign"]


def _zip_single_member(data: Buffer, limit: int) -> bytes:
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if len(names) != 1:
                raise CorruptPayloadError(
                    f"a zip archive holding {len(names)} files is not a compressed pickle "
                    "(compress_pickle writes exactly one)"
                )
            with archive.open(names[0]) as member:
                # Read a slice at a time, whatever size the archive claims.
                out = bytearray()
                while len(out) <= limit:
                    chunk = member.read(min(1 << 20, limit + 1 - len(out)))
                    if not chunk:
                        break
                    out += chunk
            return _within(bytes(out), "zip", data, limit)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise ValueError(str(exc)) from exc


def _within(out: bytes, name: str, data: Buffer, limit: int) -> bytes:
    if len(out) > limit:
        raise decompression_bomb(name, len(memoryview(data)), limit)
    return out


def _zlib_stream(data: Buffer, limit: int) -> bytes:
    import zlib

    decompressor = zlib.decompressobj()
    try:
        out = _within(decompressor.decompress(data, limit + 1), "zlib", data, limit)
    except zlib.error as exc:
        raise ValueError(str(exc)) from exc
    if not decompressor.eof:
        raise CorruptPayloadError("the zlib-compressed data is truncated")
    return out


def _lzma_alone(data: Buffer, limit: int) -> bytes:
    import lzma

    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    try:
        out = _within(decompressor.decompress(data, limit + 1), "lzma-alone", data, limit)
    except lzma.LZMAError as exc:
        raise ValueError(str(exc)) from exc
    if not decompressor.eof:
        raise CorruptPayloadError("the lzma-alone-compressed data is truncated")
    return out


def _is_zip(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04")


def _is_zlib(head: bytes) -> bool:
    # RFC 1950: deflate with a window of at most 32 KiB, and a header checksum.
    return len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0


def _is_lzma_alone(head: bytes) -> bool:
    return head.startswith(b"\x5d\x00\x00")


# (test on the first bytes, decompress, name), tried in order.
_FORMATS: tuple[tuple[Callable[[bytes], bool], Callable[[Buffer, int], bytes], str], ...] = (
    (_is_zip, _zip_single_member, "zip"),
    (_is_zlib, _zlib_stream, "zlib"),
    (_is_lzma_alone, _lzma_alone, "lzma-alone"),
)


def is_foreign(head: Buffer) -> bool:
    """Whether ``head`` starts a format :func:`decompress_foreign` reads."""
    first = bytes(memoryview(head)[:8])
    return any(test(first) for test, _, _ in _FORMATS)


def decompress_foreign(data: Buffer, limit: int | None = None) -> bytes | None:
    """The pickle inside ``data`` if another tool compressed it in a format we only read.

    Args:
        data: the whole file.
        limit: how many bytes it may inflate to (default: :func:`~.base.decompression_limit`
            of its size; nothing in these formats declares a size that could be trusted).

    Raises:
        CorruptPayloadError: ``data`` starts like one of those formats but is damaged, or it
            inflates past ``limit``.
    """
    bound = decompression_limit(len(memoryview(data))) if limit is None else limit
    head = bytes(memoryview(data)[:8])
    for test, decompress, name in _FORMATS:
        if test(head):
            try:
                return decompress(data, bound)
            except CorruptPayloadError:
                raise
            except (OSError, EOFError, ValueError, KeyError) as exc:
                raise CorruptPayloadError(f"the {name}-compressed data is damaged: {exc}") from exc
    return None
