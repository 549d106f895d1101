"""Signing and verification: HMAC-SHA256 over a payload, and the one check of what a key is.

A key is bytes of at least :data:`MIN_KEY_SIZE`; ``key=`` may also be a list of keys (rotation:
sign with the first, accept any). Signed payloads carry a short key id so that the right key of a
list is tried first; every key is still tried, and compared in constant time, so how long
verification takes says nothing about which key matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import SignatureError

__all__ = [
    "MIN_KEY_SIZE",
    "TAG_SIZE",
    "Keys",
    "Verifier",
    "check_keys",
    "key_id",
    "sign",
    "signing_key",
]

MIN_KEY_SIZE = 16
TAG_SIZE = 32
Keys = tuple[bytes, ...]
KeyArgument = bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]


def _one_key(key: Any) -> bytes:
    if isinstance(key, str):
        raise TypeError("key must be bytes, not str: encode it, e.g. key.encode()")
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes or a list of bytes, not {type(key).__name__}")
    raw = bytes(key)
    if len(raw) < MIN_KEY_SIZE:
        raise ValueError(f"key must be at least {MIN_KEY_SIZE} bytes long, got {len(raw)}")
    return raw


def check_keys(key: Any) -> Keys | None:
    """``key`` as a tuple of checked keys (``None`` for no key).

    Raises:
        TypeError: a key is not bytes (a ``str`` gets a hint to encode it).
        ValueError: a key is shorter than :data:`MIN_KEY_SIZE`, or the list is empty.
    """
    if key is None:
        return None
    if isinstance(key, (list, tuple)):
        if not key:
            raise ValueError("key is an empty list: give at least one key")
        return tuple(_one_key(k) for k in key)
    return (_one_key(key),)


def signing_key(keys: Keys | None) -> bytes | None:
    """The key that signs: the first of the list."""
    return keys[0] if keys else None


def key_id(key: bytes) -> str:
    """A short public fingerprint of ``key``, written in signed payloads' headers so that the
    right key of a rotation list is tried first (it reveals nothing usable about the key)."""
    import hashlib  # only signed payloads need it: not imported with omnipickle

    return hashlib.sha256(b"omnipickle key id\0" + key).hexdigest()[:8]


def sign(key: bytes, chunks: Iterable[Any]) -> bytes:
    """The HMAC-SHA256 tag of ``chunks`` (in order) under ``key``."""
    import hashlib
    import hmac

    mac = hmac.new(key, digestmod=hashlib.sha256)
    for chunk in chunks:
        mac.update(chunk)
    return mac.digest()


class Verifier:
    """Checks a tag against every key of a list, fed one chunk at a time.

    Args:
        keys: the candidate keys.
        kid: the key id the payload names (``None`` if none): that key is fed first.
    """

    def __init__(self, keys: Keys, kid: object) -> None:
        import hashlib
        import hmac

        ordered = sorted(keys, key=lambda k: key_id(k) != kid)
        self._macs = [hmac.new(k, digestmod=hashlib.sha256) for k in ordered]

    def update(self, chunk: Any) -> None:
        for mac in self._macs:
            mac.update(chunk)

    def check(self, tag: bytes) -> None:
        """Raise :class:`SignatureError` unless one of the keys made ``tag``."""
        import hmac

        matched = False
        for mac in self._macs:  # all of them: the time taken says nothing about which matched
            matched |= hmac.compare_digest(mac.digest(), tag)
        if not matched:
            raise SignatureError(
                "the payload's signature does not verify: wrong key, or the payload was altered"
            )
