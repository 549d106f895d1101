"""Fuzzing: damaged input gives an UnpicklingError (or loads), never another exception or a hang.

Representative payloads (plain data, instances, a lambda, every codec, a signed one) are mutated
(bit flips, byte overwrites, truncations, splices of two payloads, insertions, random garbage,
the empty payload) and fed to ``omnipickle.loads``, ``restricted_loads`` and ``scan``. Every
call runs under a deadline, so a hang fails the test instead of stalling the suite.

The examples are derandomized (the same inputs on every run, so a failure always reproduces);
``benchmarks/fuzz_long.py`` runs the same mutations (``fuzzing.py``) for as long as you like,
randomly.

Known failures that come from other modules are pinned below as strict xfails, with exact
reproducers: each turns into a failure (XPASS) the day it is fixed, to be unmarked then.
"""

from __future__ import annotations

import pickle
import sys
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import omnipickle
from conftest import run_python
from fuzzing import (
    DEADLINE,
    KEY,
    Hang,
    deadline,
    envelopes,
    flip,
    header_field,
    insert,
    overwrite,
    plain_streams,
    splice,
    truncate,
)
from omnipickle.codecs import REGISTRY as CODECS
from omnipickle.format import header as envelope
from omnipickle.security import restricted_loads, scan

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ENVELOPES = envelopes()
PLAIN_STREAMS = plain_streams(ENVELOPES)

# --- mutations ---------------------------------------------------------------------------------

POSITION = st.integers(0, 1 << 16)
CHUNK = st.binary(min_size=1, max_size=8)


def mutations(seeds: dict[str, bytes]) -> st.SearchStrategy[tuple[str, bytes]]:
    """``(description, input)``: a seed, mutated in one of the ways the module docstring lists."""
    names = sorted(seeds)
    seed = st.sampled_from(names).map(seeds.__getitem__)

    def flips(data: bytes) -> st.SearchStrategy[tuple[str, bytes]]:
        bits = st.lists(st.tuples(POSITION, st.integers(0, 7)), min_size=1, max_size=4)

        def apply(found: list[tuple[int, int]]) -> tuple[str, bytes]:
            out = data
            for pos, bit in found:
                out = flip(out, pos, bit)
            return ("bit flips", out)

        return bits.map(apply)

    def one(data: bytes) -> st.SearchStrategy[tuple[str, bytes]]:
        return st.one_of(
            st.just(("unchanged", data)),
            flips(data),
            st.tuples(POSITION, CHUNK).map(lambda a: ("overwrite", overwrite(data, *a))),
            POSITION.map(lambda n: ("truncate", truncate(data, n))),
            st.tuples(POSITION, POSITION, seed).map(
                lambda a: ("splice", splice(data, a[2], a[0], a[1]))
            ),
            st.tuples(POSITION, CHUNK).map(lambda a: ("insert", insert(data, *a))),
            st.binary(max_size=64).map(lambda b: ("garbage", b)),
            st.just(("empty", b"")),
        )

    return seed.flatmap(one)


def header_mutations() -> st.SearchStrategy[tuple[str, bytes]]:
    seed = st.sampled_from(sorted(ENVELOPES)).map(ENVELOPES.__getitem__)
    return st.tuples(seed, st.integers(0, 35), st.integers(0, 255)).map(
        lambda a: ("header field", header_field(*a))
    )


def check(target: Callable[[bytes], Any], case: tuple[str, bytes]) -> None:
    """``target(data)`` must return, or raise an ``omnipickle.UnpicklingError``, in time."""
    how, data = case
    try:
        with deadline():
            target(data)
    except omnipickle.UnpicklingError:
        if how == "unchanged":
            raise
    except Hang:
        pytest.fail(f"{how}: no answer within {DEADLINE} s for {data!r}")
    except Exception as exc:
        pytest.fail(f"{how}: {type(exc).__name__}: {exc} for {data!r}")


# --- the fuzz targets ----------------------------------------------------------------------------


@FUZZ
@given(mutations(ENVELOPES))
def test_loads_of_a_mutated_payload_loads_or_raises_an_unpickling_error(
    case: tuple[str, bytes],
) -> None:
    check(omnipickle.loads, case)


