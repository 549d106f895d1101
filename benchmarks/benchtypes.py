"""Importable classes used by the benchmarks.

They live in their own module (not in the benchmark script, which runs as ``__main__``) so that
every serializer can pickle their instances by reference, the way it would for classes of an
installed package.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Point", "Record"]


class Point:
    """An ordinary class with three attributes in its ``__dict__``."""

    def __init__(self, x: int, y: float, label: str) -> None:
        self.x = x
        self.y = y
        self.label = label

    def __eq__(self, other: object) -> bool:
        if type(other) is not Point:
            return NotImplemented
        return (self.x, self.y, self.label) == (other.x, other.y, other.label)

    def __repr__(self) -> str:
        return f"Point({self.x!r}, {self.y!r}, {self.label!r})"


@dataclass
class Record:
    """A dataclass with a few fields of common types."""

    key: int
    name: str
    value: float
    active: bool = True
