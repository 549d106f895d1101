"""Bytes read as an unpickler reads them, for the scan: exactly, counted, never past what was
asked (so the next payload in a file stays where it is), and the walker's budgets."""

from __future__ import annotations

from typing import Any

from ..errors import TruncatedPayloadError

__all__ = ["LIMITS", "ExactReader", "Refusal", "ViewFile"]

LIMITS = {
    "stack": 1 << 23,  # values on the simulated stack at once
    "marks": 1 << 16,  # MARKs open at once (the nesting of tuples, lists, dicts...)
    "memo": 1 << 27,  # the highest memo index followed
    "kept": 1 << 18,  # values whose content is kept (short strings, tuples, blobs)
    "kept_bytes": 64 << 20,  # bytes of kept strings and blobs, all told
    "string": 4096,  # the longest string kept (module and global names are shorter)
    "line": 16 << 20,  # the longest line (protocol 0 arguments) read
    "nesting": 16,  # blobs inside blobs
    "streams": 10_000,  # streams in one input
}
"""The walker's budgets. A stream that goes past one is refused (``ScanReport.damaged`` says
which); a string or blob too long to keep is followed as an opaque value."""

_CHUNK = 1 << 16


class Refusal(Exception):
    """The walker cannot follow the stream the way the unpickler would: refused, not damaged."""


class ViewFile:
    """``read(n)`` over memory, without copying it whole."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._at = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n < 0 else min(len(self._view), self._at + n)
        data = bytes(self._view[self._at : end])
        self._at = end
        return data


class ExactReader:
    """A binary file read as an unpickler reads it: exact reads, counted (:attr:`pos`), from a
    buffer that bytes can be pushed back into. The payload reader reads through it too
    (``read``), so it never sees bytes the walker took and gave back."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._buf = bytearray()
        self.pos = 0

    def _fill(self, n: int) -> None:
        while len(self._buf) < n:
            chunk = self._raw.read(max(_CHUNK, n - len(self._buf)))
            if not chunk:
                return
            self._buf += chunk

    def read(self, n: int = -1) -> bytes:
        """At most ``n`` bytes (all that is left if ``n`` is negative)."""
        if n < 0:
            data = bytes(self._buf) + bytes(self._raw.read())
            self._buf.clear()
        else:
            self._fill(n)
            data = bytes(self._buf[:n])
            del self._buf[:n]
        self.pos += len(data)
        return data

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self._buf[:n])

    def unread(self, data: bytes) -> None:
        self._buf[:0] = data
        self.pos -= len(data)

    def exact(self, n: int, what: str) -> bytes:
        data = self.read(n)
        if len(data) < n:
            raise TruncatedPayloadError(
                f"truncated pickle stream: it ends inside {what} at byte {self.pos}"
            )
        return data

    def skip(self, n: int, what: str) -> None:
        while n > 0:
            got = len(self.read(min(n, _CHUNK)))
            if not got:
                raise TruncatedPayloadError(
                    f"truncated pickle stream: it ends inside {what} at byte {self.pos}"
                )
            n -= got

    def line(self, what: str) -> bytes:
        """One line, its newline included, of at most ``LIMITS["line"]`` bytes."""
        start = 0
        while True:
            found = self._buf.find(b"\n", start)
            if found >= 0:
                return self.read(found + 1)
            if len(self._buf) > LIMITS["line"]:
                raise Refusal(f"{what} at byte {self.pos} is longer than {LIMITS['line']:,} bytes")
            start = len(self._buf)
            self._fill(len(self._buf) + _CHUNK)
            if len(self._buf) == start:
                raise TruncatedPayloadError(
                    f"truncated pickle stream: it ends inside {what} at byte {self.pos + start}"
                )
