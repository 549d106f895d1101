"""The payload reader: the one way bytes become a checked, verified pickle stream.

Every entry point that reads (``loads``, ``load`` from a path or a file object, memory-mapped
loads, ``info``, ``scan``, the command line) goes through :func:`read` (or :func:`inspect`, which
stops before the sections). What it hands back has been read once, into memory this process owns
(or, with ``mmap_mode``, a map the caller asked for), and checked in this order: the header (its
layout, its checksum, that this release knows every codec, backend and flag it names), the
length, the signature (when a key is given), the checksums. Compressed parts are decompressed as
they arrive, straight into the buffers they become and never past the sizes the header gives;
nothing is ever unpickled here: a payload that fails a check is refused before a single opcode
runs, and no byte that was verified is read from the file a second time.
"""

from __future__ import annotations

import os
from typing import IO, Any

from .._registry import Fields
from ..backends import PICKLE_BIT, PICKLE_LOADER_ID, loader_name, names_for_bits
from ..checksums import checksum
from ..codecs import REGISTRY as CODECS
from ..codecs import Codec, codec_by_id, codec_for_magic
from ..codecs.foreign import decompress_foreign, is_foreign
from ..errors import (
    CorruptPayloadError,
    IncompatiblePayloadError,
    SignatureError,
    TruncatedPayloadError,
    UnknownCodecError,
)
from ..files import check_binary_file, is_path
from . import COMPRESSED, ENVELOPE, PLAIN
from . import header as layout
from .header import HEADER_SIZE, MAGIC, NAMED, PROBE_SIZE, SIGNATURE_SIZE, Header, Section
from .signing import Keys, Verifier
from .sniff import SNIFF_SIZE, check_looks_like_pickle
from .source import Input, PrefixedReader, as_view, file_size, take, truncated_body

__all__ = [
    "COMPRESSED",
    "ENVELOPE",
    "PLAIN",
    "Inspection",
    "Payload",
    "inspect",
    "read",
    "read_view",
]

MMAP_MODES = ("r", "c")
_PICKLE_NAMES = ("pickle",)


class Payload(Fields):
    """What :func:`read` found.

    Attributes:
        kind: :data:`ENVELOPE`, :data:`PLAIN` or :data:`COMPRESSED` (a pickle compressed whole
            by another tool).
        header: the envelope header (``None`` for plain streams).
        stream: the pickle stream, decompressed and checked (``None`` when ``file`` is set).
        file: for a plain pickle read from a file object: a reader positioned at the stream,
            which yields no more than what the unpickler asks for (the next pickle in the file
            stays where it is).
        buffers: the out-of-band buffers the payload's sections hold, in order, or ``None``.
        codec: the codec the payload was compressed with, or ``None``.
        size: how many bytes of input the payload took.
        verified: its signature verified with a key the caller gave.
        backends: the backends the stream needs at load time.
        loader: the backend whose ``loads`` reads the stream.
    """

    __slots__ = (  # noqa: RUF023 - the fields, in order
        "kind",
        "header",
        "stream",
        "file",
        "buffers",
        "codec",
        "size",
        "verified",
        "backends",
        "loader",
    )
    kind: str
    header: Header | None
    stream: memoryview | None
    file: Any
    buffers: list[Any] | None
    codec: Codec | None
    size: int
    verified: bool
    backends: tuple[str, ...]
    loader: str

    def __init__(
        self,
        kind: str,
        header: Header | None = None,
        stream: memoryview | None = None,
        file: Any = None,
        buffers: list[Any] | None = None,
        codec: Codec | None = None,
        size: int = 0,
        verified: bool = False,
        backends: tuple[str, ...] = (),
        loader: str = "pickle",
    ) -> None:
        self.kind = kind
        self.header = header
        self.stream = stream
        self.file = file
        self.buffers = buffers
        self.codec = codec
        self.size = size
        self.verified = verified
        self.backends = backends
        self.loader = loader


class Inspection(Fields):
    """What :func:`inspect` found: the header and the stream's checksum, nothing unpickled."""

    __slots__ = (  # noqa: RUF023 - the fields, in order
        "kind",
        "header",
        "codec",
        "backends",
        "loader",
        "checksum_ok",
        "stored_size",
        "raw_size",
        "protocol",
    )
    kind: str
    header: Header | None
    codec: Codec | None
    backends: tuple[str, ...]
    loader: str
    checksum_ok: bool | None
    stored_size: int
    raw_size: int | None
    protocol: int | None

    def __init__(
        self,
        kind: str,
        header: Header | None,
        codec: Codec | None,
        backends: tuple[str, ...],
        loader: str,
        checksum_ok: bool | None,
        stored_size: int,
        raw_size: int | None,
        protocol: int | None,
    ) -> None:
        self.kind = kind
        self.header = header
        self.codec = codec
        self.backends = backends
        self.loader = loader
        self.checksum_ok = checksum_ok
        self.stored_size = stored_size
        self.raw_size = raw_size
        self.protocol = protocol


