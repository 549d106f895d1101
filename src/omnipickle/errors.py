"""The exception tree of omnipickle.

Every error subclasses :class:`OmnipickleError`, and each one also subclasses the standard
library exception that code written for :mod:`pickle` already catches: a ``PicklingError`` is a
:class:`pickle.PicklingError`, an ``UnpicklingError`` a :class:`pickle.UnpicklingError`, a missing
optional package an :class:`ImportError` and an unknown name a :class:`ValueError`.
"""

from __future__ import annotations

import pickle
import struct

__all__ = [
    "BackendNotInstalledError",
    "BudgetExceededError",
    "CodecNotInstalledError",
    "CorruptPayloadError",
    "DroppedResourceWarning",
    "IncompatiblePayloadError",
    "OmnipickleError",
    "PicklingError",
    "SignatureError",
    "TruncatedPayloadError",
    "UnknownBackendError",
    "UnknownCodecError",
    "UnpicklingError",
    "UnsafePayloadError",
    "damaged_stream",
    "missing_name",
]


class OmnipickleError(Exception):
    """Base class of every exception omnipickle raises on purpose."""


class PicklingError(OmnipickleError, pickle.PicklingError):
    """An object (or a part of it) cannot be serialized.

    Attributes:
        path: where in the object graph the problem is, e.g. ``root['jobs'][3].client._sock``
            (``None`` when it could not be located).
        type_name: the qualified name of the offending object's type, when known.
    """

    def __init__(
        self, message: str, *, path: str | None = None, type_name: str | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.type_name = type_name


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


# --- foreign exceptions, mapped in one place -----------------------------------------------------
#
# The rule: an exception raised while reading a stream is mapped by its type and by where the
# reader stood, never by its message.
#
# * MALFORMED_STREAM is what pickle's readers (the C and pure-Python unpicklers, pickletools'
#   argument readers) raise on a malformed stream. A failure among them with the reader at the
#   end of its data (or an EOFError) means the data ran out: a well-formed stream ends with its
#   STOP opcode, and a reader that stands at the end has not seen it, so data is missing whatever
#   else is wrong (TruncatedPayloadError). Any other is damage (CorruptPayloadError).
# * MISUSED_CONSTRUCTOR is what a constructor raises when a stream calls it with arguments of the
#   wrong kind; for a plain stream nothing checked, that is damage too.
# * MISSING_NAME: the stream names a module or attribute this environment lacks.
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


def damaged_stream(
    exc: BaseException,
    *,
    size: int,
    ended: bool,
    position: int | None = None,
    head: bytes = b"",
) -> CorruptPayloadError:
    """The error to raise (``from exc``) for a pickle stream of ``size`` bytes whose reading
    failed with ``exc`` (see the rule above).

    Args:
        exc: what the reader raised.
        size: the size of the data.
        ended: the reader stood at the end of the data (or the data does not end with STOP).
        position: where the reader stood, when known (named in the message).
        head: the data's first bytes, when a message should say what the data looks like.
    """
    if ended or isinstance(exc, EOFError):
        return TruncatedPayloadError(
            f"truncated pickle stream: the data ({size} bytes) ends before the stream does"
        )
    if head and head[0] != 0x80 and isinstance(exc, pickle.UnpicklingError):
        return CorruptPayloadError(
            f"not an omnipickle payload or a pickle stream (it starts with {head[:8]!r}): {exc}"
        )
    where = "" if position is None else f" (at byte {position})"
    return CorruptPayloadError(f"damaged pickle stream{where}: {type(exc).__name__}: {exc}")


def missing_name(exc: BaseException) -> UnpicklingError:
    """The error for a plain stream naming something this environment lacks."""
    return UnpicklingError(
        f"the pickle stream names something this environment lacks ({type(exc).__name__}: "
        f"{exc}): the stream is damaged, or was written where other packages are installed"
    )
