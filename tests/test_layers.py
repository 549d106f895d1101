"""The package's layers, as docs/architecture.md describes them, hold: the import-linter
contracts in pyproject.toml are kept, and no module reaches into another's private names."""

from __future__ import annotations

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
