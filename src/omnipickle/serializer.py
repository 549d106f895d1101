"""``Serializer``: the options of the public functions, held once."""

from __future__ import annotations

import os
from typing import IO, Any

from .api import dump, dumps, load, loads
from .backends import REGISTRY as BACKENDS
from .options import load_options, resolve_codec

__all__ = ["Serializer"]

_DUMP_OPTIONS = (
    "protocol",
    "fix_imports",
    "buffer_callback",
    "backend",
    "compression",
    "level",
    "key",
    "on_unpicklable",
    "raw",
)
_LOAD_OPTIONS = (
    "fix_imports",
    "encoding",
    "errors",
    "buffers",
    "key",
    "resources",
    "restricted",
    "allow",
)


class Serializer:
    """The options of :func:`dumps`/:func:`loads` held once.

    ``Serializer(compression="zstd", key=K).dumps(obj)`` is ``dumps(obj, compression="zstd",
    key=K)``; options given to a method override the held ones. Options that only one
    direction uses are ignored by the other. Instances are immutable and safe to share
    between threads.

    Raises:
        TypeError: an unknown option name.
    """

    _defaults: dict[str, Any]

    def __init__(self, **defaults: Any) -> None:
        unknown = set(defaults) - set(_DUMP_OPTIONS) - set(_LOAD_OPTIONS)
        if unknown:
            raise TypeError(
                f"unknown Serializer option(s): {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted({*_DUMP_OPTIONS, *_LOAD_OPTIONS}))}"
            )
        if "backend" in defaults:
            BACKENDS.canonical(defaults["backend"])
        if defaults.get("compression") is not None:
            resolve_codec(defaults["compression"])
        if "key" in defaults:
            load_options(
                fix_imports=True,
                encoding="ASCII",
                errors="strict",
                buffers=None,
                key=defaults["key"],
                resources=None,
                restricted=False,
                allow=None,
            )
        object.__setattr__(self, "_defaults", dict(defaults))

    def __setattr__(self, name: str, value: Any) -> None:
        # Immutable, as documented: ``s.key = K`` would otherwise be accepted and ignored, and
        # payloads would come out unsigned.
        raise AttributeError(
            f"Serializer is immutable: make a new one, Serializer(..., {name}=...), instead of "
            f"setting {name!r}"
        )

    def __repr__(self) -> str:
        shown = {k: ("<key>" if k == "key" else v) for k, v in self._defaults.items()}
        return f"Serializer({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def _merged(self, names: tuple[str, ...], given: dict[str, Any]) -> dict[str, Any]:
        merged = {k: v for k, v in self._defaults.items() if k in names}
        merged.update(given)
        return merged

    def dumps(self, obj: Any, **options: Any) -> bytes:
        """:func:`dumps` with this serializer's options."""
        return dumps(obj, **self._merged(_DUMP_OPTIONS, options))

    def dump(self, obj: Any, file: str | os.PathLike[str] | IO[bytes], **options: Any) -> None:
        """:func:`dump` with this serializer's options."""
        dump(obj, file, **self._merged(_DUMP_OPTIONS, options))

    def loads(self, data: bytes | bytearray | memoryview, **options: Any) -> Any:
        """:func:`loads` with this serializer's options."""
        return loads(data, **self._merged(_LOAD_OPTIONS, options))

    def load(self, file: str | os.PathLike[str] | IO[bytes], **options: Any) -> Any:
        """:func:`load` with this serializer's options."""
        return load(file, **self._merged(_LOAD_OPTIONS, options))
