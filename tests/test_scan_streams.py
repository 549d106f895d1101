"""scan() sees what a sequence of loads would run: every stream in a file, frames read as the C
unpickler reads them, and bounded memory and time whatever the input. Hostile inputs that could
hang or exhaust memory run in a child process with a timeout."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import run_python
from omnipickle.codecs import get_codec
from omnipickle.errors import CorruptPayloadError, UnsafePayloadError
from omnipickle.security import scan
from payloads import Call


def _evil(marker: Path) -> bytes:
    return pickle.dumps(Call(os.system, f"touch {marker}"))


GOOD = omnipickle.dumps({"a": 1})
PLAIN = pickle.dumps([1, 2])

# Each: what the file holds, given a hostile plain pickle; how many loads reach it.
SEQUENCES: dict[str, tuple[Callable[[bytes], bytes], int]] = {
    "payload then plain pickle": (lambda evil: GOOD + evil, 2),
    "plain pickle then payload": (
        lambda evil: PLAIN + omnipickle.dumps(Call(os.system, "true")),
        2,
    ),
    "two payloads then a plain pickle": (lambda evil: GOOD + GOOD + evil, 3),
    "plain, payload, plain": (lambda evil: PLAIN + GOOD + evil, 3),
    "two gzip members": (lambda evil: gzip.compress(PLAIN) + gzip.compress(evil), 1),
}


def _sources(path: Path) -> dict[str, Callable[[], Any]]:
    return {
        "path": lambda: scan(path),
        "bytes": lambda: scan(path.read_bytes()),
        "file": lambda: scan(io.BytesIO(path.read_bytes())),
    }


@pytest.mark.parametrize("case", sorted(SEQUENCES))
@pytest.mark.parametrize("how", ["path", "bytes", "file"])
def test_scan_refuses_a_hostile_stream_anywhere_in_a_file(
    case: str, how: str, tmp_path: Path
) -> None:
    make, _ = SEQUENCES[case]
    path = tmp_path / "f.bin"
    path.write_bytes(make(_evil(tmp_path / "ran")))
    report = _sources(path)[how]()
    assert not report.accepted
    assert report.streams == len(report.per_stream) >= 2
    assert report.per_stream[0].accepted
    assert not report.per_stream[-1].accepted
    assert "posix.system" in report.refused


def test_the_sequence_of_loads_scan_refuses_really_runs_the_call(tmp_path: Path) -> None:
    """The threat is real: two load(f) calls on 'payload then plain pickle' run os.system."""
    marker = tmp_path / "ran"
    path = tmp_path / "f.bin"
    path.write_bytes(GOOD + _evil(marker))
    code = (
        f"import omnipickle\nf = open({str(path)!r}, 'rb')\nomnipickle.load(f)\nomnipickle.load(f)"
    )
    proc = run_python(code=code, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()


def test_each_stream_has_its_own_report_and_offset(tmp_path: Path) -> None:
    evil = _evil(tmp_path / "m")
    report = scan(GOOD + PLAIN + evil)
    first, second, third = report.per_stream
    assert (first.format, second.format, third.format) == ("omnipickle", "pickle", "pickle")
    assert first.envelope is not None and second.envelope is None
    assert second.offset == len(GOOD) and third.offset == len(GOOD) + len(PLAIN)
    assert [p.accepted for p in report.per_stream] == [True, True, False]
    assert "stream 3 of 3" in str(report)


def test_a_file_of_one_payload_has_one_stream() -> None:
    report = scan(GOOD)
    assert report.streams == 1 and report.accepted and len(report.per_stream) == 1


def test_each_member_of_a_compressed_file_is_scanned(tmp_path: Path) -> None:
    report = scan(gzip.compress(PLAIN) + gzip.compress(PLAIN) + gzip.compress(_evil(tmp_path)))
    assert report.streams == 3 and not report.accepted
    assert any("3 gzip members" in note for note in report.notes)


# --- frames -------------------------------------------------------------------------------------


def _split_frame_attack(command: str) -> bytes:
    """A protocol-4 stream whose only FRAME ends inside a SHORT_BINUNICODE.

    pickletools (and a load from bytes) reads straight on: two strings, plain data. The C
    unpickler reading a file takes the frame whole, then reads the string's 18 bytes afresh
    after it: the 2 bytes left in the frame are skipped, and what pickletools saw as the
    second string's bytes are opcodes to it: GLOBAL posix system, REDUCE.
    """
    call = f"cposix\nsystem\n(S'{command}'\ntR0".encode()
    after = b"Z" * 16 + b"C" + bytes([len(call)]) + call  # pickletools: SHORT_BINBYTES of it
    frame = b"\x8c" + bytes([18]) + b"AB"  # SHORT_BINUNICODE of 18 bytes, 2 of them framed
    return b"\x80\x04\x95" + struct.pack("<Q", len(frame)) + frame + after + b"."


def test_the_split_frame_attack_runs_a_call_pickletools_does_not_see(tmp_path: Path) -> None:
    import pickletools

    marker = tmp_path / "ran"
    data = _split_frame_attack(f"touch {marker}")
    assert all(op.name != "GLOBAL" for op, _, _ in pickletools.genops(data))
    path = tmp_path / "frame.pkl"
    path.write_bytes(data)
    code = f"import omnipickle\nomnipickle.load(open({str(path)!r}, 'rb'))"
    run_python(code=code, timeout=60)
    assert marker.exists(), "the attack no longer works on this Python: rebuild it"


@pytest.mark.parametrize("how", ["path", "bytes", "file"])
def test_scan_refuses_a_frame_that_ends_inside_an_opcode(how: str, tmp_path: Path) -> None:
    path = tmp_path / "frame.pkl"
    path.write_bytes(_split_frame_attack("true"))
    report = _sources(path)[how]()
    assert not report.accepted
    assert report.damaged is not None and "frame" in report.damaged
    assert "REFUSED" in str(report)


def test_restricted_loading_refuses_a_frame_that_ends_inside_an_opcode() -> None:
    with pytest.raises((UnsafePayloadError, CorruptPayloadError)):
        omnipickle.loads(_split_frame_attack("true"), restricted=True)


def test_scan_refuses_a_frame_inside_a_frame() -> None:
    inner = b"\x95" + struct.pack("<Q", 2) + b"N."
    data = b"\x80\x04\x95" + struct.pack("<Q", len(inner) + 1) + inner + b"0"
    report = scan(data)
    assert not report.accepted and "inside the frame" in str(report.damaged)


@pytest.mark.parametrize("protocol", [4, 5])
def test_frames_the_pickler_writes_line_up(protocol: int) -> None:
    data = pickle.dumps([b"x" * 200_000, "y" * 100_000, list(range(50_000))], protocol)
    assert scan(data).accepted and scan(io.BytesIO(data)).accepted


# --- budgets ------------------------------------------------------------------------------------

_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({mib} << 20, {mib} << 20))
import omnipickle
from omnipickle.errors import UnpicklingError
from omnipickle.security import LIMITS
LIMITS.update({limits})
try:
    report = omnipickle.scan(sys.argv[1])
except UnpicklingError as exc:
    print("ERROR", exc)
else:
    print("ACCEPTED" if report.accepted else "REFUSED", report.damaged)
# VmHWM, not ru_maxrss: the latter counts what the parent held before exec.
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
print("RSS", peak >> 10)
"""