# --- what a header names ------------------------------------------------------------------------


def header_codec(header: Header) -> Codec | None:
    """The codec a header names.

    Raises:
        IncompatiblePayloadError: this release (or this environment's registry) does not know
            the codec.
        CodecNotInstalledError: the codec is known but its package is not installed.
        CorruptPayloadError: the header names a codec in its extra field but gives no name.
    """
    if header.codec_id == 0:
        return None
    if header.codec_id == NAMED:
        name = header.extra.get("codec")
        if not isinstance(name, str):
            raise CorruptPayloadError("corrupt header: the codec is named but the name is missing")
        try:
            return CODECS.get(name)
        except UnknownCodecError as exc:
            raise IncompatiblePayloadError(
                f"the payload was compressed with codec {name!r}, which is not registered here"
            ) from exc
    codec = codec_by_id(header.codec_id)
    if codec is None:
        raise IncompatiblePayloadError(
            f"payload codec id {header.codec_id} is unknown to this omnipickle release"
        )
    return codec


def header_backends(header: Header) -> tuple[str, ...]:
    """The backends a header says the stream needs.

    Raises:
        IncompatiblePayloadError: a backend bit this release does not know.
        CorruptPayloadError: the extra field's list of backend names is malformed.
    """
    if header.backend_bits == PICKLE_BIT and "backends" not in header.extra:
        return _PICKLE_NAMES  # plain data: the common case, and "pickle" is always registered
    names = names_for_bits(header.backend_bits)
    named = header.extra.get("backends", [])
    if not isinstance(named, list) or not all(isinstance(n, str) for n in named):
        raise CorruptPayloadError("corrupt header: the named backends are not a list of names")
    return (*names, *named)


def header_loader(header: Header) -> str:
    """The name of the backend whose ``loads`` reads the stream.

    Raises:
        IncompatiblePayloadError: a loader id this release does not know.
        CorruptPayloadError: the loader is named in the extra field, but no name is there.
    """
    if header.loader == PICKLE_LOADER_ID:
        return "pickle"  # never unregistered (backends.PERMANENT)
    if header.loader == NAMED:
        name = header.extra.get("loader")
        if not isinstance(name, str):
            raise CorruptPayloadError("corrupt header: the loader is named but the name is missing")
        return name
    return loader_name(header.loader)


class _Plan(Fields):
    """A parsed header and everything it names, checked."""

    __slots__ = ("header", "codec", "backends", "loader", "sections")  # noqa: RUF023 - in order
    header: Header
    codec: Codec | None
    backends: tuple[str, ...]
    loader: str
    sections: list[Section]

    def __init__(
        self,
        header: Header,
        codec: Codec | None,
        backends: tuple[str, ...],
        loader: str,
        sections: list[Section],
    ) -> None:
        self.header = header
        self.codec = codec
        self.backends = backends
        self.loader = loader
        self.sections = sections


def _plan(header: Header) -> _Plan:
    codec = header_codec(header)
    if codec is not None and header.lead:
        raise CorruptPayloadError(
            "corrupt header: a compressed payload's stream cannot start before its header"
        )
    if codec is None and header.raw_length != header.stored_length + header.lead:
        raise CorruptPayloadError(
            f"corrupt header: uncompressed payload of {header.stored_length} bytes but a "
            f"stream length of {header.raw_length}"
        )
    found = layout.sections(header)
    if codec is None:
        for section in found:
            if section.stored != section.raw:
                raise CorruptPayloadError(
                    f"corrupt header: an uncompressed section of {section.stored} bytes claims "
                    f"{section.raw}"
                )
    return _Plan(header, codec, header_backends(header), header_loader(header), found)


def _unsigned(keys: Keys | None, header: Header) -> None:
    if keys is not None and not header.signed:
        raise SignatureError("a key was given but the payload is not signed")


# --- sources ------------------------------------------------------------------------------------


def _refuse_short(view: memoryview) -> None:
    """Data too short to tell that starts like an envelope is a truncated payload."""
    if layout.maybe_envelope(view):
        layout.parse_header(view)  # raises the header module's own truncation message


