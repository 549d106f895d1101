"""Content digests: the hash of an object's deterministic pickle, streamed into the hash.

``digest(obj)`` is ``hashlib.blake2b(dumps(obj, protocol=5, deterministic=True,
raw=True)).hexdigest()``, computed without the bytes ever being built: the pickler writes into
the hash (each ~64 KiB frame, and each large buffer as it is, so a numpy array is hashed in
place, never copied). The header is left out, so the digest does not depend on the Python
version recorded there (code by value does: its bytecode is part of it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .backends.deterministic import HashSink, dump_deterministic

__all__ = ["ALGORITHMS", "Hash", "digest", "hash_into"]

# The protocol digests are computed with: fixed, so that a new default changes no digest.
DIGEST_PROTOCOL = 5


class Hash(Protocol):
    """What :func:`hash_into` feeds: ``hashlib``'s and ``xxhash``'s objects."""

    def update(self, data: Any, /) -> None: ...

    def hexdigest(self) -> str: ...


def _blake2b() -> Hash:
    import hashlib

    return hashlib.blake2b()


def _sha256() -> Hash:
    import hashlib

    return hashlib.sha256()


def _xxh3_128() -> Hash:
    import xxhash

    hasher: Hash = xxhash.xxh3_128()
    return hasher


ALGORITHMS: dict[str, Callable[[], Hash]] = {
    "blake2b": _blake2b,
    "sha256": _sha256,
    "xxh3_128": _xxh3_128,
}
"""The algorithms :func:`digest` takes: BLAKE2b (512 bits) and SHA-256 (cryptographic), and
XXH3-128 (not cryptographic, several times faster: for caches that trust their inputs)."""


def hash_into(hasher: Hash, obj: Any, *, strip_source_info: bool = False) -> None:
    """Feed the deterministic pickle of ``obj`` to ``hasher`` (anything with ``update``).

    Raises:
        DeterminismError: a part of ``obj`` has no canonical form (the message names it).
        PicklingError: a part of ``obj`` cannot be serialized.
    """
    dump_deterministic(
        obj, HashSink(hasher), protocol=DIGEST_PROTOCOL, strip_source_info=strip_source_info
    )


def digest(obj: Any, algorithm: str = "blake2b", *, strip_source_info: bool = False) -> str:
    """The content digest of ``obj``: equal for equal objects, in every process, under every
    ``PYTHONHASHSEED``; different when any part of the value differs.

    It hashes what ``dumps(obj, protocol=5, deterministic=True, raw=True)`` would return,
    streamed into the hash: no payload is built, and large buffers (numpy arrays, protocol 5
    ``PickleBuffer``s) are hashed where they are, without a copy.

    Args:
        obj: anything :func:`omnipickle.dumps` takes with ``deterministic=True``.
        algorithm: ``"blake2b"`` (the default), ``"sha256"`` or ``"xxh3_128"`` (not
            cryptographic, fastest).
        strip_source_info: leave line numbers out of code by value (moving a function within
            its file keeps its digest).

    Returns:
        The digest as a hex string (128 characters for blake2b, 64 for sha256, 32 for
        xxh3_128).

    Raises:
        ValueError: an unknown ``algorithm``.
        DeterminismError: a part of ``obj`` has no canonical form (the message names it).
        PicklingError: a part of ``obj`` cannot be serialized.
    """
    make = ALGORITHMS.get(algorithm) if isinstance(algorithm, str) else None
    if make is None:
        raise ValueError(
            f"unknown digest algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}"
        )
    if not isinstance(strip_source_info, bool):
        raise TypeError(f"strip_source_info must be True or False, not {strip_source_info!r}")
    hasher = make()
    hash_into(hasher, obj, strip_source_info=strip_source_info)
    return hasher.hexdigest()
