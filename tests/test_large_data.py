"""Large data: sections for big buffers, streaming dumps and loads, memory-mapped loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import omnipickle
from omnipickle.format import header as envelope
from omnipickle.format import source, writer

CODECS = [None, *sorted(omnipickle.codecs())]


def _arrays() -> dict[str, Any]:
    return {
        "big": np.arange(500_000, dtype=np.float64),
        "matrix": np.ones((300, 400), dtype=np.float32) * 3,
        "fortran": np.asfortranarray(np.arange(200_000, dtype=np.int32).reshape(400, 500)),
        "small": np.arange(10),
        "meta": {"name": "run-1", "rows": [{"i": i} for i in range(1000)]},
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        all(
            np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype
            for k in ("big", "matrix", "fortran", "small")
        )
        and a["meta"] == b["meta"]
    )


@pytest.mark.parametrize("codec", CODECS)
def test_arrays_go_to_sections_and_load_writable(tmp_path: Path, codec: Any) -> None:
    path = tmp_path / "arrays.bin"
    data = _arrays()
    omnipickle.dump(data, path, compression=codec)
    about = omnipickle.info(path)
    assert len(about.extra["sections"]) == 3  # the three large arrays, not the small one
    out = omnipickle.load(path)
    assert _same(out, data)
    assert out["big"].flags.writeable and out["fortran"].flags.f_contiguous
    # The same file, read into memory, loads too.
    assert _same(omnipickle.loads(path.read_bytes()), data)


def test_sections_are_aligned_for_any_dtype(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    omnipickle.dump(_arrays(), path)
    assert all(s["offset"] % 64 == 0 for s in omnipickle.info(path).extra["sections"])


def test_mmap_read_gives_read_only_views_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    omnipickle.dump(_arrays(), path)
    out = omnipickle.load(path, mmap_mode="r")
    assert _same(out, _arrays())
    assert not out["big"].flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        out["big"][0] = 1.0


def test_mmap_copy_on_write_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    omnipickle.dump(_arrays(), path)
    out = omnipickle.load(path, mmap_mode="c")
    out["big"][0] = 42.0
    assert out["big"][0] == 42.0
    assert omnipickle.load(path)["big"][0] == 0.0


def test_mmap_refusals_say_why(tmp_path: Path) -> None:
    omnipickle.dump(_arrays(), tmp_path / "z.zst")
    with pytest.raises(ValueError, match="zstd-compressed and cannot be memory-mapped"):
        omnipickle.load(tmp_path / "z.zst", mmap_mode="r")
    (tmp_path / "plain.pkl").write_bytes(__import__("pickle").dumps([1]))
    with pytest.raises(ValueError, match="not an omnipickle payload"):
        omnipickle.load(tmp_path / "plain.pkl", mmap_mode="r")
    with pytest.raises(ValueError, match="mmap_mode must be"):
        omnipickle.load(tmp_path / "z.zst", mmap_mode="w")
    with open(tmp_path / "z.zst", "rb") as f, pytest.raises(TypeError, match="needs a path"):
        omnipickle.load(f, mmap_mode="r")


@pytest.mark.parametrize("codec", CODECS)
def test_large_stream_is_written_while_pickling(tmp_path: Path, codec: Any) -> None:
    rows = [{"i": i, "s": str(i) * 4} for i in range(120_000)]  # a stream > 1 MiB
    path = tmp_path / "rows.bin"
    omnipickle.dump(rows, path, compression=codec)
    header = envelope.parse_header(path.read_bytes()[:8192])
    assert header.payload_offset == writer.HEADER_ROOM  # streamed: room left for the header
    assert omnipickle.load(path) == rows


def test_small_payloads_are_written_compactly(tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    omnipickle.dump({"a": 1}, path)
    assert path.read_bytes() == omnipickle.dumps({"a": 1})


@pytest.fixture
def tiny_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exercise the framing logic of huge payloads (slices, spills, streamed loads) on small
    ones: files > 4 GiB are out of reach here."""
    monkeypatch.setattr(writer, "SPILL_AFTER", 1000)
    monkeypatch.setattr(writer, "SECTION_MIN", 100)
    monkeypatch.setattr(writer, "_SLICE", 777)
    monkeypatch.setattr(source, "SLICE", 777)


