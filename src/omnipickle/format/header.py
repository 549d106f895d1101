"""The envelope header: the only code that knows its byte layout.

The byte layout is documented in ``docs/format.md`` and is a compatibility promise: every payload
written by any release loads in every later release. All integers are little-endian.

====== ====== =================================================================
offset size   field
====== ====== =================================================================
0      8      magic ``b"\\xd3OMNI\\r\\n\\x1a"``
8      1      format version (1)
9      1      flags (see ``FLAG_*``)
10     1      pickle protocol of the stream
11     1      Python major version that wrote it
12     1      Python minor version that wrote it
13     1      loader: backend whose ``loads`` reads the stream (0 pickle, 1 cloudpickle,
              2 dill, 255: named in the extra field)
14     1      backends the stream needs, as bits (1 pickle, 2 cloudpickle, 4 dill)
15     1      codec (0 none, 1 gzip, 2 bz2, 3 lzma, 4 zstd, 5 lz4, 255: named in extra)
16     1      checksum algorithm (1: CRC-32)
17     3      reserved, zero
20     4      length of the extra field (E)
24     8      length of the stored payload (after compression)
32     8      length of the pickle stream (before compression)
40     4      checksum of the stored payload
44     4      CRC-32 of bytes 0-43 followed by the extra field
48     E      extra: a UTF-8 JSON object (absent when E is 0)
48+E   ...    the stored payload, then (flag SECTIONS) the sections the extra field lists
...    32     HMAC-SHA256 of everything before it, when the SIGNED flag is set
====== ====== =================================================================
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import CorruptPayloadError, IncompatiblePayloadError, TruncatedPayloadError

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "Header",
    "Section",
    "build_header",
    "check_payload",
    "check_section",
    "header_size",
    "is_envelope",
    "parse_header",
    "sections",
]

MAGIC = b"\xd3OMNI\r\n\x1a"
FORMAT_VERSION = 1
_FIXED = struct.Struct("<8sBBBBBBBBB3xIQQI")
HEADER_SIZE = _FIXED.size + 4  # the fixed part and the header checksum
assert HEADER_SIZE == 48

FLAG_SIGNED = 0x01
"""A 32-byte HMAC-SHA256 tag follows the payload."""
FLAG_BY_VALUE = 0x02
"""The stream holds code (functions, classes) serialized by value."""
FLAG_OUT_OF_BAND = 0x04
"""The stream was written with a ``buffer_callback``: loading needs the same ``buffers``."""
FLAG_SECTIONS = 0x08
"""Large out-of-band buffers follow the stream as sections, listed in the extra field."""
KNOWN_FLAGS = FLAG_SIGNED | FLAG_BY_VALUE | FLAG_OUT_OF_BAND | FLAG_SECTIONS

CHECKSUM_CRC32 = 1
SIGNATURE_SIZE = 32
NAMED = 255
_MAX_EXTRA = 1 << 20
# Where the extra field's length sits in the fixed part (see the table above).
_EXTRA_OFFSET = 20
_EXTRA_SIZE = struct.Struct("<I")


@dataclass(frozen=True)
class Header:
    """The parsed envelope header."""

    version: int
    flags: int
    protocol: int
    python: tuple[int, int]
    loader: int
    backend_bits: int
    codec_id: int
    checksum_algorithm: int
    stored_length: int
    raw_length: int
    checksum: int
    extra: dict[str, Any] = field(default_factory=dict)
    extra_size: int = 0

    @property
    def payload_offset(self) -> int:
        """Where the stored payload starts."""
        return HEADER_SIZE + self.extra_size

    @property
    def body_end(self) -> int:
        """Where the payload (stream and sections) ends: the signature tag, if any, follows."""
        end = self.extra.get("end") if self.flags & FLAG_SECTIONS else None
        if isinstance(end, int) and end >= self.payload_offset + self.stored_length:
            return end
        return self.payload_offset + self.stored_length

    @property
    def total_length(self) -> int:
        """Header, payload and signature tag together."""
        tag = SIGNATURE_SIZE if self.flags & FLAG_SIGNED else 0
        return self.body_end + tag

    @property
    def signed(self) -> bool:
        return bool(self.flags & FLAG_SIGNED)

    @property
    def by_value(self) -> bool:
        return bool(self.flags & FLAG_BY_VALUE)


def build_header(
    *,
    flags: int,
    protocol: int,
    loader: int,
    backend_bits: int,
    codec_id: int,
    stored_length: int,
    raw_length: int,
    checksum: int,
    extra: dict[str, Any] | None = None,
    size: int | None = None,
) -> bytes:
    """The header bytes for a payload with these properties.

    With ``size``, the extra field is padded with spaces (JSON allows them) so that the header
    is exactly ``size`` bytes; ``ValueError`` if it does not fit.
    """
    extra_bytes = (
        json.dumps(extra, sort_keys=True, separators=(",", ":")).encode() if extra else b""
    )
    if size is not None:
        room = size - HEADER_SIZE
        if len(extra_bytes) > room:
            raise ValueError(f"header of {HEADER_SIZE + len(extra_bytes)} bytes exceeds {size}")
        extra_bytes = (extra_bytes or b"{}").ljust(room, b" ")
    fixed = _FIXED.pack(
        MAGIC,
        FORMAT_VERSION,
        flags,
        protocol,
        sys.version_info[0],
        sys.version_info[1],
        loader,
        backend_bits,
        codec_id,
        CHECKSUM_CRC32,
        len(extra_bytes),
        stored_length,
        raw_length,
        checksum,
    )
    header_crc = zlib.crc32(extra_bytes, zlib.crc32(fixed))
    return fixed + header_crc.to_bytes(4, "little") + extra_bytes


def is_envelope(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` starts with the envelope's magic bytes."""
    return bytes(data[:8]) == MAGIC


