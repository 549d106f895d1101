"""How a malformed pickle stream is reported: one map of failures, one truncation rule.

Both readers of pickle streams in this package (the restricted unpickler and the static scan)
run foreign code over untrusted bytes: pickle's pure-Python loaders and pickletools' argument
readers. What those raise on a malformed stream is listed once, here, and turned into this
package's errors by type and by where the reader stood, never by the message's words:

* the data ran out (the read position is at the end of the data, or an ``EOFError``): a
  :class:`~omnipickle.errors.TruncatedPayloadError`. A well-formed stream ends with its STOP
  opcode, and a reader that stands at the end of the data has not seen it, so data is missing
  whatever else is wrong;
* anything else: a :class:`~omnipickle.errors.CorruptPayloadError`.
"""

from __future__ import annotations

import pickle
import struct

from ..errors import CorruptPayloadError, TruncatedPayloadError

__all__ = ["MALFORMED", "damaged"]

MALFORMED: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,  # UnicodeDecodeError too
    KeyError,
    IndexError,
    struct.error,
    OverflowError,
    MemoryError,
)
"""What pickle's loaders and pickletools' readers raise on a malformed stream."""


def damaged(exc: BaseException, *, position: int, size: int) -> CorruptPayloadError:
    """The error to raise (``from exc``) for a failure in :data:`MALFORMED`.

    Args:
        exc: what the reader raised.
        position: the reader's position in the data when it failed.
        size: the size of the data.

    Returns:
        A :class:`TruncatedPayloadError` if the reader stood at the end of the data (or
        raised ``EOFError``), else a :class:`CorruptPayloadError`.
    """
    if position >= size or isinstance(exc, EOFError):
        return TruncatedPayloadError(
            f"truncated pickle stream: the data ({size} bytes) ends before the stream does"
        )
    return CorruptPayloadError(
        f"damaged pickle stream (at byte {position}): {type(exc).__name__}: {exc}"
    )