def _sniff(file: IO[bytes]) -> bytes:
    """The first bytes of ``file``: enough to tell an envelope of either format, and no more
    than needed (a plain pickle gets them back through :class:`PrefixedReader`)."""
    head = file.read(len(MAGIC))
    if not isinstance(head, bytes):
        raise TypeError(f"the file's read() returned {type(head).__name__}, not bytes")
    if len(head) == len(MAGIC):
        want = layout.sniff_size(head)
        while len(head) < want:
            more = file.read(want - len(head))
            if not more:
                break
            head += more
    return head


def _decompress(codec: Codec, data: Any, size: int | None) -> memoryview:
    return memoryview(codec.decompress(data, size))


def _refuse_key(data: bytes | memoryview) -> None:
    """A key was given for data that is no envelope, and so cannot be signed: say what it is."""
    codec = codec_for_magic(data)
    if codec is None and not is_foreign(data):
        check_looks_like_pickle(data)
        raise SignatureError(
            "a key was given but the data is a plain pickle stream, which cannot be signed"
        )
    what = f"{codec.name}-compressed" if codec is not None else "compressed"
    raise SignatureError(
        f"a key was given but the data is {what}, not an omnipickle payload: it cannot be signed"
    )


def _plain_from_view(view: memoryview, keys: Keys | None) -> Payload:
    if keys is not None:
        _refuse_key(view)
    codec = codec_for_magic(view)
    if codec is not None:
        return Payload(
            COMPRESSED, stream=_decompress(codec, view, None), codec=codec, size=len(view)
        )
    foreign = decompress_foreign(view)
    if foreign is not None:
        return Payload(COMPRESSED, stream=memoryview(foreign), size=len(view))
    return Payload(PLAIN, stream=view, size=len(view))


def read_view(
    view: memoryview, *, keys: Keys | None = None, exact: bool = True, mapped: bool = False
) -> Payload:
    """Read the payload at the start of ``view`` (views into it, no copies).

    Args:
        view: the bytes.
        keys: verify the signature with these keys.
        exact: refuse bytes after the payload (``loads``); otherwise they are ignored.
        mapped: ``view`` is a memory map: sections come back as views of it, their checksums
            not checked (that would read every byte).
    """
    if len(view) == 0:
        raise TruncatedPayloadError("empty payload: 0 bytes")
    start = layout.envelope_start(view)
    if start < 0:
        _refuse_short(view)
        return _plain_from_view(view, keys)
    header = layout.parse_header(view, start)
    plan = _plan(header)
    total = header.total_length
    if len(view) < total:
        raise truncated_body(total, len(view))
    if exact and len(view) > total:
        raise CorruptPayloadError(
            f"{len(view) - total} bytes follow the payload "
            f"({total} bytes): loads() reads exactly one payload"
        )
    # The checksums first (accidental damage is named as such, even with the right key), then
    # the signature, which covers every byte before its tag; only then is anything decompressed.
    stored = layout.check_payload(header, view)
    raws: list[Any] = []
    for section in plan.sections:
        if mapped:
            raws.append(view[section.offset : section.offset + section.stored])
        else:
            raws.append(layout.check_section(section, view, header.checksum_algorithm))
    verified = False
    if keys is not None and header.signed:
        verifier = Verifier(keys, header.extra.get("kid"))
        end = header.body_end
        verifier.update(view[:end])
        verifier.check(bytes(view[end : end + SIGNATURE_SIZE]))
        verified = True
    _unsigned(keys, header)
    buffers: list[Any] | None = None
    if plan.sections:
        buffers = []
        for section, raw in zip(plan.sections, raws, strict=True):
            if plan.codec is not None:
                buffers.append(bytearray(plan.codec.decompress(raw, section.raw)))
            else:
                buffers.append(raw if mapped else bytearray(raw))
    if plan.codec is None:
        stream = view[header.stream_start : header.payload_offset + header.stored_length]
    else:
        stream = _decompress(plan.codec, stored, header.raw_length)
    return Payload(
        ENVELOPE,
        header=header,
        stream=stream,
        buffers=buffers,
        codec=plan.codec,
        size=header.total_length,
        verified=verified,
        backends=plan.backends,
        loader=plan.loader,
    )


def _read_header(inp: Input, head: bytes) -> bytes:
    """The header's bytes (fixed part and extra field); a short file gets the header module's
    own messages, as bytes in memory do."""
    fixed = head + inp.upto(max(layout.fixed_size(head) - len(head), 0))
    size = layout.header_size(fixed)
    return fixed + inp.upto(max(size - len(fixed), 0))


