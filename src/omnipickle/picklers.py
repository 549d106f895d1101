"""``Unpickler``: the drop-in counterpart of ``pickle.Unpickler``.

(``omnipickle.Pickler`` is :class:`omnipickle.backends.auto.AutoPickler`.)

A subclass's ``find_class`` and ``persistent_load`` are pickle's way to vet what a stream may
import (the "Restricting Globals" recipe of the pickle documentation), so they must see every
global of every payload: the plain stream the C unpickler reads itself, the stream inside an
envelope (read by the backend's own unpickler class), and every stream nested in those (dill
blobs). Nested unpicklers defer to this one through ``_reconstruct.LOAD_HOOKS``.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from ._reconstruct import LOAD_HOOKS
from .api import unpickle
from .files import seekable
from .format import reader
from .format.header import MAGIC, is_envelope, sniff_size, starts_envelope
from .format.signing import KeyArgument
from .options import load_options

__all__ = ["Unpickler"]

_NO_PERSISTENT_LOAD = (
    "A load persistent id instruction was encountered, but no persistent_load function was "
    "specified."
)


class _Lookahead:
    """A stream that can neither seek nor peek (a pipe, a socket), read through so that the
    Unpickler can look at what comes next and give it back.

    It also reads exactly what is asked: a raw stream hands data over in pieces, and the C
    unpickler takes a short read for the end of the data.
    """

    def __init__(self, file: Any) -> None:
        self._file = file
        self._ahead = bytearray()

    def at_envelope(self) -> bool:
        """Whether the stream goes on with an envelope. Reads one byte at a time, and stops at
        the first that tells: a short pickle sent down a socket never waits for bytes that
        the other side will not send until it has an answer."""
        while (answer := starts_envelope(self._ahead)) is None:
            byte = self._file.read(1)
            if not byte:
                return False
            self._ahead += byte
        return answer

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            rest = self._file.read()
            whole = bytes(self._ahead) + (rest or b"")
            self._ahead.clear()
            return whole
        data = bytearray(self._ahead[:n])
        del self._ahead[:n]
        while len(data) < n:
            chunk = self._file.read(n - len(data))
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        end = self._ahead.find(b"\n")
        if end >= 0:
            line = bytes(self._ahead[: end + 1])
            del self._ahead[: end + 1]
            return line
        line = bytes(self._ahead) + bytes(self._file.readline())
        self._ahead.clear()
        return line


class _Hooks:
    """What nested unpicklers defer to: the ``Unpickler`` (subclass) that is loading."""

    __slots__ = ("_outer",)

    def __init__(self, outer: Unpickler) -> None:
        self._outer = outer

    def find_class(self, native: Callable[[str, str], Any], module: str, name: str) -> Any:
        outer = self._outer
        saved, outer._omni_native = outer._omni_native, native
        try:
            return outer.find_class(module, name)
        finally:
            outer._omni_native = saved

    def persistent_load(self, pid: Any) -> Any:
        try:
            load = self._outer.persistent_load
        except AttributeError:
            raise pickle.UnpicklingError(_NO_PERSISTENT_LOAD) from None
        return load(pid)


class Unpickler(pickle.Unpickler):
    """A drop-in ``pickle.Unpickler`` that also reads omnipickle payloads from the file.

    Each :meth:`load` reads one object: a plain pickle stream as ``pickle.Unpickler`` does, or,
    if the file is at an omnipickle envelope, one whole payload (checked, verified with ``key``,
    decompressed). The file may be anything with ``read`` and ``readline``: a regular file, a
    pipe or a socket's ``makefile("rb", buffering=0)``.

    Subclasses may override ``find_class`` and ``persistent_load`` (or set
    ``persistent_load`` on the instance), as for ``pickle.Unpickler``: they are called for
    every global and persistent id of every payload, envelope or plain, compressed or not,
    including the parts that dill or cloudpickle wrote (whose globals name their own helpers,
    such as ``cloudpickle.cloudpickle._make_function``). An override that calls
    ``super().find_class(module, name)`` gets the lookup of the unpickler reading that part.

    Args:
        file: a binary file object.
        fix_imports, encoding, errors, buffers: as for ``pickle.Unpickler``.
        key: verify each envelope's signature with this key (bytes, or a list of keys) before
            anything in it is unpickled; plain pickle streams cannot be signed, and are then
            refused (``SignatureError``).
    """

    def __init__(
        self,
        file: Any,
        *,
        fix_imports: bool = True,
        encoding: str = "ASCII",
        errors: str = "strict",
        buffers: Any = None,
        key: KeyArgument | None = None,
    ) -> None:
        self._omni_options = load_options(
            fix_imports=fix_imports,
            encoding=encoding,
            errors=errors,
            buffers=buffers,
            key=key,
            resources=None,
            restricted=False,
            allow=None,
        )
        # What comes next is looked at before each load: by a seek back where the file can,
        # else by reading ahead through a stream that gives the bytes back.
        source = file if seekable(file) else _Lookahead(file)
        super().__init__(
            source, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
        )
        self._omni_file = source
        self._omni_native: Callable[[str, str], Any] | None = None
        """The lookup of the unpickler reading the current part, when it is not this one."""

    def load(self) -> Any:
        """Read and return one object from the file.

        Raises:
            EOFError: the file is at its end.
            SignatureError: ``key`` was given and the payload is unsigned, plain, or does not
                verify.
            and what ``find_class``, ``persistent_load`` and :func:`omnipickle.load` raise.
        """
        token = LOAD_HOOKS.set(_Hooks(self) if self._has_hooks() else None)
        try:
            # With a key, a plain stream is refused by the reader, as load(file, key=) does.
            if self._omni_options.keys is not None or self._at_envelope():
                payload = reader.read_file(
                    self._omni_file,  # type: ignore[arg-type]  # a file, or _Lookahead over one
                    keys=self._omni_options.keys,
                )
                return unpickle(payload, self._omni_options)
            return super().load()
        finally:
            LOAD_HOOKS.reset(token)

    def find_class(self, module: str, name: str) -> Any:
        """``pickle.Unpickler.find_class``, or, for a part another unpickler class reads
        (dill's, for a dill stream), that unpickler's own lookup, which knows its names."""
        native = self._omni_native
        if native is None:
            return super().find_class(module, name)
        return native(module, name)

    def _has_hooks(self) -> bool:
        if type(self).find_class is not Unpickler.find_class:
            return True
        try:
            self.persistent_load  # noqa: B018 - set on the instance, or defined by a subclass
        except AttributeError:
            return False
        return True

    def _at_envelope(self) -> bool:
        file = self._omni_file
        if isinstance(file, _Lookahead):
            return file.at_envelope()
        pos = file.tell()
        head = file.read(len(MAGIC))
        # As the reader looks: far enough to see format 2's wrapping even with a damaged magic.
        head += file.read(max(sniff_size(head) - len(head), 0))
        file.seek(pos)
        return is_envelope(head)
