"""Every entry point that reads a payload goes through one reader: the same bad input gets the
same error type and the same message from ``loads``, ``load`` (a path and a file object),
``info``, ``scan``, ``verify_signature`` and the command line."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from omnipickle.cli import main
from omnipickle.format import header as layout
from omnipickle.security import verify_signature

KEY = b"k" * 16
OTHER = b"o" * 16


def _reheader(data: bytes, **changes: Any) -> bytes:
    """``data`` with its header rebuilt (valid checksum) with ``changes`` applied."""
    header = layout.parse_header(data)
    fields = {
        "flags": header.flags,
        "protocol": header.protocol,
        "loader": header.loader,
        "backend_bits": header.backend_bits,
        "codec_id": header.codec_id,
        "stored_length": header.stored_length,
        "raw_length": header.raw_length,
        "checksum": header.checksum,
        "extra": header.extra or None,
    }
    fields.update(changes)
    lead = data[: header.lead]  # format 2: the stream's PROTO sits before the header
    return layout.build_header(**fields, lead=lead) + data[header.payload_offset :]


def _unknown_codec() -> bytes:
    return _reheader(omnipickle.dumps([1, 2]), codec_id=200)


def _unknown_backend_bit() -> bytes:
    return _reheader(omnipickle.dumps([1, 2]), backend_bits=0x81)


def _unknown_loader() -> bytes:
    return _reheader(omnipickle.dumps([1, 2]), loader=77)


def _truncated_header() -> bytes:
    return omnipickle.dumps([1, 2])[:30]


def _bad_signature() -> bytes:
    return omnipickle.dumps([1, 2], key=OTHER)


BAD = {
    "unknown codec id": (_unknown_codec, omnipickle.IncompatiblePayloadError),
    "unknown backend bit": (_unknown_backend_bit, omnipickle.IncompatiblePayloadError),
    "unknown loader id": (_unknown_loader, omnipickle.IncompatiblePayloadError),
    "truncated header": (_truncated_header, omnipickle.TruncatedPayloadError),
}


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def _entry_points(path: Path, key: bytes | None) -> dict[str, Callable[[], Any]]:
    kw: dict[str, Any] = {} if key is None else {"key": key}
    return {
        "loads": lambda: omnipickle.loads(path.read_bytes(), **kw),
        "load(path)": lambda: omnipickle.load(path, **kw),
        "load(file)": lambda: omnipickle.load(io.BytesIO(path.read_bytes()), **kw),
        "load(open file)": lambda: omnipickle.load(path.open("rb"), **kw),
        "restricted loads": lambda: omnipickle.loads(path.read_bytes(), restricted=True, **kw),
        "scan(bytes)": lambda: omnipickle.scan(path.read_bytes(), **kw),
        "scan(path)": lambda: omnipickle.scan(path, **kw),
    }


def _message(call: Callable[[], Any], expected: type[BaseException]) -> str:
    with pytest.raises(expected) as caught:
        call()
    return str(caught.value)


@pytest.mark.parametrize("case", sorted(BAD))
def test_the_same_bad_header_gets_the_same_error_everywhere(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, expected = BAD[case]
    path = tmp_path / "bad.bin"
    path.write_bytes(make())
    calls = _entry_points(path, None)
    calls["info(bytes)"] = lambda: omnipickle.info(path.read_bytes())
    calls["info(path)"] = lambda: omnipickle.info(path)
    calls["info(file)"] = lambda: omnipickle.info(io.BytesIO(path.read_bytes()))
    messages = {name: _message(call, expected) for name, call in calls.items()}
    assert len(set(messages.values())) == 1, messages
    (message,) = set(messages.values())
    for command in ("info", "scan"):
        code, err = _cli([command, str(path)], capsys)
        assert code == 1
        assert message in err


def test_a_bad_signature_gets_the_same_error_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "signed.bin"
    path.write_bytes(_bad_signature())
    calls = _entry_points(path, KEY)
    calls["verify_signature"] = lambda: verify_signature(path, KEY)
    messages = {name: _message(call, omnipickle.SignatureError) for name, call in calls.items()}
    assert len(set(messages.values())) == 1, messages
    (message,) = set(messages.values())
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    code, err = _cli(["verify", str(path), "--key-file", str(key_file)], capsys)
    assert code == 1
    assert message in err


def test_a_key_for_an_unsigned_payload_gets_the_same_error_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "unsigned.bin"
    path.write_bytes(omnipickle.dumps([1]))
    calls = _entry_points(path, KEY)
    calls["verify_signature"] = lambda: verify_signature(path, KEY)
    messages = {name: _message(call, omnipickle.SignatureError) for name, call in calls.items()}
    assert len(set(messages.values())) == 1, messages
