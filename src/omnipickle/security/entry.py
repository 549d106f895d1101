"""The entry points of the security package that read payloads: ``scan`` and
``verify_signature``. Both go through the one payload reader (:mod:`omnipickle.format.reader`),
so they check exactly what ``loads`` checks, in the same order, with the same errors."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterable, Mapping
from typing import IO, Any

from ..codecs import IncrementalCodec, codec_for_magic
from ..errors import (
    CorruptPayloadError,
    IncompatiblePayloadError,
    SignatureError,
    TruncatedPayloadError,
)
from ..files import check_binary_file, is_path
from ..format.describe import envelope_info
from ..format.header import MAGIC
from ..format.reader import COMPRESSED, ENVELOPE, PLAIN, Payload, read, read_file, read_view
from ..format.signing import KeyArgument, Keys, check_keys
from ..format.sniff import SNIFF_SIZE, check_looks_like_pickle
from ..format.source import PrefixedReader, as_view
from ..urls import check_storage_options, is_url, open_url
from .policy import Policy, read_allow
from .report import ScanReport, combine
from .scan import Walker, walk_all, walk_one
from .source import LIMITS, ExactReader, ViewFile

__all__ = ["Source", "scan", "verify_signature"]

Source = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


def verify_signature(data_or_path: Source, key: KeyArgument) -> None:
    """Check a payload's HMAC-SHA256 signature without unpickling anything.

    Args:
        data_or_path: the payload's bytes, a path, a URL (read through fsspec with default
            options), or a binary file object.
        key: the signing key (bytes, at least 16 of them), or a list of keys (key rotation:
            the payload verifies if one of them signed it).

    Raises:
        SignatureError: the payload is not signed, is a plain pickle stream, or its signature
            does not verify under ``key``.
        TruncatedPayloadError, CorruptPayloadError: the payload is damaged.
        TypeError, ValueError: ``key`` is not bytes, or shorter than 16 bytes.
    """
    keys = check_keys(key)
    if keys is None:
        raise TypeError("verify_signature() needs a key, not None")
    if is_url(data_or_path):
        with open_url(data_or_path) as f:  # type: ignore[arg-type]  # is_url said so
            read_file(f, keys=keys, whole=True)
        return
    read(data_or_path, keys=keys, exact=False, whole=True, what="verify_signature")


def scan(
    data_or_path: Source,
    *,
    allow: Iterable[str] | None = (),
    trusted: bool = False,
    key: KeyArgument | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ScanReport:
    """Report what a payload would import and call, without executing anything.

    Scans every pickle stream a sequence of ``load(f)`` calls would read from the data, in
    order: omnipickle payloads (the envelope is checked and the stream decompressed), plain
    pickle streams (as ``pickle.dump`` writes them to one file, one after the other), pickle
    streams compressed whole (each member of a gzip, xz, bz2, zstd or lz4 file) and whatever
    follows each of them. Every global a stream imports is listed with what the stream does
    with it, and checked against the rules of :func:`restricted_loads`: the report's
    ``refused`` lists what a restricted load would refuse, ``accepted`` says whether it would
    load. Dill blobs nested inside are scanned too. ``per_stream`` has one report per stream;
    the report itself sums them up, and is refused if any stream is refused or damaged.

    Memory and time are bounded: streams are read as the unpickler reads them, without
    keeping what the verdict does not need, and compressed data that declares no size may
    inflate to 200 times its size (at least 256 MiB), no further.

    The verdict is conservative: a stream that changes a global itself, or that builds a
    global's name in a way that cannot be followed without running it, is reported as
    refused. Prefix patterns are checked by name only (a restricted load also checks that
    the object is defined under the prefix).

    Args:
        data_or_path: the payload's bytes, a path, or a binary file object (read from its
            current position to its end).
        allow: extra allowed globals, as for :func:`restricted_loads`.
        trusted: give the verdict of a trusted load (code by value accepted).
        key: verify the payload's signature with this key (or list of keys) first; if it
            verifies, the verdict is that of a trusted load, as for ``loads(..., key=key)``.
        storage_options: for a URL (a ``str`` with ``://``, read through fsspec): passed to
            its file system.

    Returns:
        A :class:`ScanReport`; ``str()`` of it is a table.

    Raises:
        TruncatedPayloadError: the payload is empty or ends early.
        CorruptPayloadError: the header, the checksum, the compression or the first pickle
            stream is damaged, or compressed data inflates past the limit (a later stream
            that is damaged is reported, refused, instead).
        IncompatiblePayloadError: a format, flag, codec or backend this release does not know.
        SignatureError: ``key`` was given and the payload is unsigned or does not verify.
        CodecNotInstalledError: the payload's codec needs a package that is not installed.
        TypeError, ValueError: the argument is of the wrong type, or ``allow`` is malformed.
    """
    allow = read_allow(allow)  # used twice (a verified payload's streams get trusted=True)
    policy = Policy(allow, trusted)
    keys = check_keys(key)
    check_storage_options(data_or_path, storage_options)
    if is_url(data_or_path):
        with open_url(data_or_path, storage_options) as f:  # type: ignore[arg-type]
            return _scan(ExactReader(f), policy, allow, keys)
    if is_path(data_or_path):
        with open(data_or_path, "rb") as f:  # type: ignore[arg-type]  # is_path() said so
            return _scan(ExactReader(f), policy, allow, keys)
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        view = as_view(data_or_path)
        return _scan(ExactReader(ViewFile(view)), policy, allow, keys, view)
    if hasattr(data_or_path, "read"):
        check_binary_file(data_or_path, "r")
        # Read from the file's position to its end, and put back there when the file can
        # seek, so that a scan before a load does not take the payload away from the load.
        file: Any = data_or_path
        start = _position(file)
        try:
            return _scan(ExactReader(file), policy, allow, keys)
        finally:
            if start is not None:
                file.seek(start)
    raise TypeError(
        f"scan() takes bytes, a path or a binary file, not {type(data_or_path).__name__}"
    )


def _position(file: Any) -> int | None:
    try:
        return int(file.tell()) if file.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def _scan(
    src: ExactReader,
    policy: Policy,
    allow: Iterable[str] | None,
    keys: Keys | None,
    view: memoryview | None = None,
) -> ScanReport:
    """Every stream from ``src``, as a sequence of ``load`` calls would read them (bytes in
    memory, ``view``, are read as ``loads`` reads them)."""
    if not src.peek(1):
        raise TruncatedPayloadError("empty payload: 0 bytes")
    parts: list[ScanReport] = []
    notes: list[str] = []
    while src.peek(1):
        first = not parts
        if len(parts) >= LIMITS["streams"]:
            parts.append(_unread(policy, src.pos, f"more than {LIMITS['streams']:,} streams"))
            break
        head = src.peek(len(MAGIC))
        codec = codec_for_magic(head) if head != MAGIC else None
        if isinstance(codec, IncrementalCodec):
            parts += _members(src, codec, policy, first, notes)
            break
        offset = src.pos
        try:
            payload = _next(src, keys, view)
        except _UNREADABLE as exc:
            if first:
                raise
            parts.append(_unread(policy, offset, f"{type(exc).__name__}: {exc}"))
            break
        here = Policy(allow, True) if payload.verified else policy
        if payload.file is not None:  # a plain stream: walked from the file, as unpickled
            src.unread(payload.file.head)
            if first:
                check_looks_like_pickle(src.peek(SNIFF_SIZE))
            parts.append(walk_one(src, here, strict=first, fmt=payload.kind, offset=offset))
        else:
            assert payload.stream is not None
            if first and payload.kind == COMPRESSED and len(payload.stream):
                check_looks_like_pickle(payload.stream)
            parts += _in_memory(payload, here, first)
        if parts[-1].damaged is not None or payload.kind == COMPRESSED:
            break
    return combine(parts, src.pos, notes)


def _next(src: ExactReader, keys: Keys | None, view: memoryview | None) -> Payload:
    """The payload at ``src``'s position, read by the one reader; a plain stream is left for
    the walker to read (``file`` is then set, or ``stream`` for bytes in memory)."""
    if view is None:
        return read_file(src, keys=keys, whole=False)  # type: ignore[arg-type]
    payload = read_view(view[src.pos :], keys=keys, exact=False)
    if payload.kind == ENVELOPE:
        src.skip(payload.size, "the payload")
    elif payload.kind == PLAIN:
        payload.file, payload.stream = _AT_SOURCE, None
    return payload


_AT_SOURCE = PrefixedReader(b"", io.BytesIO())
"""Where a plain stream in memory is: at the source's position, nothing read of it yet."""


# What reading a payload after the first may raise: reported as that stream's damage.
_UNREADABLE = (CorruptPayloadError, SignatureError, IncompatiblePayloadError, ImportError)


def _unread(policy: Policy, offset: int, why: str) -> ScanReport:
    return Walker(policy).report(fmt="unknown", offset=offset, damaged=why)


def _in_memory(payload: Payload, policy: Policy, first: bool) -> list[ScanReport]:
    """The streams of an envelope (or of a pickle another tool compressed whole)."""
    assert payload.stream is not None
    where: dict[str, Any] = {
        "fmt": payload.kind,
        "codec": payload.codec.name if payload.codec is not None else None,
    }
    if payload.kind == ENVELOPE:
        assert payload.header is not None
        described = envelope_info(payload)
        where.update(info=described, backends=described.backends, by_value=payload.header.by_value)
    if not len(payload.stream):
        raise TruncatedPayloadError("empty pickle stream: 0 bytes")
    parts = walk_all(ExactReader(ViewFile(payload.stream)), policy, strict=first, **where)
    if payload.verified:
        parts = [dataclasses.replace(part, verified=True) for part in parts]
    return parts


def _members(
    src: ExactReader, codec: IncrementalCodec, policy: Policy, first: bool, notes: list[str]
) -> list[ScanReport]:
    """Each member of a file compressed whole: ``load`` unpickles the first; other readers
    (``gzip.open`` and ``pickle.load`` in turn) read on into the next."""
    data = src.read()
    parts: list[ScanReport] = []
    count = 0
    for _, content in codec.members(data):
        count += 1
        if first and not parts:
            if not content:
                raise TruncatedPayloadError("empty pickle stream: 0 bytes")
            check_looks_like_pickle(content)
        parts += walk_all(
            ExactReader(ViewFile(memoryview(content))),
            policy,
            strict=first and not parts,
            fmt=COMPRESSED,
            codec=codec.name,
        )
        if parts and parts[-1].damaged is not None:
            return parts
    if count > 1:
        notes.append(f"{count} {codec.name} members: load() unpickles the first; each was scanned")
    return parts
