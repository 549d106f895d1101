"""Count CPU instructions of omnipickle.dumps/loads against pickle's, under callgrind.

Timings on a shared virtual machine move by 10-20% from run to run, which hides a 5% bar.
Instruction counts do not move: callgrind (valgrind) counts every instruction the process
executes, whatever else the machine is doing. They do not count cache misses or page faults, so
read them beside bench_core.py's timings, not instead of them.

    python benchmarks/bench_instructions.py            # (a) dicts and (b) instances, 20k each
    python benchmarks/bench_instructions.py --size 5000
    python benchmarks/bench_instructions.py --per-call   # one tiny dumps/loads, as bench_calls

Needs valgrind (Debian: apt-get install valgrind). Each measurement runs a fresh interpreter
twice, once doing the work and once only building the data, and reports the difference.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

BULK_BAR = 1.02
"""Bulk dumps and loads of (a) and (b), checksum included: at most 2% over pickle (issue 11)."""

CHILD = """
import dataclasses, pickle, sys
sys.path.insert(0, {here!r})
import omnipickle
from benchtypes import Point, Record

size, workload, library, op = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if workload == "a":
    data = [{{"id": i, "name": f"n{{i}}", "score": i * 0.5, "tags": ["x", "y"], "ok": True,
             "none": None}} for i in range(size)]
else:
    n = len(dataclasses.fields(Record))
    data = [Point(i, i * 0.5, f"p{{i}}") for i in range(size // 2)]
    data += [Record(*([i] + [str(i)] * (n - 1))) for i in range(size // 2)]
dumps = omnipickle.dumps if library == "omnipickle" else (lambda o: pickle.dumps(o, 5))
loads = omnipickle.loads if library == "omnipickle" else pickle.loads
payload = dumps(data)  # warm-up, and the input of loads
if op == "dumps":
    for _ in range(3):
        dumps(data)
elif op == "loads":
    for _ in range(3):
        loads(payload)
"""


def instructions(script: Path, *args: str, seed: int = 0) -> int:
    """Instructions callgrind counts for ``python script args``, under ``PYTHONHASHSEED=seed``.

    With a fixed seed the count is the same to a few hundred instructions from run to run
    (dictionaries and sets lay out the same way each time)."""
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(script),
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


PER_CALL_CHILD = """
import pickle, sys
sys.path.insert(0, {here!r})
import cloudpickle
import omnipickle
from benchtypes import Record

SCALE = 3

def maker(k):
    def closure(x):
        return x * k + SCALE
    return closure

objects = {{"None": None, "dict": {{"id": 7, "name": "job-7", "ok": True}},
           "dataclass": Record(7, "job-7", 0.5), "lambda": lambda x: x + 1, "closure": maker(4)}}
calls, workload, library, op = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
obj = objects[workload]
dumps, loads = {{
    "pickle": (lambda o: pickle.dumps(o, 5), pickle.loads),
    "cloudpickle": (lambda o: cloudpickle.dumps(o, 5), cloudpickle.loads),
    "omnipickle": (omnipickle.dumps, omnipickle.loads),
    "omnipickle-raw": (lambda o: omnipickle.dumps(o, raw=True), omnipickle.loads),
}}[library]
payload = dumps(obj)
for _ in range(50):  # warm-up: caches filled, as in a long-running process
    loads(dumps(obj))
if op == "dumps":
    for _ in range(calls):
        dumps(obj)
else:
    for _ in range(calls):
        loads(payload)
"""

PER_CALL_LIBRARIES = ("pickle", "cloudpickle", "omnipickle", "omnipickle-raw")


def per_call(folder: str, calls: int) -> None:
    """Instructions per tiny call, by workload, library and operation."""
    script = Path(folder) / "per_call.py"
    script.write_text(PER_CALL_CHILD.format(here=str(HERE)))
    print(f"instructions per call (thousands; {calls:,} calls less none, after a warm-up)")
    print(f"{'workload':<11}{'op':<7}" + "".join(f"{name:>16}" for name in PER_CALL_LIBRARIES))
    for workload in ("None", "dict", "dataclass", "lambda", "closure"):
        for op in ("dumps", "loads"):
            cells = []
            for library in PER_CALL_LIBRARIES:
                if library == "pickle" and workload in ("lambda", "closure"):
                    cells.append("fails")
                    continue
                base = instructions(script, "0", workload, library, op)
                work = instructions(script, str(calls), workload, library, op)
                cells.append(f"{(work - base) / calls / 1e3:.1f}")
            print(f"{workload:<11}{op:<7}" + "".join(f"{cell:>16}" for cell in cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20_000, help="items per workload")
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="hash seeds (PYTHONHASHSEED 0, 1...) to count each figure under; the ratio is the "
        "median over seeds of the ratio under one seed",
    )
    parser.add_argument("--per-call", action="store_true", help="tiny payloads, per call")
    parser.add_argument("--calls", type=int, default=2_000, help="calls per --per-call count")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        if args.per_call:
            per_call(folder, args.calls)
            return 0
        script = Path(folder) / "child.py"
        script.write_text(CHILD.format(here=str(HERE)))
        print(
            f"instructions for 3 calls, {args.size:,} items (millions; median over "
            f"{args.seeds} hash seed(s)); ratio omnipickle/pickle"
        )
        print(
            f"{'workload':<14}{'op':<7}{'pickle':>10}{'omnipickle':>12}{'ratio':>8}"
            f"  bar (<= {BULK_BAR:.2f})"
        )
        for workload, label in (("a", "(a) dicts"), ("b", "(b) instances")):
            for op in ("dumps", "loads"):
                counts: dict[str, list[float]] = {"pickle": [], "omnipickle": []}
                for seed in range(args.seeds):
                    for library, seen in counts.items():
                        base = instructions(
                            script, str(args.size), workload, library, "none", seed=seed
                        )
                        work = instructions(
                            script, str(args.size), workload, library, op, seed=seed
                        )
                        seen.append((work - base) / 1e6)
                pairs = zip(counts["omnipickle"], counts["pickle"], strict=True)
                ratio = statistics.median(mine / theirs for mine, theirs in pairs)
                verdict = "PASS" if ratio <= BULK_BAR else "MISS"
                print(
                    f"{label:<14}{op:<7}{statistics.median(counts['pickle']):>10.1f}"
                    f"{statistics.median(counts['omnipickle']):>12.1f}"
                    f"{ratio:>8.3f}  {verdict}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
