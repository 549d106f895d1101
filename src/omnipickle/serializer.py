"""``Serializer``: the options of the public functions, held once."""

from __future__ import annotations

import os
from typing import IO, Any

from .api import dump, dumps, dumps_with, load, loads, loads_with
from .backends import REGISTRY as BACKENDS
from .codecs import REGISTRY as CODECS
from .options import DumpOptions, LoadOptions, dump_options, load_options, resolve_codec

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
    "deterministic",
    "strip_source_info",
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

# The functions' own defaults, for the options a Serializer does not hold.
_DUMPS_DEFAULTS: dict[str, Any] = {"protocol": None, **(dumps.__kwdefaults__ or {})}
_LOADS_DEFAULTS: dict[str, Any] = dict(loads.__kwdefaults__ or {})


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
    _dump_kw: dict[str, Any]
    _load_kw: dict[str, Any]
    _dump_direct: bool
    _load_direct: bool
    _resolved: dict[str, Any]

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
        dump_kw = {k: v for k, v in defaults.items() if k in _DUMP_OPTIONS}
        load_kw = {k: v for k, v in defaults.items() if k in _LOAD_OPTIONS}
        object.__setattr__(self, "_dump_kw", dump_kw)
        object.__setattr__(self, "_load_kw", load_kw)
        # Held options that leave the functions' own per-call fast paths open: call them.
        object.__setattr__(self, "_dump_direct", set(dump_kw) <= {"protocol", "raw"})
        object.__setattr__(self, "_load_direct", not load_kw)
        # What was resolved, with the registries' generations it was resolved under.
        object.__setattr__(self, "_resolved", {})

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

    def _dump_options(self) -> DumpOptions:
        generations = (BACKENDS.generation, CODECS.generation)
        held = self._resolved.get("dump")
        if held is None or held[0] != generations:
            given = {**_DUMPS_DEFAULTS, **self._dump_kw}
            held = (generations, dump_options(given.pop("protocol"), **given))
            self._resolved["dump"] = held
        opts: DumpOptions = held[1]
        return opts

    def _load_options(self) -> LoadOptions:
        opts = self._resolved.get("load")
        if opts is None:
            opts = load_options(**{**_LOADS_DEFAULTS, **self._load_kw})
            self._resolved["load"] = opts
        return opts

    def dumps(self, obj: Any, **options: Any) -> bytes:
        """:func:`dumps` with this serializer's options."""
        if options:
            return dumps(obj, **self._merged(_DUMP_OPTIONS, options))
        if self._dump_direct:
            return dumps(obj, **self._dump_kw)
        return dumps_with(obj, self._dump_options())

    def dump(self, obj: Any, file: str | os.PathLike[str] | IO[bytes], **options: Any) -> None:
        """:func:`dump` with this serializer's options."""
        dump(obj, file, **self._merged(_DUMP_OPTIONS, options))

    def loads(self, data: bytes | bytearray | memoryview, **options: Any) -> Any:
        """:func:`loads` with this serializer's options."""
        if options:
            return loads(data, **self._merged(_LOAD_OPTIONS, options))
        if self._load_direct:
            return loads(data)
        return loads_with(data, self._load_options())

    def load(self, file: str | os.PathLike[str] | IO[bytes], **options: Any) -> Any:
        """:func:`load` with this serializer's options."""
        return load(file, **self._merged(_LOAD_OPTIONS, options))