@pytest.mark.usefixtures("tiny_limits")
@pytest.mark.parametrize("codec", CODECS)
def test_framing_with_small_chunk_sizes(tmp_path: Path, codec: Any) -> None:
    data = _arrays()
    path = tmp_path / "f.bin"
    omnipickle.dump(data, path, compression=codec, key=b"k" * 16)
    assert _same(omnipickle.load(path, key=b"k" * 16), data)
    assert _same(omnipickle.loads(path.read_bytes(), key=b"k" * 16), data)


@pytest.mark.usefixtures("tiny_limits")
@pytest.mark.parametrize("codec", [None, "zstd"])
@pytest.mark.parametrize("where", ["stream", "section", "tag"])
def test_streamed_load_checks_before_unpickling(tmp_path: Path, codec: Any, where: str) -> None:
    path = tmp_path / "f.bin"
    omnipickle.dump(_arrays(), path, compression=codec, key=b"k" * 16)
    header = envelope.parse_header(path.read_bytes()[:8192])
    offset = {
        "stream": header.payload_offset + 10,
        "section": header.extra["sections"][1]["offset"] + 5,
        "tag": header.body_end + 3,
    }[where]
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))
    if where == "tag":
        with pytest.raises(omnipickle.SignatureError):
            omnipickle.load(path, key=b"k" * 16)
    else:
        # Damage is named as damage, with or without the key.
        for key in (b"k" * 16, None):
            with pytest.raises(omnipickle.CorruptPayloadError, match="checksum mismatch"):
                omnipickle.load(path, key=key)


def test_truncated_streamed_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    omnipickle.dump(_arrays(), path)
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(omnipickle.TruncatedPayloadError):
        omnipickle.load(path)
    with pytest.raises(omnipickle.TruncatedPayloadError):
        omnipickle.load(path, mmap_mode="r")


def test_header_larger_than_its_room_moves_the_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "SECTION_MIN", 16)
    many = [np.full(8, i, dtype=np.float64) for i in range(300)]  # 300 sections: ~20 KB header
    path = tmp_path / "many.bin"
    omnipickle.dump(many, path, key=b"k" * 16)
    out = omnipickle.load(path, key=b"k" * 16)
    assert all(np.array_equal(a, b) for a, b in zip(out, many, strict=True))
    assert envelope.parse_header(path.read_bytes()).payload_offset > writer.HEADER_ROOM


def test_user_buffer_callback_keeps_buffers_out_of_the_file(tmp_path: Path) -> None:
    arr = np.arange(100_000.0)
    seen: list[Any] = []
    path = tmp_path / "oob.bin"
    omnipickle.dump(arr, path, buffer_callback=seen.append)
    assert len(seen) == 1
    assert path.stat().st_size < 10_000
    assert np.array_equal(omnipickle.load(path, buffers=seen), arr)
    with pytest.raises(omnipickle.UnpicklingError, match="buffers"):
        omnipickle.load(path)


