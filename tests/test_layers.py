"""The package's layers, as docs/architecture.md describes them, hold: the import-linter
contracts in pyproject.toml are kept, and no module reaches into another's private names."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS_TOOL = ROOT.parent / "shared" / "tools" / "layers.py"


def test_the_import_linter_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(lint).exists():
        pytest.fail("lint-imports is not installed: it is in the test extra")
    proc = subprocess.run(
        [lint, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.skipif(not LAYERS_TOOL.exists(), reason="the shared layers tool is not beside us")
def test_no_cycle_and_no_private_reach() -> None:
    proc = subprocess.run(
        [sys.executable, str(LAYERS_TOOL), str(ROOT / "src" / "omnipickle"), "--strict"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_module_decides_by_an_exception_message_or_reads_a_header_offset() -> None:
    """Foreign exceptions are mapped by type and position (errors.py); byte offsets of the
    header are known to format/header.py alone."""
    package = ROOT / "src" / "omnipickle"
    text_sniff = re.compile(r"""["'][^"']*["']\s+in\s+(str\(\w+\)|\w+\.args)""")
    offset = re.compile(r"\[\s*\d+\s*:\s*\d+\s*\]")
    found = []
    for path in sorted(package.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if text_sniff.search(line):
                found.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
            if offset.search(line) and path.name != "header.py":
                found.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert found == []
