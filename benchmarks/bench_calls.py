"""Per-call benchmark: the fixed cost of one ``dumps``/``loads`` of a tiny object.

Run it as a script::

    python benchmarks/bench_calls.py [--quick] [--calls N] [--rounds R] [--json PATH]

This is what a process pool, a queue or a task system pays for every message. Each library is
timed on the same tiny payloads, side by side in one process: in each of R rounds every library
makes N calls of each kind, in an order rotated from round to round, and the table shows the
median nanoseconds per call and the ratio to pickle (and, for dumps, to cloudpickle). The
workloads hold a lambda and a closure defined in this file, that is in ``__main__``: they must
go by value, so keep them here. See README.md in this folder for the columns and the bars.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import json
import pickle
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import compress_pickle
import dill
import joblib

import omnipickle

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchtypes import Record

PROTOCOL = 5
FAILS = "fails"


# --- workloads ---------------------------------------------------------------------------------

SCALE = 3


def _closure_maker(k: int) -> Callable[[int], int]:
    def closure(x: int) -> int:
        return x * k + SCALE

    return closure


WORKLOADS: dict[str, Any] = {
    "None": None,
    "3-key dict": {"id": 7, "name": "job-7", "ok": True},
    "small dataclass": Record(7, "job-7", 0.5),
    "small lambda": lambda x: x + 1,
    "closure": _closure_maker(4),
}


def _same(name: str, original: Any, loaded: Any) -> bool:
    if callable(original):
        return bool(loaded(5) == original(5))
    return bool(loaded == original)


# --- libraries ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Library:
    """A serializer under test: ``dumps`` to bytes, and the ``loads`` that reads them."""

    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def _joblib_dumps(obj: Any) -> bytes:
    out = io.BytesIO()
    joblib.dump(obj, out)
    return out.getvalue()


def _joblib_loads(data: bytes) -> Any:
    return joblib.load(io.BytesIO(data))


def _libraries() -> list[Library]:
    serializer = omnipickle.Serializer(protocol=PROTOCOL)
    return [
        Library(
            "pickle",
            lambda o: pickle.dumps(o, protocol=PROTOCOL),
            pickle.loads,
        ),
        Library(
            "cloudpickle",
            lambda o: cloudpickle.dumps(o, protocol=PROTOCOL),
            cloudpickle.loads,
        ),
        Library("dill", lambda o: dill.dumps(o, protocol=PROTOCOL), dill.loads),
        Library("joblib", _joblib_dumps, _joblib_loads),
        Library(
            "compress_pickle",
            lambda o: compress_pickle.dumps(o, compression=None),
            lambda b: compress_pickle.loads(b, compression=None),
        ),
        Library(
            "omnipickle",
            lambda o: omnipickle.dumps(o, protocol=PROTOCOL),
            omnipickle.loads,
        ),
        Library(
            "omni raw",
            lambda o: omnipickle.dumps(o, protocol=PROTOCOL, raw=True),
            omnipickle.loads,
        ),
        Library("omni Serializer", serializer.dumps, serializer.loads),
    ]


# --- timing ------------------------------------------------------------------------------------


def _per_call_ns(func: Callable[[Any], Any], arg: Any, calls: int) -> float:
    """Nanoseconds per call of ``func(arg)``, over ``calls`` calls, without the cyclic GC."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(calls):
            func(arg)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / calls


def measure(
    libraries: list[Library], calls: int, rounds: int
) -> tuple[dict[tuple[str, str, str], float | str], list[str]]:
    """Median ns per call, keyed by (operation, workload, library); and the problems seen."""
    inputs: dict[tuple[str, str], bytes | str] = {}
    problems: list[str] = []
    for lib in libraries:
        for wname, obj in WORKLOADS.items():
            try:
                data = lib.dumps(obj)
                ok = _same(wname, obj, lib.loads(data))
            except Exception:
                inputs[(lib.name, wname)] = FAILS
                if lib.name.startswith("omni"):
                    problems.append(f"{lib.name} failed on {wname}")
                continue
            inputs[(lib.name, wname)] = data
            if not ok:
                problems.append(f"{lib.name} gave back a different {wname}")
    samples: dict[tuple[str, str, str], list[float]] = {}
    for r in range(rounds):
        order = libraries[r % len(libraries) :] + libraries[: r % len(libraries)]
        for lib in order:
            for wname, obj in WORKLOADS.items():
                data = inputs[(lib.name, wname)]
                if data == FAILS:
                    continue
                samples.setdefault(("dumps", wname, lib.name), []).append(
                    _per_call_ns(lib.dumps, obj, calls)
                )
                samples.setdefault(("loads", wname, lib.name), []).append(
                    _per_call_ns(lib.loads, data, calls)
                )
    results: dict[tuple[str, str, str], float | str] = {}
    for op in ("dumps", "loads"):
        for wname in WORKLOADS:
            for lib in libraries:
                values = samples.get((op, wname, lib.name))
                results[(op, wname, lib.name)] = statistics.median(values) if values else FAILS
    return results, problems


def _ratio(value: float | str, base: float | str) -> str:
    if isinstance(value, str) or isinstance(base, str):
        return "-"
    return f"{value / base:.1f}x"


def table(results: dict[tuple[str, str, str], float | str], libraries: list[Library]) -> str:
    """A Markdown table: ns per call, then omnipickle's ratios to pickle and cloudpickle."""
    names = [lib.name for lib in libraries]
    head = ["call", *names, "omni/pickle", "omni/cloudpickle", "raw/pickle"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for op in ("dumps", "loads"):
        for wname in WORKLOADS:
            row = [f"{op} {wname}"]
            for name in names:
                value = results[(op, wname, name)]
                row.append(value if isinstance(value, str) else f"{value:,.0f}")
            omni = results[(op, wname, "omnipickle")]
            row.append(_ratio(omni, results[(op, wname, "pickle")]))
            row.append(_ratio(omni, results[(op, wname, "cloudpickle")]))
            row.append(_ratio(results[(op, wname, "omni raw")], results[(op, wname, "pickle")]))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 calls, 2 rounds (a smoke test)")
    parser.add_argument("--calls", type=int, default=20_000, help="calls per timing")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if WORKLOADS["small lambda"].__module__ != "__main__":
        print("run this file as a script: its lambdas must live in __main__", file=sys.stderr)
        return 2
    calls, rounds = (200, 2) if args.quick else (args.calls, args.rounds)
    libraries = _libraries()
    results, problems = measure(libraries, calls, rounds)
    print(
        f"Python {platform.python_version()}, {calls:,} calls x {rounds} rounds, "
        f"median ns per call (protocol {PROTOCOL})\n"
    )
    print(table(results, libraries))
    for problem in problems:
        print("PROBLEM:", problem)
    if args.json:
        rows = [
            {"op": op, "workload": w, "library": lib, "ns": value}
            for (op, w, lib), value in results.items()
        ]
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