def test_sections_payload_refuses_extra_buffers(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    omnipickle.dump(_arrays(), path)
    with pytest.raises(ValueError, match="its own out-of-band buffers"):
        omnipickle.load(path, buffers=[])


def test_dump_to_an_open_seekable_file_streams_and_several_payloads_follow(
    tmp_path: Path,
) -> None:
    path = tmp_path / "many.bin"
    with open(path, "w+b") as f:
        omnipickle.dump(_arrays(), f)
        omnipickle.dump("next", f)
    with open(path, "rb") as f:
        assert _same(omnipickle.load(f), _arrays())
        assert omnipickle.load(f) == "next"


def test_write_only_file_gets_the_in_memory_path(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    with open(path, "wb") as f:
        omnipickle.dump(_arrays(), f, key=b"k" * 16)
    assert _same(omnipickle.load(path, key=b"k" * 16), _arrays())


def test_dump_and_load_stream_instead_of_holding_the_data_twice(tmp_path: Path) -> None:
    """Peak memory (as tracemalloc sees numpy and Python allocations) stays a small fraction
    of the data during dump, and about the data itself during load."""
    arr = np.random.default_rng(0).random(8_000_000)  # 64 MB
    path = tmp_path / "big.bin"
    for codec in (None, "zstd"):
        tracemalloc.start()
        omnipickle.dump({"x": arr}, path, compression=codec)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 0.10 * arr.nbytes, (codec, peak)
        tracemalloc.start()
        out = omnipickle.load(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert np.array_equal(out["x"], arr)
        del out
        assert peak < 1.10 * arr.nbytes, (codec, peak)


def test_sigkill_during_dump_leaves_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    """A child rewrites the file in a loop; it is killed at random moments; the file always
    loads, as one of the versions the child wrote."""
    path = tmp_path / "target.bin"
    omnipickle.dump({"version": -1, "data": np.zeros(10)}, path)
    code = (
        "import sys, numpy as np, omnipickle\n"
        "i = 0\n"
        "while True:\n"
        "    omnipickle.dump({'version': i, 'data': np.full(400_000, i, dtype=np.float64)},"
        " sys.argv[1])\n"
        "    i += 1\n"
    )
    from conftest import SRC

    rng = np.random.default_rng(1)
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path)], env={"PYTHONPATH": str(SRC)}
        )
        time.sleep(0.3 + rng.random() * 0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        out = omnipickle.load(path)
        assert out["version"] >= -1
        assert out["version"] == -1 or np.all(out["data"] == out["version"])


def test_bytes_payload_loaded_back_keeps_arrays_independent_of_the_input() -> None:
    data = bytearray(omnipickle.dumps(np.arange(100_000.0)))
    out = omnipickle.loads(data)
    data[-8:] = bytes(8)
    assert out[-1] == 99_999.0


def test_pipe_dump_of_arrays_works(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    out: list[Any] = []
    import threading

    def reader() -> None:
        with os.fdopen(read_fd, "rb") as r:
            out.append(omnipickle.load(r))

    t = threading.Thread(target=reader)
    t.start()
    with os.fdopen(write_fd, "wb") as w:
        omnipickle.dump(_arrays(), w, compression="lz4")
    t.join()
    assert _same(out[0], _arrays())


def test_many_sections_move_only_the_stream_and_only_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "SECTION_MIN", 1024)
    moved: list[int] = []
    real_shift = writer._shift

    def recording_shift(out: Any, offset: int, length: int, delta: int) -> None:
        moved.append(length)
        real_shift(out, offset, length, delta)

    monkeypatch.setattr(writer, "_shift", recording_shift)
    arrays = {f"layer{i}": np.full(4096, i, dtype=np.float32) for i in range(200)}
    path = tmp_path / "state.bin"
    omnipickle.dump(arrays, path)
    header = envelope.parse_header(path.read_bytes())
    assert len(envelope.sections(header)) == 200
    assert len(moved) == 1
    assert moved[0] < header.stored_length + writer.HEADER_ROOM  # the stream, not the arrays
    back = omnipickle.load(path)
    assert all(np.array_equal(back[k], v) for k, v in arrays.items())
    back_mapped = omnipickle.load(path, mmap_mode="r")
    assert all(np.array_equal(back_mapped[k], v) for k, v in arrays.items())
    with path.open("rb") as f:
        assert all(
            np.array_equal(a, b)
            for a, b in zip(omnipickle.load(f).values(), arrays.values(), strict=True)
        )


def test_a_few_sections_move_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moved: list[int] = []
    monkeypatch.setattr(writer, "_shift", lambda *args: moved.append(args[2]))
    omnipickle.dump(_arrays(), tmp_path / "few.bin")
    assert moved == []
