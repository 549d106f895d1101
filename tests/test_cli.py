"""The omnipickle command: demo and info, exit codes 0/1/2."""

from __future__ import annotations

from pathlib import Path

import omnipickle
from conftest import run_python

CLI = "import sys; from omnipickle.cli import main; sys.exit(main(sys.argv[1:]))"


def test_demo_runs_every_step_in_a_fresh_interpreter() -> None:
    proc = run_python("demo", code=CLI)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "double(10) = 20, with_tax(10) = 12.0" in out
    assert "code by value  yes" in out
    assert "root['clients'][0]._sock" in out
    assert "reconnected to stock.sqlite, total = 8" in out
    assert "dropped root['clients'][0]._sock (socket.socket)" in out
    assert "CorruptPayloadError" in out
    assert out.rstrip().endswith("Done.")


def test_python_dash_m_runs_the_command() -> None:
    import subprocess
    import sys

    from conftest import SRC

    proc = subprocess.run(
        [sys.executable, "-m", "omnipickle", "--help"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC)},
        check=False,
    )
    assert proc.returncode == 0
    assert "demo" in proc.stdout


def test_info_prints_the_envelope(tmp_path: Path) -> None:
    path = tmp_path / "p.zst"
    omnipickle.dump({"a": 1}, path)
    proc = run_python("info", str(path), code=CLI)
    assert proc.returncode == 0, proc.stderr
    assert "zstd" in proc.stdout and "omnipickle v2" in proc.stdout


def test_info_on_a_damaged_header_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "p"
    data = bytearray(omnipickle.dumps(1))
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = run_python("info", str(path), code=CLI)
    assert proc.returncode == 1
    assert "corrupt header" in proc.stderr


def test_info_on_a_missing_file_exits_1(tmp_path: Path) -> None:
    proc = run_python("info", str(tmp_path / "nope"), code=CLI)
    assert proc.returncode == 1
    assert "cannot read" in proc.stderr


def test_bad_usage_exits_2() -> None:
    assert run_python("frobnicate", code=CLI).returncode == 2
    assert run_python(code=CLI).returncode == 2
    assert run_python("info", code=CLI).returncode == 2


def test_version_prints_the_installed_version() -> None:
    proc = run_python("--version", code=CLI)
    assert proc.returncode == 0
    assert proc.stdout.startswith("omnipickle ")


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`omnipickle demo | head -1`: the pipe closes, the command ends quietly."""
    import subprocess
    import sys

    from conftest import SRC

    proc = subprocess.run(
        f"{sys.executable} -c '{CLI}' demo | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=120,
    )
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_info_of_a_text_file_or_random_bytes_exits_1(tmp_path: Path) -> None:
    import os as _os

    for name, data in (("notes.txt", b"hello world\nnot a pickle\n"), ("noise", _os.urandom(64))):
        path = tmp_path / name
        path.write_bytes(data)
        proc = run_python("info", str(path), code=CLI)
        assert proc.returncode == 1, (name, proc.stdout)
        assert "not an omnipickle payload or a pickle stream" in proc.stderr
