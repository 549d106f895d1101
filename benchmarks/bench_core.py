"""Core benchmark: omnipickle against pickle, cloudpickle and dill, in one process.

Run it as a script::

    python benchmarks/bench_core.py [--quick] [--runs N] [--json PATH]

Every workload is built once, outside the timed region, and round-tripped once through
omnipickle to check that it comes back equal. Then, in each of N runs, every library dumps and
loads it once, in turn, with the order rotated from one run to the next, so that slow drifts
of a shared machine spread over all libraries alike. The table reports the median per library.
dill is timed in at most 3 of the runs (it is slow). See README.md in this folder for the
meaning of the columns.

Some workloads hold classes and functions defined in this file, that is in ``__main__``: that
is the point (they cannot be pickled by reference in another process), so keep them here.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import pickle
import platform
import statistics
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import dill

import omnipickle

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchtypes import Point, Record

PROTOCOL = 5
DEFAULT_RUNS = 7
QUICK_RUNS = 3
QUICK_DIVISOR = 10
DILL_MAX_RUNS = 3
OMNI = "omnipickle"
FAILS = "fails"


# --- libraries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Library:
    """A serializer under test.

    Attributes:
        name: shown in the table.
        dumps: object to bytes (protocol 5).
        loads: bytes to object; it reads what ``dumps`` wrote.
        max_runs: time it in at most this many runs (``None``: every run).
        warm_up: do one untimed round trip first (skipped for slow libraries).
    """

    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]
    max_runs: int | None = None
    warm_up: bool = True


LIBRARIES: tuple[Library, ...] = (
    Library(OMNI, functools.partial(omnipickle.dumps, protocol=PROTOCOL), omnipickle.loads),
    Library("pickle", functools.partial(pickle.dumps, protocol=PROTOCOL), pickle.loads),
    Library(
        "cloudpickle",
        functools.partial(cloudpickle.dumps, protocol=PROTOCOL),
        cloudpickle.loads,
    ),
    Library(
        "dill",
        functools.partial(dill.dumps, protocol=PROTOCOL),
        dill.loads,
        max_runs=DILL_MAX_RUNS,
        warm_up=False,
    ),
)
OTHERS: tuple[str, ...] = tuple(lib.name for lib in LIBRARIES if lib.name != OMNI)


# --- code defined in __main__ ------------------------------------------------------------------

OFFSET = 3
"""A global of ``__main__`` read by some of the closures: it must travel with them."""


class MainPoint:
    """A class of ``__main__``: no other process can import it, so it must go by value."""

    def __init__(self, x: int, y: float, label: str) -> None:
        self.x = x
        self.y = y
        self.label = label


def make_adder(i: int) -> Callable[[int], int]:
    """A lambda closing over ``i``."""
    return lambda x: x + i


def make_nested(i: int) -> Callable[[int], int]:
    """A closure two levels deep, reading the global ``OFFSET`` as well."""
    scale = i % 7 + 1

    def middle(j: int) -> Callable[[int], int]:
        def inner(x: int) -> int:
            return x * scale + j + OFFSET

        return inner

    return middle(i)


def make_defaulted(i: int) -> Callable[[int], int]:
    """A lambda with no closure, carrying ``i`` as a default argument."""
    return lambda x, k=i: x - k


MAKERS: tuple[Callable[[int], Callable[[int], int]], ...] = (
    make_adder,
    make_nested,
    make_defaulted,
)


# --- workloads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How many items each workload holds."""

    dicts: int
    instances: int
    main_instances: int
    closures: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(dicts=200_000, instances=100_000, main_instances=100_000, closures=3_000)

    def divided(self, divisor: int) -> Sizes:
        return Sizes(
            dicts=self.dicts // divisor,
            instances=self.instances // divisor,
            main_instances=self.main_instances // divisor,
            closures=self.closures // divisor,
        )


@dataclass(frozen=True)
class Workload:
    """An object to serialize and a way to check that it came back right.

    Attributes:
        key: the letter used in the table and in the bars.
        title: a short description.
        data: the object (built once).
        check: ``check(original, loaded)`` raises ``AssertionError`` if they differ.
    """

    key: str
    title: str
    data: Any
    check: Callable[[Any, Any], None]


