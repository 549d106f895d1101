"""Many small files: ``omnipickle.dump`` to paths against pickle to open files.

Run it as a script::

    python benchmarks/bench_small_files.py [--quick] [--files N] [--rounds R]

A cache of many small entries wants each write atomic (never a torn file) but not durable (no
fsync). In each of R rounds, each way writes N files of one small dict (the 3-key message of
bench_calls.py), in an order rotated from round to round:

* ``pickle.dump`` to ``open(path, "wb")`` (the bar's reference: neither atomic nor durable);
* the same, then ``os.replace`` from a temporary name (atomic by hand, no fsync);
* ``omnipickle.dump(obj, path, durable=False)`` (atomic, no fsync);
* ``omnipickle.dump(obj, path)`` (atomic and durable: fsync of the file and the folder).

Each way writes to new names in the first pass and over its own files in a second pass (a
rename over an existing file frees the old one, which costs more on most file systems). The
table shows median milliseconds for the N files and the ratio to pickle; every file is read
back and checked.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import omnipickle

OBJ = {"id": 7, "name": "job-7", "ok": True}


def pickle_open(path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(OBJ, f, protocol=5)


def pickle_replace(path: Path) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as f:
        pickle.dump(OBJ, f, protocol=5)
    os.replace(temp, path)


def omni_not_durable(path: Path) -> None:
    omnipickle.dump(OBJ, path, durable=False)


def omni_durable(path: Path) -> None:
    omnipickle.dump(OBJ, path)


WAYS: dict[str, Callable[[Path], None]] = {
    "pickle.dump to open()": pickle_open,
    "pickle.dump + os.replace": pickle_replace,
    "omnipickle.dump durable=False": omni_not_durable,
    "omnipickle.dump (durable)": omni_durable,
}


def run(folder: Path, files: int, rounds: int) -> dict[tuple[str, str], list[float]]:
    times: dict[tuple[str, str], list[float]] = {}
    names = list(WAYS)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            way = WAYS[name]
            home = folder / f"{names.index(name)}-{r}"
            home.mkdir()
            paths = [home / f"{i}.pkl" for i in range(files)]
            for case in ("new", "over"):
                start = time.perf_counter()
                for path in paths:
                    way(path)
                times.setdefault((name, case), []).append(time.perf_counter() - start)
            for path in paths:
                if omnipickle.load(path) != OBJ:
                    raise SystemExit(f"PROBLEM: {name} wrote {path} wrong")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 files, 2 rounds (a smoke test)")
    parser.add_argument("--files", type=int, default=300, help="files per way and round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    args = parser.parse_args()
    files, rounds = (20, 2) if args.quick else (args.files, args.rounds)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as folder:
        times = run(Path(folder), files, rounds)
    print(f"Python {sys.version.split()[0]}, {files} files x {rounds} rounds, median ms\n")
    print("| way | new files | ratio | over existing | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = {case: statistics.median(times[(next(iter(WAYS)), case)]) for case in ("new", "over")}
    for name in WAYS:
        cells = []
        for case in ("new", "over"):
            median = statistics.median(times[(name, case)])
            cells += [f"{median * 1e3:,.1f}", f"{median / base[case]:.2f}x"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
