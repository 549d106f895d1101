"""The codec conformance suite: behaviour every codec must have.

Each subclass sets ``codec`` (a registered name). The first tests talk to the codec itself
(``compress``/``decompress``, ``compressobj``, ``writer``/``reader``, ``check_level``, the
registry's look-ups); the last ones go through omnipickle's public API with
``compression=codec``. See the package docstring for how a third-party codec runs it.
"""

from __future__ import annotations

import io
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import omnipickle
from omnipickle.codecs import Codec, codec_by_id, codec_for_magic, codec_for_suffix, get_codec

# Compressible (a repeated pattern), incompressible (random) and degenerate inputs.
TEXT = b"".join(b"%d omnipickle " % i for i in range(50_000))
NOISE = random.Random(0).randbytes(20_000)
INPUTS: dict[str, bytes] = {
    "empty": b"",
    "one byte": b"\x00",
    "text": TEXT,
    "noise": NOISE,
    "zeros": bytes(300_000),
}
SMALL = TEXT[:20_000]

OBJ = {"text": "abc" * 1000, "n": list(range(1000)), "b": b"\x00\xff" * 100, "t": (1.5, None)}


def _large_rows() -> list[dict[str, Any]]:
    # Pickles to about 1.5 MiB: past the size where dump streams instead of buffering.
    return [{"i": i, "s": str(i) * 4} for i in range(45_000)]


def _flipped(data: bytes, position: int) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 0x10
    return bytes(damaged)


def _compressed_span(data: bytes, about: omnipickle.Info) -> range:
    """Where the compressed stream of an envelope is (it ends at ``extra['end']`` if given)."""
    end = about.extra.get("end", len(data))
    return range(end - about.stored_size, end)


