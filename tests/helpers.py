"""Importable classes and functions for the tests (importable by name in a child, too)."""

from __future__ import annotations

from typing import Any


class Plain:
    def __init__(self, a: Any, b: Any) -> None:
        self.a = a
        self.b = b

    def __eq__(self, other: object) -> bool:
        return type(other) is Plain and (self.a, self.b) == (other.a, other.b)

    __hash__ = None  # type: ignore[assignment]


class Slotted:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is Slotted and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


class WithState:
    """Keeps ``items`` and a derived ``total``; pickles only ``items``."""

    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.total = sum(items)

    def __getstate__(self) -> dict[str, Any]:
        return {"items": self.items}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.items = state["items"]
        self.total = sum(self.items)

    def __eq__(self, other: object) -> bool:
        return type(other) is WithState and (self.items, self.total) == (other.items, other.total)

    __hash__ = None  # type: ignore[assignment]


def importable_function(x: int) -> int:
    return x + 1
