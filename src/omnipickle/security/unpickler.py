"""Restricted loading: an unpickler that imports only allow-listed globals, and never changes them.

:func:`restricted_loads` / :class:`RestrictedUnpickler` unpickle a bare pickle stream, but import
only what the :class:`~.policy.Policy` allows (a safe default set of data types,
:data:`~.policy.DEFAULT_ALLOW`, extended with ``allow=``). The first global the payload asks for
that is not allowed raises :class:`~omnipickle.errors.UnsafePayloadError` *before* it is imported
or called. Code serialized by value is accepted only with ``trusted=True``, which callers pass
when the payload's signature verified: signatures are how code is trusted, allow-lists how data
is. A few allowed names are answered by safe stand-ins (below) instead of the real function.
"""

from __future__ import annotations

import copyreg
import importlib
import io
import pickle
import struct
import sys
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from .._reconstruct import dropped_resource, restore_state
from ..errors import (
    MALFORMED_STREAM,
    CorruptPayloadError,
    OmnipickleError,
    TruncatedPayloadError,
    UnpicklingError,
    UnsafePayloadError,
    damaged_stream,
)
from ..format import header as envelope
from .policy import Policy, fix_name

__all__ = ["RestrictedUnpickler", "restricted_loads"]


# --- safe stand-ins for a few allowed names ------------------------------------------------------


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``codecs.encode`` restricted to what pickle writes for bytes: ``(text, "latin1")``."""
    if (
        type(obj) is not str
        or encoding not in ("latin1", "latin-1", "latin_1")
        or errors != "strict"
    ):
        raise UnsafePayloadError(
            f"restricted loading refused codecs.encode({type(obj).__name__}, {encoding!r}): "
            f"only the (text, 'latin1') form that pickle writes for bytes is accepted"
        )
    return obj.encode("latin-1")


def _bounded_semaphore(value: int, initial: int) -> threading.BoundedSemaphore:
    """``make_bounded_semaphore`` with its arguments checked and no loop over them.

    The original takes back ``initial - value`` permits one at a time: a payload asking for
    ``initial=10**18`` would keep the loader busy for ever.
    """
    if type(value) is not int or type(initial) is not int or not 0 <= value <= initial:
        raise UnsafePayloadError(
            f"restricted loading refused make_bounded_semaphore({value!r}, {initial!r}): "
            f"expected integers 0 <= value <= initial"
        )
    sem = threading.BoundedSemaphore(initial)
    with sem._cond:  # type: ignore[attr-defined]
        sem._value = value
    return sem


# Stand-ins that need the unpickler (its policy, or what it handed out): method names.
_BOUND_SUBSTITUTES = {
    "omnipickle._reconstruct.load_dill": "_load_dill",
    "omnipickle._reconstruct.dropped_resource": "_dropped_resource",
    "omnipickle._reconstruct.restore_state": "_restore_state",
}

_SUBSTITUTES: dict[str, Callable[..., Any]] = {
    "_codecs.encode": _latin1_encode,
    "codecs.encode": _latin1_encode,
    "omnipickle._reconstruct.make_bounded_semaphore": _bounded_semaphore,
}


def _lookup(module: str, name: str) -> Any:
    full = f"{module}.{name}"
    try:
        found: Any = sys.modules.get(module) or importlib.import_module(module)
    except ImportError as exc:
        raise UnpicklingError(
            f"the payload names {full}, but {module!r} cannot be imported here: {exc}"
        ) from exc
    for part in name.split("."):
        try:
            found = getattr(found, part)
        except AttributeError as exc:
            raise UnpicklingError(
                f"the payload names {full}, which does not exist here: {exc}"
            ) from exc
    return found


# The opcodes that change an object already on the stack, by their loader's name.
_MUTATORS = {
    pickle.BUILD[0]: "load_build",
    pickle.APPEND[0]: "load_append",
    pickle.APPENDS[0]: "load_appends",
    pickle.SETITEM[0]: "load_setitem",
    pickle.SETITEMS[0]: "load_setitems",
    pickle.ADDITEMS[0]: "load_additems",
}
# Where each of them finds its target, counted from the top of the stack (or at the mark).
_TARGETS = {"load_build": -2, "load_append": -2, "load_setitem": -3}


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that imports only allow-listed globals, and never changes them.

    Reads bare pickle streams written by pickle, cloudpickle, dill or omnipickle's backends.
    The first global that is not allowed raises :class:`UnsafePayloadError` naming it
    (``module.name``) before it is imported or called; persistent ids are refused too, and so
    is any opcode that would change a global the payload was handed (setting the state of an
    allowed *class*, ``myapp.User.is_admin = True``, or adding items to an allowed dict):
    a payload may build new objects from allowed globals, never alter the globals themselves.

    It extends the standard library's pure-Python unpickler (``pickle._Unpickler``), not the
    C one, on purpose: the C unpickler gives no hook for those opcodes, looks extension codes up
    in a process-wide cache without asking ``find_class``, and grows its memo to any index a
    payload names (a 7-byte stream makes it allocate and clear gigabytes). That costs speed:
    a restricted load takes about four times as long as a plain one.

    Args:
        file: a binary file object, as for :class:`pickle.Unpickler`.
        allow: extra entries: exact dotted names (``"pkg.module.Name"``) and prefix patterns
            (``"pkg.*"``: the classes and functions that package ``pkg`` and its submodules
            define; not their dunder attributes, not what they import from elsewhere).
            :data:`DEFAULT_ALLOW` is always included.
        trusted: also accept code serialized by value (:data:`TRUSTED_ALLOW`). Pass ``True``
            only when the payload's signature verified.
        fix_imports, encoding, errors, buffers: as for :class:`pickle.Unpickler`.

    Raises:
        TypeError: ``allow`` is not an iterable of str, or ``trusted`` is not a bool.
        ValueError: an ``allow`` entry is malformed (empty, whitespace, ``"*"``, ``"pkg*"``,
            an empty dotted part, a bare module name).
    """

    dispatch: ClassVar[dict[int, Callable[[Any], None]]]
    # The pure-Python unpickler's own state, which typeshed does not describe.
    proto: int
    stack: list[Any]
    metastack: list[list[Any]]
    append: Callable[[Any], None]
    read: Callable[[int], bytes]
    _unframer: Any

    def __init__(
        self,
        file: Any,
        *,
        allow: Iterable[str] | None = (),
        trusted: bool = False,
        fix_imports: bool = True,
        encoding: str = "ASCII",
        errors: str = "strict",
        buffers: Iterable[Any] | None = None,
    ) -> None:
        self._policy = Policy(allow, trusted)
        super().__init__(
            file, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
        )
        self._fix_imports = fix_imports
        self._encoding = encoding
        self._errors = errors
        # Everything find_class handed out, by id (the list keeps the ids valid).
        self._handed: list[Any] = []
        self._handed_ids: set[int] = set()

    def find_class(self, module: str, name: str) -> Any:
        """Return the global ``module.name`` if the policy allows it, else refuse it."""
        policy = self._policy
        # Without fix_imports, Python 2 names are left alone (as pickle does): protocol "3".
        protocol = self.proto if self._fix_imports else 3
        module, name = fix_name(module, name, protocol)
        reason, prefix = policy.check(module, name)
        full = f"{module}.{name}"
        if reason is not None:
            raise UnsafePayloadError(f"restricted loading refused the global {full}: {reason}")
        obj: Any
        if full not in policy.user_exact and full in _SUBSTITUTES:
            obj = _SUBSTITUTES[full]
        elif full not in policy.user_exact and full in _BOUND_SUBSTITUTES:
            obj = getattr(self, _BOUND_SUBSTITUTES[full])
        elif module == "__builtin__" and name == "NoneType":
            obj = type(None)
        elif module == "__builtin__" and name == "__main__":
            # dill names the namespace of __main__ for the globals of by-value functions.
            obj = sys.modules["__main__"].__dict__
        else:
            obj = _lookup(module, name)
            if prefix is not None:
                policy.check_origin(full, prefix, obj)
        self._hand_out(obj)
        return obj

    def get_extension(self, code: int) -> None:
        """An extension code (``copyreg.add_extension``), always through :meth:`find_class`.

        pickle's own version answers from a process-wide cache first, which an unrestricted
        load may have filled with anything.
        """
        key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
        if not key:
            raise CorruptPayloadError(f"damaged pickle stream: unregistered extension code {code}")
        self.append(self.find_class(*key))

    def persistent_load(self, pid: Any) -> Any:
        """Refuse: a persistent id asks the loader for an object from outside the stream."""
        shown = repr(pid)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise UnsafePayloadError(
            f"restricted loading refused a persistent id ({shown}): persistent ids ask the "
            f"loader for objects from outside the payload"
        )

    def unread(self) -> int:
        """How many bytes the unpickler took from its file but has not parsed yet.

        pickle reads a whole frame from the file at once, so the file's position runs ahead of
        the parser's by what is left of the current frame.
        """
        unframer = getattr(self, "_unframer", None)  # set by load()
        frame = unframer.current_frame if unframer is not None else None
        if not frame:
            return 0
        with frame.getbuffer() as view:
            return int(view.nbytes - frame.tell())

    def _hand_out(self, obj: Any) -> None:
        """Remember ``obj`` as not the payload's own: no opcode may change it."""
        if id(obj) not in self._handed_ids:
            self._handed.append(obj)
            self._handed_ids.add(id(obj))

    def _refuse_change(self, loader: str) -> None:
        stack = self.stack
        at = _TARGETS.get(loader)
        if at is None:  # the opcodes with a mark: the target is just below it
            target = self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None
        else:
            target = stack[at] if len(stack) >= -at else None
        if target is not None and id(target) in self._handed_ids:
            self._refuse_target(target, loader.removeprefix("load_"))

    @staticmethod
    def _refuse_target(target: Any, how: str) -> None:
        shown = getattr(target, "__qualname__", None) or type(target).__qualname__
        module = getattr(target, "__module__", None)
        label = f"{module}.{shown}" if isinstance(module, str) else shown
        raise UnsafePayloadError(
            f"restricted loading refused the payload: it tries to change {label} ({how}), an "
            f"object it did not build; a payload may build objects from allowed globals, not "
            f"alter the globals themselves or objects the caller handed in"
        )

    def _dropped_resource(self, index: Any) -> Any:
        """Stands in for ``_reconstruct.dropped_resource``: the caller's object, kept intact."""
        found = dropped_resource(index)
        if found is not None:
            self._hand_out(found)
        return found

    def _restore_state(self, obj: Any, state: Any) -> None:
        """Stands in for ``_reconstruct.restore_state``, for objects the stream built only."""
        if id(obj) in self._handed_ids or isinstance(obj, (type, types.ModuleType)):
            self._refuse_target(obj, "restore_state")
        restore_state(obj, state)

    def load_bytearray8(self) -> None:
        """BYTEARRAY8, reading before allocating.

        pickle's own version allocates (and zeroes) the size the stream claims before reading
        a byte: 13 bytes of payload could make it clear gigabytes.
        """
        (size,) = struct.unpack("<Q", self.read(8))
        if size > sys.maxsize:
            raise CorruptPayloadError(f"damaged pickle stream: a bytearray of {size} bytes")
        data = self.read(size)
        if len(data) < size:
            raise TruncatedPayloadError(
                f"truncated pickle stream: a bytearray of {size} bytes, {len(data)} there"
            )
        self.append(bytearray(data))

    def load_stop(self) -> None:
        """STOP, refusing an empty stack itself.

        STOP is the last byte of a stream, so pickle's own failure there (an ``IndexError``)
        would stand at the end of the data and read as a truncation; the stream is complete.
        """
        if not self.stack:
            raise CorruptPayloadError("damaged pickle stream: STOP with nothing on the stack")
        super().load_stop()  # type: ignore[misc]

    def _load_dill(self, blob: Any) -> Any:
        """Stands in for ``_reconstruct.load_dill``: the nested blob, loaded under this policy."""
        if not isinstance(blob, (bytes, bytearray)):
            raise UnsafePayloadError(
                f"restricted loading refused load_dill({type(blob).__name__}): expected bytes"
            )
        return restricted_loads(
            blob,
            allow=self._policy.allow,
            trusted=self._policy.trusted,
            fix_imports=self._fix_imports,
            encoding=self._encoding,
            errors=self._errors,
        )


