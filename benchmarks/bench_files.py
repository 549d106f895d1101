"""File benchmark: omnipickle.dump/load to files, against raw writes, pickle, joblib and
compress_pickle, in one run.

Run it as a script::

    python benchmarks/bench_files.py [--quick] [--runs N] [--json PATH] [--plot PATH]
                                     [--size-mb N]

Four parts, each printed as a table with ratios, then the bars (PASS/MISS):

1. large arrays (400 MB of float64 by default): dump against a raw write of the same buffers,
   load against ``load(mmap_mode="r")``, pickle and joblib; extra peak RSS of dump and load,
   measured in a fresh child process per figure;
2. a codec table on three realistic datasets: every omnipickle codec, joblib's and
   compress_pickle's, with compression ratio, dump MB/s and load MB/s;
3. 200,000 small dicts: ``omnipickle.dump(..., compression="zstd")`` against ``pickle.dumps``;
4. a plot of the codec table (``--plot``; by default docs/images/codecs.png in full mode).

Everything here is I/O (files, fsync) or uses several threads (zstd), so the clock is wall time
(``time.perf_counter``), not CPU time as in bench_core.py. See README.md in this folder.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import compress_pickle
import joblib
import lz4
import numpy as np
import zstandard

import omnipickle
from omnipickle.codecs import get_codec

PROTOCOL = 5
MB = 1_000_000
"""Sizes and speeds are in MB of 10**6 bytes."""
DEFAULT_RUNS = 5
QUICK_RUNS = 3
SLOW_MAX_RUNS = 3
QUICK_SLOW_MAX_RUNS = 1
"""bz2, lzma and xz (a few MB/s), and any call whose first run took more than SLOW_SECONDS,
are timed in at most this many runs (1 with --quick)."""
SLOW_SECONDS = 1.0
DEFAULT_SIZE_MB = 400
QUICK_SIZE_MB = 40
BIG_ARRAYS = 4
QUICK_DIVISOR = 20
SEED = 12345
OMNI = "omnipickle"
FAILS = "fails"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PLOT = ROOT / "docs" / "images" / "codecs.png"

# Default levels of the other libraries, as their code sets them (joblib 1.x's compressor files;
# compress_pickle opens gzip/bz2/lzma/lz4.frame/zipfile files with their own defaults).
JOBLIB_CODECS: dict[str, str] = {
    "zlib": "3",
    "gzip": "3",
    "bz2": "9",
    "lzma": "6",
    "xz": "6",
    "lz4": "0",
}
COMPRESS_PICKLE_CODECS: dict[str, str] = {
    "gzip": "9",
    "bz2": "9",
    "lzma": "6",
    "zipfile": "stored",  # zipfile.ZipFile's default is ZIP_STORED: no compression at all
    "lz4": "0",
}
# The omnipickle codec each of the others' codecs is compared with (the same algorithm).
FAMILY: dict[str, str] = {
    "none": "none",
    "zlib": "gzip",
    "gzip": "gzip",
    "zipfile": "none",
    "bz2": "bz2",
    "lzma": "lzma",
    "xz": "lzma",
    "zstd": "zstd",
    "lz4": "lz4",
}
SLOW_FAMILIES = frozenset({"bz2", "lzma"})


# --- datasets ----------------------------------------------------------------------------------


def make_dicts(n: int) -> list[dict[str, Any]]:
    """``n`` small dicts of builtin values (workload (a) of bench_core.py)."""
    return [
        {"id": i, "name": f"n{i}", "score": i * 0.5, "tags": ["x", "y"], "ok": True, "none": None}
        for i in range(n)
    ]


COLORS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple")


def make_table(rows: int) -> dict[str, Any]:
    """A pandas-like table: a dict of columns (numpy int64 and float64, two lists of str)."""
    rng = np.random.default_rng(SEED)
    return {
        "id": np.arange(1_000_000, 1_000_000 + rows, dtype=np.int64),
        "price": np.round(rng.normal(100.0, 15.0, rows), 2),
        "name": [f"user{x:06x}" for x in rng.integers(0, 1 << 24, rows).tolist()],
        "color": [COLORS[i] for i in rng.integers(0, len(COLORS), rows).tolist()],
    }


def make_arrays(divisor: int) -> dict[str, np.ndarray]:
    """A few numpy arrays: random floats (incompressible) and compressible ones."""
    rng = np.random.default_rng(SEED)
    return {
        "random": rng.random(500_000 // divisor),
        "normal": rng.standard_normal(250_000 // divisor).reshape(-1, 250),
        "arange": np.arange(1_000_000 // divisor, dtype=np.int64),
        "tiled": np.tile(np.linspace(0.0, 1.0, 1000, dtype=np.float32), 1000 // divisor),
    }


def make_big(total_bytes: int, count: int = BIG_ARRAYS) -> dict[str, np.ndarray]:
    """``count`` arrays of random float64 making ``total_bytes`` in all (no temporaries)."""
    rng = np.random.default_rng(SEED)
    n = total_bytes // count // 8
    return {f"a{i}": rng.random(n) for i in range(count)}


def same(a: Any, b: Any) -> bool:
    """Deep equality that understands numpy arrays."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


@dataclass(frozen=True)
class Dataset:
    key: str
    title: str
    data: Any
    pickle_bytes: int
    """``len(pickle.dumps(data, protocol=5))``: the MB of MB/s, and the numerator of ratios."""


