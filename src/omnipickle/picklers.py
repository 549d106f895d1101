"""``Unpickler``: the drop-in counterpart of ``pickle.Unpickler``.

(``omnipickle.Pickler`` is :class:`omnipickle.backends.auto.AutoPickler`.)
"""

from __future__ import annotations

import pickle
from typing import Any

from .api import load
from .format.header import PROBE_SIZE, is_envelope

__all__ = ["Unpickler"]


class Unpickler(pickle.Unpickler):
    """A drop-in ``pickle.Unpickler`` that also reads omnipickle payloads from the file.

    Each :meth:`load` reads one object: a plain pickle stream as ``pickle.Unpickler`` does, or,
    if the file is at an omnipickle envelope, one whole payload (checked, decompressed).
    Subclasses may override ``find_class`` and ``persistent_load`` for plain streams.
    """

    def __init__(
        self,
        file: Any,
        *,
        fix_imports: bool = True,
        encoding: str = "ASCII",
        errors: str = "strict",
        buffers: Any = None,
    ) -> None:
        super().__init__(
            file, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
        )
        self._omni_file = file
        self._omni_options = {
            "fix_imports": fix_imports,
            "encoding": encoding,
            "errors": errors,
            "buffers": buffers,
        }

    def load(self) -> Any:
        """Read and return one object from the file."""
        if self._at_envelope():
            return load(self._omni_file, **self._omni_options)
        return super().load()

    def _at_envelope(self) -> bool:
        file = self._omni_file
        peek = getattr(file, "peek", None)
        if peek is not None:
            head = bytes(peek(PROBE_SIZE)[:PROBE_SIZE])
            if len(head) >= PROBE_SIZE or is_envelope(head):
                return is_envelope(head)
        seekable = getattr(file, "seekable", None)
        if seekable is not None and seekable():
            pos = file.tell()
            head = file.read(PROBE_SIZE)
            file.seek(pos)
            return is_envelope(head)
        return False
