"""The benchmarks' short versions run (they assert correctness, never time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import SRC

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def test_core_benchmark_quick_mode_runs_and_checks_results() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_core.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(SRC)},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(f)" in proc.stdout
