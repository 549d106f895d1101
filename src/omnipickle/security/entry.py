"""The entry points of the security package that read payloads: ``scan`` and
``verify_signature``. Both go through the one payload reader (:mod:`omnipickle.format.reader`),
so they check exactly what ``loads`` checks, in the same order, with the same errors."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO

from ..format.describe import envelope_info
from ..format.reader import ENVELOPE, read
from ..format.signing import KeyArgument, check_keys
from .policy import Policy
from .scan import ScanReport, scan_stream

__all__ = ["Source", "scan", "verify_signature"]

Source = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


def verify_signature(data_or_path: Source, key: KeyArgument) -> None:
    """Check a payload's HMAC-SHA256 signature without unpickling anything.

    Args:
        data_or_path: the payload's bytes, a path, or a binary file object.
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
    read(data_or_path, keys=keys, exact=False, whole=True, what="verify_signature")


def scan(
    data_or_path: Source,
    *,
    allow: Iterable[str] | None = (),
    trusted: bool = False,
    key: KeyArgument | None = None,
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
        key: verify the payload's signature with this key (or list of keys) first; if it
            verifies, the verdict is that of a trusted load, as for ``loads(..., key=key)``.

    Returns:
        A :class:`ScanReport`; ``str()`` of it is a table.

    Raises:
        TruncatedPayloadError: the payload is empty or ends early.
        CorruptPayloadError: the header, the checksum, the compression or the pickle stream
            is damaged.
        IncompatiblePayloadError: a format, flag, codec or backend this release does not know.
        SignatureError: ``key`` was given and the payload is unsigned or does not verify.
        CodecNotInstalledError: the payload's codec needs a package that is not installed.
        TypeError, ValueError: the argument is of the wrong type, or ``allow`` is malformed.
    """

    policy = Policy(allow, trusted)
    payload = read(data_or_path, keys=check_keys(key), exact=False, whole=True, what="scan")
    if payload.verified:
        policy = Policy(allow, True)
    assert payload.stream is not None
    if payload.kind == ENVELOPE:
        assert payload.header is not None
        described = envelope_info(payload)
        return scan_stream(
            payload.stream,
            policy,
            fmt=ENVELOPE,
            codec=payload.codec.name if payload.codec is not None else None,
            size=payload.size,
            info=described,
            backends=described.backends,
            by_value=payload.header.by_value,
        )
    return scan_stream(
        payload.stream,
        policy,
        fmt=payload.kind,
        codec=payload.codec.name if payload.codec is not None else None,
        size=payload.size,
    )
