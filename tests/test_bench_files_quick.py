"""The file benchmark's short version runs and prints its tables (a smoke test: no timing)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SRC

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
NEEDED = ("numpy", "joblib", "compress_pickle", "lz4")


@pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in NEEDED),
    reason=f"the file benchmark needs {', '.join(NEEDED)}",
)
def test_files_benchmark_quick_mode_runs_and_prints_its_tables(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    cmd = [sys.executable, str(BENCHMARKS / "bench_files.py"), "--quick", "--json", str(out)]
    plot = tmp_path / "codecs.png"
    if importlib.util.find_spec("matplotlib") is not None:
        cmd += ["--plot", str(plot)]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(SRC), "MPLCONFIGDIR": str(tmp_path / "mpl")},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for heading in (
        "1. large arrays",
        "atomic write by hand",
        "omnipickle.load mmap_mode=r",
        "peak RSS",
        "2. codecs",
        "(dicts)",
        "(table)",
        "(arrays)",
        "omnipickle zstd",
        "joblib lz4",
        "compress_pickle gzip",
        "3. ",
        "pickle.dumps + zstd 3",
        "bars:",
    ):
        assert heading in proc.stdout, f"{heading!r} missing from:\n{proc.stdout}"
    document = json.loads(out.read_text(encoding="utf-8"))
    assert set(document) >= {"settings", "large_arrays", "codecs", "dicts_zstd", "bars"}
    assert all(bar["verdict"] in ("PASS", "MISS", "n/a") for bar in document["bars"])
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.read_bytes().startswith(b"\x89PNG")
