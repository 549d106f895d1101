"""The envelope header: the only code that knows its byte layout.

The byte layout is documented in ``docs/format.md`` and is a compatibility promise: every payload
written by any release loads in every later release. All integers are little-endian.

Format 2 (written since 0.1.0) carries the header inside the pickle stream: the payload starts
with a ``BINBYTES`` opcode holding the header and a ``POP`` that discards it, so an uncompressed
payload is itself a valid pickle stream that ``pickle.loads`` reads and every pickle tool parses
(the header is data to them, the stream after it is the object)::

    0      1      'B' (BINBYTES)
    1      4      H = 48 + E, the length of the header that follows
    5      H      the header below (magic first; format version 2)
    5+H    1      '0' (POP)
    6+H    ...    the stored payload (the pickle stream, possibly compressed), then the sections

Format 1 payloads start with the header itself (the magic at offset 0); they keep loading.

====== ====== =================================================================
offset size   field (from the magic)
====== ====== =================================================================
0      8      magic ``b"\\xd3OMNI\\r\\n\\x1a"``
8      1      format version (1 or 2)
9      1      flags (see ``FLAG_*``)
10     1      pickle protocol of the stream
11     1      Python major version that wrote it
12     1      Python minor version that wrote it
13     1      loader: backend whose ``loads`` reads the stream (0 pickle, 1 cloudpickle,
              2 dill, 255: named in the extra field)
14     1      backends the stream needs, as bits (1 pickle, 2 cloudpickle, 4 dill)
15     1      codec (0 none, 1 gzip, 2 bz2, 3 lzma, 4 zstd, 5 lz4, 255: named in extra)
16     1      checksum algorithm of the stored payload and sections (1: CRC-32,
              2: XXH3-64's low 32 bits; see omnipickle.checksums)
17     3      reserved, zero
20     4      length of the extra field (E)
24     8      length of the stored payload (after compression)
32     8      length of the pickle stream (before compression)
40     4      checksum of the stored payload
44     4      CRC-32 of bytes 0-43 followed by the extra field
48     E      extra: a UTF-8 JSON object (absent when E is 0)
====== ====== =================================================================

Then the stored payload, then (flag SECTIONS) the sections the extra field lists, then, when the
SIGNED flag is set, the HMAC-SHA256 of every byte of the payload before it (32 bytes).
"""

from __future__ import annotations

import itertools
import pickle
import struct
import sys
import zlib
from typing import Any

from .._registry import Record
from ..checksums import CRC32, NAMES, SMALL, algorithm_for
from ..checksums import checksum as compute_checksum
from ..errors import CorruptPayloadError, IncompatiblePayloadError, TruncatedPayloadError

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "Header",
    "PlainEnvelopes",
    "Section",
    "build_header",
    "check_payload",
    "check_section",
    "envelope_start",
    "fixed_size",
    "header_size",
    "is_envelope",
    "is_plain_payload",
    "maybe_envelope",
    "parse_header",
    "plain_payload",
    "plain_stream",
    "sections",
    "sniff_size",
    "starts_envelope",
]

MAGIC = b"\xd3OMNI\r\n\x1a"
FORMAT_VERSION = 2
# Format 2's wrapping: the stream's PROTO opcode (when it has one) first, as pickle tools expect,
# then BINBYTES and the header's length, the header, and POP.
_PROTO = 0x80
_LEAD = 2  # PROTO and its argument
_BINBYTES = 0x42
_POP = b"0"
_WRAP_BEFORE = 5
_WRAP_AFTER = 1
PROBE_SIZE = _LEAD + _WRAP_BEFORE + len(MAGIC)
"""Bytes enough to tell an envelope of either format from anything else."""
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

CHECKSUM_CRC32 = CRC32
SIGNATURE_SIZE = 32
NAMED = 255
_MAX_EXTRA = 1 << 20
# Where the extra field's length sits in the fixed part (see the table above).
_EXTRA_OFFSET = 20
_EXTRA_SIZE = struct.Struct("<I")