def _read_envelope(inp: Input, head: bytes, keys: Keys | None) -> Payload:
    header_bytes = _read_header(inp, head)
    header = layout.parse_header(header_bytes)
    plan = _plan(header)
    inp.total = header.total_length
    if inp.size is not None and header.total_length > inp.size:
        raise truncated_body(header.total_length, inp.size)
    if keys is not None and header.signed:
        inp.verifier = Verifier(keys, header.extra.get("kid"))
        inp.verifier.update(header_bytes)
    codec = plan.codec
    prefix = header_bytes if codec is None and header.stream_start == 0 else b""
    stream, crc = take(
        inp,
        header.stored_length,
        header.raw_length,
        codec,
        "payload",
        header.checksum_algorithm,
        prefix=prefix,
        lead=header.lead,
    )
    damaged: CorruptPayloadError | None = None
    if crc != header.checksum:
        damaged = CorruptPayloadError(
            f"corrupt payload: checksum mismatch over {header.stored_length} bytes "
            f"(stored {header.checksum:#010x}, computed {crc:#010x})"
        )
    buffers: list[Any] | None = [] if plan.sections else None
    for section in plan.sections:
        if section.offset > inp.count:
            inp.exactly(section.offset - inp.count, "payload")  # alignment padding
        data, crc = take(
            inp, section.stored, section.raw, codec, "section", header.checksum_algorithm
        )
        if crc != section.crc and damaged is None:
            damaged = CorruptPayloadError(
                f"corrupt payload: checksum mismatch in the section at {section.offset} "
                f"(stored {section.crc:#010x}, computed {crc:#010x})"
            )
        assert buffers is not None
        buffers.append(data)
    if header.body_end > inp.count:
        inp.exactly(header.body_end - inp.count, "payload")
    verifier, inp.verifier = inp.verifier, None
    tag = bytes(inp.exactly(SIGNATURE_SIZE, "signature")) if header.signed else b""
    # As for bytes: the checksums speak first, then the signature, then what decompression found.
    if damaged is not None:
        raise damaged
    if verifier is not None:
        verifier.check(tag)
    _unsigned(keys, header)
    if inp.damaged is not None:
        raise inp.damaged
    return Payload(
        ENVELOPE,
        header=header,
        stream=memoryview(stream),
        buffers=buffers,
        codec=codec,
        size=header.total_length,
        verified=verifier is not None,
        backends=plan.backends,
        loader=plan.loader,
    )


def read_file(file: IO[bytes], *, keys: Keys | None = None, whole: bool = False) -> Payload:
    """Read one payload from the binary file ``file``, from its position.

    An envelope is read exactly (the file is left just after it). A pickle compressed whole by
    another tool is read to the end of the file (it has no inner end the reader could stop
    at). A plain pickle stream is handed back as a reader the unpickler reads from, unless
    ``whole``, which reads the rest of the file into memory.
    """
    head = _sniff(file)
    if not head:
        raise TruncatedPayloadError("empty payload: the file is at its end")
    if layout.is_envelope(head):
        size = file_size(file)
        inp = Input(file, None if size is None else size + len(head), len(head))
        return _read_envelope(inp, head, keys)
    short = len(head) < len(MAGIC) or layout.maybe_envelope(head)
    if whole or short or codec_for_magic(head) is not None or is_foreign(head):
        rest = file.read()
        return read_view(memoryview(head + rest), keys=keys, exact=False)
    if keys is not None:
        _refuse_key(head + file.read(SNIFF_SIZE - len(head)))
    return Payload(PLAIN, file=PrefixedReader(head, file))


def read(
    source: Any,
    *,
    keys: Keys | None = None,
    mmap_mode: str | None = None,
    exact: bool = True,
    whole: bool = False,
    what: str = "load",
) -> Payload:
    """Read one payload from bytes, a path or a binary file object.

    Args:
        source: bytes-like, a path (``str``/``os.PathLike``) or a binary file object.
        keys: verify the signature with these keys (refused for unsigned and plain data).
        mmap_mode: ``"r"`` or ``"c"``, a path only: map the file; its sections become views.
        exact: for bytes, refuse anything after the payload.
        whole: a plain pickle in a file is read into memory (every stream in it) instead of
            being handed back as a reader.
        what: the calling function's name, for messages.

    Raises:
        TypeError: ``source`` is none of those.
        and the errors of the checks (see the module's documentation).
    """
    if is_path(source):
        if mmap_mode is not None:
            return _read_mapped(source, keys, mmap_mode)
        with open(source, "rb") as f:
            payload = read_file(f, keys=keys, whole=True)
        return payload
    if mmap_mode is not None:
        raise TypeError("mmap_mode needs a path: a file object cannot be memory-mapped here")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return read_view(as_view(source), keys=keys, exact=exact)
    if hasattr(source, "read"):
        check_binary_file(source, "r")
        return read_file(source, keys=keys, whole=whole)
    raise TypeError(f"{what}() takes bytes, a path or a binary file, not {type(source).__name__}")