@FUZZ
@given(mutations(ENVELOPES))
def test_loads_with_a_key_of_a_mutated_payload_raises_an_unpickling_error(
    case: tuple[str, bytes],
) -> None:
    how, data = case
    if how == "unchanged" and data != ENVELOPES["signed"]:
        how = "unsigned"  # a key given for an unsigned payload is a SignatureError
    check(lambda d: omnipickle.loads(d, key=KEY), (how, data))


@FUZZ
@given(st.one_of(mutations({**ENVELOPES, **PLAIN_STREAMS}), header_mutations()))
def test_scan_of_a_mutated_payload_reports_or_raises_an_unpickling_error(
    case: tuple[str, bytes],
) -> None:
    check(lambda d: scan(d, allow=("helpers.*",)), case)


@FUZZ
@given(mutations(PLAIN_STREAMS))
def test_restricted_loads_of_a_mutated_stream_loads_or_raises_an_unpickling_error(
    case: tuple[str, bytes],
) -> None:
    how, data = case
    if how == "unchanged" and data == PLAIN_STREAMS["inner-lambda"]:
        how = "code by value"  # refused untrusted, by design
    check(lambda d: restricted_loads(d, allow=("helpers.*",)), (how, data))


def test_an_unchanged_seed_loads() -> None:
    """The fuzz targets' seeds are valid (a fuzzer fed broken seeds tests nothing)."""
    for data in ENVELOPES.values():
        omnipickle.loads(data)
    for name, data in PLAIN_STREAMS.items():
        if name != "inner-lambda":
            restricted_loads(data, allow=("helpers.*",))
        scan(data)


# --- damaged inputs that once escaped as foreign exceptions (regressions) ----------------------


def _envelope(codec_id: int, stored: bytes, raw_length: int) -> bytes:
    header = envelope.build_header(
        flags=0,
        protocol=5,
        loader=0,
        backend_bits=1,
        codec_id=codec_id,
        stored_length=len(stored),
        raw_length=raw_length,
        checksum=zlib.crc32(stored),
    )
    return header + stored


KNOWN_LOADS_FAILURES = {
    # api._load_plain maps only some exceptions of a damaged plain stream to its own.
    "misspelled global (AttributeError)": b"cbuiltins\nlisu\n.",
    "misspelled module (ModuleNotFoundError)": b"cnosuchmodule\nx\n.",
    "REDUCE of non-tuple (TypeError)": b"\x80\x05K\x01K\x02R.",
    "bad codec name (LookupError)": b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x03\x00\x00"
    b"\x00bad\x86R.",
    "bad decimal (decimal.InvalidOperation)": b"cdecimal\nDecimal\n(Vx\ntR.",
    # codecs.py: LzmaCodec lets lzma.LZMAError through.
    "damaged xz pickle (LZMAError)": b"\xfd7zXZ\x00garbage-garbage",
    "xz codec id on other data (LZMAError)": _envelope(3, b"not xz data at all", 10),
    # codecs.py: a header length above sys.maxsize reaches the decompressor (OverflowError).
    "bz2 length 2**63 (OverflowError)": _envelope(
        2, CODECS.get("bz2").compress(pickle.dumps([1])), 2**63
    ),
}


@pytest.mark.parametrize("data", KNOWN_LOADS_FAILURES.values(), ids=KNOWN_LOADS_FAILURES.keys())
def test_known_damaged_inputs_raise_an_unpickling_error(data: bytes) -> None:
    with deadline(), pytest.raises(omnipickle.UnpicklingError):
        omnipickle.loads(data)


# Peak memory of the child's own address space (VmHWM); ru_maxrss would count the forked parent.
_PEAK = (
    "import sys, omnipickle\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            return int(line.split()[1]) // 1024\n"
    "data = open(sys.argv[1], 'rb').read()\n"
    "before = peak()\n"
    "try:\n"
    "    omnipickle.loads(data)\n"
    "except omnipickle.UnpicklingError:\n"
    "    pass\n"
    "print(peak() - before)\n"
)
needs_proc = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads peak memory from /proc/self/status"
)


