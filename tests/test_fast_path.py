"""The per-call fast paths write and read exactly what the general paths do.

``dumps`` of a small graph of plain data, ``loads`` of an intact plain envelope and ``loads`` of
a plain pickle stream skip the general machinery. Each test compares them with the general path
(forced by an argument that takes it: ``on_unpicklable="drop"`` for dumps, a ``bytearray`` for
loads), byte for byte and error for error.
"""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import check_python
from omnipickle.backends import (
    DEFAULTS,
    PICKLE_BIT,
    PICKLE_LOADER_ID,
    Backend,
    Pickled,
    register_backend,
)
from omnipickle.backends.small import MAX_NODES, plain_dumps
from omnipickle.checksums import SMALL
from omnipickle.codecs import MAGICS, GzipCodec, register_codec, unregister_codec
from omnipickle.format.header import plain_payload
from payloads import HOSTILE, REFUSED_NAME

_shared = [1, 2]
_loop: list[Any] = []
_loop.append(_loop)

PLAIN: list[Any] = [
    None,
    True,
    0,
    -(2**100),
    1.5,
    float("inf"),
    "",
    "__main__",  # the marker the general path watches for, as data
    "é" * 10,
    b"",
    b"\x80\x05B",
    bytearray(b"abc"),
    [],
    (),
    {},
    set(),
    frozenset({1, 2}),
    {"id": 7, "name": "job-7", "ok": True},
    {(1, 2): [3.0, None], frozenset({"a"}): {"b": b"c"}},
    [_shared, _shared],
    _loop,
    ["x" * 10_000, b"y" * 100_000],
    list(range(MAX_NODES * 2)),  # past the budget: the general path
]


def _general(obj: Any, protocol: int) -> bytes:
    return omnipickle.dumps(obj, protocol, on_unpicklable="drop")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("obj", PLAIN, ids=lambda o: type(o).__name__)
def test_dumps_of_plain_data_is_what_the_general_path_writes(obj: Any, protocol: int) -> None:
    assert omnipickle.dumps(obj, protocol) == _general(obj, protocol)
    assert omnipickle.dumps(obj, protocol, raw=True) == pickle.dumps(obj, protocol)


@pytest.mark.parametrize("obj", PLAIN, ids=lambda o: type(o).__name__)
def test_loads_of_the_fast_payload_gives_back_the_object(obj: Any) -> None:
    data = omnipickle.dumps(obj)
    back = omnipickle.loads(data)
    assert repr(back) == repr(obj)
    assert repr(omnipickle.loads(omnipickle.dumps(obj, raw=True))) == repr(obj)


def test_the_fast_path_takes_small_plain_graphs_and_leaves_the_rest() -> None:
    assert plain_dumps({"a": [1, (2, 3)]}, 5) == pickle.dumps({"a": [1, (2, 3)]}, 5)
    assert plain_dumps(list(range(MAX_NODES + 1)), 5) is None
    assert plain_dumps([[i] for i in range(MAX_NODES)], 5) is None  # past it, nested
    assert plain_dumps(_loop, 5) is None
    # A key, a value or an item anywhere that is not plain data: the general path.
    assert plain_dumps({lambda: 1: 2}, 5) is None
    assert plain_dumps([1, [2, [threading.Lock()]]], 5) is None
    assert plain_dumps(frozenset({1j}), 5) is None  # complex goes through a reducer


def test_a_graph_past_the_budget_is_left_without_looking_at_its_items() -> None:
    """A list or an instance's ``__dict__`` longer than the budget goes to the general path at
    once: typing its items one by one would cost as much as the dump saves (40 us for 20k)."""
    looked = []

    class Counting(type):
        def __hash__(cls) -> int:
            looked.append(cls)
            return id(cls)

    class Item(metaclass=Counting):
        pass

    class Holder:
        pass

    holder = Holder()
    holder.__dict__.update({f"k{i}": Item() for i in range(MAX_NODES + 1)})
    for big in ([Item() for _ in range(MAX_NODES + 1)], {"x": holder}):
        looked.clear()
        assert plain_dumps(big, 5) is None
        assert looked == []


