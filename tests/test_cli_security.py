"""The scan, verify and convert commands, run in a child process: output and exit codes 0/1/2."""

from __future__ import annotations

import collections
import datetime
import json
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import run_python
from helpers import Plain
from payloads import Call

CLI = "import sys; from omnipickle.cli import main; sys.exit(main(sys.argv[1:]))"
KEY = b"sixteen bytes and more"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_python(*(str(a) for a in args), code=CLI)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_bytes(KEY + b"\n")
    return path


# --- scan ----------------------------------------------------------------------------------


def test_scan_of_plain_data_prints_the_report_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "data.zst"
    omnipickle.dump({"a": [1, 2]}, path)
    proc = cli("scan", path)
    assert proc.returncode == 0, proc.stderr
    assert "accepted by restricted loading" in proc.stdout
    assert "zstd" in proc.stdout


def test_scan_of_a_hostile_pickle_exits_1_and_names_the_global(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Call(os.system, f"touch {marker}")))
    proc = cli("scan", path)
    assert proc.returncode == 1
    assert "REFUSED" in proc.stdout and "posix.system" in proc.stdout
    assert not marker.exists()


def test_scan_with_allow_accepts_the_named_classes(tmp_path: Path) -> None:
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps([Plain(1, 2)]))
    assert cli("scan", path).returncode == 1
    assert cli("scan", path, "--allow", "helpers.Plain").returncode == 0
    assert cli("scan", path, "--allow", "helpers.*").returncode == 0


@pytest.mark.parametrize("entry", ["*", "helpers", "helpers.Plain ", "helpers*"])
def test_scan_with_a_malformed_allow_entry_exits_2(tmp_path: Path, entry: str) -> None:
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps([1]))
    proc = cli("scan", path, "--allow", entry)
    assert proc.returncode == 2
    assert "allow entry" in proc.stderr


def test_scan_of_code_by_value_exits_1_unless_its_signature_verifies(
    tmp_path: Path, key_file: Path
) -> None:
    """The report (stdout) and the notes (stderr) say one thing about the signature."""
    path = tmp_path / "f.pkl"
    omnipickle.dump(lambda x: x * 2, path, key=KEY)
    assert cli("scan", path).returncode == 1
    proc = cli("scan", path, "--key-file", key_file)
    assert proc.returncode == 0, proc.stdout
    assert "signed, signature verified" in proc.stdout
    assert "accepted by trusted loading" in proc.stdout
    assert "not verified" not in proc.stdout + proc.stderr
    proc = cli("scan", path, "--key-file", key_file, "--json")
    assert json.loads(proc.stdout)["verified"] is True and proc.stderr == ""
    other = tmp_path / "other-key"
    other.write_bytes(b"another key, long enough")
    proc = cli("scan", path, "--key-file", other)
    assert proc.returncode == 1
    assert "does not verify" in proc.stderr and "scanning as untrusted" in proc.stderr
    assert "signed, signature not verified" in proc.stdout