def require(condition: bool, message: str) -> None:
    """Raise ``AssertionError(message)`` unless ``condition`` (kept under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


def require_main(obj: Any) -> None:
    """Check that ``obj`` (a function or class) really belongs to ``__main__``."""
    module = getattr(obj, "__module__", None)
    require(
        module == "__main__",
        f"{obj!r} belongs to {module!r}, not '__main__': run this file as a script",
    )


def make_dicts(n: int) -> list[dict[str, Any]]:
    """``n`` small dicts of builtin values."""
    return [
        {"id": i, "name": f"n{i}", "score": i * 0.5, "tags": ["x", "y"], "ok": True, "none": None}
        for i in range(n)
    ]


def make_instances(n: int) -> list[Point | Record]:
    """``n`` instances of importable classes: half ``Point``, half ``Record``."""
    half = n // 2
    points: list[Point | Record] = [Point(i, i * 0.25, f"p{i}") for i in range(half)]
    records: list[Point | Record] = [
        Record(i, f"r{i}", i * 1.5, i % 2 == 0) for i in range(n - half)
    ]
    return points + records


def make_main_instances(n: int) -> list[MainPoint]:
    """``n`` instances of a class of ``__main__``."""
    require_main(MainPoint)
    return [MainPoint(i, i * 0.25, f"m{i}") for i in range(n)]


def make_closures(n: int) -> list[Callable[[int], int]]:
    """``n`` lambdas and closures of ``__main__``, the three kinds of ``MAKERS`` in turn."""
    funcs = [MAKERS[i % len(MAKERS)](i) for i in range(n)]
    for func in funcs[: len(MAKERS)]:
        require_main(func)
    return funcs


def with_middle(items: list[Any], middle: Any) -> list[Any]:
    """A shallow copy of ``items`` with the item half-way replaced by ``middle``."""
    copy = list(items)
    copy[len(copy) // 2] = middle
    return copy


def check_equal(original: Any, loaded: Any) -> None:
    require(type(loaded) is type(original), f"got a {type(loaded).__name__}")
    require(loaded == original, "the loaded object differs from the original")


def check_main_instances(original: list[MainPoint], loaded: list[Any]) -> None:
    require(len(loaded) == len(original), f"{len(loaded)} items instead of {len(original)}")
    for before, after in zip(original, loaded, strict=True):
        require(type(after).__qualname__ == "MainPoint", f"got a {type(after).__qualname__}")
        require(vars(after) == vars(before), f"{vars(after)} != {vars(before)}")


def check_closures(original: list[Callable[[int], int]], loaded: list[Any]) -> None:
    require(len(loaded) == len(original), f"{len(loaded)} items instead of {len(original)}")
    step = max(1, len(original) // 20)
    indices = {*range(0, len(original), step), *range(len(original) - len(MAKERS), len(original))}
    for i in sorted(indices):
        for x in (0, 5, -7):
            got, expected = loaded[i](x), original[i](x)
            require(got == expected, f"function {i}: f({x}) = {got!r}, expected {expected!r}")


def check_all_but_middle(original: list[Any], loaded: list[Any]) -> None:
    mid = len(original) // 2
    require(len(loaded) == len(original), f"{len(loaded)} items instead of {len(original)}")
    require(loaded[:mid] == original[:mid], "items before the middle differ")
    require(loaded[mid + 1 :] == original[mid + 1 :], "items after the middle differ")


def check_lambda_in_middle(original: list[Any], loaded: list[Any]) -> None:
    check_all_but_middle(original, loaded)
    func = loaded[len(original) // 2]["f"]
    require(func(42) == 42 and func("s") == "s", "the lambda in the middle does not work")


def check_weakref_in_middle(original: list[Any], loaded: list[Any]) -> None:
    check_all_but_middle(original, loaded)
    ref = loaded[len(original) // 2]["w"]
    require(type(ref) is weakref.ReferenceType, f"got a {type(ref).__name__}, not a weakref")
    require(ref() is Point, f"the weakref's referent is {ref()!r}, not {Point!r}")


def build_workloads(sizes: Sizes) -> list[Workload]:
    """All workloads, built once; (e) and (f) share the dicts of (a)."""
    dicts = make_dicts(sizes.dicts)
    lam = lambda x: x  # noqa: E731  (a lambda is the point)
    require_main(lam)
    return [
        Workload("a", f"{sizes.dicts:,} dicts", dicts, check_equal),
        Workload(
            "b",
            f"{sizes.instances:,} objs+dataclasses",
            make_instances(sizes.instances),
            check_equal,
        ),
        Workload(
            "c",
            f"{sizes.main_instances:,} __main__ objs",
            make_main_instances(sizes.main_instances),
            check_main_instances,
        ),
        Workload(
            "d",
            f"{sizes.closures:,} closures",
            make_closures(sizes.closures),
            check_closures,
        ),
        Workload("e", "dicts + 1 lambda", with_middle(dicts, {"f": lam}), check_lambda_in_middle),
        Workload(
            "f",
            "dicts + 1 weakref",
            with_middle(dicts, {"w": weakref.ref(Point)}),
            check_weakref_in_middle,
        ),
    ]


# --- timing ------------------------------------------------------------------------------------


@dataclass
class LibResult:
    """What one library did on one workload. Times are in seconds."""

    dumps: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    size: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.dumps)

    def median(self, op: str) -> float | None:
        times = self.dumps if op == "dumps" else self.loads
        return statistics.median(times) if self.error is None and times else None


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, shortened."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."


def timed(func: Callable[[Any], Any], arg: Any) -> tuple[float, Any]:
    """Call ``func(arg)`` once: the elapsed seconds and the result.

    Garbage is collected first and the cyclic collector is off during the call (as
    :mod:`timeit` does), so that no library pays for another's garbage. The clock is the
    process's CPU time: every library runs single-threaded here, and on a shared virtual
    machine wall time also counts the moments another tenant holds the core.
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.process_time()
        result = func(arg)
        elapsed = time.process_time() - start
    finally:
        if was_enabled:
            gc.enable()
    return elapsed, result


