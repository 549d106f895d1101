"""Restricted loading against pickle: what ``loads(..., restricted=True)`` costs.

Run it as a script::

    python benchmarks/bench_restricted.py [--quick] [--rounds R] [--profile ROW] [--json PATH]

Each workload is loaded side by side in one process by ``pickle.loads`` (the C unpickler),
``omnipickle.loads``, ``omnipickle.loads(..., restricted=True)``, ``restricted_loads`` on the
bare pickle stream, and, as a reference only, the C ``pickle.Unpickler`` with a ``find_class``
allow-list (which is *not* safe against hostile input: see docs/security.md). In each of R
rounds every loader loads every workload once, in an order rotated from round to round; the
table shows the median time and the ratio to ``pickle.loads``. ``--profile ROW`` runs cProfile
over the restricted load of one workload instead. See README.md in this folder.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime
import decimal
import gc
import io
import json
import pickle
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import omnipickle
from omnipickle.security import restricted_loads

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchtypes import Point, Record

try:
    import numpy as np
except ImportError:  # numpy is optional: its row is left out
    np = None

PROTOCOL = 5
ALLOW = ("benchtypes.Point", "benchtypes.Record")


# --- workloads ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """One object to load, and how many times one timing loads it."""

    name: str
    obj: Any
    calls: int = 1


def _dicts(n: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"n{i}", "score": i * 0.5, "tags": ["x", "y"], "ok": True, "none": None}
        for i in range(n)
    ]


def _instances(n: int) -> list[Any]:
    return [Point(i, i * 0.5, f"p{i}") if i % 2 else Record(i, f"r{i}", i * 0.25) for i in range(n)]


def workloads(scale: float) -> list[Workload]:
    """The rows of the table, ``scale`` times their full size."""
    rows = [
        Workload("(a) 200k small dicts", _dicts(int(200_000 * scale))),
        Workload("(b) 100k instances", _instances(int(100_000 * scale))),
        Workload(
            "(c) per call: 3-key dict",
            {"id": 7, "name": "job-7", "ok": True},
            calls=max(1, int(20_000 * scale)),
        ),
        Workload(
            "(d) per call: small dataclass",
            Record(7, "job-7", 0.5),
            calls=max(1, int(20_000 * scale)),
        ),
    ]
    rows.append(
        Workload(
            "(e) 100k tuples (checked path)",
            [(i, f"s{i}", i * 0.5) for i in range(int(100_000 * scale))],
        )
    )
    rows.append(
        Workload(
            "(f) 20k dicts of datetimes, Decimals (checked path)",
            [
                {"at": datetime.datetime(2020, 1, 1, i % 24), "d": decimal.Decimal(i), "k": i}
                for i in range(int(20_000 * scale))
            ],
        )
    )
    if np is not None:
        count = max(1, int(1_000 * scale))
        rows.append(
            Workload(
                "(g) 1k small numpy arrays",
                [np.arange(i, i + 100, dtype="f8") for i in range(count)],
            )
        )
        rows.append(Workload("(h) one 80 MB numpy array", np.ones(int(10_000_000 * scale))))
    return rows


def _same(a: Any, b: Any) -> bool:
    if np is not None and isinstance(a, np.ndarray):
        return bool(isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b))
    if np is not None and isinstance(a, list) and a and isinstance(a[0], np.ndarray):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# --- loaders -----------------------------------------------------------------------------------

_C_ALLOWED = {
    ("benchtypes", "Point"),
    ("benchtypes", "Record"),
    ("builtins", "set"),
    ("datetime", "datetime"),
    ("decimal", "Decimal"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
}


class AllowListUnpickler(pickle.Unpickler):
    """The C unpickler with a ``find_class`` allow-list: a reference point, NOT safe.

    It has no budgets (a huge memo index in LONG_BINPUT allocates gigabytes), no check on
    BUILD/SETITEMS targets, and numpy's own reconstructors trust their input.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _C_ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)


def _c_allow_list(data: bytes) -> Any:
    return AllowListUnpickler(io.BytesIO(data)).load()


