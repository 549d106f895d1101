"""The envelope: its layout, info(), and what bad input gets."""

from __future__ import annotations

import pickle
import pickletools
import struct
import sys
import zlib
from typing import Any

import pytest
import xxhash

import omnipickle
from omnipickle import checksums
from omnipickle.format import header as envelope
from omnipickle.format.signing import key_id

# Format 2 carries the header inside the stream: the stream's PROTO, BINBYTES and a length,
# then the magic.
S = 7

KEY = b"k" * 32


def _payload(**options: Any) -> bytes:
    return omnipickle.dumps({"numbers": list(range(100)), "text": "hello"}, **options)


def test_header_layout_matches_the_documented_format() -> None:
    data = _payload()
    # Format 2: PROTO 5, BINBYTES (its length: the 48-byte header), the header, POP, then the
    # rest of the stream.
    assert data[:3] == b"\x80\x05B" and int.from_bytes(data[3:7], "little") == 48
    assert data[S + 48 : S + 49] == b"0"
    (magic, version, flags, protocol, major, minor, loader, bits, codec, algo) = struct.unpack_from(
        "<8sBBBBBBBBB", data, S
    )
    extra_len, stored, raw, checksum, header_crc = struct.unpack_from("<IQQII", data, S + 20)
    assert magic == b"\xd3OMNI\r\n\x1a"
    assert (version, flags, protocol) == (2, 0, 5)
    assert (major, minor) == sys.version_info[:2]
    assert (loader, bits, codec, algo) == (0, 1, 0, 1)  # small: CRC-32 (big: 2, XXH3)
    assert data[S + 17 : S + 20] == b"\x00\x00\x00"
    assert extra_len == 0
    assert stored + 2 == raw == len(data) - S - 49 + 2
    assert checksum == zlib.crc32(data[:2] + data[S + 49 :])
    assert header_crc == zlib.crc32(data[S : S + 44])


def test_a_large_payload_is_checksummed_with_xxh3() -> None:
    data = omnipickle.dumps(list(range(5000)))
    assert data[S + 16] == 2  # XXH3-64's low 32 bits
    (checksum,) = struct.unpack_from("<I", data, S + 40)
    assert checksum == xxhash.xxh3_64_intdigest(data[:2] + data[S + 49 :]) & 0xFFFFFFFF


def test_an_uncompressed_payload_is_a_pickle_stream_pickle_reads() -> None:
    obj = {"numbers": list(range(100)), "text": "hello"}
    assert pickle.loads(omnipickle.dumps(obj)) == obj
    assert pickle.loads(omnipickle.dumps(obj, key=KEY)) == obj  # the tag follows STOP
    ops = [op.name for op, _, _ in pickletools.genops(omnipickle.dumps(obj))]
    assert ops[:3] == ["PROTO", "BINBYTES", "POP"] and ops[-1] == "STOP"
    assert ops.count("PROTO") == 1


def test_format_1_payloads_still_load() -> None:
    """The old layout (the header first, no opcodes around it) keeps loading; the payloads
    kept under tests/data are the full check."""
    obj = {"numbers": [1, 2], "text": "hello"}
    stream = pickle.dumps(obj, 5)
    header = envelope.build_header(
        flags=0,
        protocol=5,
        loader=0,
        backend_bits=1,
        codec_id=0,
        stored_length=len(stream),
        raw_length=len(stream),
        checksum=zlib.crc32(stream),
        version=1,
    )
    assert header[:8] == envelope.MAGIC
    assert omnipickle.loads(header + stream) == obj
    assert omnipickle.info(header + stream).format_version == 1


def test_info_reports_the_envelope_without_unpickling() -> None:
    data = omnipickle.dumps(lambda: 1, compression="zstd", key=KEY)
    about = omnipickle.info(data)
    assert about.format == "omnipickle"
    assert about.format_version == 2
    assert about.codec == "zstd"
    assert about.signed is True
    assert about.by_value is True
    assert about.checksum_ok is True
    assert about.python == f"{sys.version_info[0]}.{sys.version_info[1]}"
    header = envelope.parse_header(data)
    assert about.stored_size == len(data) - header.payload_offset - 32
    assert about.extra["kid"] == key_id(KEY)
    text = str(about)
    assert "zstd" in text and "signed" in text and "code by value  yes" in text


def test_info_of_a_plain_pickle_stream() -> None:
    about = omnipickle.info(pickle.dumps([1, 2], protocol=4))
    assert (about.format, about.protocol, about.codec) == ("pickle", 4, None)


