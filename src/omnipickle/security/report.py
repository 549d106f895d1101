"""What :func:`~omnipickle.scan` reports: one :class:`ScanReport` per pickle stream a sequence
of loads would read, and one that sums them up (:func:`combine`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..format.describe import Info

__all__ = ["GlobalUse", "NestedBlob", "ScanReport", "combine"]


@dataclass(frozen=True)
class GlobalUse:
    """One global a payload references, and what the payload does with it.

    Attributes:
        module: the module (after Python 2 names are mapped), or ``None`` if it could not be
            resolved statically.
        name: the (possibly dotted) name in the module, or ``None`` if unresolved.
        imports: how many times the stream imports it.
        calls: how many times the stream calls it (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ).
        builds: how many times the stream sets the state of an object it made (BUILD, which
            calls the class's ``__setstate__`` if it has one).
        allowed: whether restricted loading with the scan's allow-list accepts it.
        reason: why it is refused (``None`` when allowed).
        code: whether it rebuilds code serialized by value.
        position: where in the stream it is first imported.
    """

    module: str | None
    name: str | None
    imports: int
    calls: int
    builds: int
    allowed: bool
    reason: str | None
    code: bool
    position: int

    @property
    def qualified_name(self) -> str:
        """``module.name``, or ``"<unresolved>"``."""
        if self.module is None or self.name is None:
            return "<unresolved>"
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class NestedBlob:
    """A pickle stream inside the payload, loaded by a reconstructor (a dill blob).

    Attributes:
        position: where the call that loads it is in the outer stream.
        size: the blob's size in bytes.
        loader: the global that loads it (``omnipickle._reconstruct.load_dill``).
        report: the blob's own scan, or ``None`` if it could not be scanned.
        error: why it could not be scanned.
    """

    position: int
    size: int
    loader: str
    report: ScanReport | None
    error: str | None = None


@dataclass(frozen=True)
class ScanReport:
    """What a payload would import and call, found without executing it.

    ``str()`` of a report is a readable table; :meth:`rows` gives the same rows as data.

    Attributes:
        format: ``"omnipickle"``, ``"pickle"`` or ``"compressed pickle"``.
        codec: the compression codec, or ``None``.
        protocol: the pickle protocol of the (first) stream, when it says.
        size: bytes given to :func:`scan`.
        stream_size: bytes of pickle stream scanned (after decompression).
        streams: how many pickle streams a sequence of loads would read from the data (a file
            written by several ``dump`` calls holds several; so may a compressed file's
            members, or a stream with more after its STOP).
        envelope: what the envelope says (``omnipickle.info``), or ``None``.
        globals: every global referenced, in order of first use.
        backends: the backends needed to load it, from the envelope and the globals seen.
        by_value: whether it holds code serialized by value.
        nested: pickle streams nested inside it (dill blobs), each scanned too.
        persistent_ids: how many persistent ids it uses (restricted loading refuses them).
        out_of_band_buffers: how many out-of-band buffers it needs.
        mutations: globals the stream tries to change (BUILD, APPEND, SETITEM... applied to
            the global itself rather than to an object made from it).
        refused: what restricted loading would refuse, in stream order: the first is what it
            would name.
        trusted: whether the verdict allows code by value (``scan(..., trusted=True)``).
        verified: whether the (first) payload's signature verified with the key given to
            :func:`scan` (``False`` when no key was given: a scan alone does not check it).
        notes: anything else worth knowing.
        offset: where the stream starts: in the input, or for a stream inside a compressed
            member or an envelope, in what that decompressed to.
        damaged: why the stream could not be followed to its end (its frames do not line up
            with its opcodes, it is cut short or malformed, or it is too large to follow);
            such a stream is refused.
        per_stream: one report per stream, in order (in the report :func:`scan` returns; the
            other fields sum them up: refused if any stream is).
    """

    format: str
    codec: str | None
    protocol: int | None
    size: int
    stream_size: int
    streams: int
    # An omnipickle.Info, typed loosely: Info is defined above this package (in api).
    envelope: Info | None
    globals: tuple[GlobalUse, ...]
    backends: tuple[str, ...]
    by_value: bool
    nested: tuple[NestedBlob, ...]
    persistent_ids: int
    out_of_band_buffers: int
    mutations: tuple[str, ...]
    refused: tuple[str, ...]
    trusted: bool
    notes: tuple[str, ...] = field(default=())
    offset: int = 0
    damaged: str | None = None
    per_stream: tuple[ScanReport, ...] = ()
    verified: bool = False

    @property
    def accepted(self) -> bool:
        """Whether :func:`restricted_loads` would accept it (with the same allow-list)."""
        return not self.refused

    def rows(self) -> list[dict[str, Any]]:
        """One dict per global: the table of ``str(report)`` as data."""
        return [
            {
                "global": use.qualified_name,
                "imports": use.imports,
                "calls": use.calls,
                "builds": use.builds,
                "code": use.code,
                "allowed": use.allowed,
                "reason": use.reason,
            }
            for use in self.globals
        ]

    def __str__(self) -> str:
        return "\n".join(self._lines())

    def _lines(self) -> list[str]:
        fmt = self.format
        if self.envelope is not None:
            fmt += f" v{self.envelope.format_version}"
            if not self.envelope.signed:
                fmt += ", unsigned"
            elif self.verified:
                fmt += ", signed, signature verified"
            else:
                fmt += ", signed, signature not verified"
        summary: list[tuple[str, str]] = [
            ("format", fmt),
            ("codec", self.codec or "none"),
            ("protocol", "-" if self.protocol is None else str(self.protocol)),
            ("size", f"{self.size:,} bytes (pickle stream {self.stream_size:,} bytes)"),
            ("backends", ", ".join(self.backends) or "-"),
            ("code by value", "yes" if self.by_value else "no"),
        ]
        if self.streams > 1:
            summary.append(("streams", str(self.streams)))
        if self.damaged is not None:
            summary.append(("damaged", self.damaged))
        if self.persistent_ids:
            summary.append(("persistent ids", str(self.persistent_ids)))
        if self.out_of_band_buffers:
            summary.append(("out-of-band", f"{self.out_of_band_buffers} buffers"))
        mode = "trusted" if self.trusted else "restricted"
        if self.accepted:
            verdict = f"accepted by {mode} loading"
        else:
            shown = ", ".join(self.refused[:5]) + (", ..." if len(self.refused) > 5 else "")
            verdict = f"REFUSED by {mode} loading: {shown}"
        summary.append(("verdict", verdict))
        width = max(len(k) for k, _ in summary)
        lines = [f"{k:<{width}}  {v}" for k, v in summary]
        if self.globals:
            name_w = max(len("global"), *(len(u.qualified_name) for u in self.globals))
            head = f"{'global':<{name_w}}  imports  calls  builds  {mode} loading"
            lines += ["", head, "-" * len(head)]
            for use in self.globals:
                status = "allowed" if use.allowed else f"REFUSED: {use.reason}"
                if use.code:
                    status += " [code by value]"
                lines.append(
                    f"{use.qualified_name:<{name_w}}  {use.imports:>7}  {use.calls:>5}  "
                    f"{use.builds:>6}  {status}"
                )
        else:
            lines += [
                "",
                "no globals before the damage" if self.damaged else "no globals: plain data only",
            ]
        for name in self.mutations:
            lines.append(f"the stream changes the global {name} itself")
        for blob in self.nested:
            lines += [
                "",
                f"nested {blob.loader} blob at byte {blob.position} ({blob.size:,} bytes):",
            ]
            if blob.report is None:
                lines.append(f"    could not be scanned: {blob.error}")
            else:
                lines += [f"    {line}" if line else "" for line in blob.report._lines()]
        lines += [f"note: {note}" for note in self.notes]
        if len(self.per_stream) > 1:
            for index, part in enumerate(self.per_stream, 1):
                lines += ["", f"stream {index} of {len(self.per_stream)}, at byte {part.offset}:"]
                lines += [f"    {line}" if line else "" for line in part._lines()]
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (what ``omnipickle scan --json`` prints)."""
        out: dict[str, Any] = {
            "format": self.format,
            "codec": self.codec,
            "protocol": self.protocol,
            "size": self.size,
            "stream_size": self.stream_size,
            "offset": self.offset,
            "accepted": self.accepted,
            "trusted": self.trusted,
            "verified": self.verified,
            "refused": list(self.refused),
            "damaged": self.damaged,
            "globals": [
                {
                    "module": use.module,
                    "name": use.name,
                    "allowed": use.allowed,
                    "reason": use.reason,
                    "imports": use.imports,
                    "calls": use.calls,
                    "builds": use.builds,
                    "code": use.code,
                    "position": use.position,
                }
                for use in self.globals
            ],
            "backends": list(self.backends),
            "by_value": self.by_value,
            "persistent_ids": self.persistent_ids,
            "out_of_band_buffers": self.out_of_band_buffers,
            "mutations": list(self.mutations),
            "nested": [
                {
                    "position": blob.position,
                    "size": blob.size,
                    "loader": blob.loader,
                    "error": blob.error,
                    "report": None if blob.report is None else blob.report.to_dict(),
                }
                for blob in self.nested
            ],
            "notes": list(self.notes),
        }
        if self.per_stream:
            out["streams"] = [part.to_dict() for part in self.per_stream]
        return out


def combine(parts: list[ScanReport], size: int, notes: list[str]) -> ScanReport:
    """One report for the streams ``parts`` (in order) of ``size`` bytes of input: refused if
    any of them is, every global and note of each in it."""
    first = parts[0]
    if len(parts) == 1 and not notes:
        return ScanReport(**{**first.__dict__, "size": size, "per_stream": (first,)})
    uses: dict[tuple[str | None, str | None], GlobalUse] = {}
    refused: list[str] = []
    for part in parts:
        for use in part.globals:
            key = (use.module, use.name)
            seen = uses.get(key)
            uses[key] = use if seen is None else _merged(seen, use)
        for reason in part.refused:
            if reason not in refused:
                refused.append(reason)
    backends = list(dict.fromkeys(name for part in parts for name in part.backends))
    return ScanReport(
        format=first.format,
        codec=first.codec,
        protocol=first.protocol,
        size=size,
        stream_size=sum(part.stream_size for part in parts),
        streams=len(parts),
        envelope=first.envelope,
        globals=tuple(uses.values()),
        backends=tuple(backends),
        by_value=any(part.by_value for part in parts),
        nested=tuple(blob for part in parts for blob in part.nested),
        persistent_ids=sum(part.persistent_ids for part in parts),
        out_of_band_buffers=sum(part.out_of_band_buffers for part in parts),
        mutations=tuple(dict.fromkeys(name for part in parts for name in part.mutations)),
        refused=tuple(refused),
        trusted=all(part.trusted for part in parts),
        notes=(*notes, *(note for part in parts for note in part.notes)),
        damaged=next((part.damaged for part in parts if part.damaged is not None), None),
        per_stream=tuple(parts),
        verified=first.verified,
    )


def _merged(seen: GlobalUse, use: GlobalUse) -> GlobalUse:
    return GlobalUse(
        module=seen.module,
        name=seen.name,
        imports=seen.imports + use.imports,
        calls=seen.calls + use.calls,
        builds=seen.builds + use.builds,
        allowed=seen.allowed and use.allowed,
        reason=seen.reason or use.reason,
        code=seen.code or use.code,
        position=seen.position,
    )
