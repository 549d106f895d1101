"""The exception tree of omnipickle.

Every error subclasses :class:`OmnipickleError`, and each one also subclasses the standard
library exception that code written for :mod:`pickle` already catches: a ``PicklingError`` is a
:class:`pickle.PicklingError`, an ``UnpicklingError`` a :class:`pickle.UnpicklingError`, a missing
optional package an :class:`ImportError` and an unknown name a :class:`ValueError`.

Where :mod:`pickle` raises another type for the same problem, omnipickle's error is an instance of
that type too (the drop-in rule): a dump that pickle refuses with ``TypeError`` raises
:class:`PicklingTypeError` (a ``PicklingError`` and a ``TypeError``), and a damaged stream that
makes pickle raise ``ValueError`` raises a ``CorruptPayloadError`` that is also a ``ValueError``
(see :func:`combined`). ``except`` clauses written for pickle keep catching what they caught.
"""

from __future__ import annotations

import pickle
import struct
import weakref
from typing import Any, TypeVar

__all__ = [
    "BackendNotInstalledError",
    "BudgetExceededError",
    "CodecNotInstalledError",
    "CorruptPayloadError",
    "DroppedResourceWarning",
    "IncompatiblePayloadError",
    "OmnipickleError",
    "PicklingAttributeError",
    "PicklingError",
    "PicklingRecursionError",
    "PicklingTypeError",
    "SignatureError",
    "TruncatedPayloadError",
    "UnknownBackendError",
    "UnknownCodecError",
    "UnpicklingError",
    "UnsafePayloadError",
    "combined",
    "damaged_stream",
    "load_failure",
    "missing_name",
    "pickling_cause",
]


class OmnipickleError(Exception):
    """Base class of every exception omnipickle raises on purpose."""