def test_info_reports_a_checksum_mismatch_instead_of_raising() -> None:
    data = bytearray(_payload())
    data[-1] ^= 0xFF
    assert omnipickle.info(bytes(data)).checksum_ok is False


def test_loads_does_not_copy_the_payload_to_strip_the_header() -> None:
    """A memoryview over a bytearray works; the payload is unpickled in place."""
    data = bytearray(_payload())
    assert omnipickle.loads(memoryview(data))["text"] == "hello"


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", bytearray(), memoryview(b"")])
def test_empty_input_is_a_truncated_payload_and_an_eoferror(data: Any) -> None:
    with pytest.raises(omnipickle.TruncatedPayloadError, match="empty"):
        omnipickle.loads(data)
    with pytest.raises(EOFError):
        omnipickle.loads(data)


@pytest.mark.parametrize("cut", [1, 8, 20, 47, 48, 60, -1])
def test_truncated_payload_says_how_long_it_should_be(cut: int) -> None:
    data = _payload()
    with pytest.raises(omnipickle.TruncatedPayloadError, match="truncated"):
        omnipickle.loads(data[:cut])


def test_flipped_payload_byte_is_a_checksum_mismatch() -> None:
    data = bytearray(_payload())
    data[100] ^= 0x01
    with pytest.raises(omnipickle.CorruptPayloadError, match="checksum mismatch"):
        omnipickle.loads(bytes(data))


@pytest.mark.parametrize("offset", [*range(0, S), *range(S, S + 49)])
def test_any_flipped_header_byte_is_caught(offset: int) -> None:
    data = bytearray(_payload())
    data[offset] ^= 0x40
    with pytest.raises(omnipickle.UnpicklingError):
        omnipickle.loads(bytes(data))


@pytest.mark.parametrize(
    "data",
    [b"hello world", b"\x00" * 64, b"GIF89a" + b"\x00" * 50, b"<html></html>", b"\xff\xfe"],
)
def test_foreign_bytes_are_a_corrupt_payload(data: bytes) -> None:
    with pytest.raises(omnipickle.CorruptPayloadError):
        omnipickle.loads(data)


def test_truncated_plain_pickle_is_a_truncated_payload() -> None:
    with pytest.raises(omnipickle.TruncatedPayloadError):
        omnipickle.loads(pickle.dumps(list(range(1000)))[:-10])


@pytest.mark.parametrize("data", ["text", 42, None, [1, 2], object()])
def test_wrong_type_for_data_is_a_typeerror(data: Any) -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        omnipickle.loads(data)


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(omnipickle.UnknownBackendError, match=r"'auto'.*'dill'"):
        omnipickle.dumps(1, backend="nope")
    with pytest.raises(ValueError):
        omnipickle.dumps(1, backend="nope")


@pytest.mark.parametrize("protocol", [6, 99])
def test_unknown_protocol_is_a_valueerror(protocol: int) -> None:
    with pytest.raises(ValueError, match="protocol"):
        omnipickle.dumps(1, protocol)


@pytest.mark.parametrize("protocol", ["5", 2.0, True])
def test_protocol_of_the_wrong_type_is_a_typeerror(protocol: Any) -> None:
    with pytest.raises(TypeError, match="protocol"):
        omnipickle.dumps(1, protocol)


def test_negative_protocol_means_highest_as_in_pickle() -> None:
    assert omnipickle.info(omnipickle.dumps(1, -1)).protocol == pickle.HIGHEST_PROTOCOL


def _fix_header_crc(data: bytearray) -> None:
    extra = int.from_bytes(data[S + 20 : S + 24], "little")
    crc = zlib.crc32(bytes(data[S + 48 : S + 48 + extra]), zlib.crc32(bytes(data[S : S + 44])))
    data[S + 44 : S + 48] = crc.to_bytes(4, "little")


def test_newer_format_version_is_incompatible() -> None:
    data = bytearray(_payload())
    data[S + 8] = 3
    _fix_header_crc(data)
    with pytest.raises(omnipickle.IncompatiblePayloadError, match="format version 3"):
        omnipickle.loads(bytes(data))


def test_unknown_flag_is_incompatible() -> None:
    data = bytearray(_payload())
    data[S + 9] |= 0x80
    _fix_header_crc(data)
    with pytest.raises(omnipickle.IncompatiblePayloadError, match="flags"):
        omnipickle.loads(bytes(data))


def _rewrite_python_minor(data: bytes, minor: int) -> bytes:
    out = bytearray(data)
    out[S + 12] = minor
    _fix_header_crc(out)
    return bytes(out)


