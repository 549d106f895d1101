"""Builds, in ``__main__``, one object of each kind docs/deterministic.md covers, and prints a
JSON object: for each case, the SHA-256 of its deterministic payload and its digests (and, as a
control, the SHA-256 of its ordinary payload, which is expected to vary).

usage: deterministic_cases.py dump DIR   also writes DIR/<case>.pkl (the deterministic payload)
       deterministic_cases.py load DIR   loads DIR/<case>.pkl (written by another interpreter),
                                         checks it works, dumps it again; prints the same JSON
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import sqlite3
import sys
import threading
import typing
from pathlib import Path

import numpy as np

import omnipickle
from omnipickle.adapters import dask as dask_adapter

OFFSET = 7


@dataclasses.dataclass
class Point:
    x: int
    tags: set[str]


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    values: frozenset[str]


class Shape:
    sides = 4

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen = {name, "shape", "polygon"}

    def area(self, k: int) -> int:
        return self.sides * k + OFFSET


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"

    def label(self) -> str:
        return self.value.upper()


class Pair(typing.NamedTuple):
    left: str
    right: int


class Store(omnipickle.TransientMixin):
    __transient__ = ("conn", "lock")

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.lock = threading.Lock()
        self.options = {"wal", "sync", "cache"}


def make_adder(n: int) -> typing.Callable[[int], int]:
    def add(x: int) -> int:
        return x + n + OFFSET

    return add


def cases() -> dict[str, typing.Any]:
    words = [f"word{i}" for i in range(40)]
    return {
        "mixed_set": {0, 2.5, "a", b"b", None, True, (1, "x"), frozenset({3, 4}), *words},
        "frozensets_of_tuples": frozenset({(i, f"s{i}", frozenset({i, -i})) for i in range(60)}),
        "nested_dicts": {
            "a": {"b": {"c": [1, {"d": set(words)}]}},
            "e": {i: str(i) for i in range(30)},
            ("k", 1): Pair("p", 2),
        },
        "dataclasses": [Point(1, set(words[:9])), Frozen("f", frozenset(words[9:20]))],
        "main_class": Shape,
        "main_enum": [Color, Color.GREEN, {Color.RED, Color.GREEN}],
        "main_instances": [Shape("square"), Shape("triangle"), Pair("x", 1)],
        "lambda": lambda x: x * 2 + OFFSET,
        "closures": [make_adder(i) for i in range(5)],
        "numpy": {
            "big": np.arange(200_000, dtype=np.float64),
            "small": np.ones((3, 4), dtype=np.int8),
            "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
            "dtypes": [np.dtype("f4"), np.dtype("f4")],
        },
        "transient": Store(),
    }


def check(name: str, value: typing.Any) -> None:
    """What a loaded case must do (raises AssertionError otherwise)."""
    fresh = cases()[name]
    if name == "main_class":
        assert value("x").area(2) == 15, name
    elif name == "main_enum":
        assert value[1] is value[0].GREEN and value[1].label() == "GREEN"
        assert value[2] == {value[0].RED, value[0].GREEN}
    elif name == "main_instances":
        assert [s.area(1) for s in value[:2]] == [11, 11] and value[0].seen == fresh[0].seen
        assert value[2] == ("x", 1)
    elif name == "lambda":
        assert value(3) == 13
    elif name == "closures":
        assert [f(1) for f in value] == [8, 9, 10, 11, 12]
    elif name == "numpy":
        for key in ("big", "small", "fortran"):
            assert np.array_equal(value[key], fresh[key]), key
        assert value["fortran"].flags.f_contiguous
        assert value["dtypes"] == fresh["dtypes"]
    elif name == "transient":
        assert value.conn is None and value.lock is None and value.options == fresh.options
    elif name == "dataclasses":
        assert [(p.x if hasattr(p, "x") else p.name) for p in value] == [1, "f"]
        assert value[0].tags == fresh[0].tags and value[1].values == fresh[1].values
    else:
        assert value == fresh, name


def report(objects: dict[str, typing.Any], written: dict[str, bytes]) -> dict[str, typing.Any]:
    out: dict[str, typing.Any] = {}
    for name, obj in objects.items():
        payload = omnipickle.dumps(obj, deterministic=True)
        written[name] = payload
        out[name] = {
            "payload": hashlib.sha256(payload).hexdigest(),
            "blake2b": omnipickle.digest(obj),
            "sha256": omnipickle.digest(obj, "sha256"),
            "xxh3_128": omnipickle.digest(obj, "xxh3_128"),
            "stripped": omnipickle.digest(obj, strip_source_info=True),
            "dask": dask_adapter.normalize(obj),
            "ordinary": hashlib.sha256(omnipickle.dumps(obj)).hexdigest(),
        }
    return out


def main() -> None:
    mode, folder = sys.argv[1], Path(sys.argv[2])
    written: dict[str, bytes] = {}
    if mode == "dump":
        out = report(cases(), written)
        for name, payload in written.items():
            (folder / f"{name}.pkl").write_bytes(payload)
    else:
        loaded = {}
        for name in cases():
            loaded[name] = omnipickle.load(folder / f"{name}.pkl")
            check(name, loaded[name])
        out = report(loaded, written)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