def runs_for(lib: Library, runs: int) -> set[int]:
    """The runs in which ``lib`` is timed: all, or ``max_runs`` of them spread evenly."""
    if lib.max_runs is None or lib.max_runs >= runs:
        return set(range(runs))
    if lib.max_runs <= 1:
        return {runs // 2}
    return {round(k * (runs - 1) / (lib.max_runs - 1)) for k in range(lib.max_runs)}


def round_trip(lib: Library, data: Any, result: LibResult, *, record: bool) -> Any:
    """Dump and load ``data`` once with ``lib``; record the times if ``record``.

    Returns the loaded object, or ``None`` after recording the error if ``lib`` failed.
    """
    try:
        dump_time, payload = timed(lib.dumps, data)
        load_time, loaded = timed(lib.loads, payload)
    except Exception as exc:
        result.error = describe(exc)
        return None
    result.size = len(payload)
    if record:
        result.dumps.append(dump_time)
        result.loads.append(load_time)
    return loaded


def run_workload(workload: Workload, runs: int) -> dict[str, LibResult]:
    """Check omnipickle's round trip, then time every library ``runs`` times, interleaved."""
    results = {lib.name: LibResult() for lib in LIBRARIES}
    omni_lib = LIBRARIES[0]
    loaded = round_trip(omni_lib, workload.data, results[OMNI], record=False)
    if results[OMNI].error is None:
        try:
            workload.check(workload.data, loaded)
        except AssertionError as exc:
            results[OMNI].error = f"wrong result: {exc}"
    del loaded
    if results[OMNI].error is not None:
        print(f"  ({workload.key}) omnipickle FAILED: {results[OMNI].error}", file=sys.stderr)
    for lib in LIBRARIES[1:]:
        if lib.warm_up:
            round_trip(lib, workload.data, results[lib.name], record=False)
    schedule = {lib.name: runs_for(lib, runs) for lib in LIBRARIES}
    for run in range(runs):
        shift = run % len(LIBRARIES)
        for lib in LIBRARIES[shift:] + LIBRARIES[:shift]:
            result = results[lib.name]
            if result.error is None and run in schedule[lib.name]:
                round_trip(lib, workload.data, result, record=True)
    return results


# --- report ------------------------------------------------------------------------------------


def ratio(results: dict[str, LibResult], lib: str, op: str) -> float | None:
    """``lib`` median / omnipickle median for ``op`` (> 1: omnipickle is faster)."""
    theirs, ours = results[lib].median(op), results[OMNI].median(op)
    if theirs is None or ours is None or ours == 0:
        return None
    return theirs / ours


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return FAILS
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def fmt_ms(seconds: float | None) -> str:
    return FAILS if seconds is None else f"{seconds * 1e3:.1f}"


def fmt_size(size: int | None, error: str | None) -> str:
    return FAILS if error is not None or size is None else f"{size:,}"


def render(rows: Sequence[Sequence[str]], groups: Sequence[tuple[str, int]]) -> str:
    """Align ``rows`` (the first is the header) under group titles spanning columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    group_cells = []
    col = 0
    for title, span in groups:
        width = sum(widths[col : col + span]) + 2 * (span - 1)
        group_cells.append(title.center(width, "-") if title else " " * width)
        col += span
    lines.append("  ".join(group_cells).rstrip())
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def table(workloads: Sequence[Workload], all_results: dict[str, dict[str, LibResult]]) -> str:
    """The results table: one row per workload."""
    header = [
        "workload",
        "omni ms",
        *OTHERS,
        "omni ms",
        *OTHERS,
        "omni B",
        "pickle B",
        "diff",
    ]
    rows = [header]
    for workload in workloads:
        res = all_results[workload.key]
        row = [f"({workload.key}) {workload.title}"]
        for op in ("dumps", "loads"):
            row.append(fmt_ms(res[OMNI].median(op)))
            row.extend(fmt_ratio(ratio(res, lib, op)) for lib in OTHERS)
        row.append(fmt_size(res[OMNI].size, res[OMNI].error))
        row.append(fmt_size(res["pickle"].size, res["pickle"].error))
        both = res[OMNI].ok and res["pickle"].ok
        row.append(f"{res[OMNI].size - res['pickle'].size:+,}" if both else "-")
        rows.append(row)
    span = 1 + len(OTHERS)
    groups = [("", 1), (" dumps: lib/omni ", span), (" loads: lib/omni ", span), (" size ", 3)]
    return render(rows, groups)


def paired_ratio(results: dict[str, LibResult], lib: str, op: str) -> float | None:
    """The median over runs of omnipickle's time / ``lib``'s time in the same run (< 1:
    omnipickle is faster), where both were timed in every run; else the ratio of the medians.

    Both are timed within a second of each other in a run, so a slow spell of the machine
    slows both: pairing cancels what the ratio of two medians keeps."""
    ours_result, theirs_result = results[OMNI], results[lib]
    ours = ours_result.dumps if op == "dumps" else ours_result.loads
    theirs = theirs_result.dumps if op == "dumps" else theirs_result.loads
    if ours_result.error is None and theirs_result.error is None and len(ours) == len(theirs):
        pairs = [mine / other for mine, other in zip(ours, theirs, strict=True) if other > 0]
        if pairs:
            return statistics.median(pairs)
    inverse = ratio(results, lib, op)
    return None if inverse is None else 1 / inverse


@dataclass(frozen=True)
class Bar:
    """A target: omnipickle's time / ``other``'s (:func:`paired_ratio`) must be at most
    ``limit``."""

    workload: str
    op: str
    other: str
    limit: float
    wording: str

    def value(self, all_results: dict[str, dict[str, LibResult]]) -> float | None:
        return paired_ratio(all_results[self.workload], self.other, self.op)


BARS: tuple[Bar, ...] = (
    *(
        Bar(key, op, "pickle", 1.02, "within 2% of pickle, checksum included")
        for key in ("a", "b")
        for op in ("dumps", "loads")
    ),
    Bar("c", "dumps", "cloudpickle", 1.10, "within 10% of cloudpickle"),
    Bar("d", "dumps", "cloudpickle", 1.10, "within 10% of cloudpickle"),
    Bar("e", "dumps", "cloudpickle", 1.50, "within 1.5x of cloudpickle"),
    Bar("f", "dumps", "dill", 0.10, "at least 10x faster than dill"),
)


def check_bars(all_results: dict[str, dict[str, LibResult]]) -> tuple[str, list[dict[str, Any]]]:
    """The bars section as text, and as records for the JSON output."""
    lines = ["bars (median over runs of omnipickle / other in the same run, must be <= limit):"]
    records = []
    for bar in BARS:
        value = bar.value(all_results)
        if all_results[bar.workload][OMNI].error is not None:
            verdict = "MISS"
        elif value is None:
            verdict = "n/a"
        else:
            verdict = "PASS" if value <= bar.limit else "MISS"
        shown = "  -- " if value is None else f"{value:5.2f}"
        lines.append(
            f"  ({bar.workload}) {bar.op:<5} omni/{bar.other:<11} = {shown} <= {bar.limit:.2f}"
            f"  {verdict:<4}  ({bar.wording})"
        )
        records.append(
            {
                "workload": bar.workload,
                "op": bar.op,
                "other": bar.other,
                "value": value,
                "limit": bar.limit,
                "verdict": verdict,
            }
        )
    return "\n".join(lines), records


def failures(all_results: dict[str, dict[str, LibResult]]) -> list[str]:
    """One line per library that failed on a workload, with its error."""
    return [
        f"  ({key}) {name}: {result.error}"
        for key, results in all_results.items()
        for name, result in results.items()
        if result.error is not None
    ]


def to_json(
    workloads: Sequence[Workload],
    all_results: dict[str, dict[str, LibResult]],
    bars: list[dict[str, Any]],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Medians (ms), per-run times (ms), ratios, sizes and errors, as plain JSON data."""
    out: dict[str, Any] = {"settings": settings, "workloads": {}, "bars": bars}
    for workload in workloads:
        res = all_results[workload.key]
        libs = {}
        for name, result in res.items():
            entry: dict[str, Any] = {"error": result.error, "bytes": result.size}
            for op in ("dumps", "loads"):
                median = result.median(op)
                times = result.dumps if op == "dumps" else result.loads
                entry[f"{op}_ms"] = None if median is None else median * 1e3
                entry[f"{op}_runs_ms"] = [t * 1e3 for t in times]
                entry[f"{op}_ratio"] = 1.0 if name == OMNI else ratio(res, name, op)
            libs[name] = entry
        out["workloads"][workload.key] = {"title": workload.title, "libraries": libs}
    return out


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"1/{QUICK_DIVISOR} of the sizes and {QUICK_RUNS} runs (a smoke test)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help=f"runs per workload (default {DEFAULT_RUNS}, {QUICK_RUNS} with --quick)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 unless omnipickle failed or gave a wrong result."""
    args = parse_args(argv)
    started = time.perf_counter()
    runs = args.runs if args.runs is not None else (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    sizes = Sizes.full().divided(QUICK_DIVISOR) if args.quick else Sizes.full()
    versions = {
        "python": platform.python_version(),
        OMNI: omnipickle.__version__,
        "cloudpickle": cloudpickle.__version__,
        "dill": dill.__version__,
    }
    print(
        "bench_core: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; protocol {PROTOCOL}; {runs} runs (dill: at most {DILL_MAX_RUNS})"
        + ("; quick" if args.quick else "")
    )
    workloads = build_workloads(sizes)
    print(f"  built the workloads: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    all_results: dict[str, dict[str, LibResult]] = {}
    for workload in workloads:
        workload_started = time.perf_counter()
        try:
            all_results[workload.key] = run_workload(workload, runs)
        except Exception:
            traceback.print_exc()
            return 1
        spent = time.perf_counter() - workload_started
        print(f"  ({workload.key}) {workload.title}: {spent:.1f} s", file=sys.stderr, flush=True)
    print()
    print(table(workloads, all_results))
    print()
    print("ratios: other library's median time / omnipickle's (> 1: omnipickle is faster)")
    failed = failures(all_results)
    if failed:
        print("fails:")
        print("\n".join(failed))
    print()
    bars_text, bars = check_bars(all_results)
    print(bars_text)
    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.1f} s")
    if args.json is not None:
        settings = {
            "quick": args.quick,
            "runs": runs,
            "dill_max_runs": DILL_MAX_RUNS,
            "protocol": PROTOCOL,
            "sizes": dataclasses.asdict(sizes),
            "versions": versions,
            "platform": platform.platform(),
            "elapsed_s": elapsed,
        }
        document = to_json(workloads, all_results, bars, settings)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    omni_failed = any(results[OMNI].error is not None for results in all_results.values())
    return 1 if omni_failed else 0


if __name__ == "__main__":
    sys.exit(main())