def _read_mapped(path: Any, keys: Keys | None, mode: str) -> Payload:
    if mode not in MMAP_MODES:
        raise ValueError(f"mmap_mode must be None, 'r' or 'c', not {mode!r}")
    if keys is not None:
        # A signature promises that what is unpickled is what was signed; a map is a live view
        # of a file that whoever can write the file may change after it was verified.
        raise ValueError(
            "mmap_mode cannot be combined with key=: a memory map is a live view of the file, "
            "which anyone who can write it may change after the signature was checked; load "
            "without mmap_mode (every byte is read once into memory, verified, then unpickled)"
        )
    with open(path, "rb") as f:
        head = f.read(PROBE_SIZE + HEADER_SIZE)
        if not layout.is_envelope(head):
            raise ValueError(
                f"{os.fspath(path)} is not an omnipickle payload written by dump(); only "
                "those can be memory-mapped: load it without mmap_mode"
            )
        size = layout.header_size(head)
        header = layout.parse_header(head + f.read(max(size - len(head), 0)))
        codec = header_codec(header)
        if codec is not None:
            raise ValueError(
                f"{os.fspath(path)} is {codec.name}-compressed and cannot be memory-mapped: "
                "load it without mmap_mode, or dump it with compression=None"
            )
        file_size = os.fstat(f.fileno()).st_size
        if file_size < header.total_length:
            raise truncated_body(header.total_length, file_size)
        import mmap  # only memory-mapped loads need it: not imported with omnipickle

        access = mmap.ACCESS_READ if mode == "r" else mmap.ACCESS_COPY
        mapped = mmap.mmap(f.fileno(), 0, access=access)
    return read_view(memoryview(mapped), keys=keys, exact=False, mapped=True)


def inspect(source: Any) -> Inspection:
    """Read a payload's header and check its stream's checksum, without the sections.

    A file object is read from its position and, when it can seek, put back there.
    """
    if is_path(source):
        with open(source, "rb") as f:
            return _inspect_file(f)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _inspect_view(as_view(source))
    if hasattr(source, "read"):
        check_binary_file(source, "r")
        start = _tell(source)
        try:
            return _inspect_file(source)
        finally:
            if start is not None:
                source.seek(start)
    raise TypeError(f"info() takes bytes, a path or a binary file, not {type(source).__name__}")


def _tell(file: Any) -> int | None:
    try:
        return int(file.tell()) if file.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def _inspect_view(view: memoryview) -> Inspection:
    if len(view) == 0:
        raise TruncatedPayloadError("empty payload: 0 bytes")
    if not layout.is_envelope(view):
        _refuse_short(view)
        plain = _plain_from_view(view, None)
        assert plain.stream is not None
        check_looks_like_pickle(plain.stream)
        head = bytes(plain.stream[:2])
        return Inspection(
            plain.kind,
            None,
            plain.codec,
            (),
            "pickle",
            None,
            len(view),
            len(plain.stream),
            head[1] if len(head) == 2 and head[0] == 0x80 else None,
        )
    header = layout.parse_header(view)
    plan = _plan(header)
    try:
        layout.check_payload(header, view)
        ok = True
    except CorruptPayloadError:
        ok = False
    return _inspection(plan, ok)


def _inspection(plan: _Plan, ok: bool) -> Inspection:
    header = plan.header
    return Inspection(
        ENVELOPE,
        header,
        plan.codec,
        plan.backends,
        plan.loader,
        ok,
        header.stored_length,
        header.raw_length,
        header.protocol,
    )


def _inspect_file(file: IO[bytes]) -> Inspection:
    head = _sniff(file)
    if not layout.is_envelope(head):
        return _inspect_view(memoryview(head + file.read()))
    size = file_size(file)
    inp = Input(file, None if size is None else size + len(head), len(head))
    header = layout.parse_header(_read_header(inp, head))
    plan = _plan(header)
    inp.total = header.total_length
    try:
        stored = inp.exactly(header.stored_length, "payload")
    except TruncatedPayloadError:
        return _inspection(plan, False)
    found = checksum(stored, header.checksum_algorithm, head[: header.lead])
    return _inspection(plan, found == header.checksum)
