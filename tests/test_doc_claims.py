"""Absolute claims of README.md and docs/ ("never", "always", "every", "exactly") that no other
test held: one test per claim, named after it. The docs page and line are in each docstring;
the full list (with the tests elsewhere that hold the other claims) is in the claims audit of
issue 10."""

from __future__ import annotations

import bz2
import gzip
import inspect
import io
import lzma
import os
import pickle
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import omnipickle
from conftest import run_python
from helpers import Plain

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
MAGIC = b"\xd3OMNI\r\n\x1a"
HEADER = 54  # with its BINBYTES and POP opcodes, and no extra field
SMALL = {"a": [1, 2.5, "x", b"y", None, True], "b": (1, 2), "c": {3, 4}}
LARGE = {"rows": [{"i": i, "s": f"v{i}"} for i in range(5000)], "blob": b"z" * 200_000}
CODECS = sorted(omnipickle.codecs())


def _lead(protocol: int) -> int:
    """Bytes before the header: the stream's PROTO opcode, which protocols 0 and 1 lack."""
    return 2 if protocol >= 2 else 0


@pytest.mark.parametrize("obj", [SMALL, LARGE], ids=["small", "large"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_plain_data_is_exactly_pickles_stream_with_the_header_after_its_first_opcode(
    obj: Any, protocol: int
) -> None:
    """README.md:99, docs/format.md:63."""
    data = omnipickle.dumps(obj, protocol)
    lead = _lead(protocol)
    assert data[lead : lead + 1] == b"B"  # the BINBYTES opcode that holds the header
    assert data[:lead] + data[lead + HEADER :] == pickle.dumps(obj, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_pickle_backend_writes_exactly_pickle_dumps(protocol: int) -> None:
    """docs/backends.md:8."""
    obj = [SMALL, Plain(1, "x"), len, Plain]
    expected = pickle.dumps(obj, protocol)
    assert omnipickle.dumps(obj, protocol, backend="pickle", raw=True) == expected
    data = omnipickle.dumps(obj, protocol, backend="pickle")
    lead = _lead(protocol)
    assert data[:lead] + data[lead + HEADER :] == expected


@pytest.mark.parametrize("library", ["pickle", "cloudpickle", "dill"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_loads_and_load_read_plain_pickles_of_every_protocol_from_each_library(
    tmp_path: Path, library: str, protocol: int
) -> None:
    """docs/api.md:31, docs/files.md:46."""
    dumps = __import__(library).dumps
    stream = dumps([SMALL, Plain(1, "x")], protocol=protocol)
    assert omnipickle.loads(stream) == [SMALL, Plain(1, "x")]
    (tmp_path / "p").write_bytes(stream)
    assert omnipickle.load(tmp_path / "p") == [SMALL, Plain(1, "x")]


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def _lz4(data: bytes) -> bytes:
    import lz4.frame

    return lz4.frame.compress(data)


@pytest.mark.parametrize(
    "compress",
    [gzip.compress, bz2.compress, lzma.compress, _zstd, _lz4],
    ids=["gzip", "bz2", "xz", "zstd", "lz4"],
)
def test_loads_reads_pickle_streams_compressed_whole(compress: Callable[[bytes], bytes]) -> None:
    """docs/api.md:31-32 (`loads`, not only `load`)."""
    assert omnipickle.loads(compress(pickle.dumps(SMALL))) == SMALL


class _Counting(omnipickle.Pickler):
    calls = 0

    def reducer_override(self, obj: Any) -> Any:
        _Counting.calls += 1
        return super().reducer_override(obj)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reducer_override_is_never_called_on_dicts_lists_tuples_strings_or_numbers(
    protocol: int,
) -> None:
    """docs/backends.md:66-67 and 73: the builtin data that costs nothing extra."""
    data = {"d": {"k": [1, 2.5, "s", (True, None, 10**30)]}, "l": [[[]], ()]}
    if protocol >= 5:
        data["b"] = [b"x", bytearray(b"y"), {1, 2}, frozenset({3})]
    _Counting.calls = 0
    _Counting(io.BytesIO(), protocol).dump(data)
    assert _Counting.calls == 0


def _python_calls(obj: Any) -> int:
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event == "call"

    omnipickle.dumps(obj)  # the first dump fills the table; the claim is about later ones
    sys.setprofile(profile)
    try:
        omnipickle.dumps(obj)
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("tail", [[], ["method"]], ids=["bare", "with-a-bound-method"])
def test_every_later_instance_is_dispatched_without_running_python_code(tail: list[str]) -> None:
    """docs/backends.md:90 (and step 3: the bare C pickler runs no Python per instance)."""
    method = Plain(0, 0).__eq__

    def data(n: int) -> list[Any]:
        return [Plain(i, i) for i in range(n)] + [method for _ in tail]

    extra = _python_calls(data(20_000)) - _python_calls(data(2_000))
    assert extra < 1_000  # 18,000 more instances; a Python call each would be 18,000 more


# Every function of omnipickle._reconstruct that a payload names, with its parameters when this
# test was written. A payload written then calls them with these positional arguments.
RECONSTRUCTORS = {
    "make_lock": (),
    "make_rlock": (),
    "make_condition": ("lock",),
    "make_semaphore": ("value",),
    "make_bounded_semaphore": ("value", "initial"),
    "make_event": ("flag",),
    "make_barrier": ("parties", "action", "timeout"),
    "load_dill": ("blob",),
    "make_method": ("func", "obj"),
    "make_lru_cache": ("func", "maxsize", "typed"),
    "std_stream": ("name",),
    "make_thread": ("cls", "target", "args", "kwargs", "name", "daemon"),
    "reopen_file": (
        "name",
        "mode",
        "position",
        "closed",
        "encoding",
        "errors",
        "newline",
        "drop",
        "buffering",
    ),
    "dropped_resource": ("index",),
    "restore_state": ("obj", "state"),
}


@pytest.mark.parametrize("name", sorted(RECONSTRUCTORS))
def test_reconstructors_are_never_renamed_or_removed_and_only_gain_optional_parameters(
    name: str,
) -> None:
    """docs/format.md:163, docs/architecture.md:132."""
    from omnipickle import _reconstruct

    params = list(inspect.signature(getattr(_reconstruct, name)).parameters.values())
    old = RECONSTRUCTORS[name]
    assert tuple(p.name for p in params[: len(old)]) == old
    assert all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params[: len(old)])
    added = params[len(old) :]
    assert all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in added
    )


@pytest.mark.parametrize("suffix", [".gz", ".zst", ".xz", ".lz4", ".bz2"])
def test_raw_is_never_compressed_whatever_the_suffix(tmp_path: Path, suffix: str) -> None:
    """docs/compression.md:43."""
    path = tmp_path / f"raw.pkl{suffix}"
    omnipickle.dump(SMALL, path, raw=True)
    assert path.read_bytes() == pickle.dumps(SMALL, omnipickle.DEFAULT_PROTOCOL)
    with pytest.raises(ValueError, match="raw"):
        omnipickle.dump(SMALL, path, raw=True, compression="zstd")


@pytest.mark.parametrize("name", ["zip", "zipfile", "zlib", "lzma-alone", "alone"])
def test_formats_that_are_read_are_never_written(tmp_path: Path, name: str) -> None:
    """docs/compression.md:67: zip archives, raw zlib and LZMA-alone are read only."""
    assert name not in omnipickle.codecs()
    with pytest.raises(omnipickle.UnknownCodecError):
        omnipickle.dumps(SMALL, compression=name)
    omnipickle.dump(SMALL, tmp_path / "x.zip")  # not a codec suffix: uncompressed
    assert omnipickle.info(tmp_path / "x.zip").codec is None


@pytest.mark.parametrize("codec", CODECS)
def test_load_loads_and_info_never_look_at_the_file_name(tmp_path: Path, codec: str) -> None:
    """docs/compression.md:49, docs/files.md:43, docs/api.md:60, docs/format.md:133."""
    other = "zstd" if codec != "zstd" else "gzip"
    suffix = {"gzip": ".gz", "zstd": ".zst"}[other]
    path = tmp_path / f"misleading.pkl{suffix}"
    omnipickle.dump(SMALL, path, compression=codec)
    assert omnipickle.info(path).codec == codec
    assert omnipickle.load(path) == SMALL
    assert omnipickle.loads(path.read_bytes()) == SMALL
    with open(path, "rb") as f:
        assert omnipickle.load(f) == SMALL


def _header_crc_holds(data: bytes, at: int) -> bool:
    header = data[at : at + 48]
    (extra,) = struct.unpack_from("<I", header, 20)
    (crc,) = struct.unpack_from("<I", header, 44)
    return crc == zlib.crc32(header[:44] + data[at + 48 : at + 48 + extra])


@pytest.mark.parametrize("codec", [None, *CODECS])
@pytest.mark.parametrize("obj", [SMALL, LARGE], ids=["small", "large"])
def test_the_header_is_never_compressed_and_its_checksum_is_always_crc32(
    codec: str | None, obj: Any
) -> None:
    """docs/compression.md:50, docs/format.md:59 (large payloads checksum their bytes with
    XXH3; the header's own checksum stays CRC-32)."""
    data = omnipickle.dumps(obj, compression=codec)
    at = (2 if codec is None else 0) + 5  # the magic, after PROTO (uncompressed) and BINBYTES
    assert data[at : at + 8] == MAGIC
    assert _header_crc_holds(data, at)


@pytest.mark.parametrize(
    "obj",
    [{"a": [1, 2, 3] * 10, "b": "x" * 50}, Plain(1, "x")],
    ids=["data", "instance"],
)
@pytest.mark.parametrize("codec", [None, "zstd"])
def test_scan_of_a_damaged_payload_raises_only_corrupt_or_truncated_errors(
    obj: Any, codec: str | None
) -> None:
    """docs/security.md:341: every cut and every flipped bit of a payload."""
    data = omnipickle.dumps(obj, compression=codec)
    other: list[str] = []
    for i in range(len(data)):
        damaged = [data[:i]] + [
            data[:i] + bytes([data[i] ^ bit]) + data[i + 1 :] for bit in (0x01, 0x80)
        ]
        for d in damaged:
            try:
                omnipickle.scan(d)
            except (omnipickle.CorruptPayloadError, omnipickle.TruncatedPayloadError):
                continue
            except Exception as exc:  # the claim is that nothing else escapes
                other.append(f"{i}: {type(exc).__name__}: {exc}")
            else:
                other.append(f"{i}: no error")
    assert other == []


@pytest.mark.parametrize(
    "stream",
    [b"cos\npath\n.", b"ccollections\nabc\n.", b"cbuiltins\nprint\n.", b"coperator\nattrgetter\n."],
    ids=["os.path", "collections.abc", "print", "attrgetter"],
)
def test_the_default_allow_list_refuses_modules_and_other_functions(stream: bytes) -> None:
    """docs/security.md:101: "every other function, and every module"."""
    with pytest.raises(omnipickle.UnsafePayloadError, match="refused the global"):
        omnipickle.loads(stream, restricted=True)


def test_a_memory_map_skips_the_section_checksums_and_a_full_load_checks_them(
    tmp_path: Path,
) -> None:
    """docs/files.md:86, docs/format.md:157."""
    path = tmp_path / "arrays.bin"
    omnipickle.dump({"a": np.arange(1_000_000)}, path)
    (section,) = omnipickle.info(path).extra["sections"]
    damaged = bytearray(path.read_bytes())
    damaged[section["offset"] + 8 * 500_000] ^= 0xFF
    path.write_bytes(damaged)
    out = omnipickle.load(path, mmap_mode="r")
    assert out["a"][500_000] != 500_000  # the damage is seen, not caught
    del out
    with pytest.raises(omnipickle.CorruptPayloadError, match="section"):
        omnipickle.load(path)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_omnipickle_pickler_always_writes_plain_streams(protocol: int) -> None:
    """docs/index.md:47."""
    buf = io.BytesIO()
    omnipickle.Pickler(buf, protocol).dump([SMALL, lambda x: x + 1])
    assert MAGIC not in buf.getvalue()
    assert omnipickle.info(buf.getvalue()).format == "pickle"
    assert pickle.loads(buf.getvalue())[1](1) == 2


@pytest.mark.skipif(not os.access("/bin/false", os.X_OK), reason="needs /bin/false")
def test_the_demo_exits_1_when_a_step_does_not_behave() -> None:
    """docs/cli.md:42: "Exit 0 when every step behaved, 1 otherwise". The steps that run in
    another process get an interpreter that fails."""
    code = (
        "import sys; sys.executable = '/bin/false'\n"
        "from omnipickle.cli import main; sys.exit(main(['demo']))"
    )
    proc = run_python(code=code)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Something did not behave as expected" in proc.stdout


class _ForgedArray:
    """Reduces to numpy's own array reconstructor with data ``extra`` bytes too long (or, if
    negative, too short) for its shape."""

    def __init__(self, extra: int) -> None:
        self.extra = extra

    def __reduce__(self) -> Any:
        import numpy as np

        func, args, state = np.arange(4, dtype=np.int64).__reduce__()  # type: ignore[misc]
        version, shape, dtype, fortran, raw = state
        raw = raw[: self.extra] if self.extra < 0 else raw + bytes(self.extra)
        return (func, args, (version, shape, dtype, fortran, raw))


@pytest.mark.parametrize("extra", [-8, -1, 1, 8])
def test_security_md_an_arrays_bytes_must_be_exactly_prod_shape_times_itemsize(extra: int) -> None:
    """docs/security.md: "An array's bytes must be exactly prod(shape) * itemsize"."""
    import pickle

    import numpy as np

    data = pickle.dumps(_ForgedArray(extra), protocol=2)
    with pytest.raises(omnipickle.UnsafePayloadError, match="not the 32 its shape needs"):
        omnipickle.loads(data, restricted=True)
    exact = omnipickle.loads(
        pickle.dumps(np.arange(4, dtype=np.int64), protocol=2), restricted=True
    )
    assert exact.tolist() == [0, 1, 2, 3]
