"""The data-only fast path of restricted loading (``omnipickle.security.datapath``).

A stream that the fast path proves to be plain data is loaded by the C unpickler; every other
stream by the checked pure-Python unpickler. These tests hold the two to one verdict: the fast
path takes the plain data pickle writes (so it does not silently stop applying), says no to every
stream outside its grammar, gives the same result or the same error as the checked path on
thousands of damaged streams, and keeps the hostile streams aimed at it (memo indices, frames,
lengths, marks, DUP, hidden globals, trailing bytes) from costing memory or running code.
"""

from __future__ import annotations

import abc
import dataclasses
import io
import pickle
import pickletools
import struct
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python
from omnipickle.errors import (
    BudgetExceededError,
    CorruptPayloadError,
    TruncatedPayloadError,
    UnsafePayloadError,
)
from omnipickle.security import RestrictedUnpickler, datapath, restricted_loads
from omnipickle.security.budget import Limits, default_limits
from test_hostile_restricted import run_hostile, stack_global, system_call

PROTOCOLS = range(2, pickle.HIGHEST_PROTOCOL + 1)

PLAIN: dict[str, Any] = {
    "dicts": [
        {"id": i, "name": f"n{i}", "score": i * 0.5, "tags": ["x", "y"], "ok": True, "none": None}
        for i in range(3000)
    ],
    "scalars": [None, True, False, 0, -1, 255, 65535, -(2**31), 2**31, 2**63 - 1, -(2**63), 1.5],
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
    [b"\x80\x04h\x05.", b"\x80\x04}]Ns.", b"\x80\x04(Na.", b"\x80\x04\x8c\x01\xff.", b"\x80\x04."],
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
        (  # a 1 MB stream may put its memo at index 2**20 - 1 (a 16 MB memo), no higher
            "LONG_BINPUT at the bound",
            b"\x80\x02]B"
            + struct.pack("<I", 1 << 20)
            + bytes(1 << 20)
            + b"a"
            + _long_binput((1 << 20) - 1)
            + b".",
            "loaded",
        ),
        (
            "LONG_BINPUT past the bound",
            b"\x80\x02]B"
            + struct.pack("<I", 1 << 20)
            + bytes(1 << 20)
            + b"a"
            + _long_binput(1 << 20)
            + b".",
            "loaded",
        ),
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


# What both child scripts below share: the outcome of a restricted load, with the fast path
# and with the checked path alone (the fast path switched off), for one stream.
_BOTH = r"""
import argparse, json, pickle, random, string, struct, sys
from omnipickle.security import datapath, restricted_loads, unpickler
from omnipickle.security.budget import default_limits
import re
ALLOW = ("argparse.Namespace", "string.Template")
ALLOW = ("__main__.Plain", "__main__.Touch", "__main__.Slotted")
def outcome(data):
    try:
        loaded = restricted_loads(data, allow=ALLOW)
    except Exception as exc:  # the message without addresses (reprs of objects in it)
        return type(exc).__name__ + ": " + re.sub("0x[0-9a-f]+", "0x", str(exc))[:80]
    try:
        return "ok " + pickle.dumps(loaded, 4).hex()
    except Exception as exc:
        return "ok, unpicklable " + type(exc).__name__
fast = datapath.load
def both(data):
    with_fast = outcome(data)
    unpickler.datapath.load = lambda *args: datapath.NOT_SIMPLE
    try:
        return with_fast, outcome(data)
    finally:
        unpickler.datapath.load = fast
"""

_AGREE = (
    _BOTH
    + r"""
rng = random.Random(int(sys.argv[1]))
N = argparse.Namespace
seeds = [
    pickle.dumps(obj, protocol)
    for protocol in range(2, 6)
    for obj in (
        [{"id": i, "s": "x" * i, "b": b"y" * i, "f": i / 3, "t": True} for i in range(40)],
        {"a": [1, [2, [3, [4]]]], "": set(range(5)), "e": (), "z": bytearray(b"q")},
        ["é" * 300, b"z" * 300, 2**60, -5, None, [], {}],
        [N(a=i, b=[N(c="d" * i)], e={"f": N()}) for i in range(20)] + [string.Template("$x")],
        [N(only=i) for i in range(30)] + [N, string.Template],
    )
]
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
    with_fast, checked = both(data)
    if with_fast != checked:
        disagree.append([data.hex(), with_fast[:200], checked[:200]])
print(json.dumps({"taken": taken, "disagree": disagree[:5], "count": len(disagree)}))
"""
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_fast_path_and_the_checked_path_agree_on_damaged_streams(seed: int) -> None:
    import json

    proc = run_python(str(seed), "2000", code=_AGREE, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["count"] == 0, report["disagree"]
    assert report["taken"] > 100  # the fast path was tried on many of them


# --- instances of plain classes ---------------------------------------------------------------


class Plain:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)

    def __eq__(self, other: object) -> bool:
        return type(other) is Plain and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


@dataclasses.dataclass
class Row:
    key: int
    name: str
    tags: list[str] = dataclasses.field(default_factory=list)


class Hashed:
    """Hashes as object does: usable as a key."""


class WithState:
    calls = 0

    def __init__(self, value: int) -> None:
        self.value = value

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).calls += 1
        self.__dict__.update(state)


class Extendable:
    called: list[Any] = []

    def extend(self, items: Any) -> None:
        Extendable.called.append(items)


HERE = (f"{__name__}.*",)


def _nested_plain(depth: int) -> Plain:
    value = Plain(leaf=[1, 2])
    for level in range(depth):
        value = Plain(level=level, child=[value, {"k": value}])
    return value


INSTANCES: dict[str, Any] = {
    "plain": [Plain(x=i, y=i * 0.5, label=f"p{i}") for i in range(50)],
    "dataclass": [Row(i, f"r{i}", ["a"] * (i % 3)) for i in range(50)],
    "one attribute": [Plain(only=i) for i in range(5)],
    "no attributes": [Plain(), Plain()],
    "nested deep": _nested_plain(8),
    "as keys": {Hashed(): 1, "x": [Hashed()]},
    "classes as values": {"cls": Plain, "rows": [Row]},
    "many (frames cut instances)": [Row(i, f"{i}" + "n" * (i % 300), ["t"]) for i in range(5000)],
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_instances_of_plain_classes_take_the_fast_path(name: str, protocol: int) -> None:
    obj = INSTANCES[name]
    data = pickle.dumps(obj, protocol)
    assert datapath.validate(data, default_limits()) is not None
    loaded = restricted_loads(data, allow=HERE)
    checked = _checked(data, allow=HERE)
    assert pickle.dumps(loaded, protocol) == pickle.dumps(checked, protocol) == data


@pytest.mark.parametrize(
    ("cls", "fast"),
    [
        (Plain, True),
        (Row, True),
        (Hashed, True),
        (WithState, False),  # __setstate__
        (Extendable, False),  # extend: an APPENDS on the class would call it
        (dataclasses.make_dataclass("Frozen", ["a"], frozen=True), False),  # __setattr__
        (type("New", (), {"__new__": lambda cls: object.__new__(cls)}), False),
        (type("GetAttr", (), {"__getattr__": lambda self, name: 1}), False),
        (type("SetItem", (), {"__setitem__": lambda self, k, v: None}), False),
        (type("Del", (), {"__del__": lambda self: None}), False),
        (type("Add", (), {"add": lambda self, x: None}), False),
        (type("Dict", (), {"__dict__": property(lambda self: {})}), False),
        (type("Slots", (), {"__slots__": ("a",)}), True),
        (type("Eq", (), {"__eq__": lambda self, o: True, "__hash__": lambda self: 1}), False),
        (abc.ABC, False),  # a metaclass
        (type("Listy", (list,), {}), False),  # a built-in base
        (OrderedDict, False),
        (int, False),
        (len, False),
        (Plain(), False),
    ],
    ids=lambda v: getattr(v, "__name__", type(v).__name__),
)
def test_only_classes_that_run_none_of_their_code_are_fast(cls: Any, fast: bool) -> None:
    assert datapath.fast_class(cls) is fast


def test_a_class_with_a_hook_is_loaded_by_the_checked_path_its_hook_run_once() -> None:
    WithState.calls = 0
    obj = [Plain(a=1), WithState(1), WithState(2), Plain(b=2)]
    for protocol in PROTOCOLS:
        data = pickle.dumps(obj, protocol)
        assert datapath.validate(data, default_limits()) is not None  # the stream is simple...
        before = WithState.calls
        loaded = restricted_loads(data, allow=HERE)  # ...but WithState is not a fast class
        assert WithState.calls - before == 2
        assert [type(x) for x in loaded] == [Plain, WithState, WithState, Plain]
        assert loaded[2].value == 2 and loaded[3] == Plain(b=2)


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


_PLAIN = _global(__name__, "Plain")
_EXTENDABLE = _global(__name__, "Extendable")


@pytest.mark.parametrize(
    "body",
    [
        _PLAIN + b"}b.",  # BUILD on the class, an empty state: a no-op to the C unpickler
        _PLAIN + b"Nb.",  # BUILD on the class, state None: a no-op too
        _PLAIN + b"}(X\x01\x00\x00\x00xK\x01ub.",  # BUILD on the class with a state
        _PLAIN + b"q\x00h\x00)\x81}sb.",  # SETITEM (then BUILD) with the class as target
        _PLAIN + b"(X\x01\x00\x00\x00xK\x01u.",  # SETITEMS on the class
        _PLAIN + b"(K\x01e.",  # APPENDS on the class
        _PLAIN + b"\x8f(K\x01\x90.",  # ADDITEMS below a set, then the class... (not a target)
        _EXTENDABLE + b"(K\x01e.",  # APPENDS on a class with extend
        _EXTENDABLE + b"K\x01a.",  # APPEND on it
    ],
)
def test_an_opcode_on_an_allowed_class_is_refused_and_changes_nothing(body: bytes) -> None:
    Extendable.called.clear()
    before = dict(vars(Plain))
    data = b"\x80\x02" + body
    if body.startswith(_PLAIN + b"\x8f"):  # the one that touches no class
        assert restricted_loads(data, allow=HERE) == {1}
    else:
        with pytest.raises(UnsafePayloadError, match="tries to change"):
            restricted_loads(data, allow=HERE)
        with pytest.raises(UnsafePayloadError, match="tries to change"):
            _checked(data, allow=HERE)
    assert dict(vars(Plain)) == before
    assert Extendable.called == []


def _body(obj: Any) -> tuple[bytes, list[int]]:
    """``obj`` pickled with protocol 4 without its frame, and where each opcode starts in it."""
    data = pickle.dumps(obj, 4)
    assert data[2] == pickle.FRAME[0] and 11 + int.from_bytes(data[3:11], "little") == len(data)
    body = data[11:]
    starts = [pos - 2 for _, _, pos in pickletools.genops(b"\x80\x04" + body) if pos is not None]
    return body, starts[1:]


CUT = {
    "dicts": [{"k": i, "v": [i, "s"], "e": {}, "one": [i]} for i in range(3)],
    "instances": [Plain(x=1, y=[Plain(z=2)]), Row(1, "r", ["t", "u"]), Plain(only=3), Plain()],
    "sets": [set(range(3)), {"a"}],
    "deep": [[[[1, 2], [3, [4, 5]]], [6, 7]], [Plain(a=[[8, 9], {"b": Plain(c=[1, 2])}])]],
    "full batches": [dict.fromkeys(range(1000)), set(range(1000))],  # then an empty batch
}


@pytest.mark.parametrize("name", sorted(CUT))
def test_a_frame_may_end_at_any_opcode_and_nowhere_else(name: str) -> None:
    body, starts = _body(CUT[name])
    expected = pickle.dumps(CUT[name], 4)
    for cut in range(1, len(body)):
        data = b"\x80\x04" + _frame(body[:cut]) + _frame(body[cut:])
        if cut in starts:
            # The one cut the fast path leaves to the checked path: one that splits the C
            # pickler's empty batch (MARK SETITEMS, MARK ADDITEMS) from the batch before it.
            split = body[cut - 1 : cut + 1] in (b"u(", b"(u", b"\x90(", b"(\x90")
            assert (datapath.validate(data, default_limits()) is None) is split, cut
            assert pickle.dumps(restricted_loads(data, allow=HERE), 4) == expected
        else:
            assert datapath.validate(data, default_limits()) is None, cut
            with pytest.raises(pickle.UnpicklingError):
                restricted_loads(data, allow=HERE)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_benchmark_workloads_take_the_fast_path(protocol: int) -> None:
    dicts = [
        {"id": i, "name": f"n{i}", "score": i * 0.5, "tags": ["x", "y"], "ok": True, "none": None}
        for i in range(20_000)
    ]
    rows = [
        Plain(x=i, y=i * 0.5, label=f"p{i}") if i % 2 else Row(i, f"r{i}") for i in range(20_000)
    ]
    for obj in (dicts, rows):
        data = pickle.dumps(obj, protocol)
        assert datapath.validate(data, default_limits()) == len(data)
    assert restricted_loads(pickle.dumps(rows, protocol), allow=HERE) == rows


# Streams built from the grammar's own pieces (and a few outside it), at random: most are
# nonsense, many are simple, a few hundred load; both paths must say the same of each.
_STRUCTURED = (
    _BOTH
    + r"""
rng = random.Random(int(sys.argv[1]))
NAMES = ["a", "b", "argparse", "Namespace", "string", "Template", "posix", "system", "x" * 40]
def s8(text):
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw
PIECES = [
    b"N", b"\x88", b")", b"}", b"]", b"\x8f", b"(", b"(", b"e", b"u", b"d", b"l", b"1", b"\x90",
    b"0", b"\x94", b"\x94", b"2", b"a", b"s", b"s", b"b", b"\x81", b"\x81", b"\x93", b"t",
    b"\x85", b"R", b"(\x90", b"(u", b"(e", b"u(u", b"\x90(\x90", b"\x8f\x94(K\x01K\x02\x90(\x90",
    b"(K\x01u", b"h\x00(K\x01e",
    lambda: b"K" + bytes([rng.randrange(256)]),
    lambda: b"h" + bytes([rng.randrange(8)]),
    lambda: b"q" + bytes([rng.randrange(8)]),
    lambda: b"j" + struct.pack("<I", rng.randrange(10)),
    lambda: b"r" + struct.pack("<I", rng.choice([1, 5, 70000, 1 << 31])),
    lambda: s8(rng.choice(NAMES)),
    lambda: b"X" + struct.pack("<I", 3) + b"abc",
    lambda: b"X" + struct.pack("<I", 300) + b"y" * 300,
    lambda: b"cargparse\nNamespace\n",
    lambda: b"cstring\nTemplate\n",
    lambda: b"cposix\nsystem\n",
    lambda: b"cfractions\nFraction\n",  # allowed, with hooks (__new__, slots)
    lambda: b"cuuid\nUUID\n",
    lambda: b"\x8c\x08argparse\x94\x8c\tNamespace\x94\x93",
    lambda: b")\x81\x94}\x94(\x8c\x01x\x94K\x01\x8c\x01y\x94]\x94(K\x01K\x02eub",
    lambda: b")\x81\x94}\x94\x8c\x01z\x94K\x05sb",
    lambda: b"\x95" + struct.pack("<Q", rng.randrange(40)),
]
def piece():
    chosen = rng.choice(PIECES)
    return chosen() if callable(chosen) else chosen
disagree, taken, loaded_fast = [], 0, 0
for _ in range(int(sys.argv[2])):
    proto = rng.choice([b"\x80\x02", b"\x80\x04", b"\x80\x05", b""])
    body = b"".join(piece() for _ in range(rng.randint(1, 30)))
    if rng.random() < 0.5:
        body = b"\x95" + struct.pack("<Q", len(body) + 1) + body + b"."
    else:
        body += b"."
    data = proto + body
    simple = datapath.validate(data, default_limits()) is not None
    taken += simple
    with_fast, checked = both(data)
    loaded_fast += with_fast.startswith("ok") and simple
    if with_fast != checked:
        disagree.append([data.hex(), with_fast[:200], checked[:200]])
report = {"taken": taken, "loaded_fast": loaded_fast, "disagree": disagree[:5]}
print(json.dumps(dict(report, count=len(disagree))))
"""
)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_fast_path_and_the_checked_path_agree_on_streams_built_from_opcodes(seed: int) -> None:
    import json

    proc = run_python(str(seed), "8000", code=_STRUCTURED, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["count"] == 0, report["disagree"]
    assert report["loaded_fast"] > 50  # the fast path loaded many of them


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_append_calls_extend_where_the_c_unpickler_does(protocol: int) -> None:
    """Both paths apply APPEND alike: ``extend([value])`` on an object with ``extend``."""
    Extendable.called.clear()
    data = pickle.dumps(Extendable(), protocol)
    if protocol >= 4:
        data = bytes([pickle.PROTO[0], protocol]) + _body(Extendable())[0]  # unframed
    data = data[:-1] + b"K\x07a."  # the instance, then APPEND 7 to it
    loaded = restricted_loads(data, allow=HERE)
    assert type(loaded) is Extendable and Extendable.called == [[7]]
    assert pickle.loads(data) is not None and Extendable.called == [[7], [7]]


# --- a method stored in an instance's own state ---------------------------------------------------

# Both unpicklers look BUILD's __setstate__, APPEND's extend/append and ADDITEMS' add up as
# attributes of their target: an earlier BUILD that stored an allowed class under one of those
# names in an instance's __dict__ would have it called (here Touch, whose __init__ leaves a mark).
_PLANTED = r"""
import json, re, sys
from omnipickle.security import datapath, restricted_loads, unpickler
from omnipickle.security.budget import default_limits
class Plain:
    pass
class Touch:
    def __init__(self, *args):
        open(sys.argv[2], "a").write("ran")
class Slotted:
    __slots__ = ("append",)
ALLOW = ("__main__.Plain", "__main__.Touch", "__main__.Slotted")
def outcome(data):
    try:
        return "loaded " + type(restricted_loads(data, allow=ALLOW)).__name__
    except Exception as exc:
        return type(exc).__name__
data = bytes.fromhex(sys.argv[1])
simple = datapath.validate(data, default_limits()) is not None
fast = outcome(data)
unpickler.datapath.load = lambda *args: datapath.NOT_SIMPLE
print(json.dumps({"simple": simple, "fast": fast, "checked": outcome(data)}))
"""


def _planting(name: str) -> bytes:
    """A Plain instance (memo 0) whose state holds Touch under ``name``."""
    key = name.encode()
    return (
        b"\x80\x02c__main__\nPlain\n)\x81q\x00}\x8c"
        + bytes([len(key)])
        + key
        + b"c__main__\nTouch\nsb"
    )


@pytest.mark.parametrize(
    "data",
    [
        # A second instance's one-item state whose SETITEM fills a dict above the first
        # instance: that BUILD's target is the first instance.
        _planting("__setstate__") + b"c__main__\nPlain\n)\x81}h\x00}K\x01K\x02sb.",
        _planting("extend") + b"K\x01a.",
        _planting("append") + b"(K\x01e.",
        _planting("add") + b"(K\x01\x90.",
        # A slot set by a BUILD's slot state (a tuple: never the fast path).
        b"\x80\x02c__main__\nSlotted\n)\x81N}\x8c\x06appendc__main__\nTouch\ns\x86b(K\x01e.",
    ],
    ids=["setstate", "extend", "append", "add", "slot"],
)
def test_a_method_stored_in_an_instances_state_is_never_called(tmp_path: Path, data: bytes) -> None:
    import json

    marker = tmp_path / "ran"
    proc = run_python(data.hex(), str(marker), code=_PLANTED, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not marker.exists(), report
    assert report["simple"] is False
    assert report["fast"] == report["checked"] == "UnsafePayloadError"


def test_plain_data_holding_the_names_of_those_methods_keeps_the_fast_path() -> None:
    obj = {"add": ["append", "extend"], "x": "__setstate__"}
    for protocol in PROTOCOLS:
        data = pickle.dumps(obj, protocol)
        assert datapath.validate(data, default_limits()) is not None  # no instance is built
        assert restricted_loads(data) == obj
    with_instance = pickle.dumps([obj, Plain()], 4)
    assert datapath.validate(with_instance, default_limits()) is None
    assert restricted_loads(with_instance, allow=HERE) == [obj, Plain()]


# --- keys that cost more than their bytes to insert -----------------------------------------

_P61 = 2**61 - 1  # an int's hash is its value modulo this prime


def _long1(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _binunicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


_TEXT = _binunicode("x" * 1_000_000)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        (  # 20,000 ints that share one hash: each insertion compares with every earlier one
            "colliding int keys",
            b"\x80\x02}(" + b"".join(_long1(k * _P61) + b"N" for k in range(1, 20_001)) + b"u.",
        ),
        (
            "colliding set items",
            b"\x80\x04\x8f(" + b"".join(_long1(k * _P61) for k in range(1, 20_001)) + b"\x90.",
        ),
        (  # two equal 1 MB strings, inserted side by side: every insertion compares 1 MB
            "equal long str keys",
            b"\x80\x04"
            + _TEXT
            + b"\x94"
            + _TEXT
            + b"\x94\x8f(h\x00"
            + b"h\x01" * 100_000
            + b"\x90.",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_keys_costly_to_insert_are_left_to_the_checked_path_and_refused(
    tmp_path: Path, name: str, data: bytes
) -> None:
    assert datapath.validate(data, default_limits()) is None
    run_hostile(tmp_path, data, expect="BudgetExceededError", seconds=2.0, mib=60)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wide_ints_and_equal_long_strings_load_through_the_checked_path(protocol: int) -> None:
    text = "é" * 300
    obj = [2**64, -(2**200), {2**70: 1, 3: 2}, text, "".join(list(text))]
    data = pickle.dumps(obj, protocol)
    assert datapath.validate(data, default_limits()) is None
    assert restricted_loads(data) == obj
    eight = [2**63 - 1, -(2**63), {2**62: 1}]  # LONG1 of 8 bytes: the fast path
    assert datapath.validate(pickle.dumps(eight, protocol), default_limits()) is not None
    assert restricted_loads(pickle.dumps(eight, protocol)) == eight


def _one_hash_floats() -> list[float]:
    """Floats of one hash (``m * 2**e`` hashes to ``m * 2**(e % 61)`` modulo 2**61 - 1):
    six mantissas for a hash of six one bits nine apart, each with the exponents that fit."""
    p61 = 2**61 - 1
    wanted = sum(1 << bit for bit in range(0, 54, 9))
    values = (
        m * 2.0**e
        for e in range(-1074, 972)
        if (m := wanted * pow(2, -e % 61, p61) % p61) < 2**53 and m & 1
    )
    return [v for v in values if v and hash(v) == wanted]


def test_floats_that_share_a_hash_take_the_fast_path() -> None:
    """A float's hash is chosen as an int's, but 53 bits of mantissa let only about 200 share
    one: the fast path takes them (docs/security.md measures what they cost)."""
    floats = _one_hash_floats()
    assert len(floats) > 190 and len({hash(v) for v in floats}) == 1
    data = pickle.dumps([set(floats) for _ in range(4)], 4)  # four sets, each of them all
    assert datapath.validate(data, default_limits()) is not None
    assert restricted_loads(data) == [set(floats)] * 4


class Named:
    """Instances made only by the loads of the interning test."""


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="what interning keeps differs by version"
)
@pytest.mark.parametrize("path", ["fast", "checked"])
def test_state_keys_are_interned_and_freed_with_the_objects_on_3_11(path: str) -> None:
    """Both unpicklers intern the keys of an instance's state (its attribute names), as pickle
    does. On Python 3.11 an interned string is freed with its last reference, so load after
    load of payloads with new names keeps none of them (3.12.0 made every interned string
    immortal, which python/cpython#113993 undid)."""
    import gc
    import uuid

    def payload() -> tuple[bytes, list[str]]:
        names = [f"a{uuid.uuid4().hex}" for _ in range(50)]
        obj = Named.__new__(Named)
        vars(obj).update(dict.fromkeys(names, 1))
        tail = [] if path == "fast" else [(1, 2)]  # a tuple: the checked path
        return pickle.dumps([obj, *tail], 4), names

    def interned(name: str) -> bool:  # whether a string equal to name is interned
        fresh = "".join(["a", name[1:]])
        return sys.intern(fresh) is not fresh

    # CPython keeps the names of a class's first instance in the class (its shared-key table).
    restricted_loads(payload()[0], allow=HERE)
    for _ in range(3):
        data, names = payload()
        assert (datapath.validate(data, default_limits()) is not None) is (path == "fast")
        loaded = restricted_loads(data, allow=HERE)
        key = next(iter(vars(loaded[0])))
        assert sys.intern("".join(["a", key[1:]])) is key  # interned by the load
        del loaded, key
        gc.collect()
        assert not any(interned(name) for name in names)
