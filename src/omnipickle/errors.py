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
# reader stood, never by its message. What CPython's unpicklers raise for a stream that is not
# well-formed pickle is MALFORMED_STREAM; for a plain stream (nothing checked it before it was
# unpickled) those mean "damaged", and a failure with every byte consumed (or an EOFError) means
# "ended early". A stream naming a module or attribute this environment lacks raises one of
# MISSING_NAME. The exceptions that mean "this object cannot be pickled this way" when dumping
# are PICKLING_FAILURES; anything else a user's code raises keeps its type.

MALFORMED_STREAM: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    struct.error,
    OverflowError,
    UnicodeDecodeError,
    MemoryError,
    TypeError,
    LookupError,
    ArithmeticError,
)
MISSING_NAME: tuple[type[BaseException], ...] = (ImportError, AttributeError)
PICKLING_FAILURES: tuple[type[BaseException], ...] = (
    pickle.PicklingError,
    TypeError,
    AttributeError,
    RecursionError,
)


def damaged_stream(
    exc: BaseException, *, size: int, ended: bool, head: bytes = b""
) -> CorruptPayloadError:
    """The error for a plain pickle stream of ``size`` bytes that failed with ``exc``.

    ``ended``: the data ran out before the stream did (the reader hit the end of its input, or
    the data does not end with the STOP opcode every whole stream ends with); ``head``: the
    stream's first bytes.
    """
    if isinstance(exc, EOFError) or (ended and isinstance(exc, pickle.UnpicklingError)):
        return TruncatedPayloadError(
            f"truncated pickle stream: the data ({size} bytes) ends before the stream does"
        )
    if head and head[0] != 0x80 and isinstance(exc, pickle.UnpicklingError):
        return CorruptPayloadError(
            f"not an omnipickle payload or a pickle stream (it starts with {head[:8]!r}): {exc}"
        )
    return CorruptPayloadError(f"damaged pickle stream: {type(exc).__name__}: {exc}")


def missing_name(exc: BaseException) -> UnpicklingError:
    """The error for a plain stream naming something this environment lacks."""
    return UnpicklingError(
        f"the pickle stream names something this environment lacks ({type(exc).__name__}: "
        f"{exc}): the stream is damaged, or was written where other packages are installed"
    )
