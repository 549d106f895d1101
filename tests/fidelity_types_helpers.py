"""Importable classes for tests/test_fidelity_types.py (importable by name in a child, too)."""

from __future__ import annotations

from typing import Any

import numpy as np


class TaggedArray(np.ndarray):
    """An ndarray subclass whose instances carry attributes in their ``__dict__``."""

    def __array_finalize__(self, obj: Any) -> None:
        # numpy's recipe: a view of a tagged array inherits the tag; a fresh one gets None.
        self.tag = getattr(obj, "tag", None)


class SlottedArray(np.ndarray):
    """An ndarray subclass whose instances have no ``__dict__``."""

    __slots__ = ()


class OwnPickleArray(np.ndarray):
    """Says itself how it is pickled (numpy's recipe): auto leaves its reduction alone."""

    def __reduce__(self) -> Any:
        func, args, state = super().__reduce__()  # type: ignore[misc]
        return func, args, (state, self.__dict__.get("tag"), "own")

    def __setstate__(self, state: Any) -> None:
        inner, tag, how = state
        super().__setstate__(inner)
        self.tag = (tag, how)


class Slots:
    __slots__ = ("x", "y")


class _ShadowingMeta(type):
    @property
    def x(cls) -> str:
        return "the metaclass's x"


class Shadowed(metaclass=_ShadowingMeta):
    """``getattr(Shadowed, "x")`` is the metaclass property's value, not the slot's descriptor."""

    __slots__ = ("x",)
