"""Payload checksums: the algorithm each payload records is the one it is checked with."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import xxhash

import omnipickle
from conftest import check_python
from omnipickle import checksums
from omnipickle.format import header as envelope

S = 7  # where the magic is in a format-2 payload (docs/format.md)


def _algorithm(data: bytes) -> int:
    return envelope.parse_header(data).checksum_algorithm


def test_new_payloads_use_xxh3_past_a_few_kilobytes_and_crc32_below() -> None:
    assert checksums.preferred() == checksums.XXH3
    assert _algorithm(omnipickle.dumps({"a": 1})) == checksums.CRC32  # the fast path, tiny
    assert _algorithm(omnipickle.dumps(["x" * 10_000])) == checksums.XXH3  # fast path, larger
    assert _algorithm(omnipickle.dumps(list(range(100)))) == checksums.CRC32  # general path
    assert _algorithm(omnipickle.dumps(list(range(5000)))) == checksums.XXH3
    big = [str(i) * 50 for i in range(5000)]
    assert _algorithm(omnipickle.dumps(big, compression="gzip")) == checksums.XXH3
    # The same object gets the same bytes whichever path wrote it.
    for obj in ({"a": 1}, ["x" * 10_000]):
        assert omnipickle.dumps(obj) == omnipickle.dumps(obj, on_unpicklable="drop")


@pytest.mark.parametrize("algorithm", [checksums.CRC32, checksums.XXH3])
def test_both_algorithms_compute_what_their_libraries_do(algorithm: int) -> None:
    data, first = b"the stream" * 1000, b"\x80\x05"
    expected = (
        zlib.crc32(first + data)
        if algorithm == checksums.CRC32
        else xxhash.xxh3_64_intdigest(first + data) & 0xFFFFFFFF
    )
    assert checksums.checksum(data, algorithm, first) == expected
    state = checksums.running(algorithm)
    for piece in (first, data[:7], data[7:]):
        state.update(piece)
    assert state.value() == expected


def _rewrite_algorithm(data: bytes, algorithm: int) -> bytes:
    """``data`` (uncompressed, unsigned) with its checksum recomputed in ``algorithm``."""
    header = envelope.parse_header(data)
    stream = data[: header.lead] + data[header.payload_offset :]
    rebuilt = envelope.build_header(
        flags=header.flags,
        protocol=header.protocol,
        loader=header.loader,
        backend_bits=header.backend_bits,
        codec_id=header.codec_id,
        stored_length=header.stored_length,
        raw_length=header.raw_length,
        checksum=checksums.checksum(stream, algorithm),
        checksum_algorithm=algorithm,
        lead=data[: header.lead],
    )
    return rebuilt + data[header.payload_offset :]


@pytest.mark.parametrize("algorithm", [checksums.CRC32, checksums.XXH3])
def test_a_payload_is_checked_with_the_algorithm_it_records(algorithm: int) -> None:
    obj = {"n": list(range(500)), "s": "x" * 5000}
    data = _rewrite_algorithm(omnipickle.dumps(obj), algorithm)
    assert _algorithm(data) == algorithm
    assert omnipickle.loads(data) == obj
    assert omnipickle.loads(bytearray(data)) == obj  # the general path
    assert omnipickle.info(data).checksum_algorithm == checksums.NAMES[algorithm]
    assert omnipickle.info(data).checksum_ok
    damaged = bytearray(data)
    damaged[-3] ^= 0x01
    for attempt in (bytes(damaged), damaged):
        with pytest.raises(omnipickle.CorruptPayloadError, match="checksum mismatch"):
            omnipickle.loads(attempt)
    assert not omnipickle.info(bytes(damaged)).checksum_ok


def test_an_unknown_algorithm_is_refused_as_newer() -> None:
    data = _rewrite_algorithm(omnipickle.dumps([1, 2]), checksums.CRC32)
    forged = bytearray(data)
    forged[S + 16] = 9
    forged[S + 44 : S + 48] = zlib.crc32(forged[S : S + 44]).to_bytes(4, "little")
    with pytest.raises(omnipickle.IncompatiblePayloadError, match="checksum algorithm 9"):
        omnipickle.loads(bytes(forged))


def test_sections_are_checked_with_the_payloads_algorithm(tmp_path: Path) -> None:
    path = tmp_path / "arrays.bin"
    arrays = [np.arange(100_000.0), np.ones(50_000)]
    omnipickle.dump(arrays, path)
    data = path.read_bytes()
    header = envelope.parse_header(data)
    assert header.checksum_algorithm == checksums.XXH3
    (first, _) = envelope.sections(header)
    expected = checksums.checksum(data[first.offset : first.offset + first.stored], checksums.XXH3)
    assert first.crc == expected
    damaged = bytearray(data)
    damaged[first.offset + 10] ^= 0x01
    path.write_bytes(damaged)
    with pytest.raises(omnipickle.CorruptPayloadError, match="section"):
        omnipickle.load(path)
    with path.open("rb") as f, pytest.raises(omnipickle.CorruptPayloadError, match="section"):
        omnipickle.load(f)


def test_without_xxhash_payloads_use_crc32_and_xxh3_ones_say_what_to_install(
    tmp_path: Path,
) -> None:
    path = tmp_path / "xxh3.bin"
    path.write_bytes(omnipickle.dumps(list(range(5000))))
    out = check_python(
        code=f"""
import sys
sys.modules["xxhash"] = None  # as if it were not installed
import omnipickle
data = omnipickle.dumps(list(range(5000)))
assert data[7 + 16] == 1, data[7 + 16]
assert omnipickle.loads(data) == list(range(5000))
try:
    omnipickle.load({str(path)!r})
except omnipickle.IncompatiblePayloadError as exc:
    print("refused:", exc)
"""
    )
    assert "refused:" in out and "pip install xxhash" in out
