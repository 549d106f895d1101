"""Dask tokenizes through omnipickle's digest: one deterministic dump per object.

Dask's own fallback for an object it has no rule for pickles it up to three times and compares
the results, because pickle's bytes change between runs; for a lambda, a ``__main__`` class or
a set of strings they keep changing, so Dask gives up and returns a random token. One
deterministic dump gives the same token in every process::

    import omnipickle.adapters.dask
    omnipickle.adapters.dask.register()          # every object Dask has no rule for
    omnipickle.adapters.dask.register(MyModel)   # or only these types

or, for one class, inherit :class:`TokenizeMixin`. Tokens use ``xxh3_128`` (Dask keys need
no cryptographic hash, and tokenizing is on Dask's hot path).
"""

from __future__ import annotations

from typing import Any

from ..hashing import digest

__all__ = ["TokenizeMixin", "normalize", "register"]

_ALGORITHM = "xxh3_128"


def normalize(obj: Any) -> Any:
    """The token Dask should use for ``obj`` (what ``normalize_token`` returns): the object's
    own ``__dask_tokenize__()`` when it has one, else its omnipickle digest."""
    method = getattr(obj, "__dask_tokenize__", None)
    if method is not None and not isinstance(obj, type):
        return method()
    return ("omnipickle", digest(obj, _ALGORITHM))


def register(*types: type) -> None:
    """Make ``dask.base.tokenize`` use :func:`normalize` for instances of ``types`` (default:
    ``object``, i.e. every type Dask has no more specific rule for).

    This changes Dask's dispatch table for the whole process, as Dask's own
    ``normalize_token.register`` does; it is done only when called.

    Raises:
        ImportError: Dask is not installed.
        TypeError: an argument is not a type.
    """
    from dask.base import normalize_token

    for cls in types or (object,):
        if not isinstance(cls, type):
            raise TypeError(f"register() takes types, not {type(cls).__name__} {cls!r}")
        normalize_token.register(cls)(normalize)  # type: ignore[no-untyped-call]


class TokenizeMixin:
    """A class whose instances Dask tokenizes by their omnipickle digest (Dask calls
    ``__dask_tokenize__``), without a global registration."""

    __slots__ = ()

    def __dask_tokenize__(self) -> Any:
        return ("omnipickle", digest(self, _ALGORITHM))
