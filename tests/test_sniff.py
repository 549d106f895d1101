"""What is a pickle at all (``omnipickle.format.sniff``): every real pickle, whole or cut short,
passes; text, random bytes and streams no unpickler could follow are refused."""

from __future__ import annotations

import pickle
import random
import threading
import weakref
from typing import Any

import cloudpickle
import dill
import pytest

import omnipickle
from helpers import Plain
from omnipickle.errors import CorruptPayloadError
from omnipickle.format.sniff import SNIFF_SIZE, check_looks_like_pickle
from payloads import plain_data


def _objects() -> list[Any]:
    shared = [1, 2]
    return [
        None,
        plain_data(),
        [Plain(1, 2), Plain("a", None)],
        {"shared": shared, "again": shared, "set": {1, 2}, "frozen": frozenset({3})},
        [{"id": i, "name": f"n{i}", "t": (i, -i, i * 0.5)} for i in range(300)],
        bytearray(b"x" * 70_000),  # longer than what is parsed
    ]


def _streams() -> list[bytes]:
    streams = [
        pickle.dumps(obj, p) for obj in _objects() for p in range(pickle.HIGHEST_PROTOCOL + 1)
    ]
    streams += [
        cloudpickle.dumps(lambda x, k=3: x + k),
        dill.dumps(weakref.ref(Plain)),
        dill.dumps(threading.Lock()),
        omnipickle.dumps([lambda x: x, threading.Lock()], raw=True),
        pickle.dumps(pickle.PickleBuffer(bytearray(b"abc")), 5, buffer_callback=lambda b: False),
    ]
    return streams


def _first_opcode_end(stream: bytes) -> int:
    import pickletools

    ops = pickletools.genops(stream)
    next(ops)
    return next(ops)[2]


@pytest.mark.parametrize("stream", _streams())
def test_every_real_pickle_passes_whole_and_at_every_cut(stream: bytes) -> None:
    """Every cut past its first opcode (or inside PROTO, which no text starts with): a cut
    inside the first opcode of a protocol 0 or 1 stream is a few bytes, refused like text."""
    check_looks_like_pickle(stream)
    first = 1 if stream[0] == 0x80 else _first_opcode_end(stream)
    cuts = range(first, min(len(stream), SNIFF_SIZE + 1))
    step = max(1, len(cuts) // 400)  # every cut of small streams, 400 of large ones
    for end in list(cuts)[::step]:
        check_looks_like_pickle(stream[:end])


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"hello world\nthis is text\n", "not an omnipickle payload or a pickle stream"),
        (b"Some text without a newline", "not an omnipickle payload"),
        (b".", "takes 1 value(s) from a stack of 0"),
        (b"(.", "takes 1 value(s) from a stack of 0"),
        (b"\x80\x04\x94.", "damaged pickle stream: MEMOIZE at byte 2 takes 1 value"),
        (b"\x80\x04h\x07.", "reads memo entry 7, which was never set"),
        (b"\x80\x05e.", "APPENDS at byte 2 needs a MARK"),
        (b"\x80\x05\xff", "damaged pickle stream"),
        (b"c__built", "no newline"),  # protocol 0, cut inside its first opcode
    ],
)
def test_what_no_unpickler_could_follow_is_refused(data: bytes, what: str) -> None:
    with pytest.raises(CorruptPayloadError) as caught:
        check_looks_like_pickle(data)
    assert what in str(caught.value)


def test_random_bytes_are_almost_always_refused() -> None:
    """Some random strings parse as far as they go (an opcode whose argument runs to the end
    looks like a cut pickle); fewer than one in a hundred."""
    rng = random.Random(7)
    passed = 0
    for _ in range(5000):
        try:
            check_looks_like_pickle(rng.randbytes(64))
        except CorruptPayloadError:
            continue
        passed += 1
    assert passed < 50