def test_objects_the_fast_path_leaves_still_dump_through_auto() -> None:
    lock = threading.Lock()
    back = omnipickle.loads(omnipickle.dumps({"f": [lambda x: x * 2], "l": [lock]}))
    assert back["f"][0](4) == 8
    assert back["l"][0].acquire(blocking=False)
    key = {(lambda: 5): "v"}
    (func,) = omnipickle.loads(omnipickle.dumps(key))
    assert func() == 5


class _Recording(Backend):
    name = "recording"

    def __init__(self) -> None:
        self.calls = 0

    def dumps(self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: Any) -> Pickled:
        self.calls += 1
        data = pickle.dumps(obj, protocol)
        return Pickled([data], len(data), None, frozenset({"pickle"}), by_value=False)


def test_a_replaced_auto_backend_is_called_for_plain_data_too(restore_registries: None) -> None:
    recording = _Recording()
    register_backend("auto", recording, replace=True)
    assert not DEFAULTS.builtin
    omnipickle.dumps(None)
    omnipickle.dumps({"a": 1}, raw=True)
    assert recording.calls == 2


def test_the_defaults_flag_comes_back_when_the_registry_is_restored(
    restore_registries: None,
) -> None:
    register_backend("pickle", _Recording(), replace=True)
    assert not DEFAULTS.builtin


def test_defaults_flag_is_set_outside_the_tests_above() -> None:
    assert DEFAULTS.builtin  # restore_registries put the built-ins back


# --- loading: the same errors as the general path ----------------------------------------------


def _outcome(call: Any) -> tuple[str, str] | Any:
    try:
        return ("ok", repr(call()))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


# The pure-Python loads, whose own fast path the C one (omnipickle._speedups) stands in front of.
PYTHON_LOADS = getattr(omnipickle.loads, "__wrapped__", omnipickle.loads)


def _both(data: bytes) -> tuple[Any, Any]:
    """The fast paths' outcome (C and Python, which must agree), and the general path's."""
    fast = _outcome(lambda: omnipickle.loads(data))
    assert _outcome(lambda: PYTHON_LOADS(data)) == fast, "the C and Python fast paths differ"
    return fast, _outcome(lambda: omnipickle.loads(bytearray(data)))


def test_every_damaged_byte_of_a_fast_payload_gets_the_general_paths_error() -> None:
    data = omnipickle.dumps({"id": 7, "name": "job-7", "ok": True})
    for i in range(len(data)):
        for flip in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[i] ^= flip
            fast, general = _both(bytes(damaged))
            assert fast == general, (i, flip)
            assert fast[0] != "ok" or i < 2, (i, flip)  # only PROTO's own bytes may survive


def test_truncated_and_extended_fast_payloads_get_the_general_paths_error() -> None:
    data = omnipickle.dumps([1, 2, 3])
    for cut in range(1, len(data)):
        fast, general = _both(data[:cut])
        assert fast == general and fast[0] != "ok", cut
    fast, general = _both(data + b".")
    assert fast == general and fast[0] == "CorruptPayloadError"