@pytest.mark.xfail(
    strict=True,
    reason="CPython's C unpickler (used by api.py) grows its memo to any LONG_BINPUT index: "
    "8 bytes make it allocate and clear 512 MB (index 2**31: 32 GB)",
)
@needs_proc
def test_a_huge_memo_index_in_a_plain_stream_costs_no_memory(tmp_path: Any) -> None:
    path = tmp_path / "memo.pkl"
    path.write_bytes(b"Nr" + (1 << 25).to_bytes(4, "little") + b".")
    grew_mb = int(run_python(str(path), code=_PEAK).stdout)
    assert grew_mb < 64


@needs_proc
def test_a_zstd_bomb_is_refused_before_it_fills_memory(tmp_path: Any) -> None:
    import zstandard

    compressor = zstandard.ZstdCompressor().compressobj()
    zeros = bytes(1 << 20)
    stored = b"".join(compressor.compress(zeros) for _ in range(512)) + compressor.flush()
    path = tmp_path / "bomb"
    path.write_bytes(_envelope(4, stored, 10))
    grew_mb = int(run_python(str(path), code=_PEAK).stdout)
    assert grew_mb < 64


def test_a_bounded_semaphore_with_a_huge_bound_loads_at_once() -> None:
    code = (
        "import pickle, omnipickle\n"
        "from omnipickle._reconstruct import make_bounded_semaphore as m\n"
        "class C:\n"
        "    def __reduce__(self):\n"
        "        return (m, (0, 10**12))\n"
        "sem = omnipickle.loads(pickle.dumps(C()))\n"
        "assert not sem.acquire(blocking=False)\n"
    )
    import subprocess

    try:
        proc = run_python(code=code, timeout=3)
    except subprocess.TimeoutExpired:
        pytest.fail("loads did not finish within 3 s")
    assert proc.returncode == 0, proc.stderr


def test_a_damaged_code_object_in_a_plain_stream_is_a_documented_error() -> None:
    """Found by benchmarks/fuzz_long.py: a mutated plain cloudpickle stream calls
    ``types.CodeType`` with arguments CPython refuses with ``SystemError``."""
    import base64

    data = base64.b64decode(
        "lRQCAAAAAAAAjBdjbG91ZHBpY2tsZS5jbG91ZHBpY2tsZZSMDl9tYWtlX2Z1bmN0aW9ulJOUKGgAjA1fYnVpbHRp"
        "bl90eXBllJOUjAhDb2RlVHlwZZSFlFKUKEsBSwBLAEsBSwJKEwAAkUMMlwB8AGQBegAAAFMAlE5LAYaUKYwBeJSF"
        "lIwOPGR5bmFtaWMtY29kZT6UjAg8bGFtYmRhPpSMG2VudmVsb3Blcy48bG9jYWxzPi48bGFtYmRhPpRLXkMKgACo"
        "UbARqVWAAJRDAJQpKXSUUpR9lCiMC19fcGFja2FnZV9flIwAlIwIX19uYW1lX1+UjAdmdXp6aW5nlIwIX19maWxl"
        "X1+UjBsvd29yay9tYWluL3Rlc3RzL2Z1enppbmcucHmUdU5OTnSUUpRoAIwSX2Z1bmN0aW9uX3NldHN0YXRllJOU"
        "aBt9lH2UKGgWjAg8bGFtYmRhPpSMDF9fcXVhbG5hbWVfX5SMG2VudmVsb3Blcy48bG9jYWxzPi48bGFtYmRhPpSM"
        "D19fYW5ub3RhdGlvbnNfX5R9lIwOX19rd2RlZmF1bHRzX1+UTowMX19kZWZhdWx0c19flE6MCl/fbW9kdWxlX1+U"
        "aBeMB19fZG9jX1+UTowLX19jbG9zdXJlX1+UTowXX2Nsb3VkcGlja2xlX3N1Ym1vZHVsZXOUXZSMC19fZ2xvYmFs"
        "c19flH2UdYaUhlIwLg=="
    )
    with pytest.raises(omnipickle.UnpicklingError):
        omnipickle.loads(data)
