"""``omnipickle.Unpickler`` over streams that can neither seek nor peek: pipes and sockets."""

from __future__ import annotations

import os
import pickle as stdlib_pickle
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import omnipickle as pickle
from helpers import Plain

KEY = b"s" * 32


def _payloads() -> list[tuple[bytes, Any]]:
    return [
        (pickle.dumps({"a": Plain(1, 2)}), {"a": Plain(1, 2)}),
        (stdlib_pickle.dumps(["plain", 3]), ["plain", 3]),
        (pickle.dumps(list(range(1000)), compression="zstd"), list(range(1000))),
        (stdlib_pickle.dumps(None, 0), None),  # protocol 0: read by lines
        (pickle.dumps(b"x" * 200_000, key=KEY), b"x" * 200_000),
    ]


def _write_in_pieces(fd: int, data: bytes, piece: int) -> None:
    with os.fdopen(fd, "wb", buffering=0) as out:
        for start in range(0, len(data), piece):
            out.write(data[start : start + piece])


@pytest.fixture
def raw_pipe() -> Iterator[tuple[Any, int]]:
    read_fd, write_fd = os.pipe()
    reader = open(read_fd, "rb", buffering=0)  # noqa: SIM115 - closed below
    try:
        yield reader, write_fd
    finally:
        reader.close()


@pytest.mark.parametrize("piece", [1, 7, 1 << 16])
def test_unpickler_reads_envelopes_and_plain_pickles_from_a_raw_pipe(
    raw_pipe: tuple[Any, int], piece: int
) -> None:
    """Data arriving a few bytes at a time: the raw pipe's short reads are made whole."""
    reader, write_fd = raw_pipe
    payloads = _payloads()
    data = b"".join(p for p, _ in payloads)
    writer = threading.Thread(target=_write_in_pieces, args=(write_fd, data, piece))
    writer.start()
    try:
        unpickler = pickle.Unpickler(reader)
        assert [unpickler.load() for _ in payloads] == [expected for _, expected in payloads]
        with pytest.raises(EOFError):
            unpickler.load()
    finally:
        writer.join()


def test_unpickler_verifies_signed_payloads_from_a_raw_pipe(raw_pipe: tuple[Any, int]) -> None:
    reader, write_fd = raw_pipe
    data = pickle.dumps("one", key=KEY) + pickle.dumps("two", key=KEY, compression="zstd")
    writer = threading.Thread(target=_write_in_pieces, args=(write_fd, data, 5))
    writer.start()
    try:
        unpickler = pickle.Unpickler(reader, key=KEY)
        assert (unpickler.load(), unpickler.load()) == ("one", "two")
    finally:
        writer.join()


def test_unpickler_reads_a_raw_pipe_the_writer_keeps_open(raw_pipe: tuple[Any, int]) -> None:
    """A short plain pickle is answered without waiting for bytes that are not coming."""
    reader, write_fd = raw_pipe
    with os.fdopen(write_fd, "wb", buffering=0) as out:
        unpickler = pickle.Unpickler(reader)
        for value in (None, 1, "x"):
            out.write(stdlib_pickle.dumps(value, 2))
            assert unpickler.load() == value
        out.write(pickle.dumps("enveloped"))
        assert unpickler.load() == "enveloped"


def test_unpickler_talks_over_a_socketpair() -> None:
    """Request and answer on one connection, as a worker would: each load returns as soon as
    its object is complete (the socket times out instead of hanging if it does not)."""
    left, right = socket.socketpair()
    right.settimeout(10)
    try:
        stream = right.makefile("rb", buffering=0)
        unpickler = pickle.Unpickler(stream)
        for data, expected in _payloads():
            left.sendall(data)
            assert unpickler.load() == expected
        left.shutdown(socket.SHUT_WR)
        with pytest.raises(EOFError):
            unpickler.load()
        stream.close()
    finally:
        left.close()
        right.close()


def test_the_plain_pickler_memo_carries_across_loads_from_a_pipe(
    raw_pipe: tuple[Any, int],
) -> None:
    """Pickler.dump twice shares one memo: the second stream refers back into the first."""
    reader, write_fd = raw_pipe
    shared = Plain([1], [2])
    with os.fdopen(write_fd, "wb", buffering=0) as out:
        pickler = pickle.Pickler(out)
        pickler.dump(shared)
        pickler.dump(shared)
    unpickler = pickle.Unpickler(reader)
    assert unpickler.load() is unpickler.load()