@dataclasses.dataclass(frozen=True)
class Loader:
    """A way to load: which bytes it reads (``pickle`` or ``omni``), and the call."""

    name: str
    reads: str
    load: Callable[[bytes], Any]


LOADERS = [
    Loader("pickle.loads", "pickle", pickle.loads),
    Loader("omnipickle.loads", "omni", omnipickle.loads),
    Loader(
        "omnipickle restricted",
        "omni",
        lambda b: omnipickle.loads(b, restricted=True, allow=ALLOW),
    ),
    Loader("restricted_loads", "pickle", lambda b: restricted_loads(b, allow=ALLOW)),
    Loader("C + allow-list (unsafe)", "pickle", _c_allow_list),
]


# --- timing ------------------------------------------------------------------------------------


def _seconds(load: Callable[[bytes], Any], data: bytes, calls: int) -> float:
    """CPU seconds per call of ``load(data)``, without the cyclic GC; results freed after."""
    gc.collect()
    kept = []
    gc.disable()
    try:
        start = time.process_time_ns()
        for _ in range(calls):
            kept.append(load(data))
        elapsed = time.process_time_ns() - start
    finally:
        gc.enable()
    del kept
    return elapsed / calls / 1e9


def measure(rows: list[Workload], rounds: int) -> tuple[dict[tuple[str, str], float], list[str]]:
    """Median seconds per call, keyed by (workload, loader); and the problems seen."""
    inputs: dict[tuple[str, str], bytes] = {}
    problems: list[str] = []
    for row in rows:
        inputs[(row.name, "pickle")] = pickle.dumps(row.obj, PROTOCOL)
        inputs[(row.name, "omni")] = omnipickle.dumps(row.obj, protocol=PROTOCOL)
        for loader in LOADERS:
            loaded = loader.load(inputs[(row.name, loader.reads)])
            if not _same(row.obj, loaded):
                problems.append(f"{loader.name} gave back a different {row.name}")
    samples: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        order = LOADERS[r % len(LOADERS) :] + LOADERS[: r % len(LOADERS)]
        for row in rows:
            for loader in order:
                data = inputs[(row.name, loader.reads)]
                samples.setdefault((row.name, loader.name), []).append(
                    _seconds(loader.load, data, row.calls)
                )
    return {key: statistics.median(values) for key, values in samples.items()}, problems


def _shown(seconds: float, per_call: bool) -> str:
    return f"{seconds * 1e6:,.1f} us" if per_call else f"{seconds * 1e3:,.1f} ms"


def table(results: dict[tuple[str, str], float], rows: list[Workload]) -> str:
    """A Markdown table: median time per load, then each loader's ratio to pickle.loads."""
    names = [loader.name for loader in LOADERS]
    head = ["workload", *names, *(f"{n} / pickle" for n in names[1:])]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for row in rows:
        base = results[(row.name, "pickle.loads")]
        cells = [row.name]
        cells += [_shown(results[(row.name, n)], row.calls > 1) for n in names]
        cells += [f"{results[(row.name, n)] / base:.2f}x" for n in names[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile(row: Workload, out: Any) -> None:
    """cProfile of the restricted load of ``row`` (bare stream), top functions by own time."""
    data = pickle.dumps(row.obj, PROTOCOL)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(row.calls):
        restricted_loads(data, allow=ALLOW)
    profiler.disable()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1/100 of the sizes, 2 rounds")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--profile", metavar="ROW", help="profile one row (its letter: a, b...)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    scale, rounds = (0.01, 2) if args.quick else (1.0, args.rounds)
    rows = workloads(scale)
    if args.profile:
        chosen = [row for row in rows if row.name.startswith(f"({args.profile})")]
        if not chosen:
            parser.error(f"no row ({args.profile})")
        profile(chosen[0], sys.stdout)
        return 0
    results, problems = measure(rows, rounds)
    print(
        f"Python {platform.python_version()}, protocol {PROTOCOL}, {rounds} rounds, "
        f"median CPU time per load\n"
    )
    print(table(results, rows))
    for problem in problems:
        print("PROBLEM:", problem)
    if args.json:
        data = [{"workload": w, "loader": n, "seconds": s} for (w, n), s in results.items()]
        args.json.write_text(json.dumps(data, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
