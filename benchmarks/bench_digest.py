"""Content digests: ``omnipickle.digest`` against ``joblib.hash`` and ``dask.base.tokenize``.

Run it as a script::

    python benchmarks/bench_digest.py [--quick] [--runs R] [--array-mb MB] [--json PATH]

Three workloads (README.md in this folder lists them): 200,000 small dicts, one large float64
array (400 MB) and 3,000 closures defined in this file (in ``__main__``, so they must be hashed
by value: keep them here); ``--quick`` takes 10,000 dicts, 16 MB and 300 closures. Each
library hashes each workload once per run, in an order rotated from run to run; the table
shows median CPU seconds and each other library's time divided by omnipickle's (above 1:
omnipickle is faster). The bar (issue 13): ``digest`` faster than ``joblib.hash`` on all three.

Before timing, the script checks that each digest is what it should be: the same for an equal
copy of the workload built from new objects (sets filled in another order), different once one
value in it changes. Exit status 1 if a check fails; a missed bar does not change it.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np

import omnipickle

FAILS = "fails"
ALGORITHMS = ("blake2b", "sha256", "xxh3_128")

# --- workloads ---------------------------------------------------------------------------------

OFFSET = 3


def _closures(n: int) -> list[Callable[..., Any]]:
    def outer(k: int) -> Callable[[int], Callable[[int], int]]:
        def middle(j: int) -> Callable[[int], int]:
            def inner(x: int) -> int:
                return x * k + j + OFFSET

            return inner

        return middle

    out: list[Callable[..., Any]] = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(lambda x, i=i: x + i)
        elif kind == 1:
            out.append(outer(i)(i + 1))
        else:
            out.append(lambda x, y=i * 2: x * y + OFFSET)
    return out


def _dicts(n: int, reverse: bool = False) -> list[dict[str, Any]]:
    tags = ["red", "green", "blue", "cyan", "black"]
    order = list(reversed(tags)) if reverse else tags
    return [
        {"id": i, "name": f"n{i}", "score": i * 0.5, "tags": set(order), "ok": True, "none": None}
        for i in range(n)
    ]


def workloads(quick: bool, array_mb: int) -> dict[str, tuple[Any, Any, Any]]:
    """Each workload: (the object, an equal copy built anew, a copy with one value changed)."""
    n_dicts = 10_000 if quick else 200_000
    n_funcs = 300 if quick else 3_000
    size = array_mb * (1 << 20) // 8
    array = np.random.default_rng(0).random(size)
    changed_array = array.copy()
    changed_array[size // 2] += 1.0
    dicts = _dicts(n_dicts)
    changed_dicts = _dicts(n_dicts)
    changed_dicts[n_dicts // 2]["score"] = -1.0
    closures = _closures(n_funcs)
    changed_closures = _closures(n_funcs)
    changed_closures[n_funcs // 2] = lambda x: x - 1
    return {
        f"(a) {n_dicts:,} dicts": (dicts, _dicts(n_dicts, reverse=True), changed_dicts),
        f"(b) {array_mb} MB array": (array, array.copy(), changed_array),
        f"(c) {n_funcs:,} closures": (closures, _closures(n_funcs), changed_closures),
    }


# --- libraries ---------------------------------------------------------------------------------


def libraries() -> dict[str, Callable[[Any], str]]:
    libs: dict[str, Callable[[Any], str]] = {
        f"omnipickle {a}": (lambda obj, a=a: omnipickle.digest(obj, a)) for a in ALGORITHMS
    }
    libs["joblib.hash"] = joblib.hash
    if importlib.util.find_spec("dask") is not None:
        import dask.base

        libs["dask.tokenize"] = dask.base.tokenize
    return libs


def check(name: str, objects: tuple[Any, Any, Any]) -> list[str]:
    """Problems with omnipickle's digests of one workload (none: an empty list)."""
    obj, equal, changed = objects
    problems = []
    for algorithm in ALGORITHMS:
        first = omnipickle.digest(obj, algorithm)
        if omnipickle.digest(equal, algorithm) != first:
            problems.append(f"{name}: {algorithm} differs for an equal copy")
        if omnipickle.digest(changed, algorithm) == first:
            problems.append(f"{name}: {algorithm} did not change with a changed value")
    return problems


