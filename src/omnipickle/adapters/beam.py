"""A Beam coder whose ``is_deterministic()`` is true: Beam may use it for keys (``GroupByKey``)
of any type, lambdas and ``__main__`` classes included, since equal values encode to equal
bytes in every worker.

:class:`DeterministicCoder` subclasses ``apache_beam.coders.Coder`` when Beam is installed and
has the same methods otherwise (so it can be used and tested without Beam)::

    beam.coders.registry.register_coder(MyKey, DeterministicCoder)
"""

from __future__ import annotations

from typing import Any

from ..api import dumps, loads

__all__ = ["DeterministicCoder"]

try:  # the only optional import: the base class
    from apache_beam.coders import Coder as _Base
except ImportError:
    _Base = object


class DeterministicCoder(_Base):  # type: ignore[misc]
    """Encodes a value as its deterministic omnipickle payload; decodes with ``loads``."""

    def encode(self, value: Any) -> bytes:
        """The payload of ``value`` (equal values: equal bytes)."""
        return dumps(value, deterministic=True)

    def decode(self, encoded: bytes) -> Any:
        """The value back from :meth:`encode`'s bytes."""
        return loads(encoded)

    def is_deterministic(self) -> bool:
        """True: equal values encode to equal bytes, in every process."""
        return True

    def as_deterministic_coder(self, step_label: str, error_message: str | None = None) -> Any:
        """This coder (it is deterministic already)."""
        return self

    def estimate_size(self, value: Any) -> int:
        """The encoded size of ``value``."""
        return len(self.encode(value))

    def to_type_hint(self) -> Any:
        """Any type."""
        return Any

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return "DeterministicCoder()"