@pytest.mark.parametrize("command", ["scan", "verify"])
@pytest.mark.parametrize(
    "content", [b"hello world\nthis is a text file\n", bytes(range(23, 87))], ids=["text", "bytes"]
)
def test_scan_and_verify_of_what_is_no_pickle_exit_1_and_say_so(
    tmp_path: Path, key_file: Path, command: str, content: bytes
) -> None:
    path = tmp_path / "notes"
    path.write_bytes(content)
    proc = cli(command, path, "--key-file", key_file)
    assert proc.returncode == 1
    assert "not an omnipickle payload or a pickle stream" in proc.stderr
    assert "plain pickle" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"\x80\x05\x95garbage", "damaged"), (None, "cannot read")],
)
def test_scan_of_a_damaged_or_missing_file_exits_1(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "p"
    if content is not None:
        path.write_bytes(content)
    proc = cli("scan", path)
    assert proc.returncode == 1
    assert message in proc.stderr


def test_scan_json_gives_the_verdict_and_each_stream(tmp_path: Path) -> None:

    path = tmp_path / "two.bin"
    path.write_bytes(omnipickle.dumps({"a": 1}) + pickle.dumps(Call(os.system, "true")))
    proc = cli("scan", path, "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "refused" and not report["accepted"]
    assert [s["format"] for s in report["streams"]] == ["omnipickle", "pickle"]
    (system,) = report["streams"][1]["globals"]
    assert (system["module"], system["name"], system["allowed"]) == ("posix", "system", False)
    assert system["calls"] == 1 and system["imports"] == 1 and system["reason"]
    assert report["backends"] == ["pickle"] and report["by_value"] is False
    assert isinstance(report["notes"], list)


def test_scan_json_of_plain_data_exits_0(tmp_path: Path) -> None:

    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps([1, 2.5, "x"]))
    proc = cli("scan", path, "--json")
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert report["verdict"] == "accepted" and report["streams"][0]["globals"] == []


def test_scan_json_of_a_damaged_file_exits_1_with_a_json_error(tmp_path: Path) -> None:

    path = tmp_path / "bad.bin"
    path.write_bytes(omnipickle.dumps([1, 2, 3])[:-3])
    proc = cli("scan", path, "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["verdict"] == "damaged" and report["error"] == "TruncatedPayloadError"


def test_scan_json_with_a_bad_allow_entry_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps([1]))
    assert cli("scan", path, "--json", "--allow", "not a name").returncode == 2


def test_scan_without_a_file_exits_2() -> None:
    assert cli("scan").returncode == 2


# --- verify --------------------------------------------------------------------------------


def test_verify_of_a_valid_signature_exits_0(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "p.gz"
    omnipickle.dump([1, 2], path, key=KEY)
    proc = cli("verify", path, "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr
    assert "signature OK" in proc.stdout


def test_verify_strips_one_trailing_newline_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "p"
    omnipickle.dump([1], path, key=KEY + b"\n")
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n\n")  # the key is KEY + "\n"
    assert cli("verify", path, "--key-file", key_file).returncode == 0
    key_file.write_bytes(KEY + b"\n")  # the key is KEY
    assert cli("verify", path, "--key-file", key_file).returncode == 1
    spaced = tmp_path / "spaced"
    spaced.write_bytes(KEY + b"\n" + b" ")  # no trailing newline: nothing is stripped
    omnipickle.dump([1], path, key=KEY + b"\n ")
    assert cli("verify", path, "--key-file", spaced).returncode == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: omnipickle.dump([1], p, key=b"a different key, long enough"), "does not verify"),
        (lambda p: omnipickle.dump([1], p), "not signed"),
        (lambda p: p.write_bytes(pickle.dumps([1])), "cannot be signed"),
        (lambda p: p.write_bytes(omnipickle.dumps([1], key=KEY)[:-40]), "truncated"),
    ],
    ids=["wrong-key", "unsigned", "plain-pickle", "truncated"],
)
def test_verify_of_a_payload_that_does_not_verify_exits_1(
    tmp_path: Path, key_file: Path, make: Any, message: str
) -> None:
    path = tmp_path / "p"
    make(path)
    proc = cli("verify", path, "--key-file", key_file)
    assert proc.returncode == 1
    assert message in proc.stderr


def test_verify_of_a_tampered_payload_exits_1(tmp_path: Path, key_file: Path) -> None:
    data = bytearray(omnipickle.dumps({"amount": 10}, key=KEY))
    data[-40] ^= 1
    path = tmp_path / "p"
    path.write_bytes(bytes(data))
    assert cli("verify", path, "--key-file", key_file).returncode == 1


