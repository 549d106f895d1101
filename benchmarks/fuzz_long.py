"""Long fuzzing runs of ``omnipickle.loads``, ``restricted_loads`` and ``scan``.

The same seeds and mutations as ``tests/test_fuzz.py``, from ``tests/fuzzing.py`` (bit flips,
byte overwrites, truncations, splices of two payloads, insertions, random garbage, the empty
payload, header fields), applied to representative payloads (plain data, instances, a lambda,
every codec, a signed payload, plain pickle streams of several protocols), for as long as asked.
Every input must load or raise an ``omnipickle.UnpicklingError`` (``scan``: load-free, so it
must report or raise one); anything else is a finding, printed with a reproducer (the mutated
bytes, base64) and counted.

Each call runs under a per-call deadline (``SIGALRM``), so a hang is a finding too, not a
stuck run::

    python benchmarks/fuzz_long.py --seconds 600 --seed 1
    python benchmarks/fuzz_long.py --seconds 60 --target scan --findings findings.txt

With ``--engine atheris`` the same targets run under atheris, Google's coverage-guided fuzzer
(``pip install atheris``: wheels exist for Linux x86-64 and recent CPythons; elsewhere it needs
clang to build, so it is optional and ``--engine random``, the default, needs nothing). Atheris
starts from the same seeds (written to ``$FUZZ_CORPUS``, default ``./fuzz-corpus``), mutates
with libFuzzer, stops at the first finding and prints its reproducer file::

    python benchmarks/fuzz_long.py --engine atheris --target scan --seconds 300

Counts by outcome are printed at the end (``loaded``, ``UnpicklingError`` subclasses by name,
and ``FINDING`` lines).
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fuzzing
import omnipickle
from omnipickle.format import header as envelope
from omnipickle.security import restricted_loads, scan


def seeds() -> dict[str, bytes]:
    """The payloads mutations start from, by name: the test suite's seeds."""
    payloads = fuzzing.envelopes()
    return {**payloads, **fuzzing.plain_streams(payloads)}


# --- mutations ---------------------------------------------------------------------------------


def random_mutation(rng: random.Random, corpus: list[bytes]) -> bytes:
    """One mutated input, drawn with ``rng``."""
    data = rng.choice(corpus)
    kind = rng.randrange(8)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            data = fuzzing.flip(data, rng.randrange(1 << 30), rng.randrange(8))
        return data
    if kind == 1:
        return fuzzing.overwrite(data, rng.randrange(1 << 30), rng.randbytes(rng.randint(1, 8)))
    if kind == 2:
        return fuzzing.truncate(data, rng.randrange(1 << 30))
    if kind == 3:
        return fuzzing.splice(
            data, rng.choice(corpus), rng.randrange(1 << 30), rng.randrange(1 << 30)
        )
    if kind == 4:
        return fuzzing.insert(data, rng.randrange(1 << 30), rng.randbytes(rng.randint(1, 8)))
    if kind == 5:
        return rng.randbytes(rng.randint(0, 64))
    if kind == 6:
        return b""
    if not envelope.is_envelope(data) or len(data) < envelope.HEADER_SIZE:
        return data
    return fuzzing.header_field(data, rng.randrange(36), rng.randrange(256))


# --- targets -----------------------------------------------------------------------------------


def target_loads(data: bytes) -> Any:
    return omnipickle.loads(data)


def target_loads_key(data: bytes) -> Any:
    return omnipickle.loads(data, key=fuzzing.KEY)


def target_restricted(data: bytes) -> Any:
    return restricted_loads(data, allow=("helpers.*",))


def target_scan(data: bytes) -> Any:
    return scan(data, allow=("helpers.*",))


TARGETS: dict[str, Callable[[bytes], Any]] = {
    "loads": target_loads,
    "loads-key": target_loads_key,
    "restricted": target_restricted,
    "scan": target_scan,
}


def outcome(
    target: Callable[[bytes], Any], data: bytes, limit: float | None = fuzzing.DEADLINE
) -> str:
    """``"loaded"``, the name of the UnpicklingError subclass raised, or ``"FINDING ..."``."""
    guard = fuzzing.deadline(limit) if limit is not None else contextlib.nullcontext()
    try:
        with guard:
            target(data)
    except omnipickle.UnpicklingError as exc:
        return type(exc).__name__
    except fuzzing.Hang:
        return "FINDING hang"
    except Exception as exc:
        return f"FINDING {type(exc).__name__}: {str(exc)[:120]}"
    return "loaded"


def run_random(targets: list[str], seconds: float, seed: int, findings: Path | None) -> int:
    rng = random.Random(seed)
    corpus = list(seeds().values())
    counts: collections.Counter[str] = collections.Counter()
    first: dict[str, bytes] = {}
    end = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < end:
        data = random_mutation(rng, corpus)
        for name in targets:
            result = outcome(TARGETS[name], data)
            key = f"{name}: {result}"
            counts[key] += 1
            if result.startswith("FINDING") and key not in first:
                first[key] = data
        runs += 1
    print(f"{runs:,} inputs in {seconds:.0f} s (seed {seed})")
    for key, count in sorted(counts.items()):
        print(f"{count:>10,}  {key}")
    for key, data in first.items():
        line = f"{key}\n    reproducer: base64.b64decode({base64.b64encode(data).decode()!r})"
        print(line)
        if findings is not None:
            with findings.open("a") as f:
                f.write(line + "\n")
    return 1 if first else 0


def run_atheris(targets: list[str], seconds: float) -> int:  # pragma: no cover - optional
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install atheris (or use --engine random)")
        return 2

    def one(data: bytes) -> None:
        for name in targets:
            # libFuzzer's own -timeout catches hangs (it uses SIGALRM too: no deadline here).
            result = outcome(TARGETS[name], data, limit=None)
            if result.startswith("FINDING"):
                raise AssertionError(f"{name}: {result}")

    corpus = Path(os.environ.get("FUZZ_CORPUS", "fuzz-corpus"))
    corpus.mkdir(exist_ok=True)
    for name, data in seeds().items():
        (corpus / name).write_bytes(data)
    atheris.instrument_all()  # coverage of omnipickle (and everything else loaded)
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={int(seconds)}",
            f"-timeout={int(fuzzing.DEADLINE)}",
            str(corpus),
        ],
        one,
    )
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (random engine)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (random engine)")
    parser.add_argument(
        "--target", action="append", choices=sorted(TARGETS), help="repeatable; default: all"
    )
    parser.add_argument("--engine", choices=("random", "atheris"), default="random")
    parser.add_argument("--findings", type=Path, help="append findings to this file")
    args = parser.parse_args(argv)
    targets = args.target or sorted(TARGETS)
    if args.engine == "atheris":
        return run_atheris(targets, args.seconds)
    return run_random(targets, args.seconds, args.seed, args.findings)


if __name__ == "__main__":
    sys.exit(main())
