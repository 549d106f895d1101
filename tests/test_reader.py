"""The payload reader: each byte read once, checked before anything is unpickled."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import omnipickle
from omnipickle.format import reader, source

KEY = b"k" * 16


def test_loads_refuses_bytes_after_a_payload() -> None:
    data = omnipickle.dumps({"a": 1}, key=KEY)
    with pytest.raises(omnipickle.CorruptPayloadError, match="3 bytes follow the payload"):
        omnipickle.loads(data + b"xyz", key=KEY)
    with pytest.raises(omnipickle.CorruptPayloadError, match="1 bytes follow"):
        omnipickle.loads(data + b"\0")


def test_load_from_a_file_reads_exactly_one_payload_and_stops_after_it() -> None:
    first = omnipickle.dumps([1], compression="zstd", key=KEY)
    second = omnipickle.dumps([2])
    f = io.BytesIO(first + second + b"tail")
    assert omnipickle.load(f, key=KEY) == [1]
    assert f.tell() == len(first)
    assert omnipickle.load(f) == [2]
    assert f.read() == b"tail"


@pytest.mark.parametrize("compression", [None, "zstd", "gzip"])
def test_a_file_changed_after_load_returned_changes_nothing_loaded(
    tmp_path: Path, compression: str | None
) -> None:
    path = tmp_path / "arrays.bin"
    arrays = {"a": np.arange(200_000, dtype=np.int64), "b": np.ones((300, 300))}
    omnipickle.dump(arrays, path, compression=compression, key=KEY)
    loaded = omnipickle.load(path, key=KEY)
    # Overwrite every byte of the file in place: nothing loaded may be a view of it.
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.write(b"\xff" * size)
    assert np.array_equal(loaded["a"], arrays["a"])
    assert np.array_equal(loaded["b"], arrays["b"])


def test_what_the_reader_hands_over_is_memory_it_owns(tmp_path: Path) -> None:
    """The stream and the sections are fresh buffers, never views of the file or of a buffer
    the file's reader could refill."""
    path = tmp_path / "signed.bin"
    omnipickle.dump({"x": np.arange(100_000)}, path, key=KEY)
    payload = reader.read(path, keys=(KEY,))
    assert payload.verified
    assert payload.stream is not None and isinstance(payload.stream.obj, bytearray)
    assert payload.buffers is not None and payload.buffers
    assert all(type(b) is bytearray for b in payload.buffers)


def test_info_on_a_file_object_leaves_it_where_it_was() -> None:
    first = omnipickle.dumps([1])
    f = io.BytesIO(b"" + first + omnipickle.dumps([2]))
    assert omnipickle.info(f).format == "omnipickle"
    assert f.tell() == 0
    assert omnipickle.load(f) == [1]
    assert omnipickle.info(f).raw_size is not None
    assert omnipickle.load(f) == [2]


def test_info_of_a_path_does_not_read_the_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.bin"
    omnipickle.dump({"x": np.zeros(4_000_000)}, path)  # a 32 MB section
    read: list[int] = []
    real = source.Input.exactly

    def counting(self: source.Input, n: int, what: str) -> bytearray:
        read.append(n)
        return real(self, n, what)

    monkeypatch.setattr(source.Input, "exactly", counting)
    about = omnipickle.info(path)
    assert about.checksum_ok
    assert sum(read) < 1 << 20


def test_compression_none_means_no_compression_even_for_a_compressing_suffix(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.pkl.zst"
    omnipickle.dump([1], path, compression="none")
    assert omnipickle.info(path).codec is None
    assert omnipickle.dumps([1], compression="none") == omnipickle.dumps([1])


def test_a_lying_length_in_a_pipe_costs_only_what_arrives() -> None:
    """A header promising a terabyte over a non-seekable stream is refused once the stream
    ends, without allocating what it promised."""
    data = bytearray(omnipickle.dumps([1]))
    from omnipickle.format import header as layout

    head = layout.parse_header(bytes(data))
    forged = layout.build_header(
        flags=head.flags,
        protocol=head.protocol,
        loader=head.loader,
        backend_bits=head.backend_bits,
        codec_id=head.codec_id,
        stored_length=1 << 40,
        raw_length=(1 << 40) + head.lead,
        checksum=head.checksum,
        lead=bytes(data[: head.lead]),
    )

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            return self._data.readinto(b)

    with pytest.raises(omnipickle.TruncatedPayloadError):
        omnipickle.load(io.BufferedReader(Pipe(forged + bytes(data[head.payload_offset :]))))


def test_a_memory_map_is_never_combined_with_a_signature(tmp_path: Path) -> None:
    """A map is a live view of the file: bytes verified through it could change afterwards."""
    path = tmp_path / "signed.bin"
    omnipickle.dump({"x": np.arange(100_000)}, path, key=KEY)
    with pytest.raises(ValueError, match="mmap_mode cannot be combined with key="):
        omnipickle.load(path, key=KEY, mmap_mode="r")
    assert np.array_equal(omnipickle.load(path, key=KEY)["x"], np.arange(100_000))


def test_a_lying_compressed_length_in_a_pipe_allocates_nothing_it_promises() -> None:
    """Over a pipe nothing vouches for the stored length: a zstd header promising a terabyte
    stored (and 64 times that raw) is refused when the bytes run out, not with MemoryError."""
    from omnipickle.format import header as layout

    data = omnipickle.dumps([1] * 10, compression="zstd")
    head = layout.parse_header(data)
    forged = layout.build_header(
        flags=head.flags,
        protocol=head.protocol,
        loader=head.loader,
        backend_bits=head.backend_bits,
        codec_id=head.codec_id,
        stored_length=1 << 40,
        raw_length=1 << 46,
        checksum=head.checksum,
    )

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            return self._data.readinto(b)

    with pytest.raises(omnipickle.UnpicklingError):
        omnipickle.load(io.BufferedReader(Pipe(forged + data[head.payload_offset :])))
