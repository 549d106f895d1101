"""The exception tree of omnipickle.

Every error subclasses :class:`OmnipickleError`, and each one also subclasses the standard
library exception that code written for :mod:`pickle` already catches: a ``PicklingError`` is a
:class:`pickle.PicklingError`, an ``UnpicklingError`` a :class:`pickle.UnpicklingError`, a missing
optional package an :class:`ImportError` and an unknown name a :class:`ValueError`.
"""

from __future__ import annotations

import pickle

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