def test_damaged_plain_pickle_streams_get_the_general_paths_error() -> None:
    data = pickle.dumps({"a": [1, 2]}, 5)
    for cut in range(3, len(data)):
        fast, general = _both(data[:cut])
        assert fast == general and fast[0] != "ok", cut
    for i in range(3, len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        assert _both(bytes(damaged))[0] == _both(bytes(damaged))[1], i


def test_a_missing_global_in_a_plain_stream_gets_the_general_paths_error() -> None:
    data = pickle.dumps(pickle.PickleBuffer, 5).replace(b"PickleBuffer", b"NoSuchThing!")
    fast, general = _both(data)
    assert fast == general
    assert fast[0] != "ok"


class _ProtoCodec(GzipCodec):
    """A codec whose magic starts like a pickle stream (PROTO)."""

    codec_id = 77
    magic = b"\x80\x05\x95"


def test_a_codec_whose_magic_starts_like_pickle_turns_the_stream_fast_path_off(
    restore_registries: None,
) -> None:
    assert MAGICS.proto_unclaimed
    register_codec("proto_like", _ProtoCodec())
    assert not MAGICS.proto_unclaimed
    unregister_codec("proto_like")
    assert MAGICS.proto_unclaimed
    register_codec("by_path", "somewhere.not_imported:Codec")
    assert not MAGICS.proto_unclaimed  # its magic is unknown until it is imported


def test_loads_options_that_need_the_general_path_still_apply() -> None:
    data = omnipickle.dumps({"a": 1})
    with pytest.raises(omnipickle.SignatureError):
        omnipickle.loads(data, key=b"k" * 32)
    with pytest.raises(ValueError, match="resources"):
        omnipickle.loads(data, resources={"root.x": 1})
    assert omnipickle.loads(data, restricted=True) == {"a": 1}
    raw = omnipickle.dumps({"a": 1}, raw=True)
    with pytest.raises(omnipickle.SignatureError):
        omnipickle.loads(raw, key=b"k" * 32)


def _with_python_minor(data: bytes, minor: int) -> bytes:
    """``data`` (a format-2 envelope) as if written by another Python minor version."""
    import zlib

    changed = bytearray(data)
    changed[7 + 12] = minor  # the minor version, after PROTO and BINBYTES (docs/format.md)
    extra_size = int.from_bytes(changed[7 + 20 : 7 + 24], "little")
    extra = bytes(changed[7 + 48 : 7 + 48 + extra_size])
    crc = zlib.crc32(extra, zlib.crc32(changed[7 : 7 + 44]))
    changed[7 + 44 : 7 + 48] = crc.to_bytes(4, "little")
    return bytes(changed)


def _adder_class() -> type:
    """A class that cannot be found by name: cloudpickle's reducer writes it."""

    class Adder:
        def add(self, x: int) -> int:
            return x + 3

    return Adder


_OFFSET = 3


@pytest.mark.parametrize(
    ("obj", "backends", "extra"),
    [
        (lambda x: x + _OFFSET, ("pickle",), set()),  # omnipickle rebuilds functions itself
        (_adder_class(), ("pickle", "cloudpickle"), {"versions"}),  # the fast path reads past
    ],
    ids=["function", "class"],
)
def test_code_by_value_loads_through_the_fast_path_as_through_the_general_one(
    obj: Any, backends: tuple[str, ...], extra: set[str]
) -> None:
    import sys

    data = omnipickle.dumps(obj)
    assert omnipickle.info(data).backends == backends
    assert set(omnipickle.info(data).extra) == extra
    assert omnipickle.info(data).by_value
    assert "cloudpickle" in sys.modules

    def call(loaded: Any) -> int:
        return int(loaded().add(1) if isinstance(loaded, type) else loaded(1))

    assert call(omnipickle.loads(data)) == 4
    assert call(omnipickle.loads(bytearray(data))) == 4
    other = _with_python_minor(data, sys.version_info[1] + 1)
    fast, general = _both(other)
    assert fast == general
    assert fast[0] == "IncompatiblePayloadError"
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x10
        fast, general = _both(bytes(damaged))
        assert fast[0] == general[0], i


def test_code_by_value_needs_the_cloudpickle_backend_registered(restore_registries: None) -> None:
    from omnipickle.backends import unregister_backend

    data = omnipickle.dumps(_adder_class())
    unregister_backend("cloudpickle")
    assert DEFAULTS.fast_bits == DEFAULTS.pickle_only
    fast, general = _both(data)
    assert fast == general
    assert fast[0] == "IncompatiblePayloadError"


# --- Serializer: options resolved once, registrations still seen -------------------------------


def test_a_serializer_writes_what_the_function_writes_with_the_same_options() -> None:
    key = b"s" * 32
    for held in ({}, {"protocol": 4}, {"compression": "gzip", "level": 1}, {"key": key}):
        serializer = omnipickle.Serializer(**held)
        obj = {"a": [1, 2], "f": 1.5}
        data = serializer.dumps(obj)
        if "key" not in held:  # a signature is over the same bytes; compare the rest
            assert data == omnipickle.dumps(obj, **held)
        assert serializer.loads(data) == obj
        assert omnipickle.loads(data, key=held.get("key")) == obj


def test_a_serializer_sees_a_codec_replaced_after_its_first_call(
    restore_registries: None,
) -> None:
    class Marked(GzipCodec):
        calls = 0

        def compress(self, data: Any, level: int | None) -> bytes:
            Marked.calls += 1
            return super().compress(data, level)

    serializer = omnipickle.Serializer(compression="gzip")
    first = serializer.dumps([1])
    register_codec("gzip", Marked(), replace=True)
    second = serializer.dumps([1])
    assert Marked.calls == 1
    assert omnipickle.loads(first) == omnipickle.loads(second) == [1]


def test_a_serializer_with_load_options_applies_them() -> None:
    data = omnipickle.dumps(lambda: 1)
    restricted = omnipickle.Serializer(restricted=True)
    for _ in range(2):  # the second call uses what the first resolved
        with pytest.raises(omnipickle.UnsafePayloadError):
            restricted.loads(data)
    key = b"t" * 32
    signed = omnipickle.Serializer(restricted=True, key=key)
    assert signed.loads(signed.dumps(lambda: 2))() == 2


def test_our_own_errors_from_a_reconstructor_keep_their_cause(tmp_path: Any) -> None:
    path = tmp_path / "gone.txt"
    path.write_text("x")
    with path.open() as f:
        data = omnipickle.dumps(f)
    path.unlink()
    for attempt in (data, bytearray(data)):  # the fast path and the general one
        with pytest.raises(omnipickle.UnpicklingError) as info:
            omnipickle.loads(attempt)
        assert info.value.__cause__ is not info.value
        assert isinstance(info.value.__cause__, FileNotFoundError)


# --- small graphs with instances of importable classes ------------------------------------------

from helpers import Plain, Slotted, WithState  # noqa: E402


def _instances() -> list[Any]:
    return [
        Plain(1, "a"),
        [Plain(i, None) for i in range(5)],
        {"job": Plain(2, {"k": (1, 2)}), "n": 3},
        WithState([4, 5]),
    ]


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("index", range(4))
def test_small_graphs_of_instances_are_what_the_general_path_writes(
    index: int, protocol: int
) -> None:
    obj = _instances()[index]
    assert plain_dumps(obj, protocol) is not None  # the fast path took it
    assert omnipickle.dumps(obj, protocol) == _general(obj, protocol)
    assert omnipickle.loads(omnipickle.dumps(obj, protocol)) == obj


def test_instances_the_fast_path_must_leave_to_the_general_path() -> None:
    import socket
    import types

    class Local:  # not importable: by value
        pass

    with socket.socket() as sock:
        cases = [
            Slotted(1),  # no __dict__ to look into
            Plain(Local(), 1),
            Plain(threading.Lock(), 1),  # recreated by auto
            Plain(sock, 1),  # refused by auto
            Plain(types.MethodType(lambda self: 1, Plain(0, 0)), 1),  # a method by value
            Plain("__main__", 1),  # the marker as data: redone, same bytes
            Plain([Plain(i, i) for i in range(MAX_NODES)], 0),  # past the budget
        ]
        for obj in cases[:-2]:
            assert plain_dumps(obj, 5) is None, obj
        # The marker as data is data: taken, and the bytes are the general path's.
        assert plain_dumps(cases[-2], 5) == pickle.dumps(cases[-2], 5)
        assert omnipickle.dumps(cases[-2]) == _general(cases[-2], 5)
        with pytest.raises(omnipickle.PicklingError, match="socket"):
            omnipickle.dumps(cases[3])
    back = omnipickle.loads(omnipickle.dumps(cases[1]))
    assert type(back.a).__name__ == "Local"
    assert omnipickle.loads(omnipickle.dumps(cases[2])).a.acquire(blocking=False)


def test_a_class_registered_to_go_by_value_is_not_written_by_name() -> None:
    import cloudpickle

    import helpers

    cloudpickle.register_pickle_by_value(helpers)
    try:
        obj = Plain(1, 2)
        assert plain_dumps(obj, 5) is None
        assert omnipickle.info(omnipickle.dumps(obj)).by_value
    finally:
        cloudpickle.unregister_pickle_by_value(helpers)
    assert plain_dumps(Plain(1, 2), 5) is not None


def test_code_by_value_with_this_processs_versions_skips_the_general_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import omnipickle.api as api

    data = omnipickle.dumps(lambda x: x * 3)

    def general(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the general reader was used")

    monkeypatch.setattr(api, "unpickle", general)
    assert omnipickle.loads(data)(2) == 6
    from omnipickle.format import header as envelope

    h = envelope.parse_header(data)
    other = envelope.build_header(
        flags=h.flags,
        protocol=h.protocol,
        loader=h.loader,
        backend_bits=h.backend_bits,
        codec_id=h.codec_id,
        stored_length=h.stored_length,
        raw_length=h.raw_length,
        checksum=h.checksum,
        checksum_algorithm=h.checksum_algorithm,
        extra={"versions": {"cloudpickle": "0.0.1"}},
        lead=data[: h.lead],
    )
    with pytest.raises(AssertionError, match="general reader"):
        omnipickle.loads(other + data[h.payload_offset :])  # another version: named if it fails


def test_an_instance_of_an_unhashable_class_gets_a_pickling_error_with_its_path() -> None:
    """Its metaclass makes the class unhashable: pickle cannot look it up in a dispatch table
    and raises TypeError; so does omnipickle, as a PicklingError naming where it is."""

    class Meta(type):
        def __eq__(cls, other: object) -> bool:
            return cls is other

        __hash__ = None  # type: ignore[assignment]

    class Unhashable(metaclass=Meta):
        pass

    for obj, path in (
        (Unhashable(), "root"),
        ({"a": Unhashable()}, "root['a']"),
        ([1, Unhashable()], "root[1]"),
    ):
        with pytest.raises(omnipickle.PicklingError) as info:
            omnipickle.dumps(obj)
        assert isinstance(info.value, TypeError)
        assert info.value.path == path


# Importable classes whose instances pickle does not write as their name and __dict__: the
# fast path must look at what their hooks wrote. A __main__ function, which pickle writes by
# name, has to go by value (so load where __main__ lacks it): run as a real __main__.
_HOOKS_MODULE = """
import copyreg, sys

def _main_function():
    return sys.modules["__main__"].seven

class Plain:
    def __init__(self, a, b):
        self.a, self.b = a, b

class Reduces(Plain):
    def __reduce__(self):
        return (_main_function(), ())

class State(Plain):
    def __getstate__(self):
        return {"a": _main_function(), "b": 1}

class Slots(Plain):
    __slots__ = ("hidden",)

class Registered(Plain):
    pass

copyreg.pickle(Registered, lambda p: (_main_function(), ()))
"""

_HOOKS_DUMP = """
import sys
sys.path.insert(0, sys.argv[1])
import omnipickle
from hooked import Plain, Reduces, Registered, Slots, State

def seven():
    return 7

slots = Slots(1, 2)
slots.hidden = seven
keyed = Plain(1, 2)
keyed.__dict__[seven] = 3
cases = {
    "reduce": Reduces(1, 2), "getstate": State(1, 2), "slot": slots, "copyreg": Registered(1, 2),
    "key": keyed, "deep key": Plain({(1, seven): 1}, 2),
}
for name, obj in cases.items():
    print(name + "=" + omnipickle.dumps(obj).hex())
"""

_HOOKS_LOAD = """
import sys
sys.path.insert(0, sys.argv[1])
import omnipickle
for line in sys.stdin.read().splitlines():
    name, payload = line.split("=")
    back = omnipickle.loads(bytes.fromhex(payload))
    if name in ("reduce", "copyreg"):
        got = back
    elif name == "getstate":
        got = back.a()
    elif name == "slot":
        got = back.hidden()
    elif name == "key":
        got = [k() for k in back.__dict__ if callable(k)][0]
    else:
        got = [k[1]() for k in back.a][0]
    print(name, got)
"""


def test_instances_whose_hooks_write_more_than_their_dict_carry_main_code(tmp_path: Any) -> None:
    import subprocess
    import sys

    (tmp_path / "hooked.py").write_text(_HOOKS_MODULE)
    dumper = tmp_path / "dumper.py"
    dumper.write_text(_HOOKS_DUMP)
    dumped = check_python(str(dumper), str(tmp_path))
    loaded = subprocess.run(
        [sys.executable, "-c", _HOOKS_LOAD, str(tmp_path)],
        input=dumped,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split("\n")[:-1] == [
        f"{name} 7" for name in ("reduce", "getstate", "slot", "copyreg", "key", "deep key")
    ]


def test_instances_of_plain_classes_are_written_as_pickle_writes_them() -> None:
    obj = Plain(Plain("x", [1.5, None]), {"k": (Plain(0, b"y"),)})
    assert plain_dumps(obj, 5) == pickle.dumps(obj, 5)
    assert omnipickle.dumps(obj) == _general(obj, 5)
    assert omnipickle.loads(omnipickle.dumps(obj)) == obj


# Restricted loads of a small plain envelope skip the general reader: same results, same errors.
def _restricted_outcome(data: Any, **options: Any) -> tuple[str, Any]:
    try:
        return ("ok", omnipickle.loads(data, restricted=True, **options))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def _both_restricted(data: bytes, **options: Any) -> tuple[Any, Any]:
    return _restricted_outcome(data, **options), _restricted_outcome(bytearray(data), **options)


@pytest.mark.parametrize("obj", PLAIN, ids=lambda o: type(o).__name__)
def test_restricted_loads_of_a_plain_envelope_are_the_general_paths(obj: Any) -> None:
    data = omnipickle.dumps(obj)
    fast = _outcome(lambda: omnipickle.loads(data, restricted=True))
    general = _outcome(lambda: omnipickle.loads(bytearray(data), restricted=True))
    assert fast == general  # compared by repr: a graph with a cycle cannot be compared by ==
    assert fast[0] == "ok"


def test_restricted_loads_of_instances_and_refused_globals_are_the_general_paths() -> None:
    allowed = omnipickle.dumps(Plain(1, [2, "x"]))
    for options in ({}, {"allow": "helpers.*"}, {"allow": ["helpers.Plain"]}, {"allow": [1]}):
        fast, general = _both_restricted(allowed, **options)
        assert fast == general, options
    assert _both_restricted(allowed)[0][0] == "UnsafePayloadError"
    assert _both_restricted(allowed, allow="helpers.*")[0][0] == "ok"
    refused = omnipickle.dumps(pickle.PickleBuffer, raw=False)
    fast, general = _both_restricted(refused)
    assert fast == general and fast[0] == "UnsafePayloadError"


def test_every_damaged_byte_of_a_restricted_fast_payload_gets_the_general_paths_error() -> None:
    data = omnipickle.dumps({"id": 7, "name": "job-7", "ok": True})
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x01
        fast, general = _both_restricted(bytes(damaged))
        assert fast == general, i


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_stream_in_a_crafted_plain_envelope_is_refused_on_both_paths(
    tmp_path: Path, name: str
) -> None:
    # An attacker wraps a hostile stream in a well-formed plain envelope (valid checksums), the
    # kind the restricted fast path takes: it refuses it exactly as the general path does.
    marker = tmp_path / "marker"
    stream = pickle.dumps(HOSTILE[name](marker), 5)
    data = plain_payload(stream, 5, PICKLE_LOADER_ID, PICKLE_BIT)
    assert omnipickle.info(data).checksum_ok  # well formed: it reaches the unpickler
    fast, general = _both_restricted(data)
    assert fast == general
    assert fast[0] == "UnsafePayloadError"
    assert REFUSED_NAME[name] in fast[1]
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("size", [0, 100, SMALL - 20, SMALL + 1000], ids=lambda n: f"{n}B")
def test_the_plain_data_envelope_is_plain_payloads_byte_for_byte(protocol: int, size: int) -> None:
    from omnipickle.format.header import PlainEnvelopes

    envelopes = PlainEnvelopes(PICKLE_LOADER_ID, PICKLE_BIT)
    stream = pickle.dumps(b"x" * size, protocol)
    for _ in range(2):  # packed the first time, looked up the second
        wrapped = envelopes.wrap(stream, protocol)
        assert wrapped == plain_payload(stream, protocol, PICKLE_LOADER_ID, PICKLE_BIT)
        assert omnipickle.loads(wrapped) == b"x" * size
        assert omnipickle.info(wrapped).checksum_ok