class _Dispatch(dict[int, Callable[[Any], None]]):
    """The opcode table; an unknown opcode is a damaged stream wherever it stands."""

    def __missing__(self, code: int) -> Callable[[Any], None]:
        raise CorruptPayloadError(f"damaged pickle stream: unknown opcode {bytes([code])!r}")


def _guarded(loader: str) -> Callable[[RestrictedUnpickler], None]:
    original = getattr(pickle._Unpickler, loader)

    def load(self: RestrictedUnpickler) -> None:
        self._refuse_change(loader)
        original(self)

    load.__name__ = loader
    return load


RestrictedUnpickler.dispatch = _Dispatch(pickle._Unpickler.dispatch)
for _code, _loader in _MUTATORS.items():
    RestrictedUnpickler.dispatch[_code] = _guarded(_loader)
del _code, _loader
RestrictedUnpickler.dispatch[pickle.BYTEARRAY8[0]] = RestrictedUnpickler.load_bytearray8
RestrictedUnpickler.dispatch[pickle.STOP[0]] = RestrictedUnpickler.load_stop


def restricted_loads(
    stream: bytes | bytearray | memoryview,
    *,
    allow: Iterable[str] | None = (),
    trusted: bool = False,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
) -> Any:
    """Unpickle a bare pickle stream, importing only allow-listed globals.

    Nested unpickling is restricted too: an object omnipickle wrote as a dill blob
    (``omnipickle._reconstruct.load_dill``) is refused, or, with ``trusted=True``, loaded with
    the same rules.

    Args:
        stream: the pickle stream (no envelope: check, verify and decompress it first).
        allow: extra globals, as exact names (``"pkg.module.Name"``) or prefix patterns
            (``"pkg.*"``); :data:`DEFAULT_ALLOW` is always included.
        trusted: also accept code serialized by value; pass ``True`` only when the payload's
            signature verified.
        fix_imports, encoding, errors, buffers: as for :func:`pickle.loads`.

    Returns:
        The object.

    Raises:
        UnsafePayloadError: the payload asks for a global that is not allowed (the message
            names the first one) or for a persistent id, or tries to change a global.
        TruncatedPayloadError: the stream ends early.
        CorruptPayloadError: the stream is not a well-formed pickle.
        UnpicklingError: an allowed constructor refused its arguments, or an allowed global
            cannot be imported here.
        TypeError, ValueError: ``stream`` is not bytes-like, or ``allow`` is malformed.
    """
    if not isinstance(stream, (bytes, bytearray, memoryview)):
        raise TypeError(f"stream must be bytes-like, not {type(stream).__name__}")
    file = io.BytesIO(stream)
    # Built first, so that a malformed allow-list raises whatever the stream holds.
    unpickler = RestrictedUnpickler(
        file,
        allow=allow,
        trusted=trusted,
        fix_imports=fix_imports,
        encoding=encoding,
        errors=errors,
        buffers=buffers,
    )
    size = memoryview(stream).nbytes
    if size == 0:
        raise TruncatedPayloadError("empty pickle stream: 0 bytes")
    if envelope.is_envelope(stream):
        raise CorruptPayloadError(
            "this is an omnipickle payload, not a bare pickle stream: load it with "
            "omnipickle.loads(data, restricted=True), which checks the envelope first"
        )
    try:
        return unpickler.load()
    except UnpicklingError:
        raise
    except MALFORMED_STREAM as exc:
        position = file.tell() - unpickler.unread()
        raise damaged_stream(exc, size=size, ended=position >= size, position=position) from exc
    except OmnipickleError:
        raise
    except Exception as exc:
        # Only allow-listed callables ran: whatever they raised means the payload gave them
        # arguments they refuse. Restricted loading promises an UnpicklingError for any input.
        raise UnpicklingError(
            f"the payload could not be rebuilt: {type(exc).__name__}: {exc}"
        ) from exc
