"""The codec base class, the helpers codecs share, and the codec registry.

A codec has a name, an id byte for the envelope, the magic bytes its output starts with (so
``load`` recognizes compressed files whatever their suffix), the file suffixes that select it,
and ``compress``/``decompress``. Each codec module registers its codec where it defines it;
codecs whose package is optional import it on first use (never at import: ``import omnipickle``
imports no compression package) and raise :class:`CodecNotInstalledError` naming what to
install.
"""

from __future__ import annotations

import importlib
import io
import sys
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from .._registry import Entry, Registry
from ..errors import (
    BudgetExceededError,
    CodecNotInstalledError,
    CorruptPayloadError,
    UnknownCodecError,
)

__all__ = [
    "INFLATION_FLOOR",
    "INFLATION_RATIO",
    "MAGICS",
    "REGISTRY",
    "Buffer",
    "Codec",
    "IncrementalCodec",
    "buffered",
    "check_plausible",
    "codec_by_id",
    "codec_for_magic",
    "codec_for_suffix",
    "codecs",
    "decompression_bomb",
    "decompression_limit",
    "get_codec",
    "register_codec",
    "unregister_codec",
]

Buffer = bytes | bytearray | memoryview

INFLATION_RATIO = 200
"""Data whose decompressed size nothing declares (a pickle compressed whole by another tool) may
grow to this many times its compressed size..."""
INFLATION_FLOOR = 256 << 20
"""...or to this many bytes (256 MiB), if that is more. Past it, decompression stops."""


def decompression_limit(compressed: int) -> int:
    """How far ``compressed`` bytes with no declared size may inflate."""
    return max(INFLATION_FLOOR, INFLATION_RATIO * compressed)


def decompression_bomb(name: str, compressed: int, limit: int) -> BudgetExceededError:
    """The error for data that inflates past ``limit``: the one place it is made."""
    return BudgetExceededError(
        f"the {name}-compressed data ({compressed:,} bytes) inflates past {limit:,} bytes, the "
        f"limit for data whose size nothing declares ({INFLATION_RATIO} times its compressed "
        f"size, at least {INFLATION_FLOOR >> 20} MiB): refused as a decompression bomb"
    )


class Codec:
    """Base class of codecs.

    Subclasses set the class attributes and implement :meth:`compress` and :meth:`decompress`.
    ``codec_id`` is the byte written in the envelope: 1-127 are reserved for omnipickle's own
    codecs, and no two registered codecs may share one; a registered codec without one is
    recorded by name.
    """

    name: ClassVar[str] = ""
    codec_id: ClassVar[int | None] = None
    magic: ClassVar[bytes] = b""
    suffixes: ClassVar[tuple[str, ...]] = ()
    default_level: ClassVar[int | None] = None
    levels: ClassVar[range | None] = None
    requires: ClassVar[str | None] = None
    """What to ``pip install`` when the codec's package is missing."""

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        """Compress ``data`` at ``level`` (``None``: the codec's default)."""
        raise NotImplementedError

    def compressobj(self, level: int | None = None) -> Any:
        """An incremental compressor: ``compress(data) -> bytes`` then ``flush() -> bytes``.

        The default compresses everything at ``flush``; built-in codecs stream.
        """
        return _WholeCompressor(self, level)

    def writer(self, file: Any, level: int | None = None, *, size_hint: int = 0) -> Any:
        """A writable file that compresses into ``file``; ``close()`` ends the compressed
        stream without closing ``file``. ``size_hint`` (the bytes to come) lets a codec use
        several threads for large inputs."""
        return _CompressingWriter(file, self.compressobj(level))

    def reader(self, file: Any) -> Any:
        """A readable binary file that decompresses ``file`` as it is read.

        The default reads ``file`` whole and decompresses it; built-in codecs stream.
        """
        return io.BytesIO(self.decompress(file.read()))

    def decompress(self, data: Buffer, max_size: int | None = None) -> bytes:
        """Decompress ``data``; raise :class:`CorruptPayloadError` if it is damaged.

        ``max_size`` is the size the envelope promises: a stream that would grow past it is
        refused instead of filling memory.
        """
        raise NotImplementedError

    def check_level(self, level: int | None) -> int | None:
        """Validate ``level`` for this codec; ``None`` gives the default."""
        if level is None:
            return self.default_level
        if isinstance(level, bool) or not isinstance(level, int):
            raise TypeError(f"level must be an int, not {type(level).__name__}")
        if self.levels is not None and level not in self.levels:
            raise ValueError(
                f"level {level} is out of range for {self.name}: "
                f"{self.levels.start}..{self.levels.stop - 1}"
            )
        return level

    # --- helpers for subclasses ------------------------------------------------------------

    def _level(self, level: int | None) -> int:
        checked = self.check_level(level)
        assert checked is not None  # every built-in codec has a default level
        return checked

    def _import(self, module: str) -> Any:
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            hint = self.requires or module
            raise CodecNotInstalledError(
                f"the {self.name} codec needs the {module!r} package, which is not installed: "
                f"pip install {hint}"
            ) from exc

    def _damaged(self, exc: BaseException) -> CorruptPayloadError:
        return CorruptPayloadError(f"the {self.name}-compressed payload is damaged: {exc}")

    def damage_errors(self) -> tuple[type[BaseException], ...]:
        """The exception types the codec's package raises for damaged input, beyond the
        standard ``OSError``/``EOFError``/``ValueError``/``RuntimeError``."""
        return ()

    def _check_size(self, out: bytes, max_size: int | None) -> bytes:
        if max_size is not None and len(out) != max_size:
            raise CorruptPayloadError(
                f"the {self.name}-compressed payload decompressed to {len(out)} bytes, "
                f"the header says {max_size}"
            )
        return out