class PicklingError(OmnipickleError, pickle.PicklingError):
    """An object (or a part of it) cannot be serialized.

    Where pickle raises ``TypeError``, ``AttributeError`` or ``RecursionError`` for the object,
    the error is a :class:`PicklingTypeError`, :class:`PicklingAttributeError` or
    :class:`PicklingRecursionError`: an instance of that type too. The exception the pickler
    raised is the ``__cause__``.

    Attributes:
        path: where in the object graph the problem is, e.g. ``root['jobs'][3].client._sock``
            (``None`` when it could not be located).
        type_name: the qualified name of the offending object's type, when known.
        reason: why that part cannot be serialized, when known.
        fix: what to do about it, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        type_name: str | None = None,
        reason: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.type_name = type_name
        self.reason = reason
        self.fix = fix


class PicklingTypeError(PicklingError, TypeError):
    """A :class:`PicklingError` where pickle raises ``TypeError`` (``cannot pickle 'socket'
    object``): also a ``TypeError``."""


class PicklingAttributeError(PicklingError, AttributeError):
    """A :class:`PicklingError` where pickle raises ``AttributeError`` (from an object's own
    ``__getstate__`` or ``__reduce__``, or a function that cannot be found by name): also an
    ``AttributeError``."""


class PicklingRecursionError(PicklingError, RecursionError):
    """A :class:`PicklingError` where pickle raises ``RecursionError`` (a graph nested too
    deeply, or an object's own code that calls itself without end): also a ``RecursionError``
    (and so a ``RuntimeError``)."""


class UnpicklingError(OmnipickleError, pickle.UnpicklingError):
    """A payload cannot be loaded."""


class CorruptPayloadError(UnpicklingError):
    """The payload is damaged: wrong checksum, bad header, or not a payload at all."""


class TruncatedPayloadError(CorruptPayloadError, EOFError):
    """The payload is empty or ends early.

    It is also an :class:`EOFError`, so the common loop that reads pickles from a file until
    ``EOFError`` keeps working.
    """


class SignatureError(UnpicklingError):
    """A signed payload does not verify, or a key was given and the payload is unsigned."""


class UnsafePayloadError(UnpicklingError):
    """Restricted loading refused a global the payload asked for."""


class BudgetExceededError(UnsafePayloadError):
    """A restricted load needed more memory, objects or nesting than its limits allow.

    The limits scale with the payload's size; see :class:`omnipickle.security.budget.Limits`.
    """


class IncompatiblePayloadError(UnpicklingError):
    """The payload was written in a way this interpreter or this release cannot load.

    Raised, for example, for by-value code written by another Python minor version, or for a
    format version newer than this release understands.
    """


class BackendNotInstalledError(OmnipickleError, ImportError):
    """A backend is known, but the package it needs is not installed."""


class CodecNotInstalledError(OmnipickleError, ImportError):
    """A codec is known, but the package it needs is not installed."""


class UnknownBackendError(OmnipickleError, ValueError):
    """No backend is registered under that name."""


class UnknownCodecError(OmnipickleError, ValueError):
    """No codec is registered under that name."""


class DroppedResourceWarning(UserWarning):
    """Live resources were left out of a payload and will load as ``None``."""


# --- errors that are also the type pickle raises -------------------------------------------------

_E = TypeVar("_E", bound=OmnipickleError)

# The classes for the types pickle raises when it refuses to dump: named, documented, importable.
_NAMED: dict[tuple[type[BaseException], type[BaseException]], type[BaseException]] = {
    (PicklingError, TypeError): PicklingTypeError,
    (PicklingError, AttributeError): PicklingAttributeError,
    (PicklingError, RecursionError): PicklingRecursionError,
}
# The others, made on first use (a CorruptPayloadError that is also a ValueError, a
# PicklingError that is also a user's own TypeError subclass), and forgotten with their last
# instance.
_MADE: weakref.WeakValueDictionary[tuple[type[BaseException], type[BaseException]], type[Any]] = (
    weakref.WeakValueDictionary()
)


def _reduce_as_base(self: BaseException) -> tuple[Any, ...]:
    # A made class cannot be found by name in another process: it travels as the nearest
    # class omnipickle names (PicklingTypeError for a TypeError subclass, else the base), with
    # the same message and attributes.
    return (type(self).__omnipickle_base__, self.args, self.__dict__ or None)  # type: ignore[attr-defined]


def _nearest_named(base: type[_E], cause: type[BaseException]) -> type[_E]:
    for klass in cause.__mro__:
        named = _NAMED.get((base, klass))
        if named is not None:
            return named  # type: ignore[return-value]
    return base


def _combination(base: type[_E], cause: type[BaseException]) -> type[_E]:
    found = _NAMED.get((base, cause)) or _MADE.get((base, cause))
    if found is None:
        stem = base.__name__[:-5] if base.__name__.endswith("Error") else base.__name__
        name = f"{stem}{cause.__name__}"
        namespace = {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"A {base.__name__} that is also a {cause.__name__}, as pickle raised.",
            "__omnipickle_base__": _nearest_named(base, cause),
            "__reduce__": _reduce_as_base,
            # KeyError's own __str__ shows the repr of the message.
            "__str__": BaseException.__str__,
        }
        found = type(name, (base, cause), namespace)
        _MADE[(base, cause)] = found
    return found  # type: ignore[return-value]


def combined(base: type[_E], exc: BaseException, message: str) -> _E:
    """An instance of ``base`` with ``message`` that is also an instance of ``type(exc)``.

    The drop-in rule: ``except`` clauses that catch what pickle raised keep catching it. When
    ``type(exc)`` cannot be combined with ``base`` (a class that refuses subclasses, or whose
    constructor takes other arguments), the nearest class of its MRO that can be is used.
    """
    for cause in type(exc).__mro__:
        if cause in (Exception, BaseException, object) or issubclass(base, cause):
            break
        assert issubclass(cause, BaseException)
        if issubclass(cause, base):
            return cause(message)  # already one of ours
        try:
            combination = _combination(base, cause)
        except TypeError:
            continue  # not an acceptable base class
        try:
            return combination(message)
        except TypeError:
            pass  # its constructor wants other arguments (UnicodeDecodeError wants five)
        try:
            # Made as exc was, so that its fields (a UnicodeDecodeError's start and end) are
            # there, then given the message.
            error = combination.__new__(combination, message)
            cause.__init__(error, *exc.args)
        except TypeError:
            continue
        error.args = (message,)
        return error
    return base(message)


def pickling_cause(exc: BaseException) -> BaseException:
    """The exception whose type pickle itself raises for a dump that failed with ``exc``.

    cloudpickle turns a ``RecursionError`` into a bare ``pickle.PicklingError``; pickle lets the
    ``RecursionError`` through, so that is the type an omnipickle error carries.
    """
    if isinstance(exc, pickle.PicklingError) and isinstance(exc.__cause__, RecursionError):
        return exc.__cause__
    return exc


# --- foreign exceptions, mapped in one place -----------------------------------------------------
#
# The rule: an exception raised while reading a stream is mapped by its type and by where it was
# raised, never by its message.
#
# * Whose is it? An exception raised inside Python code the unpickler called (a __setstate__, a
#   __reduce__ constructor, a find_class override, a module's code run by its import) is the
#   code's: it propagates unchanged, exactly as under pickle. Caught in the frame that called
#   the unpickler's load, its traceback goes on into that code. One raised by the unpickler
#   itself, by a C callable the stream called with its arguments, or by omnipickle's own
#   lookups and reconstructors, is the stream's: the traceback holds no other Python code
#   (load_failure).
#
# * MALFORMED_STREAM is what pickle's readers (the C and pure-Python unpicklers, pickletools'
#   argument readers) raise on a malformed stream. A failure among them with the reader at the
#   end of its data (or an EOFError) means the data ran out: a well-formed stream ends with its
#   STOP opcode, and a reader that stands at the end has not seen it, so data is missing whatever
#   else is wrong (TruncatedPayloadError). Any other is damage (CorruptPayloadError).
# * MISUSED_CONSTRUCTOR is what a constructor raises when a stream calls it with arguments of the
#   wrong kind; for a plain stream nothing checked, that is damage too.
# * MISSING_NAME: the stream names a module or attribute this environment lacks (the C unpickler
#   raises no ImportError of its own; its AttributeError for a damaged stream, an APPEND onto a
#   number, cannot be told from a missing name). An UnpicklingError that is also that type.
# * Every error for a stream is also the type the reader raised (see combined()), so that code
#   written for pickle catches it, and is an UnpicklingError, as a damaged payload must be.
# * PICKLING_FAILURES: when dumping, "this object cannot be pickled this way"; anything else a
#   user's code raises keeps its type.

MALFORMED_STREAM: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,  # UnicodeDecodeError too
    KeyError,
    IndexError,
    struct.error,
    OverflowError,
    MemoryError,
)
# SystemError: CPython's own constructors (``types.CodeType`` above all) raise it for arguments
# they cannot use, as a damaged stream of code by value gives them.
MISUSED_CONSTRUCTOR: tuple[type[BaseException], ...] = (
    TypeError,
    LookupError,
    ArithmeticError,
    SystemError,
)
MISSING_NAME: tuple[type[BaseException], ...] = (ImportError, AttributeError)
PICKLING_FAILURES: tuple[type[BaseException], ...] = (
    pickle.PicklingError,
    TypeError,
    AttributeError,
    RecursionError,
)


LOAD_FAILURES: tuple[type[BaseException], ...] = (
    *MALFORMED_STREAM,
    *MISUSED_CONSTRUCTOR,
    *MISSING_NAME,
)
"""What an unpickler's ``load`` is caught for, to be handed to :func:`load_failure`."""


def damaged_stream(
    exc: BaseException,
    *,
    size: int | None,
    ended: bool,
    position: int | None = None,
    head: bytes = b"",
    keep_type: bool = False,
) -> CorruptPayloadError:
    """The error to raise (``from exc``) for a pickle stream of ``size`` bytes whose reading
    failed with ``exc`` (see the rule above).

    Args:
        exc: what the reader raised.
        size: the size of the data (``None``: not known, the stream is read from a file).
        ended: the reader stood at the end of the data (or the data does not end with STOP).
        position: where the reader stood, when known (named in the message).
        head: the data's first bytes, when a message should say what the data looks like.
        keep_type: the error is also an instance of ``type(exc)`` (the drop-in rule); restricted
            loading, whose reader is omnipickle's own, keeps to its documented classes.
    """
    if ended or isinstance(exc, EOFError):
        data = "the data" if size is None else f"the data ({size} bytes)"
        return TruncatedPayloadError(
            f"truncated pickle stream: {data} ends before the stream does ({exc})"
        )
    if head and head[0] != 0x80 and isinstance(exc, pickle.UnpicklingError):
        return CorruptPayloadError(
            f"not an omnipickle payload or a pickle stream (it starts with {head[:8]!r}): {exc}"
        )
    where = "" if position is None else f" (at byte {position})"
    message = f"damaged pickle stream{where}: {type(exc).__name__}: {exc}"
    if keep_type:
        return combined(CorruptPayloadError, exc, message)
    return CorruptPayloadError(message)


def missing_name(exc: BaseException) -> UnpicklingError:
    """The error for a stream naming something this environment lacks: an
    :class:`UnpicklingError` that is also ``exc``'s type (``ModuleNotFoundError``,
    ``AttributeError``), with its ``name`` (and ``path`` or ``obj``)."""
    error = combined(
        UnpicklingError,
        exc,
        f"the pickle stream names something this environment lacks ({type(exc).__name__}: "
        f"{exc}): it was written where other modules are installed, or it is damaged",
    )
    if isinstance(exc, ImportError) and isinstance(error, ImportError):
        error.name, error.path = exc.name, exc.path
    elif isinstance(exc, AttributeError) and isinstance(error, AttributeError):
        error.name, error.obj = exc.name, exc.obj
    return error


def _raised_by_loaded_code(exc: BaseException, caught: bool) -> bool:
    """Whether ``exc`` went through Python code the unpickler called, other than omnipickle's
    own (``Unpickler.find_class``, the lookups nested unpicklers defer to, the reconstructors a
    payload names), whose failures on a stream's arguments are the stream's. The traceback
    starts at the frame that caught ``exc``, which called the unpickler, if ``caught``; else
    at the first frame the unpickler called (C code caught it). The import system's frames
    are not loaded code (a module's own frames, run by an import, are)."""
    trace = exc.__traceback__
    if caught and trace is not None:
        trace = trace.tb_next
    while trace is not None:
        module = str(trace.tb_frame.f_globals.get("__name__", ""))
        if module.partition(".")[0] not in _NOT_LOADED_CODE:
            return True
        trace = trace.tb_next
    return False


_PACKAGE = __name__.partition(".")[0]
# Frames of these packages are not code a stream ran: omnipickle's own, and the import system
# (a module the stream names is missing: its frames stay in a traceback caught in C).
_NOT_LOADED_CODE = frozenset({_PACKAGE, "importlib"})


def load_failure(
    exc: BaseException, *, size: int | None, ended: bool, head: bytes = b"", caught: bool = True
) -> UnpicklingError | None:
    """What to raise for ``exc``, caught in the frame that called an unpickler's ``load``
    (see the rule above).

    Returns:
        ``None`` when Python code the unpickler called raised ``exc`` (re-raise it unchanged),
        else the error to raise ``from exc``: an :class:`UnpicklingError` that is also
        ``exc``'s type.

    Args:
        exc: what came out of ``load``.
        size, ended, head: as for :func:`damaged_stream`.
        caught: whether ``exc``'s traceback starts at the Python frame that caught it (else
            at the first frame the unpickler called: C code called the unpickler).
    """
    if _raised_by_loaded_code(exc, caught):
        return None
    if isinstance(exc, OmnipickleError):
        return None  # already ours, and already says what happened
    if isinstance(exc, MISSING_NAME):
        return missing_name(exc)
    return damaged_stream(exc, size=size, ended=ended, head=head, keep_type=True)
