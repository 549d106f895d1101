"""Restricted loading against pickle: what ``loads(..., restricted=True)`` costs.

Run it as a script::

    python benchmarks/bench_restricted.py [--quick] [--rounds R] [--profile ROW] [--json PATH]
    python benchmarks/bench_restricted.py --keys [--quick]

Each workload is loaded side by side in one process by ``pickle.loads`` (the C unpickler),
``omnipickle.loads``, ``omnipickle.loads(..., restricted=True)``, ``restricted_loads`` on the
bare pickle stream, and, as a reference only, the C ``pickle.Unpickler`` with a ``find_class``
allow-list (which is *not* safe against hostile input: see docs/security.md). In each of R
rounds every loader loads every workload once, in an order rotated from round to round; the
table shows the median time and the ratio to ``pickle.loads``. ``--profile ROW`` runs cProfile
over the restricted load of one workload instead. ``--keys`` times, instead, the costliest keys
the fast path takes (equal 255-byte strings inserted side by side; floats that share a hash)
against a stream of the same size and shape with ordinary keys. See README.md in this folder.
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
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import omnipickle
from omnipickle.security import datapath, restricted_loads
from omnipickle.security.budget import default_limits

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


# --- the costliest keys the fast path takes ------------------------------------------------------


def _text(i: int) -> bytes:
    """SHORT_BINUNICODE of 255 bytes, ``i`` in the last five."""
    return b"\x8c\xff" + ("x" * 250 + f"{i:05d}").encode()


def _shared_hash_floats() -> list[float]:
    """The floats of one hash: a float is m * 2**e (m odd, below 2**53) and hashes to
    m * 2**(e mod 61) modulo 2**61 - 1, so a hash whose 61 bits hold six ones nine apart has
    six mantissas, each with about 33 exponents."""
    modulus = 2**61 - 1
    target = sum(1 << (9 * j) for j in range(6))
    found = []
    for exponent in range(-1074, 972):
        mantissa = target * pow(2, 61 - exponent % 61, modulus) % modulus
        if mantissa < 2**53 and mantissa % 2:
            value = mantissa * 2.0**exponent
            if value and hash(value) == target:
                found.append(value)
    return found


def key_streams(scale: float) -> list[tuple[str, bytes, bytes]]:
    """(name, a stream of costly keys, a stream of the same size with ordinary ones)."""
    n = max(100, int(100_000 * scale))
    equal = b"".join(_text(0) for _ in range(n))
    distinct = b"".join(_text(i) for i in range(n))
    group = _shared_hash_floats()
    floats = b"".join(b"G" + struct.pack(">d", v) for v in group) * max(1, n // len(group))
    plain = b"".join(b"G" + struct.pack(">d", i + 0.5) for i in range(len(floats) // 9))
    return [
        (
            f"{n:,} equal 255-byte str as set items",
            b"\x80\x04\x8f(" + equal + b"\x90.",
            b"\x80\x04](" + distinct + b"e.",
        ),
        (
            f"{n:,} equal 255-byte str as dict keys",
            b"\x80\x04}(" + equal.replace(b"\x8c\xff", b"N\x8c\xff")[1:] + b"Nu.",
            b"\x80\x04](" + distinct + b"e.",
        ),
        (
            f"floats {len(group)} to a hash, in one set each",
            b"\x80\x04]("
            + (b"\x8f(" + floats[: 9 * len(group)] + b"\x90") * max(1, n // len(group))
            + b"e.",
            b"\x80\x04]("
            + (b"\x8f(" + plain[: 9 * len(group)] + b"\x90") * max(1, n // len(group))
            + b"e.",
        ),
    ]


def measure_keys(scale: float, rounds: int) -> str:
    """A Markdown table: each costly stream against its ordinary twin, both restricted."""
    lines = [
        "| costly keys (fast path) | bytes | pickle.loads | restricted_loads "
        "| restricted, ordinary keys | costly / ordinary |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, costly, ordinary in key_streams(scale):
        if datapath.validate(costly, default_limits()) is None:
            raise AssertionError(f"{name}: not on the fast path")
        times: dict[str, list[float]] = {"pickle": [], "costly": [], "ordinary": []}
        for _ in range(rounds):
            times["pickle"].append(_seconds(pickle.loads, costly, 1))
            times["costly"].append(_seconds(restricted_loads, costly, 1))
            times["ordinary"].append(_seconds(restricted_loads, ordinary, 1))
        median = {key: statistics.median(values) for key, values in times.items()}
        lines.append(
            f"| {name} | {len(costly):,} | {median['pickle'] * 1e3:.1f} ms | "
            f"{median['costly'] * 1e3:.1f} ms | {median['ordinary'] * 1e3:.1f} ms | "
            f"{median['costly'] / median['ordinary']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1/100 of the sizes, 2 rounds")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--profile", metavar="ROW", help="profile one row (its letter: a, b...)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keys", action="store_true", help="the fast path's costliest keys")
    args = parser.parse_args(argv)
    scale, rounds = (0.01, 2) if args.quick else (1.0, args.rounds)
    if args.keys:
        print(measure_keys(scale, rounds))
        return 0
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
