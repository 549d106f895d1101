"""Trust: restricted loading, static scanning, and signature checks without unpickling.

Three tools, one threat model (``docs/security.md``):

* :func:`restricted_loads` / :class:`RestrictedUnpickler` (:mod:`.unpickler`): unpickle a bare
  pickle stream, but import only allow-listed globals (:data:`DEFAULT_ALLOW`, extended with
  ``allow=``; the rules live in :mod:`.policy`). Code serialized by value is accepted only with
  ``trusted=True``, which callers pass when the payload's signature verified: signatures are
  how code is trusted, allow-lists how data is.
* :func:`scan` (:mod:`.entry`, walking the stream in :mod:`.scan`): a static report of what a
  payload would import and call, computed from its opcodes without executing anything
  (decompressing is not executing).
* :func:`verify_signature` (:mod:`.entry`): check a payload's HMAC-SHA256 tag, and nothing else.

Layers, bottom up: ``policy``, then ``unpickler`` and ``scan``, then ``entry``, the only module
that reads payloads (through the format layer's reader).
"""

from __future__ import annotations

from .entry import Source, scan, verify_signature
from .policy import DEFAULT_ALLOW, TRUSTED_ALLOW, Policy, parse_allow
from .report import GlobalUse, NestedBlob, ScanReport
from .scan import scan_stream
from .source import LIMITS
from .unpickler import RestrictedUnpickler, restricted_loads

__all__ = [
    "DEFAULT_ALLOW",
    "LIMITS",
    "TRUSTED_ALLOW",
    "GlobalUse",
    "NestedBlob",
    "Policy",
    "RestrictedUnpickler",
    "ScanReport",
    "Source",
    "parse_allow",
    "restricted_loads",
    "scan",
    "scan_stream",
    "verify_signature",
]
