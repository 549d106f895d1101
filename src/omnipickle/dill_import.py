"""The one place omnipickle imports dill: without letting it change the standard library.

``import dill`` extends the standard library's pure-Python pickler (``dill/__init__.py`` calls
``extend()``, which copies dill's ~50 savers into ``pickle._Pickler.dispatch``), so that after it
every ``pickle._Pickler`` in the process pickles differently. omnipickle uses dill only through
``dill.Pickler``, ``dill.Unpickler`` and ``dill.loads``, which keep their own dispatch table
(``dill.Pickler.dispatch`` is a copy made when dill's module is built), so what dill changes in
the standard library is put back as it was right after the import.

A program that imports dill itself gets dill's usual behaviour: when dill is already imported,
:func:`import_dill` returns it and touches nothing. This module imports nothing of omnipickle, so
every layer (the reconstructors a payload names included) can use it.
"""

from __future__ import annotations

import copyreg
import importlib
import pickle
import sys
import threading
import types
from typing import Any

__all__ = ["import_dill"]

_LOCK = threading.Lock()


def _mutable_tables() -> list[dict[Any, Any]]:
    """The dicts of the standard library an importing package may write into."""
    tables: list[dict[Any, Any]] = [
        pickle._Pickler.dispatch,
        pickle._Unpickler.dispatch,
        copyreg.dispatch_table,
        copyreg._extension_registry,  # type: ignore[attr-defined]
        copyreg._inverted_registry,  # type: ignore[attr-defined]
        copyreg._extension_cache,  # type: ignore[attr-defined]
        vars(pickle),
        vars(copyreg),
    ]
    # The C Pickler has no class-level dispatch_table today; a future one must survive too.
    c_table = getattr(pickle.Pickler, "dispatch_table", None)
    if isinstance(c_table, dict):
        tables.append(c_table)
    return tables


def import_dill() -> types.ModuleType:
    """``dill``, imported so that the standard library's picklers stay exactly as they were.

    Thread-safe: the snapshot, the import and the restore happen under one lock, so two threads
    meeting dill for the first time cannot restore each other's half-made snapshot.

    Returns:
        The ``dill`` module.

    Raises:
        ImportError: dill is not installed (whatever dill changed before failing is undone).
    """
    module = sys.modules.get("dill")
    if module is not None:
        return module
    with _LOCK:
        module = sys.modules.get("dill")
        if module is not None:
            return module
        tables = _mutable_tables()
        saved = [dict(table) for table in tables]
        try:
            return importlib.import_module("dill")
        finally:
            for table, before in zip(tables, saved, strict=True):
                _restore(table, before)


def _restore(table: dict[Any, Any], before: dict[Any, Any]) -> None:
    """Put ``table`` back to ``before`` in place (other modules hold this very dict), key by
    key, so that a reader on another thread never sees it empty."""
    for key in [key for key in table if key not in before]:
        del table[key]
    for key, value in before.items():
        if table.get(key, _ABSENT) is not value:
            table[key] = value


_ABSENT = object()