def test_by_value_code_from_another_python_minor_names_both_versions() -> None:
    data = _rewrite_python_minor(omnipickle.dumps(lambda: 1), sys.version_info[1] + 1)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    there = f"{sys.version_info[0]}.{sys.version_info[1] + 1}"
    with pytest.raises(omnipickle.IncompatiblePayloadError) as info:
        omnipickle.loads(data)
    assert here in str(info.value) and there in str(info.value)


def test_plain_data_from_another_python_minor_still_loads() -> None:
    data = _rewrite_python_minor(_payload(), sys.version_info[1] + 1)
    assert omnipickle.loads(data)["text"] == "hello"


def test_missing_backend_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    def local() -> type:
        class Local:  # by value: cloudpickle's reducer, which the payload then needs
            pass

        return Local

    data = omnipickle.dumps(local())
    real_find_spec = importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "cloudpickle")
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "cloudpickle" else real_find_spec(name, *a),
    )
    with pytest.raises(omnipickle.BackendNotInstalledError, match="pip install cloudpickle"):
        omnipickle.loads(data)


# --- signatures --------------------------------------------------------------------------------


def test_signed_payload_verifies_with_its_key() -> None:
    assert omnipickle.loads(_payload(key=KEY), key=KEY)["text"] == "hello"


def test_wrong_key_is_refused() -> None:
    with pytest.raises(omnipickle.SignatureError, match="does not verify"):
        omnipickle.loads(_payload(key=KEY), key=b"x" * 32)


def test_unsigned_payload_is_refused_when_a_key_is_given() -> None:
    with pytest.raises(omnipickle.SignatureError, match="not signed"):
        omnipickle.loads(_payload(), key=KEY)


def test_tampered_signed_payload_is_refused_before_unpickling() -> None:
    data = bytearray(_payload(key=KEY))
    header = envelope.parse_header(bytes(data))
    start, end = header.payload_offset, header.payload_offset + header.stored_length
    data[start + 10] ^= 1
    # Recompute both checksums so that only the signature can catch it.
    crc = checksums.checksum(
        bytes(data[start:end]), header.checksum_algorithm, bytes(data[: header.lead])
    )
    data[S + 40 : S + 44] = crc.to_bytes(4, "little")
    _fix_header_crc(data)
    with pytest.raises(omnipickle.SignatureError):
        omnipickle.loads(bytes(data), key=KEY)


@pytest.mark.parametrize("key", [b"short", b""])
def test_short_keys_are_refused(key: bytes) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        omnipickle.dumps(1, key=key)


def test_key_rotation_signs_with_the_first_and_verifies_with_any() -> None:
    old, new = b"o" * 32, b"n" * 32
    signed_old = _payload(key=old)
    signed_new = _payload(key=[new, old])
    assert omnipickle.info(signed_new).extra["kid"] == key_id(new)
    for data in (signed_old, signed_new):
        assert omnipickle.loads(data, key=[new, old])["text"] == "hello"
    with pytest.raises(omnipickle.SignatureError):
        omnipickle.loads(signed_old, key=[new])
    with pytest.raises(ValueError, match="empty list"):
        omnipickle.loads(signed_old, key=[])
    with pytest.raises(ValueError, match="16 bytes"):
        omnipickle.loads(signed_old, key=[new, b"short"])


def test_key_id_reveals_nothing_usable_and_is_stable() -> None:
    kid = key_id(KEY)
    assert len(kid) == 8
    assert KEY.hex()[:8] != kid
    assert key_id(KEY) == kid


def test_str_key_is_a_typeerror() -> None:
    with pytest.raises(TypeError, match="encode"):
        omnipickle.dumps(1, key="a" * 32)  # type: ignore[arg-type]


def test_raw_with_compression_or_key_is_refused() -> None:
    with pytest.raises(ValueError, match="raw"):
        omnipickle.dumps(1, raw=True, compression="gzip")
    with pytest.raises(ValueError, match="raw"):
        omnipickle.dumps(1, raw=True, key=KEY)


def test_info_calls_nothing_a_pickle_that_is_not_one() -> None:
    with pytest.raises(omnipickle.CorruptPayloadError, match="not an omnipickle payload"):
        omnipickle.info(b"hello world\n")
    assert omnipickle.info(pickle.dumps([1, 2], 0)).format == "pickle"
    assert omnipickle.info(pickle.dumps(list(range(100_000)), 5)).format == "pickle"