def _scan_in_child(
    path: Path, mib: int = 1536, timeout: float = 120, limits: dict[str, int] | None = None
) -> str:
    code = _LIMITED.format(mib=mib, limits=limits or {})
    proc = run_python(str(path), code=code, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _bomb(codec: str, path: Path, size: int = 300 << 20) -> None:
    """``size`` zero bytes compressed, written without holding them in memory."""
    chunk = bytes(1 << 20)
    with path.open("wb") as out:
        if codec == "zip":
            import zipfile

            with (
                zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive,
                archive.open("data.pkl", "w", force_zip64=True) as member,
            ):
                for _ in range(size >> 20):
                    member.write(chunk)
            return
        if codec == "zlib":
            import zlib

            compressor: Any = zlib.compressobj(9)
        else:
            compressor = get_codec(codec).compressobj()
        for _ in range(size >> 20):
            out.write(compressor.compress(chunk))
        out.write(compressor.flush())


@pytest.mark.parametrize("codec", ["gzip", "zstd", "lzma", "bz2", "zlib", "zip"])
def test_a_decompression_bomb_is_a_documented_error_in_bounded_memory(
    codec: str, tmp_path: Path
) -> None:
    path = tmp_path / "bomb"
    _bomb(codec, path)
    assert path.stat().st_size < (2 << 20)
    out = _scan_in_child(path)
    assert out.startswith("ERROR") and "decompression bomb" in out, out
    with pytest.raises(omnipickle.BudgetExceededError, match="decompression bomb"):
        omnipickle.load(path)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_a_large_plain_pickle_is_scanned_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.pkl"
    with path.open("wb") as f:
        pickle.dump([b"\0" * (100 << 20), b"\1" * (100 << 20), list(range(100_000))], f, 5)
    out = _scan_in_child(path, mib=1024)
    assert out.startswith("ACCEPTED"), out
    rss = int(out.split("RSS")[1])
    assert rss < 150, f"scan of a 200 MB file used {rss} MB"


@pytest.mark.parametrize(
    "data",
    [b"\x80\x04" + b"(" * (2 << 20) + b".", b"\x80\x04" + b"N" * (1 << 20) + b"."],
    ids=["mark-flood", "value-flood"],
)
def test_a_flood_is_refused_in_bounded_time_and_memory(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "flood.pkl"
    path.write_bytes(data)
    # The stack's limit lowered so the flood is quick to make; the marks' is as shipped.
    out = _scan_in_child(path, mib=1024, timeout=120, limits={"stack": 1 << 19})
    assert out.startswith("REFUSED") and "too large to follow" in out, out


def test_deep_nesting_that_pickle_writes_is_followed() -> None:
    nested: Any = []
    for _ in range(200):
        nested = [nested]
    assert scan(pickle.dumps(nested, 0)).accepted and scan(pickle.dumps(nested, 5)).accepted


def test_a_scan_of_a_file_object_leaves_it_where_it_was() -> None:
    """scan(f) before load(f): the load still finds the payload."""
    f = io.BytesIO(b"junk" + omnipickle.dumps({"a": 1}))
    f.seek(4)
    assert omnipickle.scan(f).accepted
    assert f.tell() == 4
    assert omnipickle.load(f) == {"a": 1}