def check_plausible(max_size: int | None, name: str) -> None:
    """Refuse a header size no real payload has (before allocating anything for it)."""
    if max_size is not None and not 0 <= max_size < sys.maxsize // 2:
        raise CorruptPayloadError(
            f"corrupt header: the {name}-compressed payload claims {max_size} bytes"
        )


class IncrementalCodec(Codec):
    """A codec with an incremental decompressor (``decompress(data[, limit])`` and ``eof``).

    Subclasses provide :meth:`_new_decompressor`; :meth:`_feed` turns the package's own error
    into ``ValueError``.
    """

    def _new_decompressor(self) -> Any:
        raise NotImplementedError

    def _feed(self, decompressor: Any, data: Buffer, limit: int) -> bytes:
        out: bytes = (
            decompressor.decompress(data, limit) if limit >= 0 else decompressor.decompress(data)
        )
        return out

    def _inflate(self, decompressor: Any, data: Buffer, limit: int) -> tuple[bytes, int]:
        """At most ``limit`` bytes out of ``data``, and how much of ``data`` the first member
        (gzip member, xz stream, zstd frame...) took, once it ended."""
        out = self._feed(decompressor, data, limit)
        unused = (getattr(decompressor, "unused_data", None) or b"") if decompressor.eof else b""
        return out, len(memoryview(data)) - len(unused)

    def decompress(self, data: Buffer, max_size: int | None = None) -> bytes:
        """Decompress the first member of ``data``, refusing a stream longer or shorter than
        ``max_size``; without one, longer than :func:`decompression_limit` allows."""
        check_plausible(max_size, self.name)
        size = len(memoryview(data))
        bound = decompression_limit(size) if max_size is None else max_size
        decompressor = self._new_decompressor()
        # One byte more than allowed: a stream that is too long is caught, not trusted.
        try:
            out, _ = self._inflate(decompressor, data, bound + 1)
        except (OSError, EOFError, ValueError, MemoryError) as exc:
            raise self._damaged(exc) from exc
        if max_size is None and len(out) > bound:
            raise decompression_bomb(self.name, size, bound)
        if not decompressor.eof:
            raise CorruptPayloadError(f"the {self.name}-compressed payload is truncated")
        return self._check_size(out, max_size)

    def members(self, data: Buffer, limit: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Each member of ``data`` (gzip members, xz streams, zstd frames... one after the
        other) decompressed, with its offset in ``data``; all of them together no larger than
        ``limit`` (default: :func:`decompression_limit`). Bytes after the last member that do
        not start another are not yielded.

        Raises:
            CorruptPayloadError: a member is damaged or cut short, or the members inflate past
                the limit.
        """
        view = memoryview(data).cast("B")
        budget = decompression_limit(len(view)) if limit is None else limit
        room = budget
        offset = 0
        while offset < len(view):
            decompressor = self._new_decompressor()
            try:
                out, used = self._inflate(decompressor, view[offset:], room + 1)
            except (OSError, EOFError, ValueError, MemoryError) as exc:
                if offset:
                    return  # not another member: what follows the last one
                raise self._damaged(exc) from exc
            if len(out) > room:
                raise decompression_bomb(self.name, len(view), budget)
            if not decompressor.eof:
                raise CorruptPayloadError(
                    f"the {self.name}-compressed member at byte {offset} is truncated"
                )
            room -= len(out)
            yield offset, out
            if used <= 0:
                return
            offset += used


class _WholeCompressor:
    """``compressobj`` for a codec that only compresses whole buffers."""

    def __init__(self, codec: Codec, level: int | None) -> None:
        self._codec = codec
        self._level = level
        self._parts: list[bytes] = []

    def compress(self, data: Buffer) -> bytes:
        self._parts.append(bytes(data))
        return b""

    def flush(self) -> bytes:
        return self._codec.compress(b"".join(self._parts), self._level)


class _CompressingWriter:
    """``Codec.writer`` on top of a ``compressobj``."""

    def __init__(self, file: Any, compressor: Any) -> None:
        self._file = file
        self._compressor = compressor

    def write(self, data: Buffer) -> int:
        view = memoryview(data).cast("B")
        # In 1 MiB pieces: a compressor hands back about as much as it is given, and a whole
        # array at once would be a second copy of it in memory.
        for start in range(0, view.nbytes, 1 << 20):
            out = self._compressor.compress(view[start : start + (1 << 20)])
            if out:
                self._file.write(out)
        return view.nbytes

    def close(self) -> None:
        tail = self._compressor.flush()
        if tail:
            self._file.write(tail)


class _DamageTranslatingReader(io.RawIOBase):
    """A decompressing reader whose errors become :class:`CorruptPayloadError`."""

    def __init__(self, inner: Any, codec: Codec) -> None:
        super().__init__()
        self._inner = inner
        self._codec = codec
        self._errors: tuple[type[BaseException], ...] = (
            OSError,
            EOFError,
            ValueError,
            RuntimeError,
            *codec.damage_errors(),
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Straight into the caller's buffer (a whole array, say): no temporary copy of it.
        view = memoryview(buffer).cast("B")[: 8 << 20]
        try:
            n: int = self._inner.readinto(view)
        except CorruptPayloadError:
            raise
        except self._errors as exc:
            raise self._codec._damaged(exc) from exc
        return n


def buffered(inner: Any, codec: Codec) -> io.BufferedReader:
    """``inner`` (a decompressing file) behind a buffer, its errors made documented ones."""
    return io.BufferedReader(_DamageTranslatingReader(inner, codec), buffer_size=1 << 16)


# --- the registry ------------------------------------------------------------------------------


def _check(impl: object) -> None:
    if not isinstance(impl, Codec):
        raise TypeError(
            f"a codec must be an instance of omnipickle.codecs.Codec, not {type(impl).__name__}"
        )


class _Magics:
    """Whether data that starts with pickle's PROTO opcode (``0x80``) can be taken for a plain
    pickle stream without asking each codec (no registered codec's magic starts with it, and no
    codec is registered by a path that hides its magic): the per-call fast path of ``loads``
    reads one attribute. Kept by the registry's change hook."""

    proto_unclaimed = True


MAGICS = _Magics()


def _note_change() -> None:
    MAGICS.proto_unclaimed = all(
        not isinstance(entry.target, str) and not entry.target.magic.startswith(b"\x80")
        for entry in REGISTRY.view().values()
    )


REGISTRY: Registry[Codec] = Registry(
    "codec",
    UnknownCodecError,
    CodecNotInstalledError,
    _check,
    unique="codec_id",
    on_change=_note_change,
)


def register_codec(name: str, codec: Codec | str, *, replace: bool = False) -> None:
    """Register a codec under ``name``.

    Args:
        name: the name callers pass as ``compression=``; an identifier.
        codec: a :class:`Codec` instance, or a ``"package.module:attribute"`` path (its
            ``codec_id`` is then checked when it is first imported).
        replace: allow replacing an existing registration.

    Raises:
        ValueError: the name is taken (and ``replace`` is false), is not an identifier, or
            the codec's ``codec_id`` is another registered codec's.
        TypeError: ``codec`` is not a :class:`Codec`.
    """
    REGISTRY.register(name, codec, replace=replace)


def unregister_codec(name: str) -> None:
    """Remove the codec registered as ``name`` (and its other names, like ``"xz"``).

    Raises:
        UnknownCodecError: no codec is registered as ``name``.
    """
    REGISTRY.unregister(name)


def codecs() -> Mapping[str, Entry[Codec]]:
    """A read-only mapping of the registered codec names to their entries."""
    return REGISTRY.view()


def get_codec(name: str) -> Codec:
    """The codec registered as ``name`` (``"xz"`` is ``"lzma"``).

    Raises:
        UnknownCodecError: no codec has that name (the message lists those there are).
        CodecNotInstalledError: the codec was registered by a path whose package is missing.
    """
    return REGISTRY.get(name)


def _installed() -> Iterator[Codec]:
    """Every registered codec that can be loaded, in registration order."""
    for name in REGISTRY.names():
        try:
            yield REGISTRY.get(name)
        except CodecNotInstalledError:
            continue


def codec_by_id(codec_id: int) -> Codec | None:
    """The codec with envelope id ``codec_id``, if any."""
    return next((c for c in _installed() if c.codec_id == codec_id), None)


def codec_for_magic(head: Buffer) -> Codec | None:
    """The codec whose magic bytes ``head`` starts with, if any."""
    first = bytes(head[:8])
    return next((c for c in _installed() if c.magic and first.startswith(c.magic)), None)


def codec_for_suffix(path: str) -> Codec | None:
    """The codec a file name's suffix selects (``.gz``, ``.zst``...), or ``None``."""
    lower = path.lower()
    return next((c for c in _installed() if any(lower.endswith(s) for s in c.suffixes)), None)
