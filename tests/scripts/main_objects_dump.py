"""Defines functions and classes in __main__, dumps them with the library named on the command
line, and writes the payload to a file. Loaded later by main_objects_load.py in a fresh process.

usage: main_objects_dump.py {omnipickle,cloudpickle,dill} OUT
"""

import dataclasses
import enum
import functools
import sys
import typing

GLOBAL_OFFSET = 10


def doubled(f):
    @functools.wraps(f)
    def wrapper(*args):
        return f(*args) * 2

    return wrapper


@doubled
def decorated(x):
    return x + GLOBAL_OFFSET


def make_closure(n):
    def inner(x):
        return x + n + GLOBAL_OFFSET

    return inner


def make_recursive_closure():
    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)

    return fact


def top_level_recursive(n):
    return 1 if n <= 1 else n * top_level_recursive(n - 1)


@dataclasses.dataclass(slots=True, frozen=True)
class Point:
    x: int
    y: int

    def norm2(self):
        return self.x**2 + self.y**2


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Pair(typing.NamedTuple):
    a: int
    b: str


class Outer:
    class Inner:
        def hello(self):
            return "inner"


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self):
        self.a = 1
        self.b = 2


Dynamic = type("Dynamic", (), {"k": 5, "twice": lambda self: self.k * 2})

OBJECTS = {
    "lambda": lambda x: x * 3,
    "closure": make_closure(5),
    "recursive_closure": make_recursive_closure(),
    "recursive_function": top_level_recursive,
    "decorated": decorated,
    "point": Point(3, 4),
    "Color": Color,
    "color": Color.GREEN,
    "pair": Pair(1, "x"),
    "Inner": Outer.Inner,
    "inner": Outer.Inner(),
    "Slotted": Slotted,
    "slotted": Slotted(),
    "Dynamic": Dynamic,
    "dynamic": Dynamic(),
}

if __name__ == "__main__":
    library, out = sys.argv[1], sys.argv[2]
    if library == "omnipickle":
        import omnipickle

        data = omnipickle.dumps(OBJECTS)
    elif library == "cloudpickle":
        import cloudpickle

        data = cloudpickle.dumps(OBJECTS)
    elif library == "dill":
        import dill

        data = dill.dumps(OBJECTS)
    else:
        raise SystemExit(f"unknown library {library}")
    with open(out, "wb") as f:
        f.write(data)
