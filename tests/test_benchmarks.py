"""The benchmarks' short versions run (they assert correctness, never time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import SRC

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def _quick(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(SRC)},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_core_benchmark_quick_mode_runs_and_checks_results() -> None:
    assert "(f)" in _quick("bench_core.py")


def test_calls_benchmark_quick_mode_runs_and_checks_results() -> None:
    out = _quick("bench_calls.py")
    assert "| loads closure |" in out
    assert "PROBLEM" not in out


def test_engines_benchmark_quick_mode_runs_and_checks_results() -> None:
    out = _quick("bench_engines.py")
    assert "| omnipickle.futures map |" in out
    assert "| loky submit |" in out


def test_digest_benchmark_quick_mode_runs_and_checks_results() -> None:
    out = _quick("bench_digest.py")
    assert "| (c) 300 closures |" in out
    assert "PROBLEM" not in out


def test_small_files_benchmark_quick_mode_runs_and_checks_results() -> None:
    out = _quick("bench_small_files.py")
    assert "| omnipickle.dump durable=False |" in out
    assert "PROBLEM" not in out


def test_restricted_benchmark_quick_mode_runs_and_checks_results() -> None:
    out = _quick("bench_restricted.py")
    assert "| (a) 200k small dicts |" in out
    assert "| (b) 100k instances |" in out
    assert "| (e) 100k tuples (checked path) |" in out
    assert "PROBLEM" not in out
