"""The entry points that read a payload: :func:`scan` and :func:`verify_signature`.

They take bytes, a path or a binary file, check the envelope, verify or decompress, and hand
the pickle stream to :func:`~.scan.scan_stream`. Nothing here unpickles anything.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Sequence
from typing import IO, Any

from .. import envelope
from ..codecs import REGISTRY as CODECS
from ..codecs import Codec, codec_by_id, codec_for_magic, decompress_foreign
from ..errors import (
    CorruptPayloadError,
    IncompatiblePayloadError,
    OmnipickleError,
    SignatureError,
    TruncatedPayloadError,
    UnknownCodecError,
)
from ..files import check_binary_file, is_path
from .policy import Policy
from .scan import ScanReport, scan_stream

__all__ = ["Source", "scan", "verify_signature"]

Source = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]

_MIN_KEY = 16


def _read(data_or_path: Source, what: str) -> memoryview:
    if is_path(data_or_path):
        with open(data_or_path, "rb") as f:  # type: ignore[arg-type]
            view = memoryview(f.read())
    elif isinstance(data_or_path, (bytes, bytearray, memoryview)):
        view = memoryview(data_or_path)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
    elif hasattr(data_or_path, "read"):
        check_binary_file(data_or_path, "r")
        data = data_or_path.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"the file's read() returned {type(data).__name__}, not bytes")
        view = memoryview(data)
    else:
        raise TypeError(
            f"{what}() takes bytes, a path or a binary file, not {type(data_or_path).__name__}"
        )
    if len(view) == 0:
        raise TruncatedPayloadError("empty payload: 0 bytes")
    return view


def _envelope_codec(header: envelope.Header) -> Codec | None:
    if header.codec_id == 0:
        return None
    if header.codec_id == envelope.NAMED:
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


def _signing_keys(key: Any) -> list[bytes]:
    keys = list(key) if isinstance(key, (list, tuple)) else [key]
    if not keys:
        raise ValueError("key is an empty list: give at least one key")
    checked = []
    for one in keys:
        if not isinstance(one, (bytes, bytearray, memoryview)):
            raise TypeError(f"key must be bytes, not {type(one).__name__}")
        raw = bytes(one)
        if len(raw) < _MIN_KEY:
            raise ValueError(f"key must be at least {_MIN_KEY} bytes long, got {len(raw)}")
        checked.append(raw)
    return checked


def verify_signature(
    data_or_path: Source, key: bytes | bytearray | memoryview | Sequence[bytes]
) -> None:
    """Check a payload's HMAC-SHA256 signature without unpickling anything.

    Args:
        data_or_path: the payload's bytes, a path, or a binary file object.
        key: the signing key (bytes, at least 16 of them), or a list of keys (key rotation:
            the payload verifies if one of them signed it).

    Raises:
        SignatureError: the payload is not signed, is a plain pickle stream, or its signature
            does not verify under ``key``.
        TruncatedPayloadError, CorruptPayloadError: the payload is damaged (checked first:
            a damaged payload is reported as such, not as a bad signature).
        TypeError, ValueError: ``key`` is not bytes, or shorter than 16 bytes.
    """
    keys = _signing_keys(key)
    view = _read(data_or_path, "verify_signature")
    if not envelope.is_envelope(view):
        raise SignatureError("not an omnipickle payload: a plain pickle stream cannot be signed")
    header = envelope.parse_header(view)
    envelope.check_payload(header, view)
    if not header.signed:
        raise SignatureError("the payload is not signed")
    end = header.body_end
    tag = bytes(view[end : end + envelope.SIGNATURE_SIZE])
    matched = False
    for one in keys:  # every key is tried: the time taken says nothing about which matched
        matched |= hmac.compare_digest(hmac.new(one, view[:end], hashlib.sha256).digest(), tag)
    if not matched:
        raise SignatureError(
            "the payload's signature does not verify: wrong key, or the payload was altered"
        )


def _decompress(codec: Codec, data: memoryview, size: int | None) -> memoryview:
    try:
        return memoryview(codec.decompress(data, size))
    except OmnipickleError:
        raise
    except Exception as exc:
        # Whatever a codec's package raises on bad input (lzma.LZMAError, OverflowError for
        # an absurd length...), for scan it means one thing: the compressed stream is damaged.
        raise CorruptPayloadError(
            f"the {codec.name}-compressed payload is damaged: {type(exc).__name__}: {exc}"
        ) from exc


def scan(
    data_or_path: Source, *, allow: Iterable[str] | None = (), trusted: bool = False
) -> ScanReport:
    """Report what a payload would import and call, without executing anything.

    Reads omnipickle payloads (the envelope is checked and the stream decompressed), plain
    pickle streams (several in a row, as ``pickle.dump`` writes them to one file), and pickle
    streams compressed whole. Every global the stream imports is listed with what the stream
    does with it, and checked against the rules of :func:`restricted_loads`: the report's
    ``refused`` lists what a restricted load would refuse, ``accepted`` says whether it would
    load. Dill blobs nested inside are scanned too.

    The verdict is conservative: a stream that changes a global itself, or that builds a
    global's name in a way that cannot be followed without running it, is reported as
    refused. Prefix patterns are checked by name only (a restricted load also checks that
    the object is defined under the prefix).

    Args:
        data_or_path: the payload's bytes, a path, or a binary file object (read from its
            current position to its end).
        allow: extra allowed globals, as for :func:`restricted_loads`.
        trusted: give the verdict of a trusted load (code by value accepted).

    Returns:
        A :class:`ScanReport`; ``str()`` of it is a table.

    Raises:
        TruncatedPayloadError: the payload is empty or ends early.
        CorruptPayloadError: the header, the checksum, the compression or the pickle stream
            is damaged.
        IncompatiblePayloadError: a format, flag or codec this release does not know.
        CodecNotInstalledError: the payload's codec needs a package that is not installed.
        TypeError, ValueError: the argument is of the wrong type, or ``allow`` is malformed.
    """
    policy = Policy(allow, trusted)
    view = _read(data_or_path, "scan")
    if envelope.is_envelope(view):
        header = envelope.parse_header(view)
        payload = envelope.check_payload(header, view)
        codec = _envelope_codec(header)
        stream: memoryview = payload
        if codec is not None:
            stream = _decompress(codec, payload, header.raw_length)
        elif header.raw_length != header.stored_length:
            raise CorruptPayloadError(
                f"corrupt header: uncompressed payload of {header.stored_length} bytes but a "
                f"stream length of {header.raw_length}"
            )
        # Large buffers stored after the stream: data only, but a damaged one fails the load.
        for section in envelope.sections(header):
            envelope.check_section(section, view)
        from ..api import info  # api imports this package: here until info moves below both

        described = info(view)
        return scan_stream(
            stream,
            policy,
            fmt="omnipickle",
            codec=codec.name if codec is not None else None,
            size=len(view),
            info=described,
            backends=described.backends,
            by_value=header.by_value,
        )
    if len(view) < len(envelope.MAGIC) and envelope.MAGIC.startswith(view):
        raise TruncatedPayloadError(
            f"truncated payload: {len(view)} bytes, shorter than the "
            f"{envelope.HEADER_SIZE}-byte header"
        )
    found = codec_for_magic(view)
    if found is not None:
        return scan_stream(
            _decompress(found, view, None),
            policy,
            fmt="compressed pickle",
            codec=found.name,
            size=len(view),
        )
    # Formats other tools write that omnipickle only reads (compress_pickle's zip, joblib's).
    try:
        foreign = decompress_foreign(view)
    except OmnipickleError:
        raise
    except Exception as exc:
        # As in _decompress: whatever the format's decoder raises means damaged data.
        raise CorruptPayloadError(f"the compressed data is damaged: {exc}") from exc
    if foreign is not None:
        return scan_stream(memoryview(foreign), policy, fmt="compressed pickle", size=len(view))
    return scan_stream(view, policy, fmt="pickle")
