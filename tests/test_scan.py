"""Checking a payload without unpickling it: ``scan`` and ``verify_signature``."""

from __future__ import annotations

import collections
import gzip
import os
import pickle
import threading
import zlib
from pathlib import Path
from typing import Any

import cloudpickle
import dill
import pytest

import omnipickle
from conftest import check_python
from helpers import Plain, Slotted
from omnipickle._reconstruct import load_dill
from omnipickle.codecs import get_codec
from omnipickle.errors import (
    CorruptPayloadError,
    SignatureError,
    TruncatedPayloadError,
    UnsafePayloadError,
)
from omnipickle.security import ScanReport, restricted_loads, scan, verify_signature
from payloads import HOSTILE, Call, plain_data, stream_of

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
KEY = b"a key of at least sixteen bytes"


def test_scan_and_its_report_are_exported_at_the_top_level() -> None:
    assert omnipickle.scan is scan
    assert omnipickle.ScanReport is ScanReport


def test_scan_of_plain_data_lists_no_globals_and_accepts_it() -> None:
    report = scan(omnipickle.dumps({"a": [1, 2.5, "x"]}))
    assert report.format == "omnipickle"
    assert report.globals == ()
    assert report.accepted and report.refused == ()
    assert not report.by_value
    assert report.backends == ("pickle",)
    assert report.protocol == pickle.HIGHEST_PROTOCOL
    assert "accepted by restricted loading" in str(report)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_scan_resolves_globals_and_counts_calls(protocol: int) -> None:
    report = scan(pickle.dumps([Plain(1, 2), Plain(3, 4), collections.OrderedDict()], protocol))
    rows = {use.qualified_name: use for use in report.globals}
    assert rows["helpers.Plain"].imports == 1
    assert rows["helpers.Plain"].builds == 2
    assert rows["collections.OrderedDict"].calls == 1
    assert rows["collections.OrderedDict"].allowed
    assert not rows["helpers.Plain"].allowed
    assert report.refused == ("helpers.Plain",)


def test_scan_of_a_lambda_reports_code_by_value() -> None:
    report = scan(omnipickle.dumps(lambda x: x + 1))
    names = [use.qualified_name for use in report.globals]
    assert names == ["omnipickle._rebuild.function"]
    assert report.by_value
    assert report.backends == ("pickle",)
    assert not report.accepted
    assert any(use.code for use in report.globals)
    assert scan(omnipickle.dumps(lambda x: x + 1), trusted=True).accepted


def test_scan_of_a_hostile_pickle_names_the_call(tmp_path: Path) -> None:
    report = scan(pickle.dumps(HOSTILE["os.system"](tmp_path / "m")))
    (use,) = report.globals
    assert (use.module, use.name, use.calls, use.allowed) == ("posix", "system", 1, False)
    assert report.refused == ("posix.system",)
    assert "REFUSED" in str(report) and "posix.system" in str(report)
    assert not (tmp_path / "m").exists()


def test_scan_of_a_getattr_chain_lists_every_link(tmp_path: Path) -> None:
    report = scan(pickle.dumps(HOSTILE["getattr chain"](tmp_path / "m")))
    assert {u.qualified_name for u in report.globals} == {"builtins.getattr", "builtins.__import__"}
    assert report.refused[0] == "builtins.getattr"


@pytest.mark.parametrize("codec", sorted(n for n in omnipickle.codecs() if n != "xz"))
def test_scan_decompresses_every_codec(codec: str) -> None:
    data = [Plain(1, 2), {"k": 1}]
    report = scan(omnipickle.dumps(data, compression=codec))
    assert report.codec == get_codec(codec).name
    assert [u.qualified_name for u in report.globals] == ["helpers.Plain"]
    assert report.stream_size > 0


@pytest.mark.parametrize("codec", ["gzip", "bz2", "lzma", "zstd"])
def test_scan_reads_pickle_files_compressed_whole(tmp_path: Path, codec: str) -> None:
    raw = pickle.dumps(Plain(1, 2))
    compressed = get_codec(codec).compress(raw)
    (tmp_path / "p").write_bytes(compressed)
    report = scan(tmp_path / "p")
    assert report.format == "compressed pickle" and report.codec == codec
    assert report.refused == ("helpers.Plain",)


