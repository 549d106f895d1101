"""The payload format: the header layout, signing, and the one reader and one writer.

Layers inside: ``header`` (the only code that knows byte offsets) and ``signing`` at the bottom;
``reader`` and ``writer`` on them; ``describe`` (``info``) on the reader. Nothing here unpickles.

The kinds of payload the reader tells apart, and :func:`as_view` (what every reader is given),
are here, so that ``loads`` has them without importing the reader before its first load off the
fast path.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COMPRESSED", "ENVELOPE", "PLAIN", "as_view"]

ENVELOPE = "omnipickle"
PLAIN = "pickle"
COMPRESSED = "compressed pickle"


def as_view(data: Any) -> memoryview:
    """``data`` as a flat byte view (no copy).

    Raises:
        TypeError: ``data`` is not bytes-like.
    """
    if isinstance(data, str):
        raise TypeError("data must be bytes-like, not str (payloads are binary)")
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}") from None
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view
