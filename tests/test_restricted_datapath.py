"""The data-only fast path of restricted loading (``omnipickle.security.datapath``).

A stream that the fast path proves to be plain data is loaded by the C unpickler; every other
stream by the checked pure-Python unpickler. These tests hold the two to one verdict: the fast
path takes the plain data pickle writes (so it does not silently stop applying), says no to every
stream outside its grammar, gives the same result or the same error as the checked path on
thousands of damaged streams, and keeps the hostile streams aimed at it (memo indices, frames,
lengths, marks, DUP, hidden globals, trailing bytes) from costing memory or running code.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python
from omnipickle.errors import BudgetExceededError, CorruptPayloadError, TruncatedPayloadError
from omnipickle.security import RestrictedUnpickler, datapath, restricted_loads
from omnipickle.security.budget import Limits, default_limits
from test_hostile_restricted import run_hostile, stack_global, system_call

PROTOCOLS = range(2, pickle.HIGHEST_PROTOCOL + 1)

PLAIN: dict[str, Any] = {
    "dicts": [
        {"id": i, "name": f"n{i}", "score": i * 0.5, "tags": ["x", "y"], "ok": True, "none": None}
        for i in range(3000)
    ],
    "scalars": [None, True, False, 0, -1, 255, 65535, -(2**31), 2**31, 2**70, -(2**200), 1.5],
    "strings": ["", "a", "é" * 300, "x" * 70_000, "\ud800 lone surrogate"],
    "containers": [[], {}, (), [[[[[[1]]]]]], {"a": {"b": {"c": [1, 2]}}}],
    "empty tuple keys": {(): [()], "k": ()},
    "shared": [["s"] * 3] * 3,
}
# What pickle writes with opcodes only from a protocol on (before it, through a global).
PLAIN_FROM = {
    "bytes": (3, [b"", b"b", b"c" * 100, b"d" * 70_000]),
    "sets": (4, [set(), {1, 2, "x"}, [set(range(2000))]]),
    "bytearray": (5, [bytearray(b"e" * 10), bytearray(70_000)]),
}
CASES = [(name, p, obj) for name, obj in PLAIN.items() for p in PROTOCOLS] + [
    (name, p, obj) for name, (first, obj) in PLAIN_FROM.items() for p in PROTOCOLS if p >= first
]


def _checked(data: bytes, **kwargs: Any) -> Any:
    """What the checked pure-Python unpickler alone makes of ``data``."""
    return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()


def _no_globals(module: str, name: str) -> Any:
    raise AssertionError(f"find_class({module!r}, {name!r}) called")


def _self_referencing_list() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


@pytest.mark.parametrize(("name", "protocol", "obj"), CASES, ids=[f"{n}-{p}" for n, p, _ in CASES])
def test_plain_data_takes_the_fast_path_and_loads_as_the_checked_path(
    name: str, protocol: int, obj: Any
) -> None:
    data = pickle.dumps(obj, protocol)
    assert datapath.validate(data, default_limits()) is not None
    loaded = restricted_loads(data)
    assert loaded == obj == _checked(data)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_cycle_loads_through_the_fast_path(protocol: int) -> None:
    data = pickle.dumps(_self_referencing_list(), protocol)
    assert datapath.validate(data, default_limits()) is not None
    loaded = restricted_loads(data)
    assert loaded[0] == 1 and loaded[1] is loaded


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "obj",
    [
        (1, 2),  # a tuple: hashing one as a key can be amplified, so it is the checked path's
        OrderedDict(a=1),  # a global and REDUCE
        frozenset({1}),
        2**3000,  # LONG4
        Path("x"),
        complex(1, 2),
    ],
    ids=repr,
)
def test_anything_but_plain_data_is_left_to_the_checked_path(obj: Any, protocol: int) -> None:
    data = pickle.dumps([obj], protocol)
    assert datapath.validate(data, default_limits()) is None
    assert datapath.load(data, default_limits(), _no_globals) is datapath.NOT_SIMPLE
    assert restricted_loads(data) == [obj]


def test_protocol_0_is_left_to_the_checked_path() -> None:
    data = pickle.dumps({"a": [1, 2]}, 0)
    assert datapath.validate(data, default_limits()) is None
    assert restricted_loads(data) == {"a": [1, 2]}


def _long_binput(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)


def test_a_long_binput_index_is_bounded_by_the_stream_size() -> None:
    small = b"\x80\x02N" + _long_binput((1 << 16) - 1) + b"."
    assert datapath.validate(small, default_limits()) is not None
    for index in (1 << 16, 1 << 24, (1 << 32) - 1):
        data = b"\x80\x02N" + _long_binput(index) + b"."
        assert datapath.validate(data, default_limits()) is None
        assert restricted_loads(data) is None  # the checked path keeps its memo in a dict


def test_a_long_binput_in_a_protocol_4_stream_is_left_to_the_checked_path() -> None:
    data = b"\x80\x04N" + _long_binput(1) + b"."  # pickle writes MEMOIZE from protocol 4 on
    assert datapath.validate(data, default_limits()) is None
    assert restricted_loads(data) is None


def _frame(body: bytes, length: int | None = None) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body) if length is None else length) + body


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x80\x04" + _frame(b"\x8c") + b"\x03abc.", CorruptPayloadError),
        (b"\x80\x04" + _frame(b"\x8c\x03a") + b"bc.", CorruptPayloadError),
        (b"\x80\x04" + _frame(b"X\x05\x00\x00\x00ab") + b"cde.", CorruptPayloadError),
        (b"\x80\x04" + _frame(b"N0" + _frame(b"N.")), CorruptPayloadError),
        (b"\x80\x04" + _frame(b"N.", 1 << 40), TruncatedPayloadError),
        (b"\x80\x04" + _frame(b"X" + struct.pack("<I", 1 << 31) + b"abc."), TruncatedPayloadError),
        (b"\x80\x04\x8d" + struct.pack("<Q", 1 << 62) + b"abc.", TruncatedPayloadError),
        (b"\x80\x04\x96" + struct.pack("<Q", 1 << 62) + b"abc.", TruncatedPayloadError),
        (b"\x80\x04" + _frame(b"N") + b"\x95", TruncatedPayloadError),
        (b"\x80\x04]N", TruncatedPayloadError),  # no STOP
    ],
)
def test_a_frame_or_length_that_lies_is_left_to_the_checked_path(
    data: bytes, error: type[Exception]
) -> None:
    assert datapath.validate(data, default_limits()) is None
    with pytest.raises(error):
        restricted_loads(data)


def test_frames_back_to_back_and_an_empty_frame_take_the_fast_path() -> None:
    data = b"\x80\x04" + _frame(b"]\x94(K\x01") + _frame(b"") + _frame(b"K\x02e.")
    assert datapath.validate(data, default_limits()) is not None
    assert restricted_loads(data) == [1, 2] == _checked(data)


def test_marks_deeper_than_the_budget_are_refused_by_the_budget() -> None:
    depth = default_limits().depth
    assert depth is not None
    deep = b"\x80\x02" + b"](" * (depth + 1) + b"e" * (depth + 1) + b"."
    assert datapath.validate(deep, default_limits()) is None
    with pytest.raises(BudgetExceededError):
        restricted_loads(deep)
    # The C unpickler would load these marks, popped again, without complaint.
    popped = b"\x80\x02" + b"(" * (depth + 1) + b"1" * (depth + 1) + b"N."
    assert pickle.loads(popped) is None
    with pytest.raises(BudgetExceededError):
        restricted_loads(popped)


def test_the_fast_path_counts_marks_against_the_depth_limit() -> None:
    value: list[Any] = [1, 2]
    for _ in range(5):
        value = [value, value]
    nested = pickle.dumps(value, 4)  # six marks deep
    assert datapath.validate(nested, default_limits()) is not None
    assert datapath.validate(nested, Limits(depth=5)) is None
    with pytest.raises(BudgetExceededError):
        restricted_loads(nested, limits=Limits(depth=5))
    assert restricted_loads(nested, limits=Limits(depth=6)) == pickle.loads(nested)


def test_limits_too_tight_for_the_fast_path_leave_it_to_the_budget() -> None:
    data = pickle.dumps(list(range(1000)), 4)
    tight = Limits(objects=10, objects_per_byte=0)
    assert datapath.validate(data, tight) is None
    with pytest.raises(BudgetExceededError):
        restricted_loads(data, limits=tight)
    assert datapath.validate(data, Limits(objects=None)) is not None


@pytest.mark.parametrize(
    "data",
    [b"\x80\x04h\x05.", b"\x80\x04}]Ns.", b"\x80\x04(2.", b"\x80\x04\x8c\x01\xff.", b"\x80\x04."],
)
def test_an_error_in_the_c_unpickler_is_the_checked_paths_error(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert datapath.validate(data, default_limits()) is not None
    with pytest.raises(pickle.UnpicklingError) as fast:
        restricted_loads(data)
    monkeypatch.setattr(datapath, "load", lambda *args: datapath.NOT_SIMPLE)
    with pytest.raises(pickle.UnpicklingError) as checked:
        restricted_loads(data)
    assert type(fast.value) is type(checked.value)
    assert str(fast.value) == str(checked.value)


def test_bytes_after_the_stop_are_never_read() -> None:
    data = pickle.dumps([1, 2], 4) + b"\x95\xff\xff\xff\xff\xff\xff\xff\xffgarbage"
    stop = datapath.validate(data, default_limits())
    assert stop == len(pickle.dumps([1, 2], 4))
    assert restricted_loads(data) == [1, 2]


def test_a_string_holding_opcodes_is_a_string() -> None:
    inner = b"cposix\nsystem\n(S'touch x'\ntR."
    data = pickle.dumps([inner.decode(), inner], 4)
    assert datapath.validate(data, default_limits()) is not None
    assert restricted_loads(data) == [inner.decode(), inner]


# --- hostile streams aimed at the fast path, each in a child --------------------------------------


def _dup_laughs(depth: int = 40) -> bytes:
    """A tuple holding itself twice over ``depth`` levels, built with DUP (no memo)."""
    return b"N" + b"\x85" + b"2\x86" * depth


@pytest.mark.parametrize(
    ("name", "data", "expect"),
    [
        ("LONG_BINPUT 2**31-1", b"\x80\x02N" + _long_binput((1 << 31) - 1) + b".", "loaded"),
        ("LONG_BINPUT 2**32-1", b"\x80\x03N" + _long_binput((1 << 32) - 1) + b".", "loaded"),
        (
            "LONG_BINPUT in a frame",
            b"\x80\x04" + _frame(b"N" + _long_binput(1 << 30) + b"."),
            "loaded",
        ),
        ("PUT 2**40", b"\x80\x02Np1099511627776\n.", "loaded"),
        ("BINGET past the memo", b"\x80\x04h\xff.", "CorruptPayloadError"),
        ("FRAME of 2**62", b"\x80\x04" + _frame(b"N.", 1 << 62), "TruncatedPayloadError"),
        (
            "SHORT_BINUNICODE over a frame",
            b"\x80\x04" + _frame(b"\x8c") + b"\x03abc.",
            "CorruptPayloadError",
        ),
        (
            "BINBYTES8 of 2**62",
            b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b".",
            "TruncatedPayloadError",
        ),
        (
            "BYTEARRAY8 in a frame",
            b"\x80\x05" + _frame(b"\x96" + struct.pack("<Q", 1 << 40) + b"."),
            "TruncatedPayloadError",
        ),
        (
            "marks 10**7",
            b"\x80\x02" + b"(" * 10_000_000 + b"1" * 10_000_000 + b"N.",
            "BudgetExceededError",
        ),
        ("DUP laughs as a key", b"\x80\x02}" + _dup_laughs() + b"K\x01s.", "BudgetExceededError"),
        ("DUP laughs in a set", b"\x80\x04\x8f(" + _dup_laughs() + b"\x90.", "BudgetExceededError"),
        ("a list appended to itself", b"\x80\x02]" + b"2a" * 200_000 + b".", "loaded"),
        ("GET fan-out", b"\x80\x04\x8c\x01x\x94](" + b"h\x00" * 400_000 + b"e.", "loaded"),
        ("unhashable key", b"\x80\x04}]Ns.", "UnpicklingError"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_a_hostile_stream_aimed_at_the_fast_path_costs_nothing(
    tmp_path: Path, name: str, data: bytes, expect: str
) -> None:
    run_hostile(tmp_path, data, expect=expect, mib=60)


def test_a_global_built_from_memoized_strings_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    strings = b"\x8c\x05posix\x94\x8c\x06system\x94"
    command = f"touch {marker}".encode()
    tail = b"h\x00h\x01\x93\x8c" + bytes([len(command)]) + command + b"\x85R."
    run_hostile(tmp_path, b"\x80\x04" + strings + tail, expect="UnsafePayloadError", marker=marker)
    framed = b"\x80\x04" + _frame(strings) + _frame(tail)
    run_hostile(tmp_path, framed, expect="UnsafePayloadError", marker=marker)


def test_a_global_after_the_stop_is_never_reached(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    data = pickle.dumps([1], 4) + system_call("posix", "system", marker)
    run_hostile(tmp_path, data, expect="loaded", marker=marker)
    first = pickle.dumps([1], 2) + stack_global("posix", "system", b"N\x85R.")
    run_hostile(tmp_path, first, expect="loaded", marker=marker)


def test_a_global_after_plain_data_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    head = pickle.dumps(list(range(100_000)), 4)[:-1] + b"0"  # the list, popped
    data = head + system_call("posix", "system", marker)[2:]
    run_hostile(tmp_path, data, expect="UnsafePayloadError", marker=marker)


# --- one verdict: the fast path and the checked path agree on damaged streams -------------------

_AGREE = r"""
import io, json, pickle, random, sys
from omnipickle.security import datapath, restricted_loads, unpickler
from omnipickle.security.budget import default_limits
rng = random.Random(int(sys.argv[1]))
seeds = [
    pickle.dumps(obj, protocol)
    for protocol in range(2, 6)
    for obj in (
        [{"id": i, "s": "x" * i, "b": b"y" * i, "f": i / 3, "t": True} for i in range(40)],
        {"a": [1, [2, [3, [4]]]], "": set(range(5)), "e": (), "z": bytearray(b"q")},
        ["é" * 300, b"z" * 300, 2**60, -5, None, [], {}],
    )
]
def outcome(data):
    try:
        return "ok " + repr(restricted_loads(data))
    except Exception as exc:
        return type(exc).__name__
fast = datapath.load
disagree, taken = [], 0
for _ in range(int(sys.argv[2])):
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        if not data:
            break
        at = rng.randrange(len(data))
        kind = rng.random()
        if kind < 0.5:
            data[at] = rng.randrange(256)
        elif kind < 0.7:
            del data[at:at + rng.randint(1, 8)]
        elif kind < 0.9:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            data = data[:at]
    data = bytes(data)
    if not data:
        continue
    taken += datapath.validate(data, default_limits()) is not None
    with_fast = outcome(data)
    unpickler.datapath.load = lambda *args: datapath.NOT_SIMPLE
    try:
        checked = outcome(data)
    finally:
        unpickler.datapath.load = fast
    if with_fast != checked:
        disagree.append([data.hex(), with_fast[:200], checked[:200]])
print(json.dumps({"taken": taken, "disagree": disagree[:5], "count": len(disagree)}))
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_fast_path_and_the_checked_path_agree_on_damaged_streams(seed: int) -> None:
    import json

    proc = run_python(str(seed), "1500", code=_AGREE, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["count"] == 0, report["disagree"]
    assert report["taken"] > 100  # the fast path was tried on many of them