def test_scan_reads_a_plain_pickle_file_by_path_and_by_file_object(tmp_path: Path) -> None:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(plain_data(), 2))
    by_path = scan(str(path))
    with path.open("rb") as f:
        by_file = scan(f)
    assert by_path.format == by_file.format == "pickle"
    assert by_path.rows() == by_file.rows()
    assert by_path.accepted
    assert by_path.protocol == 2


def test_scan_sees_a_second_pickle_hidden_after_the_first(tmp_path: Path) -> None:
    data = pickle.dumps([1, 2]) + pickle.dumps(HOSTILE["os.system"](tmp_path / "m"))
    report = scan(data)
    assert report.streams == 2
    assert report.refused == ("posix.system",)


def test_scan_refuses_trailing_bytes_that_are_not_a_pickle() -> None:
    """What follows a stream is scanned too: a second load would read it, and what cannot be
    followed cannot be vouched for."""
    report = scan(pickle.dumps([1]) + b"\xffgarbage")
    assert report.streams == 2 and not report.accepted
    first, second = report.per_stream
    assert first.accepted and first.damaged is None
    assert second.offset == len(pickle.dumps([1])) and "unknown opcode" in str(second.damaged)


def test_scan_reports_a_nested_dill_blob_and_what_it_holds() -> None:
    report = scan(pickle.dumps(Call(load_dill, dill.dumps(Call(os.system, "true")))))
    assert report.refused[0] == "omnipickle._reconstruct.load_dill"
    (blob,) = report.nested
    assert blob.report is not None
    assert blob.report.refused == ("posix.system",)
    assert "dill" in report.backends
    trusted = scan(pickle.dumps(Call(load_dill, dill.dumps(Call(os.system, "true")))), trusted=True)
    assert trusted.refused == ("posix.system (in the blob at byte 90)",) or (
        trusted.refused[0].startswith("posix.system (in the blob")
    )


def test_scan_reports_a_payload_that_changes_a_global() -> None:
    stream = b"\x80\x04\x8c\x0bcollections\x8c\x07Counter\x93N}\x8c\x01xK\x01s\x86b."
    report = scan(stream)
    assert report.mutations == ("collections.Counter",)
    assert not report.accepted


def test_scan_reports_an_unresolvable_global_as_refused() -> None:
    report = scan(b"\x80\x04\x8c\x02osK\x01\x93.")
    assert report.globals[0].qualified_name == "<unresolved>"
    assert not report.accepted


def test_scan_reports_persistent_ids_and_out_of_band_buffers() -> None:
    buffers: list[pickle.PickleBuffer] = []
    payload = omnipickle.dumps(
        [pickle.PickleBuffer(bytearray(b"abc"))], buffer_callback=buffers.append
    )
    assert scan(payload).out_of_band_buffers == 1
    report = scan(b"\x80\x02Prow\n.")
    assert report.persistent_ids == 1 and not report.accepted


def test_scan_includes_the_envelope() -> None:
    report = scan(omnipickle.dumps([1], key=KEY, compression="gzip"))
    assert report.envelope is not None and report.envelope.signed
    assert not report.verified
    assert "signed, signature not verified" in str(report)


def test_scan_with_the_key_says_the_signature_verified() -> None:
    report = scan(omnipickle.dumps(lambda x: x, key=KEY), key=KEY)
    assert report.verified and report.trusted and report.accepted
    assert "signed, signature verified" in str(report)
    assert report.to_dict()["verified"] is True


@pytest.mark.parametrize(
    "data", [b"hello world\nthis is text\n", bytes(range(23, 87))], ids=["text", "bytes"]
)
def test_scan_and_verify_do_not_call_what_is_no_pickle_a_pickle(data: bytes) -> None:
    for call in (lambda: scan(data), lambda: verify_signature(data, KEY)):
        with pytest.raises(CorruptPayloadError, match="not an omnipickle payload or a pickle"):
            call()


def test_a_compressed_file_is_not_called_a_pickle_before_it_is_read() -> None:
    data = gzip.compress(b"just some text")
    with pytest.raises(CorruptPayloadError, match="not an omnipickle payload or a pickle"):
        scan(data)
    with pytest.raises(SignatureError, match="gzip-compressed, not an omnipickle payload"):
        verify_signature(data, KEY)