class Header(Record):
    """The parsed envelope header.

    ``start`` is where the magic is: 0 (format 1), or after the stream's PROTO opcode (if it
    has one) and the BINBYTES opcode (format 2).
    """

    __slots__ = (  # noqa: RUF023 - the fields, in order
        "version",
        "flags",
        "protocol",
        "python",
        "loader",
        "backend_bits",
        "codec_id",
        "checksum_algorithm",
        "stored_length",
        "raw_length",
        "checksum",
        "extra",
        "extra_size",
        "start",
    )
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
    extra: dict[str, Any]
    extra_size: int
    start: int

    def __init__(
        self,
        version: int,
        flags: int,
        protocol: int,
        python: tuple[int, int],
        loader: int,
        backend_bits: int,
        codec_id: int,
        checksum_algorithm: int,
        stored_length: int,
        raw_length: int,
        checksum: int,
        extra: dict[str, Any] | None = None,
        extra_size: int = 0,
        start: int = 0,
    ) -> None:
        self._set(
            version,
            flags,
            protocol,
            python,
            loader,
            backend_bits,
            codec_id,
            checksum_algorithm,
            stored_length,
            raw_length,
            checksum,
            {} if extra is None else extra,
            extra_size,
            start,
        )

    @property
    def lead(self) -> int:
        """How many bytes of the pickle stream (its PROTO opcode) come before the header: they
        and the stored payload make the stream; 0 in format 1 and for compressed payloads."""
        return self.start - _WRAP_BEFORE if self.start else 0

    @property
    def payload_offset(self) -> int:
        """Where the stored payload starts."""
        wrap = _WRAP_AFTER if self.start else 0
        return self.start + HEADER_SIZE + self.extra_size + wrap

    @property
    def stream_start(self) -> int:
        """Where an unpickler starts reading an uncompressed payload: in format 2 at byte 0 (the
        whole wrapping is part of the stream), in format 1 at the stored payload."""
        return 0 if self.start else self.payload_offset

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


# The last extra field of strings (and maps of strings) encoded, as a copy of its own: most
# dumps of code by value write the same one (the backends' versions, a key id), and json's
# encoder costs more than pickling a small function. A copy that holds only strings under
# string keys equals another field exactly when the two encode alike.
_last_json: tuple[dict[str, Any] | None, bytes] = (None, b"")


def _strings_copy(extra: dict[Any, Any]) -> dict[str, Any] | None:
    """A copy of ``extra`` if it holds only strings and maps of strings under string keys."""
    copied: dict[str, Any] = {}
    for name, value in extra.items():
        if not isinstance(name, str):
            return None
        if isinstance(value, str):
            copied[name] = value
        elif isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            copied[name] = dict(value)
        else:
            return None
    return copied


def extra_field(extra: dict[str, Any]) -> bytes:
    """The extra field holding ``extra``, encoded as :func:`build_header` encodes it (the same
    bytes for the same mapping)."""
    return _json_bytes(extra)


def _json_bytes(extra: dict[str, Any]) -> bytes:
    global _last_json
    seen, encoded = _last_json
    if extra == seen:
        return encoded
    import json  # most headers have no extra field: not imported with omnipickle

    encoded = json.dumps(extra, sort_keys=True, separators=(",", ":")).encode()
    _note_plain_extra(extra, encoded)
    snapshot = _strings_copy(extra)
    if snapshot is not None:
        _last_json = (snapshot, encoded)
    return encoded


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
    version: int = FORMAT_VERSION,
    lead: bytes = b"",
    checksum_algorithm: int = CRC32,
) -> bytes:
    """The header bytes for a payload with these properties (everything before the stored
    payload: for format 2, wrapped in its BINBYTES and POP opcodes).

    With ``size``, the extra field is padded with spaces (JSON allows them) so that the header
    is exactly ``size`` bytes; ``ValueError`` if it does not fit. ``lead`` is the stream's PROTO
    opcode, moved in front of the header (format 2, uncompressed). ``version=1`` writes the old
    layout (only tests and compatibility data need it).
    """
    extra_bytes = _json_bytes(extra) if extra else b""
    wrap = len(lead) + _WRAP_BEFORE + _WRAP_AFTER if version >= 2 else 0
    if size is not None:
        room = size - HEADER_SIZE - wrap
        if len(extra_bytes) > room:
            raise ValueError(
                f"header of {HEADER_SIZE + wrap + len(extra_bytes)} bytes exceeds {size}"
            )
        extra_bytes = (extra_bytes or b"{}").ljust(room, b" ")
    fixed = _FIXED.pack(
        MAGIC,
        version,
        flags,
        protocol,
        sys.version_info[0],
        sys.version_info[1],
        loader,
        backend_bits,
        codec_id,
        checksum_algorithm,
        len(extra_bytes),
        stored_length,
        raw_length,
        checksum,
    )
    header_crc = zlib.crc32(extra_bytes, zlib.crc32(fixed))
    header = fixed + header_crc.to_bytes(4, "little") + extra_bytes
    if version < 2:
        return header
    return lead + bytes([_BINBYTES]) + len(header).to_bytes(4, "little") + header + _POP