def build_datasets(divisor: int) -> list[Dataset]:
    made = [
        ("dicts", f"{200_000 // divisor:,} small dicts", make_dicts(200_000 // divisor)),
        ("table", f"table of {200_000 // divisor:,} rows", make_table(200_000 // divisor)),
        ("arrays", "4 numpy arrays", make_arrays(divisor)),
    ]
    return [
        Dataset(key, title, data, len(pickle.dumps(data, protocol=PROTOCOL)))
        for key, title, data in made
    ]


# --- timing ------------------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, shortened."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    """Call ``func()`` once: the elapsed wall-clock seconds and the result.

    Garbage is collected first and the cyclic collector is off during the call (as
    :mod:`timeit` does). The clock is ``time.perf_counter``: the calls wait on the disk (fsync)
    and zstd compresses on several threads, which CPU time would miss or count twice.
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        result = func()
        elapsed = time.perf_counter() - start
    finally:
        if was_enabled:
            gc.enable()
    return elapsed, result


@dataclass
class Case:
    """One timed operation.

    Attributes:
        label: shown in the tables.
        func: the timed call.
        prepare: untimed, before every call (say, remove the target file).
        check: untimed, once, on the first result; raises ``AssertionError`` if it is wrong.
        max_runs: time it in at most this many runs (``None``: every run).
        omni: an omnipickle call: its failure makes the exit status 1.
        after: another case (the dump that writes the file this one loads): if it failed,
            this one is not run.
    """

    label: str
    func: Callable[[], Any]
    prepare: Callable[[], None] | None = None
    check: Callable[[Any], None] | None = None
    max_runs: int | None = None
    omni: bool = False
    after: Case | None = None
    times: list[float] = field(default_factory=list)
    error: str | None = None
    size: int | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.error is None and self.times else None

    def run_once(self) -> None:
        if self.after is not None and self.after.error is not None:
            self.error = "its dump failed"
            return
        if self.prepare is not None:
            self.prepare()
        try:
            elapsed, result = timed(self.func)
        except Exception as exc:
            self.error = describe(exc)
            return
        if self.check is not None and not self.times:
            try:
                self.check(result)
            except AssertionError as exc:
                self.error = f"wrong result: {exc}"
            except Exception as exc:
                self.error = f"check failed: {describe(exc)}"
        del result
        if self.error is None:
            self.times.append(elapsed)


def runs_for(max_runs: int | None, runs: int) -> set[int]:
    """The runs in which a case is timed: all, or ``max_runs`` of them spread evenly."""
    if max_runs is None or max_runs >= runs:
        return set(range(runs))
    if max_runs <= 1:
        return {0}
    return {round(k * (runs - 1) / (max_runs - 1)) for k in range(max_runs)}


def run_interleaved(
    groups: Sequence[Sequence[Case]], runs: int, slow_max: int | None = None
) -> None:
    """Time every case ``runs`` times; in each run the groups go in turn (say, all dumps then all
    loads), and inside a group the order of the cases is rotated from one run to the next.

    With ``slow_max``, a case whose first run took more than :data:`SLOW_SECONDS` is timed in
    at most ``slow_max`` runs (every schedule includes the first run).
    """
    for run in range(runs):
        for cases in groups:
            if not cases:
                continue
            shift = run % len(cases)
            for case in [*cases[shift:], *cases[:shift]]:
                if case.error is None and run in runs_for(case.max_runs, runs):
                    case.run_once()
                    slow = len(case.times) == 1 and case.times[0] > SLOW_SECONDS
                    if slow and slow_max is not None:
                        case.max_runs = min(case.max_runs or runs, slow_max)


def remover(path: Path) -> Callable[[], None]:
    return functools.partial(path.unlink, missing_ok=True)


def fsync_path(path: Path | str) -> None:
    """Flush a file another library wrote (and closed) to the disk, as omnipickle.dump does."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pickle_dump(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=PROTOCOL)
        f.flush()
        os.fsync(f.fileno())


def pickle_load(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def joblib_dump(obj: Any, path: Path, codec: str | None) -> None:
    # (name, None): that compressor's default level.
    joblib.dump(obj, str(path), compress=0 if codec is None else (codec, None))
    fsync_path(path)


def compress_pickle_dump(obj: Any, path: Path, codec: str) -> None:
    compress_pickle.dump(obj, path, compression=codec, set_default_extension=False)
    fsync_path(path)


def compress_pickle_load(path: Path, codec: str) -> Any:
    return compress_pickle.load(path, compression=codec, set_default_extension=False)


def checker(original: Any) -> Callable[[Any], None]:
    def check(loaded: Any) -> None:
        if not same(original, loaded):
            raise AssertionError("the loaded object differs from the original")

    return check


# --- part 1: large arrays ----------------------------------------------------------------------


def raw_write(data: dict[str, np.ndarray], path: Path) -> None:
    """The baseline: the arrays' bytes written to a file, flushed and fsynced."""
    with open(path, "wb") as f:
        for array in data.values():
            f.write(memoryview(array).cast("B"))
        f.flush()
        os.fsync(f.fileno())


def atomic_write_by_hand(data: dict[str, np.ndarray], path: Path) -> None:
    """The issue's baseline for a dump to a path: the arrays' bytes written atomically by hand,
    to a new file beside ``path``, fsynced, renamed over ``path``, and the folder fsynced."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        for array in data.values():
            f.write(memoryview(array).cast("B"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def zstd_write(data: dict[str, np.ndarray], path: Path, threads: int) -> None:
    """zstandard alone, level 3, on one thread (0) or a worker per core (-1): each array is a
    frame, fed 8 MiB at a time; then fsync. What zstd's own threads buy on this machine."""
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=False, threads=threads)
    with open(path, "wb") as f:
        for array in data.values():
            view = memoryview(array).cast("B")
            writer = compressor.stream_writer(f, closefd=False)
            for i in range(0, view.nbytes, 8 << 20):
                writer.write(view[i : i + (8 << 20)])
            writer.flush(zstandard.FLUSH_FRAME)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class BigResults:
    data_bytes: int
    dumps: dict[str, Case]
    """By file: raw, omni, omni-zstd, pickle, joblib, zstd-1, zstd-all."""
    loads: list[Case]
    rss: list[dict[str, Any]]
    file_sizes: dict[str, int]


def run_big(size_mb: int, runs: int, tmp: Path) -> BigResults:
    data = make_big(size_mb * MB, BIG_ARRAYS)
    data_bytes = sum(a.nbytes for a in data.values())
    paths = {
        "raw": tmp / "big-raw.bin",
        "atomic": tmp / "big-atomic.bin",
        "omni": tmp / "big-omni.bin",
        "omni-zstd": tmp / "big-omni-zstd.bin",
        "pickle": tmp / "big-pickle.pkl",
        "joblib": tmp / "big-joblib.pkl",
        "zstd-1": tmp / "big-zstd-1.zst",
        "zstd-all": tmp / "big-zstd-all.zst",
    }
    dumps = {
        "raw": Case("raw write+fsync", functools.partial(raw_write, data, paths["raw"])),
        "atomic": Case(
            "atomic write by hand",
            functools.partial(atomic_write_by_hand, data, paths["atomic"]),
        ),
        "omni": Case(
            "omnipickle.dump",
            functools.partial(omnipickle.dump, data, paths["omni"]),
            omni=True,
        ),
        "omni-zstd": Case(
            "omnipickle.dump zstd",
            functools.partial(omnipickle.dump, data, paths["omni-zstd"], compression="zstd"),
            omni=True,
        ),
        "pickle": Case("pickle.dump+fsync", functools.partial(pickle_dump, data, paths["pickle"])),
        "joblib": Case(
            "joblib.dump+fsync", functools.partial(joblib_dump, data, paths["joblib"], None)
        ),
        "zstd-1": Case(
            "zstandard 1 thread+fsync",
            functools.partial(zstd_write, data, paths["zstd-1"], 0),
        ),
        "zstd-all": Case(
            f"zstandard {os.cpu_count()} threads+fsync",
            functools.partial(zstd_write, data, paths["zstd-all"], -1),
        ),
    }
    for key, case in dumps.items():
        case.prepare = remover(paths[key])
    # One untimed round first: on a fresh folder every first write of the data is several
    # times slower than the next ones, whatever the writer.
    for case in dumps.values():
        if case.prepare is not None:
            case.prepare()
        try:
            case.func()
        except Exception as exc:
            case.error = describe(exc)
    run_interleaved([list(dumps.values())], runs)
    print("  large arrays: dumps done", file=sys.stderr, flush=True)
    check = checker(data)
    loads = [
        Case(
            "omnipickle.load",
            functools.partial(omnipickle.load, paths["omni"]),
            check=check,
            omni=True,
            after=dumps["omni"],
        ),
        Case(
            "omnipickle.load mmap_mode=r",
            functools.partial(omnipickle.load, paths["omni"], mmap_mode="r"),
            check=check,
            omni=True,
            after=dumps["omni"],
        ),
        Case(
            "omnipickle.load zstd",
            functools.partial(omnipickle.load, paths["omni-zstd"]),
            check=check,
            omni=True,
            after=dumps["omni-zstd"],
        ),
        Case(
            "pickle.load",
            functools.partial(pickle_load, paths["pickle"]),
            check=check,
            after=dumps["pickle"],
        ),
        Case(
            "joblib.load",
            functools.partial(joblib.load, paths["joblib"]),
            check=check,
            after=dumps["joblib"],
        ),
        Case(
            "joblib.load mmap_mode=r",
            functools.partial(joblib.load, paths["joblib"], mmap_mode="r"),
            check=check,
            after=dumps["joblib"],
        ),
    ]
    run_interleaved([loads], runs)
    print("  large arrays: loads done", file=sys.stderr, flush=True)
    file_sizes = {key: p.stat().st_size for key, p in paths.items() if p.exists()}
    del data
    gc.collect()
    rss = measure_rss(size_mb, tmp, paths)
    print("  large arrays: peak RSS done", file=sys.stderr, flush=True)
    for path in paths.values():
        path.unlink(missing_ok=True)
    return BigResults(data_bytes, dumps, loads, rss, file_sizes)


# The peak RSS figures: one fresh child process per figure, running this file with --rss-child.
RSS_SPECS: tuple[tuple[str, str, str | None, str | None], ...] = (
    # (label, op, library, codec, file to load (a key of run_big's paths))
    ("omnipickle.dump", "dump", None, None),
    ("omnipickle.dump zstd", "dump", "zstd", None),
    ("omnipickle.load", "load", None, "omni"),
    ("omnipickle.load zstd", "load", "zstd", "omni-zstd"),
    ("pickle.dump (reference)", "dump", "pickle", None),
    ("pickle.load (reference)", "load", "pickle", "pickle"),
    ("joblib.dump (reference)", "dump", "joblib", None),
    ("joblib.load (reference)", "load", "joblib", "joblib"),
)


def measure_rss(size_mb: int, tmp: Path, paths: dict[str, Path]) -> list[dict[str, Any]]:
    results = []
    for label, op, codec, source in RSS_SPECS:
        library = codec if codec in ("pickle", "joblib") else OMNI
        spec = {
            "op": op,
            "library": library,
            "codec": None if codec in ("pickle", "joblib") else codec,
            "bytes": size_mb * MB,
            "arrays": BIG_ARRAYS,
            "path": str(paths[source] if source else tmp / "rss-dump.bin"),
        }
        record: dict[str, Any] = {"label": label, "op": op, "library": library}
        if source is not None and not paths[source].exists():
            record["error"] = "no file to load (its dump failed)"
            results.append(record)
            continue
        script = str(Path(__file__).resolve())
        proc = subprocess.run(
            [*CHILD_LAUNCHER, sys.executable, script, "--rss-child", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        (tmp / "rss-dump.bin").unlink(missing_ok=True)
        if proc.returncode != 0:
            lines = (proc.stderr.strip() or f"exit status {proc.returncode}").splitlines()
            record["error"] = lines[-1][:160]
        else:
            record.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        results.append(record)
    return results


# A child started straight from this process inherits its peak RSS: subprocess forks (or
# vforks) it, and at exec Linux keeps the old address space's high-water mark in ru_maxrss. So
# the child is started by a shell that forks it afresh (the "; exit" keeps the shell from
# exec'ing it in place): its ru_maxrss starts from the shell's few MB.
CHILD_LAUNCHER: tuple[str, ...] = (
    ("/bin/sh", "-c", '"$0" "$@"; exit $?') if os.path.exists("/bin/sh") else ()
)


def current_rss() -> int | None:
    """This process's resident set size now, in bytes (Linux: /proc/self/statm)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss() -> int:
    """This process's peak resident set size so far, in bytes (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def high_water_mark() -> int | None:
    """VmHWM of /proc/self/status (Linux), in bytes: a cross-check of ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: one dump or load, and its peak RSS above the baseline."""
    path, library, codec = spec["path"], spec["library"], spec["codec"]
    if spec["op"] == "dump":
        data = make_big(spec["bytes"], spec["arrays"])
        data_bytes = sum(a.nbytes for a in data.values())
    else:
        data_bytes = spec["bytes"] // spec["arrays"] // 8 * 8 * spec["arrays"]
    gc.collect()
    base_peak = peak_rss()
    base = current_rss() or base_peak
    if spec["op"] == "dump":
        if library == "pickle":
            pickle_dump(data, Path(path))
        elif library == "joblib":
            joblib_dump(data, Path(path), None)
        else:
            omnipickle.dump(data, path, compression=codec)
        peak = peak_rss()
        extra = peak - base
    else:
        if library == "pickle":
            loaded = pickle_load(Path(path))
        elif library == "joblib":
            loaded = joblib.load(path)
        else:
            loaded = omnipickle.load(path)
        peak = peak_rss()
        got = sum(a.nbytes for a in loaded.values())
        if got != data_bytes:
            raise AssertionError(f"loaded {got} bytes of arrays, expected {data_bytes}")
        extra = peak - base - data_bytes
    return {
        "base": base,
        "base_peak": base_peak,
        "peak": peak,
        "vm_hwm": high_water_mark(),
        "extra": extra,
        "data": data_bytes,
        "fraction": extra / data_bytes,
    }


# --- part 2: the codec table -------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One library with one codec, for the codec table."""

    library: str
    codec: str
    level: str
    dump: Callable[[Any, Path], None]
    load: Callable[[Path], Any]

    @property
    def family(self) -> str:
        return FAMILY.get(self.codec, self.codec)

    @property
    def label(self) -> str:
        return f"{self.library} {self.codec}"


def omni_dump(obj: Any, path: Path, codec: str | None) -> None:
    omnipickle.dump(obj, path, compression=codec)


def codec_configs() -> list[Config]:
    """pickle; omnipickle uncompressed and with every registered codec; joblib; compress_pickle."""
    configs = [Config("pickle", "none", "-", pickle_dump, pickle_load)]
    configs.append(
        Config(OMNI, "none", "-", functools.partial(omni_dump, codec=None), omnipickle.load)
    )
    for name in omnipickle.codecs():
        try:
            level = get_codec(name).default_level
        except Exception:  # not installed: its dump fails and says so
            level = None
        configs.append(
            Config(
                OMNI,
                name,
                "?" if level is None else str(level),
                functools.partial(omni_dump, codec=name),
                omnipickle.load,
            )
        )
    configs.append(
        Config("joblib", "none", "-", functools.partial(joblib_dump, codec=None), joblib.load)
    )
    for name, level in JOBLIB_CODECS.items():
        configs.append(
            Config("joblib", name, level, functools.partial(joblib_dump, codec=name), joblib.load)
        )
    known = set(compress_pickle.get_known_compressions())
    for name, level in COMPRESS_PICKLE_CODECS.items():
        if name in known:
            configs.append(
                Config(
                    "compress_pickle",
                    name,
                    level,
                    functools.partial(compress_pickle_dump, codec=name),
                    functools.partial(compress_pickle_load, codec=name),
                )
            )
    return configs


@dataclass
class CodecRow:
    config: Config
    dump: Case
    load: Case
    file_bytes: int | None = None


def run_codecs(dataset: Dataset, runs: int, slow_max: int, tmp: Path) -> list[CodecRow]:
    rows = []
    for i, config in enumerate(codec_configs()):
        path = tmp / f"{dataset.key}-{i}.bin"
        max_runs = slow_max if config.family in SLOW_FAMILIES else None
        omni = config.library == OMNI
        rows.append(
            CodecRow(
                config,
                Case(
                    config.label,
                    functools.partial(config.dump, dataset.data, path),
                    prepare=remover(path),
                    max_runs=max_runs,
                    omni=omni,
                ),
                Case(
                    config.label,
                    functools.partial(config.load, path),
                    check=checker(dataset.data),
                    max_runs=max_runs,
                    omni=omni,
                ),
            )
        )
        rows[-1].load.after = rows[-1].dump
    run_interleaved([[row.dump for row in rows], [row.load for row in rows]], runs, slow_max)
    for i, row in enumerate(rows):
        path = tmp / f"{dataset.key}-{i}.bin"
        if path.exists():
            row.file_bytes = path.stat().st_size
            path.unlink()
    return rows


# --- part 3: small dicts, zstd -----------------------------------------------------------------


@dataclass
class SmallResults:
    cases: list[Case]
    sizes: dict[str, int | None]
    loaded_ok: bool | None


def run_small(dicts: list[dict[str, Any]], runs: int, slow_max: int, tmp: Path) -> SmallResults:
    omni_path = tmp / "dicts-omni.zst"
    lz4_path = tmp / "dicts-joblib.lz4"
    zlib_path = tmp / "dicts-joblib.z"
    compressor = zstandard.ZstdCompressor(level=3)
    sizes: dict[str, int | None] = {}

    def sizer(label: str) -> Callable[[Any], None]:
        def record(result: Any) -> None:
            sizes[label] = len(result)

        return record

    def pickle_then_zstd() -> bytes:
        out: bytes = compressor.compress(pickle.dumps(dicts, protocol=PROTOCOL))
        return out

    cases = [
        Case(
            "pickle.dumps (memory)",
            functools.partial(pickle.dumps, dicts, protocol=PROTOCOL),
            check=sizer("pickle.dumps (memory)"),
        ),
        Case(
            "omnipickle.dump zstd (file)",
            functools.partial(omnipickle.dump, dicts, omni_path, compression="zstd"),
            prepare=remover(omni_path),
            omni=True,
        ),
        Case(
            "omnipickle.dumps zstd (memory)",
            functools.partial(omnipickle.dumps, dicts, compression="zstd"),
            check=sizer("omnipickle.dumps zstd (memory)"),
            omni=True,
        ),
        Case(
            "pickle.dumps + zstd 3 (memory)",
            pickle_then_zstd,
            check=sizer("pickle.dumps + zstd 3 (memory)"),
        ),
        Case(
            "joblib.dump lz4 (file)",
            functools.partial(joblib_dump, dicts, lz4_path, "lz4"),
            prepare=remover(lz4_path),
        ),
        Case(
            "joblib.dump zlib (file)",
            functools.partial(joblib_dump, dicts, zlib_path, "zlib"),
            prepare=remover(zlib_path),
        ),
    ]
    run_interleaved([cases], runs, slow_max)
    for label, path in (
        ("omnipickle.dump zstd (file)", omni_path),
        ("joblib.dump lz4 (file)", lz4_path),
        ("joblib.dump zlib (file)", zlib_path),
    ):
        sizes[label] = path.stat().st_size if path.exists() else None
    loaded_ok = None
    if omni_path.exists():
        try:
            loaded_ok = omnipickle.load(omni_path) == dicts
        except Exception as exc:
            print(f"  omnipickle.load of the zstd dicts FAILED: {describe(exc)}", file=sys.stderr)
            loaded_ok = False
    for path in (omni_path, lz4_path, zlib_path):
        path.unlink(missing_ok=True)
    return SmallResults(cases, sizes, loaded_ok)


# --- report ------------------------------------------------------------------------------------


def render(rows: Sequence[Sequence[str]]) -> str:
    """Align ``rows`` (the first is the header): the first column left, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return FAILS
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def over(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def paired(case: Case, baseline: Case) -> float | None:
    """The median over runs of ``case``'s time / ``baseline``'s in the same run, where both ran
    in every run (they ran seconds apart, so a slow spell of the disk slows both); else the
    ratio of the medians."""
    if case.error is None and baseline.error is None and len(case.times) == len(baseline.times):
        pairs = [a / b for a, b in zip(case.times, baseline.times, strict=True) if b > 0]
        if pairs:
            return statistics.median(pairs)
    return over(case.median, baseline.median)


def big_tables(big: BigResults) -> str:
    data_mb = big.data_bytes / MB
    raw = big.dumps["raw"].median
    atomic = big.dumps["atomic"].median
    rows = [["dump", "median s", "MB/s", "x raw", "x atomic", "file MB"]]
    for key, case in big.dumps.items():
        size = big.file_sizes.get(key)
        rows.append(
            [
                case.label,
                fmt(case.median),
                fmt(over(data_mb, case.median)),
                fmt(over(case.median, raw)),
                fmt(over(case.median, atomic), 3),
                "-" if size is None else f"{size / MB:.1f}",
            ]
        )
    out = [render(rows), ""]
    full = big.loads[0].median
    rows = [["load", "median ms", "MB/s", "x omnipickle.load"]]
    for case in big.loads:
        ms = None if case.median is None else case.median * 1e3
        rows.append(
            [
                case.label,
                fmt(ms, 1),
                "lazy" if "mmap" in case.label else fmt(over(data_mb, case.median)),
                fmt(over(case.median, full), 3),
            ]
        )
    out.append(render(rows))
    out.append("  (mmap: the arrays are mapped, not read; their pages are read on first access)")
    out.append("")
    rows = [["peak RSS, fresh process each", "base MB", "peak MB", "extra MB", "% of data"]]
    for record in big.rss:
        if "error" in record:
            rows.append([record["label"], FAILS, FAILS, FAILS, FAILS])
            continue
        # The peak was already reached before the operation: the figure is an upper bound.
        upper = " (*)" if record["base_peak"] >= record["peak"] else ""
        rows.append(
            [
                record["label"] + upper,
                f"{record['base'] / MB:.1f}",
                f"{record['peak'] / MB:.1f}",
                f"{record['extra'] / MB:.1f}",
                f"{100 * record['fraction']:.1f}",
            ]
        )
    out.append(render(rows))
    out.append(
        "  (dump: extra = peak - RSS after building the data; "
        "load: extra = peak - RSS before the load - the arrays loaded)"
    )
    if any(r.get("base_peak", 0) >= r.get("peak", 1) for r in big.rss):
        out.append("  (*) the peak predates the operation: the extra is an upper bound")
    return "\n".join(out)


def codec_table(dataset: Dataset, rows: list[CodecRow]) -> str:
    omni = {row.config.codec: row for row in rows if row.config.library == OMNI}
    mb = dataset.pickle_bytes / MB
    table = [
        [
            "library codec",
            "level",
            "file MB",
            "ratio",
            "dump MB/s",
            "load MB/s",
            "dump x omni",
            "load x omni",
        ]
    ]
    for row in rows:
        ref = omni.get(row.config.family)
        table.append(
            [
                row.config.label,
                row.config.level,
                "-" if row.file_bytes is None else f"{row.file_bytes / MB:.2f}",
                fmt(over(dataset.pickle_bytes, row.file_bytes)),
                fmt(over(mb, row.dump.median)),
                fmt(over(mb, row.load.median)),
                fmt(over(row.dump.median, ref.dump.median)) if ref else "-",
                fmt(over(row.load.median, ref.load.median)) if ref else "-",
            ]
        )
    head = f"({dataset.key}) {dataset.title}: pickle protocol 5 is {mb:.2f} MB"
    return head + "\n" + render(table)


def small_table(small: SmallResults) -> str:
    base = small.cases[0].median
    zstd_size = small.sizes.get("pickle.dumps + zstd 3 (memory)")
    rows = [["dump", "median ms", "x pickle.dumps", "bytes", "x pickle+zstd"]]
    for case in small.cases:
        size = small.sizes.get(case.label)
        rows.append(
            [
                case.label,
                fmt(None if case.median is None else case.median * 1e3, 1),
                fmt(over(case.median, base)),
                "-" if size is None else f"{size:,}",
                "-" if size is None or not zstd_size else f"{size / zstd_size:.4f}",
            ]
        )
    return render(rows)


@dataclass(frozen=True)
class Bar:
    name: str
    description: str
    value: float | None
    limit: float
    at_most: bool
    omni_failed: bool
    digits: int = 2

    @property
    def verdict(self) -> str:
        if self.omni_failed:
            return "MISS"
        if self.value is None:
            return "n/a"
        ok = self.value <= self.limit if self.at_most else self.value >= self.limit
        return "PASS" if ok else "MISS"

    def line(self, width: int) -> str:
        shown = "   --" if self.value is None else f"{self.value:7.{self.digits}f}"
        sign = "<=" if self.at_most else ">="
        return (
            f"  {self.name:<{width}} = {shown} {sign} {self.limit:<5g} {self.verdict:<4}"
            f"  ({self.description})"
        )

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "value": self.value,
            "limit": self.limit,
            "direction": "<=" if self.at_most else ">=",
            "verdict": self.verdict,
        }


def compute_bars(big: BigResults, small: SmallResults) -> list[Bar]:
    loads = {case.label: case for case in big.loads}
    omni_dump = big.dumps["omni"]
    full, mapped = loads["omnipickle.load"], loads["omnipickle.load mmap_mode=r"]
    bars = [
        Bar(
            f"large dump: omnipickle.dump / {big.dumps[baseline].label}",
            wanted,
            paired(omni_dump, big.dumps[baseline]),
            limit,
            True,
            omni_dump.error is not None,
            digits=3,
        )
        for baseline, wanted, limit in (
            ("atomic", "within 1.05x (issue 11)", 1.05),
            ("raw", "within 1.3x of raw", 1.3),
        )
    ]
    bars += [
        Bar(
            "large load: omnipickle.load / load(mmap_mode='r')",
            "mmap at least 20x faster",
            over(full.median, mapped.median),
            20,
            False,
            full.error is not None or mapped.error is not None,
            digits=1,
        ),
    ]
    for record in big.rss:
        if record["library"] != OMNI:
            continue
        failed = "error" in record
        bars.append(
            Bar(
                f"peak RSS: {record['label']} extra / data",
                "under 10% of the data",
                None if failed else record["fraction"],
                0.10,
                True,
                failed,
                digits=3,
            )
        )
    cases = {case.label: case for case in small.cases}
    omni_file = cases["omnipickle.dump zstd (file)"]
    bars.append(
        Bar(
            "dicts: omnipickle.dump zstd / pickle.dumps",
            "within 1.25x of uncompressed pickle.dumps",
            over(omni_file.median, cases["pickle.dumps (memory)"].median),
            1.25,
            True,
            omni_file.error is not None or small.loaded_ok is False,
            digits=3,
        )
    )
    bars.append(
        Bar(
            "dicts: omnipickle zstd file / pickle+zstd 3 bytes",
            "no bigger",
            over(
                small.sizes.get("omnipickle.dump zstd (file)"),
                small.sizes.get("pickle.dumps + zstd 3 (memory)"),
            ),
            1.0,
            True,
            omni_file.error is not None,
            digits=4,
        )
    )
    return bars


def failures(
    big: BigResults, codec_rows: dict[str, list[CodecRow]], small: SmallResults
) -> list[str]:
    lines = []
    for case in [*big.dumps.values(), *big.loads]:
        if case.error is not None:
            lines.append(f"  large arrays, {case.label}: {case.error}")
    for record in big.rss:
        if "error" in record:
            lines.append(f"  peak RSS, {record['label']}: {record['error']}")
    for key, rows in codec_rows.items():
        for row in rows:
            for op, case in (("dump", row.dump), ("load", row.load)):
                if case.error is not None:
                    lines.append(f"  ({key}) {case.label} {op}: {case.error}")
    for case in small.cases:
        if case.error is not None:
            lines.append(f"  dicts zstd, {case.label}: {case.error}")
    if small.loaded_ok is False:
        lines.append("  dicts zstd: omnipickle.load gave back different dicts")
    return lines


def omni_failed(
    big: BigResults, codec_rows: dict[str, list[CodecRow]], small: SmallResults
) -> bool:
    cases = [*big.dumps.values(), *big.loads, *small.cases]
    cases += [c for rows in codec_rows.values() for row in rows for c in (row.dump, row.load)]
    rss_failed = any("error" in r for r in big.rss if r["library"] == OMNI)
    return rss_failed or small.loaded_ok is False or any(c.omni and c.error for c in cases)


def case_json(case: Case) -> dict[str, Any]:
    return {
        "median_s": case.median,
        "runs_s": case.times,
        "error": case.error,
    }


def to_json(
    settings: dict[str, Any],
    big: BigResults,
    datasets: list[Dataset],
    codec_rows: dict[str, list[CodecRow]],
    small: SmallResults,
    bars: list[Bar],
) -> dict[str, Any]:
    codecs_out: dict[str, Any] = {}
    for dataset in datasets:
        entries = []
        for row in codec_rows[dataset.key]:
            entries.append(
                {
                    "library": row.config.library,
                    "codec": row.config.codec,
                    "level": row.config.level,
                    "file_bytes": row.file_bytes,
                    "ratio": over(dataset.pickle_bytes, row.file_bytes),
                    "dump_mb_s": over(dataset.pickle_bytes / MB, row.dump.median),
                    "load_mb_s": over(dataset.pickle_bytes / MB, row.load.median),
                    "dump": case_json(row.dump),
                    "load": case_json(row.load),
                }
            )
        codecs_out[dataset.key] = {
            "title": dataset.title,
            "pickle_bytes": dataset.pickle_bytes,
            "rows": entries,
        }
    return {
        "settings": settings,
        "large_arrays": {
            "data_bytes": big.data_bytes,
            "file_bytes": big.file_sizes,
            "dumps": {case.label: case_json(case) for case in big.dumps.values()},
            "loads": {case.label: case_json(case) for case in big.loads},
            "peak_rss": big.rss,
        },
        "codecs": codecs_out,
        "dicts_zstd": {
            "dumps": {case.label: case_json(case) for case in small.cases},
            "bytes": small.sizes,
            "loaded_ok": small.loaded_ok,
        },
        "bars": [bar.record() for bar in bars],
    }


# --- part 4: the plot --------------------------------------------------------------------------

MARKERS = {"pickle": "X", OMNI: "o", "joblib": "s", "compress_pickle": "^"}
SHORT = {"pickle": "p", OMNI: "o", "joblib": "j", "compress_pickle": "c"}


def plot(
    datasets: list[Dataset], codec_rows: dict[str, list[CodecRow]], path: Path, note: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")

    families = ["none", "gzip", "bz2", "lzma", "zstd", "lz4"]
    colors = dict(zip(families, plt.get_cmap("tab10").colors, strict=False))
    fig, axes = plt.subplots(2, len(datasets), figsize=(6 * len(datasets), 10), squeeze=False)
    for col, dataset in enumerate(datasets):
        mb = dataset.pickle_bytes / MB
        for row_index, op in enumerate(("dump", "load")):
            ax = axes[row_index][col]
            for row in codec_rows[dataset.key]:
                case = row.dump if op == "dump" else row.load
                speed = over(mb, case.median)
                ratio = over(dataset.pickle_bytes, row.file_bytes)
                if speed is None or ratio is None:
                    continue
                ax.scatter(
                    speed,
                    ratio,
                    marker=MARKERS.get(row.config.library, "o"),
                    color=colors.get(row.config.family, "grey"),
                    s=60,
                    alpha=0.85,
                    edgecolors="black",
                    linewidths=0.5,
                )
                ax.annotate(
                    f"{SHORT.get(row.config.library, '?')}:{row.config.codec}",
                    (speed, ratio),
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize=7,
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(plain)
                axis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f"{op} MB/s (of the pickle size; log)")
            ax.set_ylabel("compression ratio: pickle size / file size (log)")
            ax.set_title(f"{dataset.title}, {op}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
    handles = [
        Line2D([], [], marker=m, linestyle="", color="grey", markeredgecolor="black", label=lib)
        for lib, m in MARKERS.items()
    ]
    handles += [
        Line2D([], [], marker="o", linestyle="", color=c, markeredgecolor="black", label=f)
        for f, c in colors.items()
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(
        "omnipickle (o), joblib (j), compress_pickle (c) and pickle (p): ratio vs speed\n" + note,
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SIZE_MB} MB of large arrays, 1/{QUICK_DIVISOR} of the datasets, "
        f"{QUICK_RUNS} runs (a smoke test)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help=f"runs per measurement (default {DEFAULT_RUNS}, {QUICK_RUNS} with --quick)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        help=f"write the codec plot (PNG) there (default in full mode: {DEFAULT_PLOT})",
    )
    parser.add_argument(
        "--size-mb",
        type=int,
        default=None,
        help=f"MB of large arrays (default {DEFAULT_SIZE_MB}, {QUICK_SIZE_MB} with --quick)",
    )
    parser.add_argument(
        "--arrays",
        type=int,
        default=BIG_ARRAYS,
        help=f"how many arrays make up the large arrays (default {BIG_ARRAYS})",
    )
    parser.add_argument("--rss-child", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arrays < 1:
        parser.error("--arrays must be at least 1")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.size_mb is not None and args.size_mb < 1:
        parser.error("--size-mb must be at least 1")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib: pip install matplotlib")
    return args


def machine_note() -> str:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        ram = f", {memory:.0f} GiB RAM"
    except (OSError, ValueError):
        ram = ""
    return f"{os.cpu_count()} cores{ram}, {platform.system()} {platform.machine()}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 unless omnipickle failed or gave a wrong result."""
    global BIG_ARRAYS
    args = parse_args(argv)
    BIG_ARRAYS = args.arrays
    if args.rss_child is not None:
        print(json.dumps(rss_child(json.loads(args.rss_child))))
        return 0
    started = time.perf_counter()
    runs = args.runs if args.runs is not None else (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    size_mb = args.size_mb or (QUICK_SIZE_MB if args.quick else DEFAULT_SIZE_MB)
    divisor = QUICK_DIVISOR if args.quick else 1
    slow_max = QUICK_SLOW_MAX_RUNS if args.quick else SLOW_MAX_RUNS
    plot_path = args.plot
    if plot_path is None and not args.quick:
        if importlib.util.find_spec("matplotlib") is not None:
            plot_path = DEFAULT_PLOT
        else:
            print("  matplotlib is not installed: no plot", file=sys.stderr)
    versions = {
        "python": platform.python_version(),
        OMNI: omnipickle.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
        "compress_pickle": compress_pickle.__version__,
        "zstandard": zstandard.__version__,
        "lz4": lz4.__version__,
    }
    machine = machine_note()
    print(
        "bench_files: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; {runs} runs (bz2/lzma/xz and calls over {SLOW_SECONDS:g} s: at most {slow_max})"
        + f"; wall time; {machine}"
        + ("; quick" if args.quick else "")
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench_files_") as tmp_name:
            tmp = Path(tmp_name)
            big = run_big(size_mb, runs, tmp)
            datasets = build_datasets(divisor)
            codec_rows: dict[str, list[CodecRow]] = {}
            for dataset in datasets:
                step = time.perf_counter()
                codec_rows[dataset.key] = run_codecs(dataset, runs, slow_max, tmp)
                spent = time.perf_counter() - step
                print(f"  codecs ({dataset.key}): {spent:.1f} s", file=sys.stderr, flush=True)
            small = run_small(datasets[0].data, runs, slow_max, tmp)
            print("  dicts zstd: done", file=sys.stderr, flush=True)
    except Exception:
        traceback.print_exc()
        return 1

    print()
    print(
        f"1. large arrays: {BIG_ARRAYS} float64 arrays, {big.data_bytes / MB:.0f} MB in all "
        f"(median of {runs} runs; the dumps after an untimed round)"
    )
    print(big_tables(big))
    print()
    print(
        "2. codecs: ratio = pickle size / file size; MB/s of the pickle size; "
        "x omni = that time / omnipickle's with the same algorithm (> 1: omnipickle is faster)"
    )
    for dataset in datasets:
        print()
        print(codec_table(dataset, codec_rows[dataset.key]))
    print()
    print(f"3. {datasets[0].title}, zstd: median of {runs} runs")
    print(small_table(small))
    failed = failures(big, codec_rows, small)
    if failed:
        print()
        print("fails:")
        print("\n".join(failed))
    print()
    bars = compute_bars(big, small)
    width = max(len(bar.name) for bar in bars)
    print("bars:")
    print("\n".join(bar.line(width) for bar in bars))
    elapsed = time.perf_counter() - started
    note = f"{time.strftime('%Y-%m-%d')}, {machine}, {runs} runs, wall time"
    if plot_path is not None:
        try:
            plot(datasets, codec_rows, plot_path, note)
            print(f"\nplot: {plot_path}")
        except Exception:
            traceback.print_exc()
            return 1
    print(f"\ntotal {elapsed:.1f} s")
    if args.json is not None:
        settings = {
            "quick": args.quick,
            "runs": runs,
            "slow_seconds": SLOW_SECONDS,
            "slow_max_runs": slow_max,
            "size_mb": size_mb,
            "divisor": divisor,
            "protocol": PROTOCOL,
            "versions": versions,
            "machine": machine,
            "platform": platform.platform(),
            "elapsed_s": elapsed,
        }
        document = to_json(settings, big, datasets, codec_rows, small, bars)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 1 if omni_failed(big, codec_rows, small) else 0


if __name__ == "__main__":
    sys.exit(main())