def test_the_pickle_check_leaves_a_cut_pickle_to_be_called_truncated() -> None:
    with pytest.raises(TruncatedPayloadError):
        scan(pickle.dumps(list(range(100_000)))[:-9])
    with pytest.raises(SignatureError, match="plain pickle stream"):
        verify_signature(pickle.dumps(list(range(100_000)))[:-9], KEY)


def test_scan_rows_are_the_table_as_data() -> None:
    report = scan(pickle.dumps([Plain(1, 2), collections.deque()]))
    assert report.rows() == [
        {
            "global": use.qualified_name,
            "imports": use.imports,
            "calls": use.calls,
            "builds": use.builds,
            "code": use.code,
            "allowed": use.allowed,
            "reason": use.reason,
        }
        for use in report.globals
    ]
    text = str(report)
    for use in report.globals:
        assert use.qualified_name in text


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(plain_data(), 0),
        pickle.dumps(plain_data(), 5),
        pickle.dumps([Plain(1, 2)]),
        stream_of(omnipickle.dumps(lambda x: x)),
        stream_of(omnipickle.dumps([threading.Lock(), threading.Event()])),
        pickle.dumps(Call(os.system, "true")),
        pickle.dumps(Call(load_dill, dill.dumps([1]))),
        b"\x80\x04\x8c\x0bcollections\x8c\x07Counter\x93N}\x8c\x01xK\x01s\x86b.",
    ],
    ids=["data-p0", "data-p5", "class", "lambda", "locks", "system", "blob", "mutation"],
)
@pytest.mark.parametrize("trusted", [False, True])
def test_scan_verdict_agrees_with_restricted_loads(payload: bytes, trusted: bool) -> None:
    verdict = scan(payload, trusted=trusted).accepted
    if verdict:
        restricted_loads(payload, trusted=trusted)
    else:
        with pytest.raises(UnsafePayloadError):
            restricted_loads(payload, trusted=trusted)