def _time(func: Callable[[Any], str], obj: Any) -> float | str:
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        try:
            func(obj)
        except Exception as exc:
            return f"{FAILS}: {type(exc).__name__}: {str(exc)[:80]}"
        return time.process_time() - start
    finally:
        gc.enable()


def measure(
    objects: dict[str, Any], libs: dict[str, Callable[[Any], str]], runs: int
) -> dict[str, dict[str, float | str]]:
    names = list(libs)
    table: dict[str, dict[str, float | str]] = {}
    for workload, obj in objects.items():
        times: dict[str, list[float]] = {name: [] for name in names}
        failures: dict[str, str] = {}
        for run in range(runs):
            order = names[run % len(names) :] + names[: run % len(names)]
            for name in order:
                if name in failures:
                    continue
                result = _time(libs[name], obj)
                if isinstance(result, str):
                    failures[name] = result
                else:
                    times[name].append(result)
        table[workload] = {
            name: failures.get(name) or statistics.median(times[name]) for name in names
        }
    return table


def render(table: dict[str, dict[str, float | str]]) -> str:
    baseline = "omnipickle blake2b"
    names = list(next(iter(table.values())))
    lines = [
        "| workload | omni blake2b s | " + " | ".join(n for n in names if n != baseline) + " |",
        "|---" * len(names) + "|---|",
    ]
    for workload, row in table.items():
        omni = row[baseline]
        cells = [f"{omni:.3f}" if isinstance(omni, float) else "fails"]
        for name in names:
            if name == baseline:
                continue
            value = row[name]
            if isinstance(value, str) or not isinstance(omni, float):
                cells.append("fails")
            else:
                cells.append(f"{value:.3f}s ({value / omni:.2f}x)")
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("ratios: that library's time / omnipickle blake2b's (above 1: omnipickle faster)")
    for workload, row in table.items():
        for name, value in row.items():
            if isinstance(value, str):
                lines.append(f"  {workload}, {name}: {value}")
    return "\n".join(lines)


def bars(table: dict[str, dict[str, float | str]]) -> list[str]:
    """The bar, per workload: digest faster than joblib.hash (a failing joblib counts as met)."""
    out = []
    for workload, row in table.items():
        joblib_time = row["joblib.hash"]
        for algorithm in ALGORITHMS:
            omni = row[f"omnipickle {algorithm}"]
            assert isinstance(omni, float)
            met = isinstance(joblib_time, str) or omni < joblib_time
            out.append(f"{workload}: digest({algorithm}) faster than joblib.hash: {met}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 runs")
    parser.add_argument("--runs", type=int, default=None, help="runs per workload (default 5)")
    parser.add_argument("--array-mb", type=int, default=None, help="array size (default 400)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if __name__ != "__main__":
        print("run this file as a script: its closures must be defined in __main__")
        return 2
    runs = args.runs or (2 if args.quick else 5)
    array_mb = args.array_mb or (16 if args.quick else 400)
    built = workloads(args.quick, array_mb)
    problems = [p for name, objects in built.items() for p in check(name, objects)]
    for problem in problems:
        print(f"PROBLEM {problem}")
    timed = {name: objects[0] for name, objects in built.items()}
    del built  # the copies (1.2 GB of arrays at full size) are not needed any more
    table = measure(timed, libraries(), runs)
    print(f"Python {platform.python_version()}, {runs} runs, CPU seconds (medians)\n")
    print(render(table))
    print()
    print("\n".join(bars(table)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "array_mb": array_mb, "table": table}, f, indent=2)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
