"""Seeds, mutations and a deadline, shared by ``test_fuzz.py`` and ``benchmarks/fuzz_long.py``.

The test suite draws mutations with hypothesis (derandomized, so failures reproduce); the long
runner draws them with ``random`` for as long as asked. Both mutate the same seeds in the same
ways, through the functions below.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import decimal
import io
import pickle
import signal
import zlib
from collections.abc import Iterator
from types import FrameType
from typing import Any

import omnipickle
from helpers import Plain, Slotted, WithState
from omnipickle.codecs import REGISTRY as CODECS
from omnipickle.errors import CodecNotInstalledError
from omnipickle.format import header as envelope

KEY = b"fuzzing-key-0123456789"
DEADLINE = 5.0


class Hang(BaseException):
    """A call ran past its deadline (a BaseException, so no library code can swallow it)."""


@contextlib.contextmanager
def deadline(seconds: float = DEADLINE) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the body runs longer than ``seconds``."""

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no answer after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- seeds -------------------------------------------------------------------------------------


def plain_data() -> dict[str, Any]:
    return {
        "ints": list(range(12)),
        "text": "h\u00e9llo",
        "bytes": b"\x00\xff\x80",
        "floats": [1.5, -0.0, 1e300],
        "nested": {"t": (1, (2, 3)), "s": {1, 2}, "f": frozenset({"a"})},
        "big": 2**100,
    }


def instances() -> list[Any]:
    return [
        Plain(1, "a"),
        Slotted(2),
        WithState([1, 2]),
        collections.OrderedDict(a=1),
        datetime.datetime(2024, 1, 2, 3, 4, 5),
        decimal.Decimal("1.25"),
    ]


def _codec_names() -> list[str]:
    names = []
    for name in CODECS.names():
        try:
            codec = CODECS.get(name)
        except CodecNotInstalledError:
            continue
        if codec.name == name:  # skip aliases (xz)
            names.append(name)
    return names


def envelopes() -> dict[str, bytes]:
    """omnipickle payloads: plain data, instances, a lambda, signed, protocol 2, every codec."""
    found = {
        "plain": omnipickle.dumps(plain_data()),
        "instances": omnipickle.dumps(instances()),
        "lambda": omnipickle.dumps(lambda x: x + 1),
        "signed": omnipickle.dumps(plain_data(), key=KEY),
        "protocol-2": omnipickle.dumps(instances(), protocol=2),
        **{f"codec-{n}": omnipickle.dumps(plain_data(), compression=n) for n in _codec_names()},
    }
    try:
        import numpy as np
    except ImportError:
        return found
    # A file whose large array is stored after the stream, as a section.
    buf = io.BytesIO()
    omnipickle.dump({"a": np.arange(9000, dtype="f8"), "b": [1]}, buf)
    assert omnipickle.info(buf.getvalue()).extra.get("sections")
    found["sections"] = buf.getvalue()
    return found


def plain_streams(payloads: dict[str, bytes]) -> dict[str, bytes]:
    """Bare pickle streams: of several protocols, and the ones inside some ``payloads``."""
    return {
        **{f"data-p{p}": pickle.dumps(plain_data(), p) for p in (0, 2, 5)},
        **{f"instances-p{p}": pickle.dumps(instances(), p) for p in (2, 5)},
        **{
            f"inner-{name}": bytes(envelope.check_payload(envelope.parse_header(p), p))
            for name, p in payloads.items()
            if name in ("plain", "instances", "lambda")
        },
    }


# --- mutations (positions are taken modulo the data's length) ------------------------------------


def flip(data: bytes, pos: int, bit: int) -> bytes:
    out = bytearray(data)
    if out:
        out[pos % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def overwrite(data: bytes, pos: int, chunk: bytes) -> bytes:
    if not data:
        return chunk
    pos %= len(data)
    return data[:pos] + chunk + data[pos + len(chunk) :]


def truncate(data: bytes, length: int) -> bytes:
    return data[: length % (len(data) + 1)]


def splice(data: bytes, other: bytes, cut: int, cut_other: int) -> bytes:
    """The start of ``data``, then the end of ``other`` (a non-empty seed)."""
    return data[: cut % (len(data) + 1)] + other[cut_other % len(other) :]


def insert(data: bytes, pos: int, chunk: bytes) -> bytes:
    pos %= len(data) + 1
    return data[:pos] + chunk + data[pos:]


def header_field(data: bytes, pos: int, value: int) -> bytes:
    """Change one byte of an envelope's fixed fields, and fix the header checksum up.

    The header is checked by its CRC first: fixing it up makes the parser go on to check
    the field itself.
    """
    out = bytearray(data)
    start = envelope.parse_header(data).start  # 5 in format 2, 0 in format 1
    out[start + 8 + pos % 36] = value
    size = int.from_bytes(out[start + 20 : start + 24], "little")
    extra = bytes(out[start + 48 : start + 48 + size])
    crc = zlib.crc32(extra, zlib.crc32(bytes(out[start : start + 44])))
    out[start + 44 : start + 48] = crc.to_bytes(4, "little")
    return bytes(out)
