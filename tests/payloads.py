"""Payloads the restricted-loading and scan tests share: hostile calls, allowed data, streams."""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import os
import pathlib
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omnipickle.format import header as envelope


def stream_of(payload: bytes) -> bytes:
    """The bare pickle stream inside an (uncompressed) omnipickle payload."""
    header = envelope.parse_header(payload)
    return bytes(envelope.check_payload(header, payload))


class Call:
    """Pickles as ``func(*args)``: how a hostile payload is built (``func`` may be a Call)."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args)

    def __call__(self) -> None:  # pickle wants the callable of a reduce to be callable
        raise AssertionError("never called")


def plain_data() -> dict[str, Any]:
    """A value of every type the default allow-list accepts."""
    return {
        "scalars": [1, -(2**70), 2.5, None, True, "t\u00e9xt", b"\x00\xff", complex(1, 2)],
        "containers": [(1, (2,)), {1, 2}, frozenset({3}), bytearray(b"ba"), range(1, 9, 2)],
        "slices": [slice(1, 5, 2), ..., NotImplemented],
        "dates": [
            datetime.date(2024, 2, 29),
            datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
            datetime.time(1, 2),
            datetime.timedelta(days=3, microseconds=7),
            datetime.timezone(datetime.timedelta(hours=2), "X"),
        ],
        "numbers": [decimal.Decimal("1.10"), fractions.Fraction(1, 3)],
        "ids": [
            uuid.UUID(int=12345),
            pathlib.PurePosixPath("a/b"),
            pathlib.PureWindowsPath("c:/x"),
        ],
        "collections": [
            collections.OrderedDict(a=1),
            collections.defaultdict(list, {"k": [1]}),
            collections.deque([1, 2], maxlen=5),
            collections.Counter("abca"),
        ],
    }


def touch(marker: Path) -> str:
    """A shell command that creates ``marker``: its existence shows the payload ran."""
    return f"touch {marker}"


def _write(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


HOSTILE: dict[str, Callable[[Path], Any]] = {
    "os.system": lambda m: Call(os.system, touch(m)),
    "subprocess.Popen": lambda m: Call(subprocess.Popen, ["touch", str(m)]),
    "subprocess.check_output": lambda m: Call(subprocess.check_output, ["touch", str(m)]),
    "builtins.eval": lambda m: Call(eval, _write(m)),
    "builtins.exec": lambda m: Call(exec, _write(m)),
    "getattr chain": lambda m: Call(Call(getattr, Call(__import__, "os"), "system"), touch(m)),
    "inside a list": lambda m: [1, {"x": Call(os.system, touch(m))}],
}
"""Objects that, unpickled, create the marker file they are given."""

REFUSED_NAME = {
    "os.system": "posix.system",
    "subprocess.Popen": "subprocess.Popen",
    "subprocess.check_output": "subprocess.check_output",
    "builtins.eval": "builtins.eval",
    "builtins.exec": "builtins.exec",
    "getattr chain": "builtins.getattr",
    "inside a list": "posix.system",
}
"""The global restricted loading names when it refuses each of :data:`HOSTILE`."""
