"""Other tools' pickle scanners on our files: picklescan, modelscan and fickling, each run as
its command line on a file. A harness for the format work (uncompressed payloads as valid
pickle streams): every tool must flag a plain pickle that calls ``os.system`` (the tools work
here), and should flag an omnipickle payload that does.

How each reports (checked with picklescan 1.0.5, modelscan 0.8.8, fickling 0.1.12):

* ``picklescan --path FILE``: exit 1 when it found a dangerous global, 0 when none; it prints
  ``Dangerous globals: N``.
* ``modelscan -p FILE``: exit 1 when it found issues, 0 when none, 3 when it scanned nothing
  (``--- Skipped ---``: it picks files by suffix, so the file is named ``.pkl``).
* ``fickling --check-safety FILE``: exit 1 when it finds the file unsafe, 0 when it is likely
  safe, 2 when it cannot parse it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import omnipickle

TOOLS = ("picklescan", "modelscan", "fickling")


@dataclass(frozen=True)
class Verdict:
    """What one tool said of one file."""

    tool: str
    flagged: bool  # it reported the file as dangerous
    exit_code: int
    output: str


def _command(tool: str) -> str | None:
    here = Path(sys.executable).parent / tool
    return str(here) if here.exists() else shutil.which(tool)


def run_tool(tool: str, path: Path, timeout: float = 300) -> Verdict:
    """Run ``tool`` on ``path``; skip the test if the tool is not installed."""
    command = _command(tool)
    if command is None:
        pytest.skip(f"{tool} is not installed (pip install omnipickle[test])")
    args = {
        "picklescan": [command, "--path", str(path)],
        "modelscan": [command, "-p", str(path)],
        "fickling": [command, "--check-safety", str(path)],
    }[tool]
    # In the file's folder: fickling writes its report (safety_results.json) where it runs.
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, cwd=path.parent
    )
    # Each tool exits 1 when it found something dangerous (see the module's documentation).
    output = proc.stdout + proc.stderr
    # A tool that crashed also exits 1: that is no verdict, and must not pass for one.
    assert "Traceback (most recent call last)" not in output, f"{tool} crashed:\n{output}"
    return Verdict(tool, proc.returncode == 1, proc.returncode, output)


class Evil:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("true",))


@pytest.mark.parametrize("tool", TOOLS)
def test_each_tool_flags_a_plain_pickle_calling_os_system(tool: str, tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    verdict = run_tool(tool, path)
    assert verdict.flagged, verdict.output


@pytest.mark.parametrize("tool", TOOLS)
def test_each_tool_passes_a_plain_pickle_of_data(tool: str, tmp_path: Path) -> None:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"x": [1, 2.5, "y"]}))
    verdict = run_tool(tool, path)
    assert verdict.exit_code == 0, verdict.output


@pytest.mark.parametrize("tool", TOOLS)
def test_each_tool_flags_a_dangerous_uncompressed_omnipickle_payload(
    tool: str, tmp_path: Path
) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(omnipickle.dumps({"x": Evil()}, backend="pickle"))
    assert not omnipickle.scan(path).accepted
    verdict = run_tool(tool, path)
    assert verdict.flagged, verdict.output
