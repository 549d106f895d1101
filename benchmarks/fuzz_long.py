"""Long fuzzing runs of ``omnipickle.loads``, ``restricted_loads`` and ``scan``.

The same mutations as ``tests/test_fuzz.py`` (bit flips, byte overwrites, truncations, splices
of two payloads, insertions, random garbage, the empty payload), applied to representative
payloads (plain data, instances, a lambda, every codec, a signed payload, plain pickle streams
of several protocols), for as long as asked. Every input must load or raise an
``omnipickle.UnpicklingError`` (``scan``: load-free, so it must report or raise one); anything
else is a finding, printed with a reproducer (the mutated bytes, base64) and counted.

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
import datetime
import decimal
import io
import os
import pickle
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import omnipickle
from helpers import Plain, Slotted, WithState
from omnipickle.format import header as envelope
from omnipickle.security import restricted_loads, scan

KEY = b"fuzzing-key-0123456789"
DEADLINE = 5.0


class Hang(BaseException):
    """A call ran past its deadline (a BaseException, so no library code swallows it)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the body runs longer than ``seconds``."""

    def _alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no answer after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def plain_data() -> dict[str, Any]:
    return {
        "ints": list(range(12)),
        "text": "h\u00e9llo",
        "bytes": b"\x00\xff\x80",
        "floats": [1.5, -0.0, 1e300],
        "nested": {"t": (1, (2, 3)), "s": {1, 2}, "f": frozenset({"a"})},
        "none": None,
        "big": 2**100,
    }


def instances(slots: bool = True) -> list[Any]:
    # Protocols 0 and 1 cannot pickle a __slots__ class without __getstate__.
    return [
        Plain(1, "a"),
        *([Slotted(2)] if slots else []),
        WithState([1, 2]),
        collections.OrderedDict(a=1),
        datetime.datetime(2024, 1, 2, 3, 4, 5),
        decimal.Decimal("1.25"),
    ]


def seeds() -> dict[str, bytes]:
    """The payloads mutations start from, by name."""
    data = plain_data()
    found = {
        "plain": omnipickle.dumps(data),
        "instances": omnipickle.dumps(instances()),
        "lambda": omnipickle.dumps(lambda x: x + 1),
        "signed": omnipickle.dumps(data, key=KEY),
        "protocol2": omnipickle.dumps(data, protocol=2),
    }
    for name in omnipickle.codecs():
        if name == "xz":
            continue  # an alias of lzma
        with contextlib.suppress(omnipickle.CodecNotInstalledError):
            found[f"codec-{name}"] = omnipickle.dumps(data, compression=name)
    try:
        import numpy as np
    except ImportError:
        pass
    else:  # a large array is stored after the stream, as a section
        buf = io.BytesIO()
        omnipickle.dump({"a": np.arange(9000, dtype="f8"), "b": [1]}, buf)
        found["sections"] = buf.getvalue()
    for proto in (0, 2, pickle.HIGHEST_PROTOCOL):
        found[f"raw-data-p{proto}"] = pickle.dumps(data, proto)
        found[f"raw-instances-p{proto}"] = pickle.dumps(instances(proto >= 2), proto)
    return found


# --- mutations ---------------------------------------------------------------------------------


def bit_flip(data: bytes, pos: int, bit: int) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    out[pos % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def overwrite(data: bytes, pos: int, chunk: bytes) -> bytes:
    if not data:
        return chunk
    pos %= len(data)
    return data[:pos] + chunk + data[pos + len(chunk) :]


def truncate(data: bytes, length: int) -> bytes:
    return data[: length % (len(data) + 1)]


def splice(data: bytes, other: bytes, cut: int, cut_other: int) -> bytes:
    return data[: cut % (len(data) + 1)] + other[cut_other % (len(other) + 1) :]


def insert(data: bytes, pos: int, chunk: bytes) -> bytes:
    pos %= len(data) + 1
    return data[:pos] + chunk + data[pos:]


def random_mutation(rng: random.Random, corpus: list[bytes]) -> bytes:
    """One mutated input, drawn with ``rng``."""
    data = rng.choice(corpus)
    kind = rng.randrange(8)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            data = bit_flip(data, rng.randrange(1 << 30), rng.randrange(8))
        return data
    if kind == 1:
        return overwrite(data, rng.randrange(1 << 30), rng.randbytes(rng.randint(1, 8)))
    if kind == 2:
        return truncate(data, rng.randrange(1 << 30))
    if kind == 3:
        return splice(data, rng.choice(corpus), rng.randrange(1 << 30), rng.randrange(1 << 30))
    if kind == 4:
        return insert(data, rng.randrange(1 << 30), rng.randbytes(rng.randint(1, 8)))
    if kind == 5:
        return rng.randbytes(rng.randint(0, 64))
    if kind == 6:
        return b""
    # Mutate only the header, where no checksum protects the lengths from the fields' point
    # of view (the header CRC is fixed up, so the parser goes on to the next check).
    return header_mutation(data, rng)


def header_mutation(data: bytes, rng: random.Random) -> bytes:
    import zlib

    if not envelope.is_envelope(data) or len(data) < envelope.HEADER_SIZE:
        return data
    out = bytearray(data)
    pos = rng.randrange(8, 44)
    out[pos] = rng.randrange(256)
    extra_size = int.from_bytes(out[20:24], "little")
    extra = bytes(out[48 : 48 + extra_size])
    out[44:48] = zlib.crc32(extra, zlib.crc32(bytes(out[:44]))).to_bytes(4, "little")
    return bytes(out)


# --- targets -----------------------------------------------------------------------------------


def target_loads(data: bytes) -> Any:
    return omnipickle.loads(data)


def target_loads_key(data: bytes) -> Any:
    return omnipickle.loads(data, key=KEY)


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


def outcome(target: Callable[[bytes], Any], data: bytes, limit: float | None = DEADLINE) -> str:
    """``"loaded"``, the name of the UnpicklingError subclass raised, or ``"FINDING ..."``."""
    guard = deadline(limit) if limit is not None else contextlib.nullcontext()
    try:
        with guard:
            target(data)
    except omnipickle.UnpicklingError as exc:
        return type(exc).__name__
    except Hang:
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
        [sys.argv[0], f"-max_total_time={int(seconds)}", f"-timeout={int(DEADLINE)}", str(corpus)],
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