def header_size(fixed: bytes | bytearray | memoryview) -> int:
    """The full size of a header (fixed part and extra field) from its first
    :data:`HEADER_SIZE` bytes, so that a reader knows how much more to read.

    Raises:
        TruncatedPayloadError: ``fixed`` is shorter than :data:`HEADER_SIZE`.
        CorruptPayloadError: the magic is wrong or the extra field is implausibly large.
    """
    if len(fixed) < HEADER_SIZE:
        raise TruncatedPayloadError(
            f"truncated payload: {len(fixed)} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    if bytes(fixed[: len(MAGIC)]) != MAGIC:
        raise CorruptPayloadError("not an omnipickle payload: the magic bytes are wrong")
    extra_size = _EXTRA_SIZE.unpack_from(fixed, _EXTRA_OFFSET)[0]
    if extra_size > _MAX_EXTRA:
        raise CorruptPayloadError(f"corrupt header: extra field of {extra_size} bytes")
    return int(HEADER_SIZE + extra_size)


def parse_header(data: bytes | bytearray | memoryview) -> Header:
    """Parse and check the header at the start of ``data`` (which may be just the header).

    Raises:
        TruncatedPayloadError: ``data`` ends inside the header.
        CorruptPayloadError: the magic or the header checksum is wrong.
        IncompatiblePayloadError: the format version or a flag is newer than this release.
    """
    if len(data) < HEADER_SIZE:
        raise TruncatedPayloadError(
            f"truncated payload: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    (
        magic,
        version,
        flags,
        protocol,
        major,
        minor,
        loader,
        backend_bits,
        codec_id,
        checksum_algorithm,
        extra_size,
        stored_length,
        raw_length,
        checksum,
    ) = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise CorruptPayloadError("not an omnipickle payload: the magic bytes are wrong")
    header_crc = int.from_bytes(data[_FIXED.size : HEADER_SIZE], "little")
    if extra_size > _MAX_EXTRA:
        raise CorruptPayloadError(f"corrupt header: extra field of {extra_size} bytes")
    if len(data) < HEADER_SIZE + extra_size:
        raise TruncatedPayloadError(
            f"truncated payload or corrupt header: the header claims {HEADER_SIZE + extra_size} "
            f"bytes of header, only {len(data)} bytes are there"
        )
    extra_bytes = bytes(data[HEADER_SIZE : HEADER_SIZE + extra_size])
    found = zlib.crc32(extra_bytes, zlib.crc32(data[: _FIXED.size]))
    if found != header_crc:
        raise CorruptPayloadError(
            f"corrupt header: checksum mismatch (stored {header_crc:#010x}, computed {found:#010x})"
        )
    if version > FORMAT_VERSION or version == 0:
        raise IncompatiblePayloadError(
            f"payload format version {version} is not supported by this omnipickle release "
            f"(it reads versions 1 to {FORMAT_VERSION}); upgrade omnipickle"
        )
    if flags & ~KNOWN_FLAGS:
        raise IncompatiblePayloadError(
            f"payload uses flags {flags & ~KNOWN_FLAGS:#04x} that this omnipickle release does "
            f"not know; upgrade omnipickle"
        )
    if checksum_algorithm != CHECKSUM_CRC32:
        raise IncompatiblePayloadError(
            f"payload uses checksum algorithm {checksum_algorithm}, unknown to this release"
        )
    extra: dict[str, Any] = {}
    if extra_size:
        try:
            loaded = json.loads(extra_bytes)
        except ValueError as exc:
            raise CorruptPayloadError(
                f"corrupt header: the extra field is not JSON ({exc})"
            ) from exc
        if not isinstance(loaded, dict):
            raise CorruptPayloadError("corrupt header: the extra field is not a JSON object")
        extra = loaded
    return Header(
        version=version,
        flags=flags,
        protocol=protocol,
        python=(major, minor),
        loader=loader,
        backend_bits=backend_bits,
        codec_id=codec_id,
        checksum_algorithm=checksum_algorithm,
        stored_length=stored_length,
        raw_length=raw_length,
        checksum=checksum,
        extra=extra,
        extra_size=extra_size,
    )


def check_payload(header: Header, data: bytes | bytearray | memoryview) -> memoryview:
    """The stored payload inside ``data`` (a view, no copy), after checking length and checksum.

    Raises:
        TruncatedPayloadError: ``data`` is shorter than the header says.
        CorruptPayloadError: the checksum does not match.
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    start = header.payload_offset
    end = start + header.stored_length
    if len(view) < header.total_length:
        raise TruncatedPayloadError(
            f"truncated payload: the header promises {header.total_length} bytes, got {len(view)}"
        )
    payload = view[start:end]
    found = zlib.crc32(payload)
    if found != header.checksum:
        raise CorruptPayloadError(
            f"corrupt payload: checksum mismatch over {header.stored_length} bytes "
            f"(stored {header.checksum:#010x}, computed {found:#010x})"
        )
    return payload


@dataclass(frozen=True)
class Section:
    """One out-of-band buffer stored after the stream (flag SECTIONS)."""

    offset: int
    stored: int
    raw: int
    crc: int


def sections(header: Header) -> list[Section]:
    """The sections the header lists, checked for shape and bounds (not their checksums).

    Raises:
        CorruptPayloadError: the list is malformed or points outside the payload.
    """
    if not header.flags & FLAG_SECTIONS:
        return []
    entries = header.extra.get("sections")
    if not isinstance(entries, list):
        raise CorruptPayloadError("corrupt header: the SECTIONS flag is set but no list is")
    found = []
    low = header.payload_offset + header.stored_length
    for entry in entries:
        fields = [
            entry.get(k) if isinstance(entry, dict) else None
            for k in ("offset", "stored", "raw", "crc")
        ]
        if not all(isinstance(v, int) and v >= 0 for v in fields):
            raise CorruptPayloadError(f"corrupt header: malformed section entry {entry!r}")
        section = Section(*fields)  # type: ignore[arg-type]
        if section.offset < low or section.offset + section.stored > header.body_end:
            raise CorruptPayloadError(
                f"corrupt header: a section at {section.offset} (+{section.stored}) lies outside "
                f"the payload ({low}..{header.body_end})"
            )
        found.append(section)
    return found


def check_section(section: Section, data: memoryview) -> memoryview:
    """The stored bytes of ``section`` in ``data``, after checking their checksum."""
    stored = data[section.offset : section.offset + section.stored]
    found = zlib.crc32(stored)
    if found != section.crc:
        raise CorruptPayloadError(
            f"corrupt payload: checksum mismatch in the section at {section.offset} "
            f"(stored {section.crc:#010x}, computed {found:#010x})"
        )
    return stored