class CodecConformance:
    """Behaviour every codec must have. Subclasses set ``codec``.

    Attributes:
        codec: the registered name of the codec under test.
    """

    codec: ClassVar[str]

    @property
    def impl(self) -> Codec:
        return get_codec(self.codec)

    def levels(self) -> Iterator[int]:
        """Every level the codec has, or its least, default and greatest if there are many."""
        levels = self.impl.levels
        if levels is None:
            return
        if len(levels) <= 10:
            yield from levels
            return
        yield from sorted({levels.start, levels.stop - 1, self.impl.default_level or levels.start})

    # --- the codec itself -----------------------------------------------------------------------

    def test_name_is_the_registered_name(self) -> None:
        assert self.impl.name == self.codec

    @pytest.mark.parametrize("name", sorted(INPUTS))
    def test_compress_round_trips_at_the_default_level(self, name: str) -> None:
        data = INPUTS[name]
        compressed = self.impl.compress(data)
        assert isinstance(compressed, bytes)
        assert self.impl.decompress(compressed) == data
        assert self.impl.decompress(compressed, len(data)) == data

    def test_compress_round_trips_at_each_level(self) -> None:
        for level in self.levels():
            compressed = self.impl.compress(SMALL, level)
            assert self.impl.decompress(compressed, len(SMALL)) == SMALL, level

    def test_compress_and_decompress_accept_any_bytes_like_object(self) -> None:
        for data in (SMALL, bytearray(SMALL), memoryview(SMALL)):
            compressed = self.impl.compress(data)
            for stored in (compressed, bytearray(compressed), memoryview(compressed)):
                assert self.impl.decompress(stored, len(SMALL)) == SMALL

    def test_compress_makes_repetitive_data_smaller(self) -> None:
        assert len(self.impl.compress(TEXT)) < len(TEXT) // 2

    def test_decompress_refuses_a_stream_longer_or_shorter_than_max_size(self) -> None:
        compressed = self.impl.compress(TEXT)
        for size in (len(TEXT) - 1, len(TEXT) + 1, 0):
            with pytest.raises(omnipickle.CorruptPayloadError):
                self.impl.decompress(compressed, size)

    def test_decompress_refuses_a_max_size_no_stream_has(self) -> None:
        compressed = self.impl.compress(SMALL)
        for size in (-1, 2**62, 2**70):
            with pytest.raises(omnipickle.CorruptPayloadError):
                self.impl.decompress(compressed, size)

    def test_decompress_refuses_a_truncated_stream(self) -> None:
        compressed = self.impl.compress(TEXT)
        for cut in (0, 1, len(compressed) // 2, len(compressed) - 1):
            for size in (None, len(TEXT)):
                with pytest.raises(omnipickle.CorruptPayloadError):
                    self.impl.decompress(compressed[:cut], size)

    def test_decompress_refuses_garbage(self) -> None:
        junk = random.Random(1).randbytes(5000)
        for data in (junk, self.impl.magic + junk, b"\xff" * 64, b"hello world"):
            for size in (None, 5000):
                with pytest.raises(omnipickle.CorruptPayloadError):
                    self.impl.decompress(data, size)

    def test_decompress_of_flipped_bytes_is_refused_or_keeps_its_size(self) -> None:
        """A codec without a checksum may miss a flip (the envelope's catches it), but it
        never raises anything but CorruptPayloadError, nor returns other than max_size bytes."""
        data = SMALL[:3000]
        compressed = self.impl.compress(data)
        for position in range(len(compressed)):
            damaged = _flipped(compressed, position)
            for size in (None, len(data)):
                try:
                    out = self.impl.decompress(damaged, size)
                except omnipickle.CorruptPayloadError:
                    continue
                assert size is None or len(out) == size, position

    def test_compressobj_output_agrees_with_decompress(self) -> None:
        for level in (None, *self.levels()):
            compressor = self.impl.compressobj(level)
            compressed = compressor.compress(SMALL[:1000]) + compressor.compress(SMALL[1000:])
            compressed += compressor.flush()
            assert self.impl.decompress(compressed, len(SMALL)) == SMALL, level
        compressor = self.impl.compressobj()
        compressed = compressor.compress(TEXT[:1000]) + compressor.compress(TEXT[1000:])
        assert self.impl.decompress(compressed + compressor.flush(), len(TEXT)) == TEXT

    def test_compressobj_of_nothing_decompresses_to_nothing(self) -> None:
        compressor = self.impl.compressobj()
        assert self.impl.decompress(compressor.flush(), 0) == b""

    def test_writer_and_reader_stream_round_trip(self) -> None:
        out = io.BytesIO()
        writer = self.impl.writer(out, size_hint=len(TEXT))
        for start in range(0, len(TEXT), 100_000):
            writer.write(TEXT[start : start + 100_000])
        writer.close()
        assert not out.closed  # closing the writer ends the stream, not the file
        assert self.impl.decompress(out.getvalue(), len(TEXT)) == TEXT
        assert self.impl.reader(io.BytesIO(out.getvalue())).read() == TEXT

    def test_writer_accepts_memoryviews(self) -> None:
        out = io.BytesIO()
        writer = self.impl.writer(out, self.impl.default_level)
        writer.write(memoryview(TEXT)[:1000])
        writer.write(memoryview(bytearray(TEXT[1000:])))
        writer.close()
        assert self.impl.decompress(out.getvalue(), len(TEXT)) == TEXT

    def test_reader_readinto_fills_a_big_preallocated_buffer(self) -> None:
        data = TEXT + bytes(9 << 20)  # more than any one read of the codec's reader
        fastest = None if self.impl.levels is None else self.impl.levels.start
        reader = self.impl.reader(io.BytesIO(self.impl.compress(data, fastest)))
        buffer = bytearray(len(data))
        view = memoryview(buffer)
        got = 0
        while got < len(data):
            n = reader.readinto(view[got:])
            assert n, f"the reader stopped at {got} of {len(data)} bytes"
            got += n
        assert buffer == data
        assert reader.read(1) == b""

    def test_reader_stops_at_the_end_of_its_stream(self) -> None:
        compressed = self.impl.compress(SMALL)
        reader = self.impl.reader(io.BytesIO(compressed))
        assert reader.read(len(SMALL) + 1000) == SMALL
        assert reader.read() == b""

    def test_reader_refuses_a_truncated_stream(self) -> None:
        compressed = self.impl.compress(TEXT)
        for cut in (1, len(compressed) // 2, len(compressed) - 1):
            with pytest.raises(omnipickle.CorruptPayloadError):
                self.impl.reader(io.BytesIO(compressed[:cut])).read()

    def test_reader_refuses_garbage(self) -> None:
        junk = random.Random(2).randbytes(5000)
        for data in (junk, self.impl.magic + junk):
            with pytest.raises(omnipickle.CorruptPayloadError):
                self.impl.reader(io.BytesIO(data)).read()

    def test_check_level_gives_the_default_for_none(self) -> None:
        assert self.impl.check_level(None) == self.impl.default_level
        for level in self.levels():
            assert self.impl.check_level(level) == level

    def test_check_level_refuses_a_level_that_is_not_an_int(self) -> None:
        for level in ("3", 3.0, True, b"3"):
            with pytest.raises(TypeError):
                self.impl.check_level(level)  # type: ignore[arg-type]

    def test_check_level_refuses_a_level_out_of_range(self) -> None:
        levels = self.impl.levels
        if levels is None:
            pytest.skip("the codec accepts any int level")
        for level in (levels.start - 1, levels.stop, levels.stop + 100):
            with pytest.raises(ValueError, match="out of range"):
                self.impl.check_level(level)
            with pytest.raises(ValueError, match="out of range"):
                self.impl.compress(SMALL, level)

    # --- how omnipickle finds the codec ---------------------------------------------------------

    def test_is_found_by_its_id(self) -> None:
        if self.impl.codec_id is None:
            pytest.skip("the codec has no envelope id: payloads record it by name")
        assert codec_by_id(self.impl.codec_id) is self.impl

    def test_is_found_by_its_magic_bytes(self) -> None:
        magic = self.impl.magic
        if not magic:
            pytest.skip("the codec's output has no magic bytes")
        assert len(magic) <= 8  # codec_for_magic looks at the first 8 bytes
        for data in (b"", SMALL):
            compressed = self.impl.compress(data)
            assert compressed.startswith(magic)
            assert codec_for_magic(compressed) is self.impl

    def test_is_found_by_each_of_its_suffixes(self) -> None:
        for suffix in self.impl.suffixes:
            assert suffix.startswith(".")
            assert codec_for_suffix(f"obj.pkl{suffix}") is self.impl
            assert codec_for_suffix(f"dir/obj.pkl{suffix.upper()}") is self.impl

    def test_plain_pickle_it_compressed_loads_by_its_magic_bytes(self, tmp_path: Path) -> None:
        if not self.impl.magic:
            pytest.skip("the codec's output has no magic bytes")
        compressed = self.impl.compress(pickle.dumps([1, 2, 3]))
        assert omnipickle.loads(compressed) == [1, 2, 3]
        path = tmp_path / "renamed.bin"
        path.write_bytes(compressed)
        assert omnipickle.load(path) == [1, 2, 3]

    # --- through the public API -----------------------------------------------------------------

    def test_dumps_round_trips_through_loads_and_records_the_codec(self) -> None:
        data = omnipickle.dumps(OBJ, compression=self.codec)
        assert omnipickle.info(data).codec == self.codec
        assert omnipickle.loads(data) == OBJ
        assert len(data) < len(omnipickle.dumps(OBJ))

    def test_dumps_round_trips_at_each_level(self) -> None:
        for level in self.levels():
            data = omnipickle.dumps(OBJ, compression=self.codec, level=level)
            assert omnipickle.loads(data) == OBJ, level

    def test_dumps_refuses_a_bad_level(self) -> None:
        with pytest.raises(TypeError):
            omnipickle.dumps(1, compression=self.codec, level="1")  # type: ignore[arg-type]
        if self.impl.levels is not None:
            with pytest.raises(ValueError, match="out of range"):
                omnipickle.dumps(1, compression=self.codec, level=self.impl.levels.stop + 100)

    @pytest.mark.parametrize("size", ["small", "large"])
    def test_dump_and_load_round_trip_through_a_path(self, tmp_path: Path, size: str) -> None:
        obj = OBJ if size == "small" else _large_rows()
        path = tmp_path / "obj.bin"
        omnipickle.dump(obj, path, compression=self.codec)
        about = omnipickle.info(path)
        assert about.codec == self.codec
        assert size == "small" or (about.raw_size or 0) > 1 << 20
        assert omnipickle.load(path) == obj
        assert omnipickle.loads(path.read_bytes()) == obj

    @pytest.mark.parametrize("size", ["small", "large"])
    def test_dump_and_load_round_trip_through_a_file_object(
        self, tmp_path: Path, size: str
    ) -> None:
        obj = OBJ if size == "small" else _large_rows()
        buffer = io.BytesIO()
        omnipickle.dump(obj, buffer, compression=self.codec)
        assert omnipickle.info(buffer.getvalue()).codec == self.codec
        buffer.seek(0)
        assert omnipickle.load(buffer) == obj
        path = tmp_path / "obj.bin"
        with open(path, "wb") as f:
            omnipickle.dump(obj, f, compression=self.codec)
        with open(path, "rb") as f:
            assert omnipickle.load(f) == obj

    def test_several_payloads_in_one_file_object_load_in_turn(self, tmp_path: Path) -> None:
        path = tmp_path / "several.bin"
        with open(path, "wb") as f:
            omnipickle.dump(OBJ, f, compression=self.codec)
            omnipickle.dump(_large_rows(), f, compression=self.codec)
            omnipickle.dump([3], f, compression=self.codec)
        with open(path, "rb") as f:
            assert omnipickle.load(f) == OBJ
            assert omnipickle.load(f) == _large_rows()
            assert omnipickle.load(f) == [3]
            with pytest.raises(EOFError):
                omnipickle.load(f)

    def test_dump_to_a_path_with_its_suffix_uses_it(self, tmp_path: Path) -> None:
        for suffix in self.impl.suffixes:
            path = tmp_path / f"obj.pkl{suffix}"
            omnipickle.dump(OBJ, path)
            assert omnipickle.info(path).codec == self.codec
            assert omnipickle.load(path) == OBJ

    def test_large_arrays_go_to_sections_and_round_trip(self, tmp_path: Path) -> None:
        np = pytest.importorskip("numpy")
        obj = {
            "big": np.arange(20_000, dtype=np.float64),  # 160 kB: a section of its own
            "fortran": np.asfortranarray(np.arange(40_000, dtype=np.int32).reshape(200, 200)),
            "small": np.arange(10),
            "meta": OBJ,
        }

        def same(out: dict[str, Any]) -> bool:
            arrays = ("big", "fortran", "small")
            return out["meta"] == OBJ and all(
                np.array_equal(out[k], obj[k]) and out[k].dtype == obj[k].dtype for k in arrays
            )

        path = tmp_path / "arrays.bin"
        omnipickle.dump(obj, path, compression=self.codec)
        about = omnipickle.info(path)
        assert about.codec == self.codec
        assert len(about.extra["sections"]) == 2  # the large arrays, not the small one
        out = omnipickle.load(path)
        assert same(out)
        assert out["big"].flags.writeable and out["fortran"].flags.f_contiguous
        assert same(omnipickle.loads(path.read_bytes()))
        buffer = io.BytesIO()
        omnipickle.dump(obj, buffer, compression=self.codec)
        buffer.seek(0)
        assert same(omnipickle.load(buffer))

    def test_flipped_bit_in_the_compressed_part_is_refused_by_loads(self) -> None:
        data = omnipickle.dumps(OBJ, compression=self.codec)
        span = _compressed_span(data, omnipickle.info(data))
        for position in (span[0], span[len(span) // 2], span[-1]):
            with pytest.raises(omnipickle.CorruptPayloadError):
                omnipickle.loads(_flipped(data, position))

    @pytest.mark.parametrize("size", ["small", "large"])
    def test_flipped_bit_in_the_compressed_part_is_refused_by_load(
        self, tmp_path: Path, size: str
    ) -> None:
        path = tmp_path / "obj.bin"
        omnipickle.dump(OBJ if size == "small" else _large_rows(), path, compression=self.codec)
        data = path.read_bytes()
        span = _compressed_span(data, omnipickle.info(path))
        for position in (span[0], span[len(span) // 2], span[-1]):
            path.write_bytes(_flipped(data, position))
            with pytest.raises(omnipickle.CorruptPayloadError):
                omnipickle.load(path)
