"""``info``: what a payload's envelope says, read without unpickling anything."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..checksums import NAMES
from .header import FLAG_OUT_OF_BAND, Header
from .reader import ENVELOPE, Payload, inspect
from .versions import recorded_versions

__all__ = ["Info", "describe", "envelope_info"]

# Extra-field keys the table shows in rows of their own.
_SHOWN = frozenset({"dropped", "versions"})


@dataclass(frozen=True)
class Info:
    """What a payload's envelope says, read without unpickling anything.

    Attributes:
        format: ``"omnipickle"``, ``"pickle"`` (a plain stream) or ``"compressed pickle"``.
        format_version: the envelope format version (``None`` for plain streams).
        protocol: the pickle protocol of the stream, when known.
        backends: the backends the payload needs to load.
        loader: the backend whose ``loads`` reads it.
        codec: the compression codec, or ``None``.
        stored_size: bytes of (possibly compressed) payload.
        raw_size: bytes of pickle stream before compression.
        python: the ``major.minor`` Python that wrote it.
        signed: whether it carries an HMAC-SHA256 signature.
        by_value: whether it holds code serialized by value.
        out_of_band: whether it needs out-of-band buffers to load.
        checksum: the payload checksum, as 8 hex digits, and whether it matched.
        checksum_algorithm: its algorithm: ``"crc32"`` or ``"xxh3"`` (``None`` for plain
            streams; see ``omnipickle.checksums``).
        extra: the envelope's extra field.
        dropped: the live resources ``on_unpicklable="drop"`` left out: ``{"path", "type"}``
            for each, in the order of the stream.
        versions: the versions of the backend packages that wrote it (``{"cloudpickle":
            "3.1.1"}``); empty for plain data and for payloads written before they were
            recorded.
    """

    format: str
    format_version: int | None
    protocol: int | None
    backends: tuple[str, ...]
    loader: str | None
    codec: str | None
    stored_size: int
    raw_size: int | None
    python: str | None
    signed: bool
    by_value: bool
    out_of_band: bool
    checksum: str | None
    checksum_ok: bool | None
    extra: dict[str, Any]
    dropped: tuple[dict[str, str], ...] = ()
    checksum_algorithm: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        rows = [
            ("format", self.format + (f" v{self.format_version}" if self.format_version else "")),
            ("protocol", self.protocol),
            ("backends", ", ".join(self.backends) or "-"),
            ("loader", self.loader or "-"),
            ("codec", self.codec or "none"),
            ("stored size", f"{self.stored_size:,} bytes"),
            ("pickle size", f"{self.raw_size:,} bytes" if self.raw_size is not None else "-"),
            ("python", self.python or "-"),
            ("signed", "yes" if self.signed else "no"),
            ("code by value", "yes" if self.by_value else "no"),
            ("out-of-band", "yes" if self.out_of_band else "no"),
            (
                "checksum",
                "-"
                if self.checksum is None
                else f"{self.checksum_algorithm} {self.checksum} "
                f"({'ok' if self.checksum_ok else 'MISMATCH'})",
            ),
        ]
        if self.versions:
            shown = ", ".join(f"{name} {v}" for name, v in sorted(self.versions.items()))
            rows.append(("written with", shown))
        if self.dropped:
            rows.append(("dropped", f"{len(self.dropped)} live resource(s), loaded as None"))
            rows += [(f"  {d['path']}", d["type"]) for d in self.dropped]
        rows += [(f"extra.{k}", v) for k, v in sorted(self.extra.items()) if k not in _SHOWN]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def describe(source: Any) -> Info:
    """Describe the payload in ``source`` (bytes, a path or a binary file object).

    A file object is read from its position and put back there when it can seek; only the
    header and the stream are read (never the sections), so a large file costs little.

    Raises:
        TypeError: the argument is none of those.
        TruncatedPayloadError, CorruptPayloadError: the header is damaged (a payload checksum
            mismatch is reported in the result, not raised).
        IncompatiblePayloadError: the header names a codec, backend or flag this release does
            not know.
    """
    found = inspect(source)
    header = found.header
    codec = found.codec.name if found.codec is not None else None
    if header is None or found.kind != ENVELOPE:
        return Info(
            format=found.kind,
            format_version=None,
            protocol=found.protocol,
            backends=(),
            loader="pickle",
            codec=codec,
            stored_size=found.stored_size,
            raw_size=found.raw_size,
            python=None,
            signed=False,
            by_value=False,
            out_of_band=False,
            checksum=None,
            checksum_ok=None,
            extra={},
        )
    return _envelope(header, codec, found.backends, found.loader, found.checksum_ok)


def _envelope(
    header: Header,
    codec: str | None,
    backends: tuple[str, ...],
    loader: str,
    checksum_ok: bool | None,
) -> Info:
    extra = copy.deepcopy(header.extra)  # the caller's to change; the header's stays as read
    return Info(
        format=ENVELOPE,
        format_version=header.version,
        protocol=header.protocol,
        backends=backends,
        loader=loader,
        codec=codec,
        stored_size=header.stored_length,
        raw_size=header.raw_length,
        python=f"{header.python[0]}.{header.python[1]}",
        signed=header.signed,
        by_value=header.by_value,
        out_of_band=bool(header.flags & FLAG_OUT_OF_BAND),
        checksum=f"{header.checksum:08x}",
        checksum_ok=checksum_ok,
        checksum_algorithm=NAMES[header.checksum_algorithm],
        extra=extra,
        dropped=tuple(extra.get("dropped", ())),
        versions=dict(recorded_versions(header)),
    )


def envelope_info(payload: Payload) -> Info:
    """The :class:`Info` of an envelope :func:`~omnipickle.format.reader.read` has read (and so
    checked: its checksum matched)."""
    header = payload.header
    assert header is not None
    codec = payload.codec.name if payload.codec is not None else None
    return _envelope(header, codec, payload.backends, payload.loader, True)