def _flip(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0x40
    return bytes(out)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedPayloadError),
        (omnipickle.dumps([1, 2, 3])[:30], TruncatedPayloadError),
        (omnipickle.dumps([1, 2, 3])[:-2], TruncatedPayloadError),
        (_flip(omnipickle.dumps([1, 2, 3]), -3), CorruptPayloadError),
        (_flip(omnipickle.dumps([1, 2, 3]), 20), CorruptPayloadError),
        (pickle.dumps(plain_data())[:-9], TruncatedPayloadError),
        (b"\x80\x05\xff\xff\xff", CorruptPayloadError),
        (b"no pickle here", CorruptPayloadError),
        (gzip.compress(pickle.dumps([1]))[:-4], CorruptPayloadError),
        (b"\x80\x04\x94.", CorruptPayloadError),  # MEMOIZE on an empty stack
        (b"\x80\x04h\x07.", CorruptPayloadError),  # a memo entry never set
        (b"\x80\x05\x95garbage", TruncatedPayloadError),  # a frame header cut short
    ],
    ids=[
        "empty",
        "header-cut",
        "payload-cut",
        "payload-flip",
        "header-flip",
        "plain-cut",
        "bad-opcode",
        "text",
        "gzip-cut",
        "underflow",
        "memo",
        "frame-cut",
    ],
)
def test_scan_of_damaged_data_raises_the_documented_error(
    data: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        scan(data)


@pytest.mark.parametrize(
    "data",
    [b"\x80\x05\xff", b"(.", b"\x80\x04\x94.", b"no pickle here"],
    ids=["bad-opcode-last", "stop-on-mark", "underflow", "text"],
)
def test_a_damaged_stream_that_is_whole_is_not_called_truncated(data: bytes) -> None:
    """Truncation is decided by the reader's position: these fail before the data's end, or at
    an opcode that needs nothing more."""
    with pytest.raises(CorruptPayloadError) as info:
        scan(data)
    assert not isinstance(info.value, TruncatedPayloadError)


def test_scan_checks_the_sections_of_a_file_with_large_arrays(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    path = tmp_path / "arrays.pkl"
    omnipickle.dump({"a": np.arange(20_000, dtype="f8")}, path)
    assert omnipickle.info(path).extra.get("sections"), "expected the array in a section"
    report = scan(path)
    assert report.accepted and report.out_of_band_buffers == 1
    damaged = bytearray(path.read_bytes())
    damaged[-100] ^= 1
    with pytest.raises(CorruptPayloadError, match="section"):
        scan(bytes(damaged))


def test_scan_reads_pickles_other_tools_compressed() -> None:
    report = scan(zlib.compress(pickle.dumps(Plain(1, 2))))
    assert report.format == "compressed pickle"
    assert report.refused == ("helpers.Plain",)


def test_scan_rejects_what_is_not_data() -> None:
    with pytest.raises(TypeError, match="scan"):
        scan(12)  # type: ignore[arg-type]


def test_scan_executes_nothing_and_imports_nothing(tmp_path: Path) -> None:
    code = (
        "import sys, pickle\n"
        "from omnipickle.security import scan\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "scan(data)\n"
        "found = ('cloudpickle', 'dill', 'numpy', 'localpkg')\n"
        "print(sorted(m for m in found if m in sys.modules))\n"
    )
    path = tmp_path / "p"
    path.write_bytes(
        pickle.dumps(Call(load_dill, dill.dumps(Call(os.system, f"touch {tmp_path / 'm'}"))))
        + cloudpickle.dumps(lambda: 1)
    )
    assert check_python(str(path), code=code).strip() == "[]"
    assert not (tmp_path / "m").exists()


def test_importing_the_security_module_imports_no_optional_package() -> None:
    code = (
        "import sys\nimport omnipickle.security\n"
        "print(sorted(m for m in ('cloudpickle', 'dill', 'numpy', 'zstandard', 'pickletools')"
        " if m in sys.modules))\n"
    )
    assert check_python(code=code).strip() == "[]"


# --- verify_signature ------------------------------------------------------------------------


def test_a_signed_payload_verifies_with_its_key(tmp_path: Path) -> None:
    payload = omnipickle.dumps(Slotted(1), key=KEY, compression="zstd")
    verify_signature(payload, KEY)
    (tmp_path / "p").write_bytes(payload)
    verify_signature(tmp_path / "p", bytearray(KEY))


def test_a_payload_verifies_with_any_key_of_a_rotation_list() -> None:
    old, new = b"the old key, retired soon", b"the new key, in use from now"
    payload = omnipickle.dumps([1], key=old)
    verify_signature(payload, [new, old])
    with pytest.raises(SignatureError):
        verify_signature(payload, [new])
    with pytest.raises(ValueError, match="empty"):
        verify_signature(payload, [])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (omnipickle.dumps([1], key=KEY), "does not verify"),
        (omnipickle.dumps([1]), "not signed"),
        (pickle.dumps([1]), "plain pickle"),
    ],
)
def test_a_payload_that_does_not_verify_raises_signature_error(
    payload: bytes, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify_signature(payload, b"another key, also long enough")


def test_a_tampered_signed_payload_is_reported_as_damaged() -> None:
    with pytest.raises(CorruptPayloadError):
        verify_signature(_flip(omnipickle.dumps([1, 2], key=KEY), 60), KEY)


@pytest.mark.parametrize(
    ("key", "error"), [(b"short", ValueError), ("a str key!!!!!!!!!", TypeError)]
)
def test_verify_signature_refuses_a_bad_key(key: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        verify_signature(omnipickle.dumps(1, key=KEY), key)


def test_scan_and_restricted_loading_share_the_argument_rules() -> None:
    """``_codecs.encode(x, 'rot13')``: refused by both (one policy decides), while the
    ``_codecs.encode(text, 'latin1')`` protocol 0-2 pickles write for bytes is accepted by both."""
    rot13 = b"c_codecs\nencode\n(Vhello\nVrot13\ntR."
    assert not omnipickle.scan(rot13).accepted
    with pytest.raises(omnipickle.UnsafePayloadError):
        omnipickle.loads(rot13, restricted=True)
    latin = pickle.dumps(b"\x00\xff bytes", protocol=2)
    assert omnipickle.scan(latin).accepted
    assert omnipickle.loads(latin, restricted=True) == b"\x00\xff bytes"