@pytest.mark.parametrize("key", [b"short", b"fifteen bytes!!\n", b""])
def test_verify_refuses_a_key_under_16_bytes_with_exit_2(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "p"
    omnipickle.dump([1], path, key=KEY)
    key_file = tmp_path / "key"
    key_file.write_bytes(key)
    proc = cli("verify", path, "--key-file", key_file)
    assert proc.returncode == 2
    assert "at least 16 bytes" in proc.stderr


def test_verify_without_a_key_file_or_with_a_missing_one_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "p"
    omnipickle.dump([1], path, key=KEY)
    assert cli("verify", path).returncode == 2
    proc = cli("verify", path, "--key-file", tmp_path / "nope")
    assert proc.returncode == 2
    assert "cannot read the key file" in proc.stderr


# --- convert -------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_convert_rewrites_with_the_given_compression(tmp_path: Path, compression: str) -> None:
    source, target = tmp_path / "in.pkl", tmp_path / "out.bin"
    data = {"a": collections.OrderedDict(b=[2]), "when": datetime.date(2024, 5, 6)}
    omnipickle.dump(data, source)
    proc = cli("convert", source, target, "--compression", compression)
    assert proc.returncode == 0, proc.stderr
    assert omnipickle.load(target) == data
    expected = None if compression == "none" else compression
    assert omnipickle.info(target).codec == expected


def test_convert_infers_the_codec_from_the_suffix(tmp_path: Path) -> None:
    source, target = tmp_path / "in.pkl", tmp_path / "out.xz"
    source.write_bytes(pickle.dumps([1, 2]))
    assert cli("convert", source, target).returncode == 0
    assert omnipickle.info(target).codec == "lzma"
    assert omnipickle.load(target) == [1, 2]


def test_convert_signs_the_output_and_verifies_a_signed_input(
    tmp_path: Path, key_file: Path
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    omnipickle.dump([1], source, key=KEY)
    proc = cli("convert", source, target, "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr
    assert omnipickle.load(target, key=KEY) == [1]


def test_convert_of_a_signed_input_that_does_not_verify_exits_1_and_writes_nothing(
    tmp_path: Path, key_file: Path
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    omnipickle.dump([1], source, key=b"not the key in the key file")
    proc = cli("convert", source, target, "--key-file", key_file)
    assert proc.returncode == 1
    assert "does not verify" in proc.stderr
    assert not target.exists()


def test_convert_of_a_damaged_input_exits_1_and_keeps_the_old_output(tmp_path: Path) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    source.write_bytes(omnipickle.dumps([1, 2, 3])[:-3])
    target.write_bytes(b"previous")
    proc = cli("convert", source, target)
    assert proc.returncode == 1
    assert "truncated" in proc.stderr
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_convert_of_a_pickle_naming_a_missing_class_exits_1(tmp_path: Path) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    source.write_bytes(b"\x80\x04\x8c\x0cno_such_mod_\x8c\x01X\x93.")
    proc = cli("convert", source, target)
    assert proc.returncode == 1
    assert "no_such_mod_" in proc.stderr
    assert not target.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--compression", "nope"],
        ["--key-file", "{short}"],
        ["--key-file", "{missing}"],
    ],
)
def test_convert_with_bad_options_exits_2_and_writes_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    omnipickle.dump([1], source)
    (tmp_path / "short").write_bytes(b"short")
    filled = [a.format(short=tmp_path / "short", missing=tmp_path / "missing") for a in args]
    proc = cli("convert", source, target, *filled)
    assert proc.returncode == 2
    assert proc.stderr.startswith("omnipickle convert: ")
    assert not target.exists()


def test_convert_help_warns_that_it_unpickles() -> None:
    proc = cli("convert", "--help")
    assert proc.returncode == 0
    assert "unpickles IN" in proc.stdout and "trust" in proc.stdout


def test_convert_reports_progress_for_large_files(tmp_path: Path) -> None:
    source, target = tmp_path / "in", tmp_path / "out.zst"
    omnipickle.dump(os.urandom(51 * 1024 * 1024), source)
    proc = cli("convert", source, target)
    assert proc.returncode == 0, proc.stderr
    assert "loading" in proc.stderr and "done in" in proc.stderr
    small = tmp_path / "small"
    omnipickle.dump([1], small)
    assert cli("convert", small, tmp_path / "small.out").stderr == ""


def test_every_command_is_listed_in_the_help() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("demo", "info", "scan", "verify", "convert"):
        assert command in proc.stdout
