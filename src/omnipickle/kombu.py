"""A kombu serializer (and so a Celery one): ``application/x-omnipickle``.

Installing omnipickle registers the serializer ``omnipickle`` with kombu through the
``kombu.serializers`` entry point (:data:`ENTRY_POINT`): kombu loads it when
``kombu.serialization`` is imported, and this module never imports kombu itself for it, so the
entry point costs nothing to programs that do not use kombu. :func:`register_kombu` registers it
again with options (a signing key, restricted decoding).

Signing: without an explicit ``key``, the key is read from the environment variable
``OMNIPICKLE_KEY`` (its text, UTF-8 encoded; at least 16 bytes) at every message. When a key is
configured, every message is signed with it and a message that is unsigned or does not verify
is refused before anything in it is unpickled. Without one, messages are unsigned and any
process that can write to the broker can run code in the consumers, as with kombu's ``pickle``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .api import dumps, loads
from .format.signing import KeyArgument

__all__ = [
    "CONTENT_ENCODING",
    "CONTENT_TYPE",
    "ENTRY_POINT",
    "KEY_ENV",
    "NAME",
    "KombuSerializer",
    "register_kombu",
]

NAME = "omnipickle"
"""The serializer's name: Celery's ``task_serializer="omnipickle"``."""
CONTENT_TYPE = "application/x-omnipickle"
"""The messages' content type: what Celery's ``accept_content`` lists."""
CONTENT_ENCODING = "binary"
KEY_ENV = "OMNIPICKLE_KEY"
"""The environment variable the key is read from when none is given."""


class KombuSerializer:
    """An encoder and a decoder for kombu, with omnipickle's options held once.

    Args:
        key: sign every message with it and verify every message with it (a list of keys: the
            first signs, any verifies). ``None``: read :data:`KEY_ENV` at every message, and
            sign and verify only if it is set.
        restricted: decode with restricted loading (allow-listed globals only; code by value
            only from a message whose signature verified).
        allow: extra globals for restricted decoding (``"pkg.module.Name"``, ``"pkg.*"``).
        compression: compress every message with this codec (``None``: do not).

    Raises:
        ValueError: ``allow`` without ``restricted``, or a key shorter than 16 bytes.
    """

    def __init__(
        self,
        key: KeyArgument | None = None,
        *,
        restricted: bool = False,
        allow: Iterable[str] | None = None,
        compression: str | None = None,
    ) -> None:
        self.key = key
        self.restricted = restricted
        self.allow = tuple(allow) if allow is not None else None
        self.compression = compression
        # Bad options fail here, when the serializer is made, not at the first message.
        probe = dumps(None, key=key, compression=compression)
        loads(probe, key=key, restricted=restricted, allow=self.allow)

    def _key(self) -> KeyArgument | None:
        if self.key is not None:
            return self.key
        value = os.environ.get(KEY_ENV)
        return None if value is None else value.encode("utf-8")

    def encode(self, obj: Any) -> bytes:
        """The message body for ``obj``: an omnipickle payload, signed if a key is configured."""
        return dumps(obj, key=self._key(), compression=self.compression)

    def decode(self, data: bytes | bytearray | memoryview | str) -> Any:
        """The object in a message body (kombu wraps what this raises in its ``DecodeError``).

        Raises:
            SignatureError: a key is configured and the message is unsigned or does not verify.
            UnsafePayloadError: restricted decoding refused a global.
            And what :func:`omnipickle.loads` raises for bad input.
        """
        if isinstance(data, str):  # a transport that hands text back: kombu's own convention
            data = data.encode("latin-1")
        return loads(bytes(data), key=self._key(), restricted=self.restricted, allow=self.allow)


_DEFAULT = KombuSerializer()

ENTRY_POINT = (_DEFAULT.encode, _DEFAULT.decode, CONTENT_TYPE, CONTENT_ENCODING)
"""What the ``kombu.serializers`` entry point names: kombu calls
``register("omnipickle", *ENTRY_POINT)``."""


def register_kombu(
    key: KeyArgument | None = None,
    *,
    restricted: bool = False,
    allow: Iterable[str] | None = None,
    compression: str | None = None,
    name: str = NAME,
) -> KombuSerializer:
    """Register omnipickle with kombu's serializer registry, with these options.

    Call it in every process that sends or receives (with Celery: in the module that makes the
    app, which the worker imports too). It replaces the registration the entry point made.

    Args:
        name: the serializer's name (Celery's ``task_serializer``); the content type stays
            :data:`CONTENT_TYPE`.
        The others: as for :class:`KombuSerializer`.

    Returns:
        The registered :class:`KombuSerializer`.

    Raises:
        ImportError: kombu is not installed.
        ValueError: as for :class:`KombuSerializer`.
    """
    from kombu.serialization import register

    serializer = KombuSerializer(key, restricted=restricted, allow=allow, compression=compression)
    register(name, serializer.encode, serializer.decode, CONTENT_TYPE, CONTENT_ENCODING)  # type: ignore[no-untyped-call]
    return serializer
