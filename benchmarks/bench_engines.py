"""Engine benchmark: tiny tasks holding a lambda, through process pools, in tasks per second.

Run it as a script::

    python benchmarks/bench_engines.py [--quick] [--tasks N] [--runs R] [--json PATH]

Each engine runs N tiny tasks (default 10,000): a lambda that closes over a variable, defined in
this file (so in ``__main__``: it must travel by value), called on each of ``range(N)``, one
call per task. The engines, each with 2 worker processes started with ``spawn`` (loky's own
start method for loky), created and warmed up before anything is timed:

* ``omnipickle.futures`` ``map`` and ``submit`` (one ``submit`` per task, then every result),
  with its default ``prefetch``: 16 tasks sent ahead to the 2 workers;
* loky's ``get_reusable_executor`` ``map`` and ``submit`` (loky pickles with cloudpickle, and
  sends 5 tasks ahead);
* ``multiprocessing.Pool.map(omnipickle.wrap(f), chunksize=1)``: the standard pool cannot
  carry the lambda itself;
* the standard ``ProcessPoolExecutor.map`` of the builtin ``abs`` (no lambda: the standard
  library cannot send one; 3 tasks sent ahead): the cost of the pool machinery alone, for
  reference.

In each of R runs (default 5) every engine runs once, in an order rotated from run to run; the
table shows the median tasks per second, and the bars compare omnipickle.futures with loky.
Wall time (``time.perf_counter``): the work is spread over processes. See README.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loky

import omnipickle
import omnipickle.futures

WORKERS = 2
SCALE = 3
LIMIT = 1.2  # loky's tasks per second / omnipickle's, at most


def _make_task() -> Callable[[int], int]:
    offset = 1

    return lambda x: x * SCALE + offset


TASK = _make_task()


@dataclass(frozen=True)
class Engine:
    """One way to run the tasks: ``run(n)`` returns the N results, in order."""

    name: str
    run: Callable[[int], list[int]]
    expected: Callable[[int], list[int]]


def _lambda_results(n: int) -> list[int]:
    return [TASK(x) for x in range(n)]


def _abs_results(n: int) -> list[int]:
    return list(range(n))


def _via_map(executor: Any, fn: Callable[[int], int]) -> Callable[[int], list[int]]:
    return lambda n: list(executor.map(fn, range(n)))


def _via_submit(executor: Any, fn: Callable[[int], int]) -> Callable[[int], list[int]]:
    def run(n: int) -> list[int]:
        futures = [executor.submit(fn, x) for x in range(n)]
        return [f.result() for f in futures]

    return run


def _negated(n: int) -> Iterator[int]:
    return (-x for x in range(n))


def engines(stack: ExitStack) -> list[Engine]:
    """The engines, their pools started (and closed by ``stack``)."""
    spawn = multiprocessing.get_context("spawn")
    omni = stack.enter_context(omnipickle.futures.ProcessPoolExecutor(WORKERS, spawn))
    lk = loky.get_reusable_executor(max_workers=WORKERS)
    stack.callback(lk.shutdown)
    pool = stack.enter_context(spawn.Pool(WORKERS))
    stdlib = stack.enter_context(concurrent.futures.ProcessPoolExecutor(WORKERS, spawn))
    wrapped = omnipickle.wrap(TASK)
    return [
        Engine("omnipickle.futures map", _via_map(omni, TASK), _lambda_results),
        Engine("omnipickle.futures submit", _via_submit(omni, TASK), _lambda_results),
        Engine("loky map", _via_map(lk, TASK), _lambda_results),
        Engine("loky submit", _via_submit(lk, TASK), _lambda_results),
        Engine(
            "multiprocessing.Pool map + omnipickle.wrap",
            lambda n: pool.map(wrapped, range(n), chunksize=1),
            _lambda_results,
        ),
        Engine(
            "stdlib ProcessPoolExecutor map, abs (reference)",
            lambda n: list(stdlib.map(abs, _negated(n))),
            _abs_results,
        ),
    ]


def measure(
    all_engines: list[Engine], tasks: int, runs: int
) -> tuple[dict[str, list[float]], list[str]]:
    """Tasks per second of every run, by engine; and the problems seen."""
    problems: list[str] = []
    for engine in all_engines:  # warm-up: workers started, imports done, results checked
        try:
            if engine.run(50) != engine.expected(50):
                problems.append(f"{engine.name} gave back wrong results")
        except Exception as exc:
            problems.append(f"{engine.name} failed: {type(exc).__name__}: {exc}")
    working = [e for e in all_engines if not any(p.startswith(e.name + " ") for p in problems)]
    samples: dict[str, list[float]] = {e.name: [] for e in working}
    expected = {e.name: e.expected(tasks) for e in working}
    for r in range(runs):
        order = working[r % len(working) :] + working[: r % len(working)]
        for engine in order:
            start = time.perf_counter()
            results = engine.run(tasks)
            elapsed = time.perf_counter() - start
            if results != expected[engine.name]:
                problems.append(f"{engine.name} gave back wrong results in run {r + 1}")
            samples[engine.name].append(tasks / elapsed)
    return samples, problems


_BARS = (
    ("map", "omnipickle.futures map", "loky map"),
    ("submit", "omnipickle.futures submit", "loky submit"),
)


def bars(medians: dict[str, float]) -> list[dict[str, Any]]:
    """loky's median tasks per second / omnipickle's, for map and for submit."""
    out = []
    for name, omni, other in _BARS:
        if omni in medians and other in medians:
            value: float | None = medians[other] / medians[omni]
            verdict = "PASS" if value <= LIMIT else "MISS"
        else:
            value, verdict = None, "MISS"
        bar = {"bar": name, "omni": omni, "other": other, "value": value, "limit": LIMIT}
        out.append({**bar, "verdict": verdict})
    return out


def report(samples: dict[str, list[float]], tasks: int, runs: int) -> tuple[str, list[Any]]:
    medians = {name: statistics.median(values) for name, values in samples.items() if values}
    loky_map = medians.get("loky map")
    lines = [
        f"Python {platform.python_version()}, {WORKERS} workers, {tasks:,} tasks x {runs} runs, "
        "median tasks per second\n",
        "| engine | tasks/s | min | max | x loky map |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, values in samples.items():
        ratio = f"{medians[name] / loky_map:.2f}" if loky_map else "-"
        lines.append(
            f"| {name} | {medians[name]:,.0f} | {min(values):,.0f} | {max(values):,.0f} | {ratio} |"
        )
    found = bars(medians)
    lines += ["", "bars (loky tasks/s / omnipickle tasks/s, at most the limit):"]
    for bar in found:
        shown = f"{bar['value']:.2f}" if bar["value"] is not None else "n/a"
        lines.append(f"  {bar['bar']:7} {shown} (limit {LIMIT}) {bar['verdict']}")
    return "\n".join(lines), found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 tasks, 2 runs (a smoke test)")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per run and engine")
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if TASK.__module__ != "__main__":
        print("run this file as a script: its lambda must live in __main__", file=sys.stderr)
        return 2
    tasks, runs = (300, 2) if args.quick else (args.tasks, args.runs)
    started = time.perf_counter()
    with ExitStack() as stack:
        samples, problems = measure(engines(stack), tasks, runs)
    text, found = report(samples, tasks, runs)
    print(text)
    for problem in problems:
        print("PROBLEM:", problem)
    if args.json:
        settings = {
            "tasks": tasks,
            "runs": runs,
            "workers": WORKERS,
            "python": platform.python_version(),
            "loky": loky.__version__,
            "seconds": time.perf_counter() - started,
        }
        args.json.write_text(
            json.dumps({"settings": settings, "tasks_per_s": samples, "bars": found}, indent=1)
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
