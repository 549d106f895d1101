"""joblib: hashing and ``Memory`` caching by omnipickle's content digest.

``joblib.hash`` pickles by name (a lambda, a closure or a function defined in ``__main__``
cannot be hashed at all) and ``Memory`` keys its cache with it. :func:`hash` has the same
signature and hashes the deterministic pickle instead (code by value included); :func:`cache`
is ``memory.cache(func)`` keyed by the digest of the call::

    from omnipickle.adapters.joblib import cache
    memory = joblib.Memory("cachedir")
    fit = cache(memory, fit)            # fit(data, key=lambda r: r.id) now hits the cache
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ..hashing import ALGORITHMS, digest, hash_into

__all__ = ["cache", "hash"]

_F = TypeVar("_F", bound=Callable[..., Any])


def hash(obj: Any, hash_name: str = "md5") -> str:
    """``joblib.hash(obj, hash_name)``, on omnipickle's deterministic pickle.

    Args:
        obj: anything ``omnipickle.dumps(..., deterministic=True)`` takes.
        hash_name: ``"md5"`` or ``"sha1"`` (as joblib), or one of
            :data:`omnipickle.hashing.ALGORITHMS` (``"blake2b"``, ``"sha256"``, ``"xxh3_128"``).

    Returns:
        The hex digest.

    Raises:
        ValueError: an unknown ``hash_name``.
        DeterminismError, PicklingError: as for :func:`omnipickle.digest`.
    """
    if hash_name in ("md5", "sha1"):
        import hashlib

        hasher = hashlib.new(hash_name, usedforsecurity=False)
        hash_into(hasher, obj)
        return hasher.hexdigest()
    if hash_name not in ALGORITHMS:
        raise ValueError(
            f"hash_name must be 'md5', 'sha1' or one of {', '.join(ALGORITHMS)}, not {hash_name!r}"
        )
    return digest(obj, hash_name)


def _call(key: str, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What ``Memory`` caches: ``func(*args, **kwargs)``, stored under ``key`` alone (the other
    arguments are ignored by joblib's hash: ``key`` is their digest)."""
    return func(*args, **kwargs)


def call_key(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The digest a call is cached under: the function (its code too, even when it is
    importable by name; by value, its closure and the globals it reads as well) and its
    arguments bound to its parameters, defaults applied, so that ``f(1, b=2)`` and
    ``f(b=2, a=1)`` are one call. Line numbers are left out (``strip_source_info``): moving a
    function within its file keeps its cache."""
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):  # no signature (a builtin), or arguments it would refuse
        arguments: Any = (args, sorted(kwargs.items()))
    else:
        bound.apply_defaults()
        arguments = list(bound.arguments.items())
    return digest((func, getattr(func, "__code__", None), arguments), strip_source_info=True)


def cache(memory: Any, func: _F | None = None, **cache_options: Any) -> Any:
    """``memory.cache(func)``, keyed by the omnipickle digest of each call.

    Args:
        memory: a ``joblib.Memory``.
        func: the function to cache; without it, a decorator.
        cache_options: passed on to ``memory.cache`` (``mmap_mode``, ``verbose``...).

    Returns:
        A function that calls ``func``, or returns its cached result for an equal call
        (made in this process or any other: keys do not depend on the process or hash seed).
    """
    if func is None:
        return functools.partial(cache, memory, **cache_options)
    memorized = memory.cache(_call, ignore=["func", "args", "kwargs"], **cache_options)

    @functools.wraps(func)
    def cached(*args: Any, **kwargs: Any) -> Any:
        return memorized(call_key(func, args, kwargs), func, args, kwargs)

    return cached
