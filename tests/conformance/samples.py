"""Importable objects the conformance suites round-trip (by name, so any backend can)."""

from __future__ import annotations

from typing import Any


class Pair:
    """Two attributes, compared by value."""

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pair) and type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]


class Slots:
    """A ``__slots__`` class without ``__getstate__`` (protocols 0 and 1 cannot save it)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is Slots and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


class Summed:
    """Pickles ``items`` only and derives ``total`` again when loaded."""

    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.total = sum(items)

    def __getstate__(self) -> list[int]:
        return self.items

    def __setstate__(self, items: list[int]) -> None:
        self.__init__(items)  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return type(other) is Summed and (other.items, other.total) == (self.items, self.total)

    __hash__ = None  # type: ignore[assignment]


def increment(x: int) -> int:
    """A module-level function: found by name."""
    return x + 1