def _lead(data: bytes | bytearray | memoryview) -> int:
    """The length of a PROTO opcode at the start of ``data`` (0 or 2)."""
    return _LEAD if len(data) > 2 and data[0] == _PROTO and data[2] == _BINBYTES else 0


def _wrapped_size(data: bytes | bytearray | memoryview) -> int:
    """For data that starts with format 2's wrapping (BINBYTES of a header's length, and POP
    right after it, where the data is long enough to show it): the header's length, else 0."""
    lead = _lead(data)
    if len(data) < lead + _WRAP_BEFORE or data[lead] != _BINBYTES:
        return 0
    size = int.from_bytes(data[lead + 1 : lead + 5], "little")
    if not HEADER_SIZE <= size <= HEADER_SIZE + _MAX_EXTRA:
        return 0
    end = lead + _WRAP_BEFORE + size
    if len(data) > end and data[end] != _POP[0]:
        return 0
    return size


_COMMON_START = _LEAD + _WRAP_BEFORE


def _start(data: bytes | bytearray | memoryview) -> int:
    """Where the magic is (0: format 1; 5 or 7: format 2), or -1 for data that is no envelope.

    Data wrapped as a format-2 header (BINBYTES, a header's length, POP after it) is an
    envelope even when its magic is damaged: no pickler writes that shape, and without this a
    damaged magic would turn a payload into a plain pickle that loads unchecked.
    """
    # What nearly every payload is (format 2, with a PROTO lead), checked first: per-call cost.
    if data[_COMMON_START : _COMMON_START + len(MAGIC)] == MAGIC and data[_LEAD] == _BINBYTES:
        return _COMMON_START
    if bytes(data[: len(MAGIC)]) == MAGIC:
        return 0
    size = _wrapped_size(data)
    start = _lead(data) + _WRAP_BEFORE
    if size and (bytes(data[start : start + len(MAGIC)]) == MAGIC or len(data) > start + size):
        return start
    return -1


def sniff_size(head: bytes | bytearray | memoryview) -> int:
    """How many bytes from the start a reader needs to tell whether data that starts with
    ``head`` (at least 8 bytes) is an envelope: ``len(head)`` when it already can."""
    size = _wrapped_size(head)
    if not size or bytes(head[: len(MAGIC)]) == MAGIC:
        return len(head)
    start = _lead(head) + _WRAP_BEFORE
    seen = bytes(head[start : len(head)])
    if MAGIC.startswith(seen):
        return max(len(head), start + len(MAGIC))
    return max(len(head), start + size + _WRAP_AFTER)


