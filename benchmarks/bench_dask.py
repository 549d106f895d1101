"""Dask round trips: omnipickle.dask.submit against Dask's own client.submit.

    python benchmarks/bench_dask.py [--quick] [--tasks N] [--runs R]

On a LocalCluster(processes=True, n_workers=2, threads_per_worker=1) on 127.0.0.1: N tiny tasks
holding a closure, submitted and gathered, in tasks per second (median of R runs), and the bytes
each way sends for one task's callable and arguments (Dask pickles them with cloudpickle;
omnipickle.dask sends one omnipickle payload). Exit status 0 unless a result is wrong.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import cloudpickle
from distributed import Client, LocalCluster

import omnipickle
import omnipickle.dask


def _rate(client: Client, submit: Any, fn: Any, tasks: int) -> float:
    start = time.perf_counter()
    futures = [submit(client, fn, i) for i in range(tasks)]
    results = client.gather(futures)
    elapsed = time.perf_counter() - start
    if results != [fn(i) for i in range(tasks)]:
        raise SystemExit(f"wrong results from {submit.__name__}")
    return tasks / elapsed


def _dask_submit(client: Client, fn: Any, *args: Any) -> Any:
    return client.submit(fn, *args, pure=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 tasks, 1 run (a smoke test)")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    tasks, runs = (50, 1) if args.quick else (args.tasks, args.runs)
    offset = 7
    fn = lambda x: x + offset  # noqa: E731  # a closure of __main__: by value both ways
    sizes = {
        "Dask (cloudpickle)": len(cloudpickle.dumps((fn, (1,), {}))),
        "omnipickle.dask": len(omnipickle.dumps((fn, (1,), {}))),
    }
    cluster = LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    with cluster, Client(cluster) as client:
        rates: dict[str, list[float]] = {"Dask (cloudpickle)": [], "omnipickle.dask": []}
        for _ in range(runs):
            rates["Dask (cloudpickle)"].append(_rate(client, _dask_submit, fn, tasks))
            rates["omnipickle.dask"].append(_rate(client, omnipickle.dask.submit, fn, tasks))
    base = statistics.median(rates["Dask (cloudpickle)"])
    print(f"{tasks} tasks, {runs} run(s), 2 workers")
    print("| way | callable+args bytes | tasks/s | vs Dask |")
    print("| --- | --- | --- | --- |")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {sizes[name]} | {rate:,.0f} | {rate / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
