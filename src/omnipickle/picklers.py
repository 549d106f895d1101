"""``Pickler`` and ``Unpickler``: the drop-in counterparts of ``pickle.Pickler`` and
``pickle.Unpickler``.

``Pickler`` is the auto backend's pickler (:class:`omnipickle.backends.auto.AutoPickler`) whose
``dump`` reports a failure as ``dumps`` does: a :class:`PicklingError` naming the path, that is
also the type pickle raises.

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
from .backends.auto import AutoPickler
from .diagnostics import describe_failure
from .errors import LOAD_FAILURES, PICKLING_FAILURES, load_failure
from .files import seekable
from .format import reader
from .format.header import MAGIC, is_envelope, sniff_size, starts_envelope
from .format.signing import KeyArgument
from .options import load_options

__all__ = ["Pickler", "Unpickler"]

_NO_PERSISTENT_LOAD = (
    "A load persistent id instruction was encountered, but no persistent_load function was "
    "specified."
)


class Pickler(AutoPickler):
    """A drop-in ``pickle.Pickler`` that also writes lambdas, closures and ``__main__`` code by
    value, recreates locks and reopens files (see :class:`omnipickle.backends.auto.AutoPickler`).

    Writes plain pickle streams (no envelope). Subclasses may define ``persistent_id``,
    ``dispatch_table`` and ``reducer_override``, as for ``pickle.Pickler``.

    Args:
        file: a binary file object (anything with ``write``).
        protocol: as for :class:`pickle.Pickler` (default: the highest).
        fix_imports, buffer_callback: as for :class:`pickle.Pickler`.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``class P(omnipickle.Pickler, Mixin)`` with a ``reducer_override`` in ``Mixin``: the
        pickle documentation's pattern, where ``pickle.Pickler`` leaves the mixin's hook in
        charge. The mixin's hook is asked first, and auto's (code by value) when it returns
        ``NotImplemented``, as a subclass's own override calling ``super()`` would."""
        super().__init_subclass__(**kwargs)
        first = next(k for k in cls.__mro__ if "reducer_override" in k.__dict__)
        if first is not AutoPickler:
            return  # the subclass's own (which calls super() for auto's), or one set up here
        mro = cls.__mro__
        for klass in mro[mro.index(AutoPickler) + 1 :]:
            if "reducer_override" in klass.__dict__ and not issubclass(klass, pickle.Pickler):
                hook = _consulting(klass.__dict__["reducer_override"])
                cls.reducer_override = hook  # type: ignore[method-assign,assignment]
                return

    def dump(self, obj: Any) -> None:
        """Write ``obj`` to the file.

        Raises:
            PicklingError: a part of ``obj`` cannot be serialized; the message and ``.path``
                name where. Where pickle raises ``TypeError``, ``AttributeError`` or
                ``RecursionError``, it is a :class:`PicklingTypeError`,
                :class:`PicklingAttributeError` or :class:`PicklingRecursionError`.
        """
        if not self.__dict__.get("_omni_report", "_auto_table" in self.__dict__):
            # A twin, for the locator; or an instance whose __init__ never ran, which the C
            # pickler refuses itself (PicklingError: Pickler.__init__() was not called).
            super().dump(obj)
            return
        try:
            super().dump(obj)
        except PICKLING_FAILURES as exc:
            raise describe_failure(obj, exc, self._twin) from exc

    def _twin(self, file: Any) -> pickle.Pickler:
        """A pickler like this one (same class and table) writing to ``file``: what the
        locator test-pickles the parts of a failed dump with."""
        try:
            twin: Pickler = type(self)(file, self.proto)
        except TypeError:  # a subclass whose constructor wants other arguments
            twin = Pickler(file, self.proto)
        if "_user_table" in self.__dict__ and self._user_table is not None:
            twin.dispatch_table = self._user_table
        # The locator wants what the pickler raises, not a report (which would locate again).
        twin.__dict__["_omni_report"] = False
        return twin


def _consulting(mixin_override: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A ``reducer_override`` that asks ``mixin_override`` first, then auto's."""
    ours = AutoPickler.reducer_override

    def reducer_override(self: Any, obj: Any) -> Any:
        rv = mixin_override(self, obj)
        if rv is NotImplemented:
            return ours(self, obj)
        return rv

    return reducer_override


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
        # pickle's own checks of the file (read and readline, the errors their properties
        # raise) come first, as they would for pickle.Unpickler.
        super().__init__(
            file, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
        )
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
        if "_omni_options" not in self.__dict__:
            # __init__ never ran: the C unpickler refuses itself (UnpicklingError).
            return super().load()
        token = LOAD_HOOKS.set(_Hooks(self) if self._has_hooks() else None)
        try:
            # With a key, a plain stream is refused by the reader, as load(file, key=) does.
            if self._omni_options.keys is not None or self._at_envelope():
                payload = reader.read_file(
                    self._omni_file,  # type: ignore[arg-type]  # a file, or _Lookahead over one
                    keys=self._omni_options.keys,
                )
                return unpickle(payload, self._omni_options)
            try:
                return super().load()
            except LOAD_FAILURES as exc:
                # Caught in the frame that called the unpickler: see errors.load_failure.
                error = load_failure(exc, size=None, ended=False)
                if error is None:
                    raise
                raise error from exc
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