def is_envelope(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` starts like an envelope (of either format): needs :data:`PROBE_SIZE`
    bytes to tell a format-2 envelope."""
    return _start(data) >= 0


def starts_envelope(head: bytes | bytearray | memoryview) -> bool | None:
    """Whether data that starts with ``head`` is an envelope (by its magic): ``None`` while
    ``head`` is too short to tell. A reader can feed it one byte at a time and stop at the first
    answer, so it never waits for bytes a short plain pickle on a socket will not send."""
    head = bytes(head[:PROBE_SIZE])
    if head[: len(MAGIC)] == MAGIC:
        return True
    if head and MAGIC.startswith(head):
        return None
    lead = _LEAD if head[:1] == bytes([_PROTO]) else 0
    if len(head) <= lead + 2 and lead:
        return None if len(head) < lead + 1 or head[lead : lead + 1] in (b"", b"B") else False
    if head[lead : lead + 1] != b"B":
        return False if len(head) > lead else None
    seen = head[lead + _WRAP_BEFORE :]
    if not MAGIC.startswith(seen[: len(MAGIC)]):
        return False
    return True if len(seen) >= len(MAGIC) else None


def maybe_envelope(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data``, too short to tell, is the start of an envelope (so that it is reported
    as a truncated payload rather than as a damaged pickle)."""
    head = bytes(data[:PROBE_SIZE])
    if len(head) < len(MAGIC) and MAGIC.startswith(head):
        return True
    lead = _LEAD if head[:1] == bytes([_PROTO]) and head[2:3] == b"B" else 0
    start = lead + _WRAP_BEFORE
    return (
        len(head) < start + len(MAGIC)
        and head[lead : lead + 1] == b"B"
        and len(head) > lead + 1
        and MAGIC.startswith(head[start:])
    )


def fixed_size(head: bytes | bytearray | memoryview) -> int:
    """How many bytes from the start hold the fixed header of an envelope that starts with
    ``head`` (enough for :func:`header_size`)."""
    return max(_start(head), 0) + HEADER_SIZE


def header_size(first: bytes | bytearray | memoryview) -> int:
    """The full size of a header (with format 2's wrapping and the extra field) from the
    payload's first bytes (at least :data:`HEADER_SIZE` from the magic), so that a reader knows
    how much more to read.

    Raises:
        TruncatedPayloadError: ``first`` ends inside the fixed header.
        CorruptPayloadError: no magic, or the extra field is implausibly large.
    """
    start = max(_start(first), 0)
    if len(first) < start + HEADER_SIZE:
        raise TruncatedPayloadError(
            f"truncated payload: {len(first)} bytes, shorter than the "
            f"{start + HEADER_SIZE}-byte header"
        )
    if _start(first) < 0:
        raise CorruptPayloadError("not an omnipickle payload: the magic bytes are wrong")
    extra_size = _EXTRA_SIZE.unpack_from(first, start + _EXTRA_OFFSET)[0]
    if extra_size > _MAX_EXTRA:
        raise CorruptPayloadError(f"corrupt header: extra field of {extra_size} bytes")
    return int(start + HEADER_SIZE + extra_size + (_WRAP_AFTER if start else 0))


def envelope_start(data: bytes | bytearray | memoryview) -> int:
    """Where an envelope's magic is in ``data`` (-1: not an envelope), for
    :func:`parse_header`'s ``start`` (so that a reader looks once)."""
    return _start(data)


def parse_header(data: bytes | bytearray | memoryview, start: int = -1) -> Header:
    """Parse and check the header at the start of ``data`` (which may be just the header).

    Raises:
        TruncatedPayloadError: ``data`` ends inside the header.
        CorruptPayloadError: the magic, the header checksum or format 2's wrapping is wrong.
        IncompatiblePayloadError: the format version or a flag is newer than this release.
    """
    start = max(_start(data) if start < 0 else start, 0)
    if len(data) < start + HEADER_SIZE:
        raise TruncatedPayloadError(
            f"truncated payload: {len(data)} bytes, shorter than the "
            f"{start + HEADER_SIZE}-byte header"
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
    ) = _FIXED.unpack_from(data, start)
    if magic != MAGIC:
        raise CorruptPayloadError("not an omnipickle payload: the magic bytes are wrong")
    fixed_end = start + _FIXED.size
    header_crc = int.from_bytes(data[fixed_end : fixed_end + 4], "little")
    if extra_size > _MAX_EXTRA:
        raise CorruptPayloadError(f"corrupt header: extra field of {extra_size} bytes")
    wrap = _WRAP_AFTER if start else 0
    size = start + HEADER_SIZE + extra_size + wrap
    if len(data) < size:
        raise TruncatedPayloadError(
            f"truncated payload or corrupt header: the header claims {size} "
            f"bytes of header, only {len(data)} bytes are there"
        )
    extra_start = start + HEADER_SIZE
    extra_bytes = bytes(data[extra_start : extra_start + extra_size])
    found = zlib.crc32(extra_bytes, zlib.crc32(data[start:fixed_end]))
    if found != header_crc:
        raise CorruptPayloadError(
            f"corrupt header: checksum mismatch (stored {header_crc:#010x}, computed {found:#010x})"
        )
    if version > FORMAT_VERSION or version == 0:
        raise IncompatiblePayloadError(
            f"payload format version {version} is not supported by this omnipickle release "
            f"(it reads versions 1 to {FORMAT_VERSION}); upgrade omnipickle"
        )
    if start:
        wrapped = int.from_bytes(data[start - 4 : start], "little")
        if version < 2 or wrapped != HEADER_SIZE + extra_size or data[size - 1] != _POP[0]:
            raise CorruptPayloadError(
                "corrupt header: the opcodes that carry a format-2 header inside the pickle "
                "stream are damaged"
            )
    elif version >= 2:
        raise CorruptPayloadError(
            f"corrupt header: a format-{version} header outside the pickle stream"
        )
    if flags & ~KNOWN_FLAGS:
        raise IncompatiblePayloadError(
            f"payload uses flags {flags & ~KNOWN_FLAGS:#04x} that this omnipickle release does "
            f"not know; upgrade omnipickle"
        )
    if checksum_algorithm not in NAMES:
        raise IncompatiblePayloadError(
            f"payload uses checksum algorithm {checksum_algorithm}, unknown to this release"
        )
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
        extra=_parse_extra(extra_bytes) if extra_size else {},
        extra_size=extra_size,
        start=start,
    )


# The last extra field parsed, and what it parsed to: a process that loads one kind of payload
# again and again (a function sent to a worker, whose field names the backends' versions)
# parses it once. Nothing changes a header's extra once parsed (``info`` hands out copies).
_last_extra: tuple[bytes, dict[str, Any]] = (b"", {})


def _parse_extra(extra_bytes: bytes) -> dict[str, Any]:
    global _last_extra
    seen, parsed = _last_extra
    if extra_bytes == seen:
        return parsed
    import json  # most headers have no extra field: not imported with omnipickle

    try:
        loaded = json.loads(extra_bytes)
    except ValueError as exc:
        raise CorruptPayloadError(f"corrupt header: the extra field is not JSON ({exc})") from exc
    if not isinstance(loaded, dict):
        raise CorruptPayloadError("corrupt header: the extra field is not a JSON object")
    _last_extra = (extra_bytes, loaded)
    _note_plain_extra(loaded, extra_bytes)
    return loaded


# Extra fields that hold nothing a load needs: only the backends' versions (read when a load
# fails, to say which version wrote it), and those the versions imported here, as the bytes
# seen. A payload carrying one of them may still take the fast path: had it failed, no version
# would have been worth naming.
_PLAIN_EXTRAS: set[bytes] = set()


def _note_plain_extra(extra: dict[str, Any], encoded: bytes) -> None:
    if len(_PLAIN_EXTRAS) >= 16 or extra.keys() != {"versions"}:
        return
    versions = extra["versions"]
    if isinstance(versions, dict) and all(
        isinstance(package, str)
        and version == getattr(sys.modules.get(package), "__version__", None)
        for package, version in versions.items()
    ):
        _PLAIN_EXTRAS.add(encoded)


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
    # The checksum covers the stream as the pickler wrote it: its PROTO opcode, moved before
    # the header in format 2, comes first.
    found = compute_checksum(payload, header.checksum_algorithm, view[: header.lead])
    if found != header.checksum:
        raise CorruptPayloadError(
            f"corrupt payload: checksum mismatch over {header.stored_length} bytes "
            f"(stored {header.checksum:#010x}, computed {found:#010x})"
        )
    return payload


class Section(Record):
    """One out-of-band buffer stored after the stream (flag SECTIONS)."""

    __slots__ = ("offset", "stored", "raw", "crc")  # noqa: RUF023 - the fields, in order
    offset: int
    stored: int
    raw: int
    crc: int

    def __init__(self, offset: int, stored: int, raw: int, crc: int) -> None:
        self._set(offset, stored, raw, crc)


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


def check_section(section: Section, data: memoryview, algorithm: int) -> memoryview:
    """The stored bytes of ``section`` in ``data``, after checking their checksum (of the
    payload's ``algorithm``)."""
    stored = data[section.offset : section.offset + section.stored]
    found = compute_checksum(stored, algorithm)
    if found != section.crc:
        raise CorruptPayloadError(
            f"corrupt payload: checksum mismatch in the section at {section.offset} "
            f"(stored {section.crc:#010x}, computed {found:#010x})"
        )
    return stored


# --- the per-call fast path ----------------------------------------------------------------------
# Most payloads sent between processes are small, unsigned, uncompressed plain data read by
# pickle. These two functions write and recognize exactly that shape, byte for byte as
# build_header and parse_header/check_payload do, with one struct call each way; anything else
# (or anything wrong) is left to the general functions above, which say what is wrong.

# PROTO and its protocol, BINBYTES and its length, the fixed header, POP: the wrapping of a
# plain payload with no extra field (its extra field, when it has one, comes before the POP).
_PLAIN_SIZE = _LEAD + _WRAP_BEFORE + HEADER_SIZE + _WRAP_AFTER
_PYTHON = sys.version_info[:2]


def plain_payload(
    stream: bytes, protocol: int, loader: int, backend_bits: int, flags: int = 0, extra: bytes = b""
) -> bytes:
    """The format-2 envelope of ``stream`` (a pickle stream of protocol 2 or later, which starts
    with its PROTO opcode), uncompressed and unsigned, with ``flags`` (none, or
    ``FLAG_BY_VALUE``) and ``extra`` (an encoded extra field, or none): what
    :func:`build_header` and the writer produce for it."""
    stored = len(stream) - _LEAD
    small = stored < SMALL
    algorithm = CRC32 if small else algorithm_for(stored)
    # One small integer stands for the fields (each a byte), the extra field apart.
    key = protocol | loader << 8 | backend_bits << 16 | algorithm << 24 | flags << 32
    known = _PLAIN_PREFIXES.get((key, extra) if extra else key)
    if known is None:  # the bytes that are the same for every such payload, packed once
        known = _PLAIN_PREFIXES[(key, extra) if extra else key] = _plain_prefix(
            protocol, loader, backend_bits, algorithm, flags, len(extra)
        )
    lead, prefix_crc = known
    numbers = _PLAIN_LENGTHS.pack(
        stored,
        len(stream),
        zlib.crc32(stream) if small else compute_checksum(stream, algorithm),
    )
    header_crc = zlib.crc32(numbers, prefix_crc)
    if extra:
        header_crc = zlib.crc32(extra, header_crc)
    # Slicing bytes copies them: past a few pages, a view costs less than the copy.
    rest = stream[_LEAD:] if small else memoryview(stream)[_LEAD:]
    return b"".join((lead, numbers, header_crc.to_bytes(4, "little"), extra, _POP, rest))


class PlainEnvelopes:
    """:func:`plain_payload` for one loader and one set of backend bits, with no flags and no
    extra field: the envelope of plain data, the commonest payload, with its constant parts
    looked up by protocol alone (the general function packs a key of five fields first)."""

    __slots__ = ("_bits", "_loader", "_prefixes")

    def __init__(self, loader: int, backend_bits: int) -> None:
        self._loader = loader
        self._bits = backend_bits
        self._prefixes: dict[int, tuple[bytes, int]] = {}

    def prefix(self, protocol: int) -> tuple[bytes, int]:
        """The constant bytes of a small envelope of ``protocol`` before its lengths, and the
        CRC of their header part (the C fast path of ``dumps`` writes from them too)."""
        known = self._prefixes.get(protocol)
        if known is None:
            known = self._prefixes[protocol] = _plain_prefix(
                protocol, self._loader, self._bits, CRC32, 0, 0
            )
        return known

    def wrap(self, stream: bytes, protocol: int) -> bytes:
        """The envelope of ``stream``, a pickle stream of ``protocol`` (2 or later)."""
        stored = len(stream) - _LEAD
        if stored >= SMALL:  # another checksum algorithm, and a view rather than a copy
            return plain_payload(stream, protocol, self._loader, self._bits)
        lead, prefix_crc = self._prefixes.get(protocol) or self.prefix(protocol)
        numbers = _PLAIN_LENGTHS.pack(stored, len(stream), zlib.crc32(stream))
        header_crc = _CRC_FIELD.pack(zlib.crc32(numbers, prefix_crc))
        return b"".join((lead, numbers, header_crc, _POP, stream[_LEAD:]))


_CRC_FIELD = struct.Struct("<I")


def _plain_prefix(
    protocol: int, loader: int, bits: int, algorithm: int, flags: int, extra_size: int
) -> tuple[bytes, int]:
    """The bytes of a plain payload before its lengths (PROTO, BINBYTES and its length, the
    header's constant fields and the extra field's length), and the CRC of the header's part
    of them."""
    fields = _FIXED.pack(
        MAGIC, FORMAT_VERSION, flags, protocol, *_PYTHON, loader, bits, 0, algorithm, 0, 0, 0, 0
    )[:_PLAIN_PREFIX_SIZE] + _EXTRA_SIZE.pack(extra_size)
    wrap = bytes((_PROTO, protocol, _BINBYTES)) + (HEADER_SIZE + extra_size).to_bytes(4, "little")
    return wrap + fields, zlib.crc32(fields)


_PLAIN_PREFIX_SIZE = 20  # magic to the reserved bytes: the fixed part before the lengths
_PLAIN_FIELDS = slice(_LEAD + _WRAP_BEFORE, _LEAD + _WRAP_BEFORE + _PLAIN_PREFIX_SIZE)
_PLAIN_LENGTHS = struct.Struct("<QQI")
_PLAIN_PREFIXES: dict[int | tuple[int, bytes], tuple[bytes, int]] = {}
"""The constant bytes of a plain payload by its protocol, loader, bits, algorithm and flags (one
byte each of an integer) and its extra field (when it has one, the key is a pair), with the CRC
of their header part."""

_Accepted = dict[bytes, tuple[bytes, int, int, int]]
_Whole = dict[bytes, tuple[int, int, int]]
_ACCEPTED: dict[tuple[int, frozenset[int]], tuple[_Whole, _Accepted]] = {}
_LAST_ACCEPTED: tuple[int, frozenset[int], _Whole, _Accepted] = (-1, frozenset(), {}, {})


def _accepted(loader: int, backend_bits: frozenset[int]) -> tuple[_Whole, _Accepted]:
    """Every constant header part :func:`is_plain_payload` accepts for ``loader`` and
    ``backend_bits``, in two tables. The first is keyed by the payload's first bytes up to the
    lengths (the wrapping of a header with no extra field, then the fields): the CRC of the
    fields, the CRC of the PROTO opcode and the checksum algorithm. The second, by the fields
    alone, gives the wrapping too (a payload with an extra field has a longer one)."""
    global _LAST_ACCEPTED
    tables = _ACCEPTED.get((loader, backend_bits))
    if tables is None:
        whole: _Whole = {}
        table: _Accepted = {}
        for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
            lead_crc = zlib.crc32(bytes((_PROTO, protocol)))
            for flags, bits, algorithm in itertools.product(
                (0, FLAG_BY_VALUE), backend_bits, NAMES
            ):
                wrapped = _plain_prefix(protocol, loader, bits, algorithm, flags, 0)[0]
                fields = wrapped[_PLAIN_FIELDS]
                fields_crc = zlib.crc32(fields)
                table[fields] = (wrapped[: _LEAD + _WRAP_BEFORE], fields_crc, lead_crc, algorithm)
                whole[wrapped[:_PLAIN_AFTER_FIELDS]] = (fields_crc, lead_crc, algorithm)
        if len(_ACCEPTED) >= 64:  # backend sets come and go with registrations: keep a few
            _ACCEPTED.clear()
        tables = _ACCEPTED[(loader, backend_bits)] = (whole, table)
    # The callers pass one set until it changes.
    _LAST_ACCEPTED = (loader, backend_bits, *tables)
    return tables


def accepted_first_bytes(
    loader: int, backend_bits: frozenset[int]
) -> dict[bytes, tuple[int, int, int]]:
    """What :func:`is_plain_payload` looks the first bytes of a payload with no extra field up
    in (the C fast path of ``loads`` looks them up there too): the CRC of the fields, the CRC of
    the PROTO opcode and the checksum algorithm, by the bytes up to the lengths."""
    return _accepted(loader, backend_bits)[0]


def is_plain_payload(data: bytes, loader: int, backend_bits: frozenset[int]) -> bool:
    """Whether ``data`` is, whole and intact, an envelope of the shape :func:`plain_payload`
    writes (with no flags, or the BY_VALUE flag written by this Python's minor version, and an
    extra field only if it names nothing but the backends' versions), read by ``loader`` and
    needing one of ``backend_bits``, for pickle to read as it is. ``False`` also for anything
    damaged: the general reader then says what is wrong."""
    # This runs on every small loads. The 27 bytes before the lengths take a few values only
    # (by protocol, flags, backends and checksum algorithm): one dictionary lookup checks them
    # all, and gives their CRC, so only the lengths are hashed again.
    last_loader, last_bits, whole, table = _LAST_ACCEPTED
    if last_bits is not backend_bits or last_loader != loader:
        whole, table = _accepted(loader, backend_bits)
    if len(data) < _PLAIN_SIZE:
        return False
    known = whole.get(data[:_PLAIN_AFTER_FIELDS])
    if known is None:
        return _is_plain_with_extra(data, table)  # or not a plain payload at all
    fields_crc, lead_crc, algorithm = known
    numbers: tuple[int, int, int, int, int] = _PLAIN_NUMBERS.unpack_from(data, _PLAIN_AFTER_FIELDS)
    extra_size, stored_length, raw_length, stored_checksum, header_crc = numbers
    if (
        extra_size  # the wrapping said there is none
        or stored_length + _PLAIN_SIZE != len(data)
        or raw_length != stored_length + _LEAD
        or data[_PLAIN_SIZE - 1] != _POP_BYTE
        or zlib.crc32(data[_PLAIN_AFTER_FIELDS:_PLAIN_HEADER_END], fields_crc) != header_crc
    ):
        return False
    if algorithm == CRC32 and stored_length < SMALL:
        return zlib.crc32(data[_PLAIN_SIZE:], lead_crc) == stored_checksum
    stored = memoryview(data)[_PLAIN_SIZE:]
    return compute_checksum(stored, algorithm, data[:_LEAD]) == stored_checksum


def _is_plain_with_extra(data: bytes, table: _Accepted) -> bool:
    """:func:`is_plain_payload` for a payload whose first bytes are not those of one with no
    extra field."""
    known = table.get(data[_PLAIN_FIELDS])
    if known is None:
        return False
    wrap, fields_crc, lead_crc, algorithm = known
    numbers: tuple[int, int, int, int, int] = _PLAIN_NUMBERS.unpack_from(data, _PLAIN_AFTER_FIELDS)
    extra_size, stored_length, raw_length, stored_checksum, header_crc = numbers
    start = _PLAIN_SIZE + extra_size  # where the stored payload starts
    if (
        not extra_size  # then its wrapping is wrong
        or stored_length + start != len(data)
        or raw_length != stored_length + _LEAD
        or data[start - 1] != _POP_BYTE
    ):
        return False
    extra = data[_PLAIN_SIZE - 1 : start - 1]
    if (
        data[: _LEAD + 1] != wrap[: _LEAD + 1]
        or int.from_bytes(data[_LEAD + 1 : _LEAD + _WRAP_BEFORE], "little")
        != HEADER_SIZE + extra_size
        or extra not in _PLAIN_EXTRAS
    ):
        return False
    crc = zlib.crc32(data[_PLAIN_AFTER_FIELDS:_PLAIN_HEADER_END], fields_crc)
    if zlib.crc32(extra, crc) != header_crc:
        return False
    if algorithm == CRC32 and stored_length < SMALL:
        return zlib.crc32(data[start:], lead_crc) == stored_checksum
    return compute_checksum(memoryview(data)[start:], algorithm, data[:_LEAD]) == stored_checksum


def plain_stream(data: bytes) -> bytes | None:
    """The bare pickle stream inside ``data``, a payload :func:`is_plain_payload` accepted,
    when it has no flags and no extra field (else ``None``): its PROTO opcode and what follows
    the header (one copy: a slice of bytes would be a second)."""
    if data[_PLAIN_FLAGS] or data[_PLAIN_AFTER_FIELDS : _PLAIN_AFTER_FIELDS + 4] != _NO_EXTRA:
        return None
    return b"".join((data[:_LEAD], memoryview(data)[_PLAIN_SIZE:]))


_PLAIN_FLAGS = _LEAD + _WRAP_BEFORE + len(MAGIC) + 1  # after the magic and the version: 16
_NO_EXTRA = bytes(4)


# Where is_plain_payload looks (offsets from the payload's first byte; docs/format.md).
_PLAIN_AFTER_FIELDS = _LEAD + _WRAP_BEFORE + _PLAIN_PREFIX_SIZE  # the lengths: 27
_PLAIN_HEADER_END = _LEAD + _WRAP_BEFORE + _FIXED.size  # what the header CRC covers ends: 51
_PLAIN_NUMBERS = struct.Struct("<IQQII")
_POP_BYTE = _POP[0]
PLAIN_LAYOUT: dict[str, int] = {
    "plain_size": _PLAIN_SIZE,
    "after_fields": _PLAIN_AFTER_FIELDS,
    "header_end": _PLAIN_HEADER_END,
    "lead": _LEAD,
    "small": SMALL,
    "crc32": CRC32,
    "pop": _POP_BYTE,
}
"""Where :func:`is_plain_payload` finds each part of a plain envelope, for the C fast paths of
``loads`` and ``dumps`` (which check that they read and write the same layout)."""
