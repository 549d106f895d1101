"""The omnipickle command: demo and info, exit codes 0/1/2."""

from __future__ import annotations

from pathlib import Path

import pytest

import omnipickle
from conftest import run_python

CLI = "import sys; from omnipickle.cli import main; sys.exit(main(sys.argv[1:]))"


def test_demo_runs_every_step_in_a_fresh_interpreter() -> None:
    proc = run_python("demo", code=CLI)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("in a fresh interpreter, another process:") == 2
    assert '>>> jobs["double"](10), jobs["with_tax"](10)\n(20, 12.0)\n' in out
    assert '>>> inventory.conn.execute("select sum(qty) from stock").fetchone()\n(3,)\n' in out
    assert "code by value  yes" in out
    assert "PicklingTypeError: cannot serialize socket.socket at root['clients'][0].sock" in out
    assert "DroppedResourceWarning: 1 live resource(s) left out" in out
    assert ">>> omnipickle.loads(data)\nCorruptPayloadError: corrupt payload" in out
    assert out.rstrip().endswith("Done.")


def test_the_demo_shows_the_code_it_runs() -> None:
    """Every line after a prompt is a line of demo.py, and each step shows its code."""
    import omnipickle.demo

    source = Path(omnipickle.demo.__file__).read_text().splitlines()
    proc = run_python("demo", code=CLI)
    assert proc.returncode == 0, proc.stderr
    shown = [line[4:] for line in proc.stdout.splitlines() if line.startswith((">>> ", "... "))]
    assert len(shown) > 20
    assert [line for line in shown if line not in source] == []
    for line in (
        'omnipickle.dump(jobs, f"{folder}/jobs.pkl.zst")',
        'print(omnipickle.info(f"{folder}/jobs.pkl.zst"))',
        "pickle.loads(data) == rows",
        "    conn = omnipickle.transient(lambda self: sqlite3.connect(self.path))",
        'data = omnipickle.dumps({"clients": [Client(sock)]}, on_unpicklable="drop")',
        "data[-2] ^= 1",
    ):
        assert line in shown, line


def test_the_demo_says_where_its_files_are_and_removes_them() -> None:
    import ast

    proc = run_python("demo", code=CLI)
    first = proc.stdout.splitlines()[0]
    assert first.startswith("folder = ") and "temporary folder, removed" in first
    folder = Path(ast.literal_eval(first.split("=", 1)[1].split("  (")[0].strip()))
    assert folder.name.startswith("omnipickle-demo-")
    assert not folder.exists()
    assert str(folder) not in proc.stderr


def test_a_demo_session_prints_each_statement_then_what_it_gave() -> None:
    import io

    from omnipickle.demo import run_session

    out = io.StringIO()
    code = "x = 20\nif x:\n    print('big')\nx + 1\nomnipickle.loads(b'')\n"
    values = run_session(code, {}, out)
    assert out.getvalue().splitlines() == [
        ">>> x = 20",
        ">>> if x:",
        "...     print('big')",
        "...",
        "big",
        ">>> x + 1",
        "21",
        ">>> omnipickle.loads(b'')",
        "TruncatedPayloadError: empty payload: 0 bytes",
    ]
    assert values[0] == 21 and isinstance(values[1], omnipickle.TruncatedPayloadError)


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


@pytest.mark.parametrize(
    "command",
    [
        ["demo"],
        ["info", "f"],
        ["scan", "f"],
        ["verify", "f", "--key-file", "k"],
        ["convert", "a", "b"],
    ],
)
def test_an_unknown_option_gets_the_commands_own_usage(command: list[str]) -> None:
    proc = run_python(*command, "--bogus", code=CLI)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"usage: omnipickle {command[0]} ")
    assert f"omnipickle {command[0]}: error: unrecognized arguments: --bogus" in proc.stderr


def test_an_unknown_option_before_the_command_gets_the_top_level_usage() -> None:
    proc = run_python("--bogus", "scan", "f", code=CLI)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: omnipickle [-h]")
    assert "omnipickle: error: unrecognized arguments: --bogus" in proc.stderr


def test_version_prints_the_installed_version() -> None:
    proc = run_python("--version", code=CLI)
    assert proc.returncode == 0
    assert proc.stdout.startswith("omnipickle ")


@pytest.mark.parametrize("command", ["demo", "scan", "info"])
def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path, command: str) -> None:
    """`omnipickle demo | head -1`: the pipe closes, the command ends quietly."""
    import subprocess
    import sys

    from conftest import SRC

    path = tmp_path / "f.pkl"
    omnipickle.dump([lambda x: x] * 50, path)
    args = command if command == "demo" else f"{command} {path}"
    proc = subprocess.run(
        f"{sys.executable} -c '{CLI}' {args} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=120,
    )
    assert proc.stdout.count("\n") == 1
    assert proc.stderr == "", proc.stderr


def test_info_of_a_text_file_or_random_bytes_exits_1(tmp_path: Path) -> None:
    import random

    # Seeded: fewer than one random string in a hundred parses as far as it goes (test_sniff).
    noise = random.Random(10).randbytes(64)
    for name, data in (("notes.txt", b"hello world\nnot a pickle\n"), ("noise", noise)):
        path = tmp_path / name
        path.write_bytes(data)
        proc = run_python("info", str(path), code=CLI)
        assert proc.returncode == 1, (name, proc.stdout)
        assert "not an omnipickle payload or a pickle stream" in proc.stderr


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_info_of_a_damaged_payload_prints_the_table_and_exits_1(
    tmp_path: Path, damage: str
) -> None:
    data = bytearray(omnipickle.dumps(list(range(100))))
    if damage == "flipped":
        data[-3] ^= 1
    else:
        del data[-5:]
    path = tmp_path / "p"
    path.write_bytes(bytes(data))
    proc = run_python("info", str(path), code=CLI)
    assert proc.returncode == 1
    assert "(MISMATCH)" in proc.stdout
    assert "damaged or cut short" in proc.stderr


def test_info_shows_the_backend_versions_in_a_row_of_their_own(tmp_path: Path) -> None:
    import cloudpickle

    def local() -> type:
        class Local:  # by value, with cloudpickle's reducer: its version is recorded
            pass

        return Local

    path = tmp_path / "f.pkl"
    omnipickle.dump(local(), path)
    proc = run_python("info", str(path), code=CLI)
    assert proc.returncode == 0, proc.stderr
    assert f"written with   cloudpickle {cloudpickle.__version__}\n" in proc.stdout
    assert "extra." not in proc.stdout
