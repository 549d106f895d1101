"""Restricted loading: ``restricted_loads``, ``RestrictedUnpickler``, ``loads(restricted=True)``.

Allow-listed data only; code only from payloads whose signature verified; hostile payloads are
refused before anything runs; damaged streams raise the documented errors.
"""

from __future__ import annotations

import collections
import copyreg
import fractions
import io
import os
import pathlib
import pickle
import struct
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import dill
import numpy as np
import pytest

import omnipickle
from helpers import Plain, WithState
from omnipickle._reconstruct import load_dill, make_bounded_semaphore
from omnipickle.errors import (
    CorruptPayloadError,
    TruncatedPayloadError,
    UnpicklingError,
    UnsafePayloadError,
)
from omnipickle.security import (
    DEFAULT_ALLOW,
    TRUSTED_ALLOW,
    RestrictedUnpickler,
    restricted_loads,
    scan,
)
from payloads import HOSTILE, REFUSED_NAME, Call, plain_data, stream_of, touch

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
KEY = b"restricted-key-0123456789"


def _bare(obj: Any, protocol: int, **options: Any) -> Any:
    return restricted_loads(pickle.dumps(obj, protocol), **options)


def _enveloped(obj: Any, protocol: int, **options: Any) -> Any:
    return omnipickle.loads(omnipickle.dumps(obj, protocol=protocol), restricted=True, **options)


# Both ways in: a bare stream through restricted_loads, an omnipickle payload through loads.
LOADERS: dict[str, Callable[..., Any]] = {"restricted_loads": _bare, "loads": _enveloped}


# --- restricted loading: what the default allow-list accepts -------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("load", LOADERS.values(), ids=LOADERS.keys())
def test_default_allow_list_loads_plain_data(load: Callable[..., Any], protocol: int) -> None:
    data = plain_data()
    assert load(data, protocol) == data


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_default_allow_list_loads_concrete_paths(protocol: int) -> None:
    path = pathlib.Path("/tmp/x")
    assert restricted_loads(pickle.dumps(path, protocol)) == path


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_default_allow_list_loads_numpy_arrays_dtypes_and_scalars(protocol: int) -> None:
    np = pytest.importorskip("numpy")
    data = [
        np.arange(6, dtype="<i4").reshape(2, 3),
        np.zeros(3, dtype=[("a", "f8"), ("b", "u1")]),
        np.float64(1.5),
        np.dtype(">u2"),
        np.array([[1.0, 2.0]], order="F"),
    ]
    loaded = restricted_loads(pickle.dumps(data, protocol))
    assert [a.tolist() if hasattr(a, "tolist") else a for a in loaded] == [
        a.tolist() if hasattr(a, "tolist") else a for a in data
    ]
    assert loaded[0].dtype == data[0].dtype and loaded[1].dtype == data[1].dtype


def test_numpy_object_arrays_are_refused_even_with_their_elements_allowed() -> None:
    np = pytest.importorskip("numpy")
    array = np.array([Plain(1, 2)], dtype=object)
    for allow in ((), (f"{Plain.__module__}.Plain",)):
        with pytest.raises(UnsafePayloadError, match=r"numpy\.dtype\('O8'\)"):
            restricted_loads(pickle.dumps(array), allow=allow)


def test_recreated_synchronization_primitives_load_restricted() -> None:
    primitives = [
        threading.Lock(),
        threading.RLock(),
        threading.Event(),
        threading.Condition(),
        threading.Semaphore(2),
        threading.BoundedSemaphore(3),
        threading.Barrier(2),
    ]
    loaded = restricted_loads(stream_of(omnipickle.dumps(primitives)))
    assert [type(p) for p in loaded] == [type(p) for p in primitives]
    assert loaded[5]._value == 3


def test_bounded_semaphore_with_a_huge_bound_loads_at_once() -> None:
    """The reconstructor loops ``initial - value`` times; the restricted stand-in does not."""
    sem = restricted_loads(pickle.dumps(Call(make_bounded_semaphore, 0, 10**15)))
    assert sem._value == 0
    assert sem._initial_value == 10**15


def test_bounded_semaphore_with_a_counter_above_its_bound_is_refused() -> None:
    with pytest.raises(UnsafePayloadError, match="make_bounded_semaphore"):
        restricted_loads(pickle.dumps(Call(make_bounded_semaphore, 5, 1)))


@pytest.mark.parametrize("encoding", ["rot13", "utf-8", "zlib_codec"])
def test_codecs_encode_is_accepted_only_as_pickle_writes_it(encoding: str) -> None:
    assert restricted_loads(pickle.dumps(b"\x00\xff", 2)) == b"\x00\xff"
    with pytest.raises(UnsafePayloadError, match=r"codecs\.encode"):
        restricted_loads(pickle.dumps(Call(__import__("_codecs").encode, "abc", encoding), 2))


def test_default_allow_list_leaves_out_code_and_lookup_builtins() -> None:
    for name in ("eval", "exec", "getattr", "setattr", "__import__", "open", "type", "compile"):
        assert f"builtins.{name}" not in DEFAULT_ALLOW
    assert "omnipickle._reconstruct.load_dill" not in DEFAULT_ALLOW
    assert "omnipickle._reconstruct.reopen_file" not in DEFAULT_ALLOW
    assert "omnipickle._reconstruct.load_dill" in TRUSTED_ALLOW


# --- restricted loading: allow entries ---------------------------------------------------------


@pytest.fixture
def local_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable package ``localpkg`` whose module imports things from elsewhere."""
    package = tmp_path / "localpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(
        "import os\n"
        "from os import system\n"
        "REGISTRY = {}\n"
        "class Good:\n"
        "    def __init__(self, value):\n"
        "        self.value = value\n"
        "    def __eq__(self, other):\n"
        "        return type(other) is Good and other.value == self.value\n"
        "    class Inner:\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield "localpkg"
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "localpkg"]:
            del sys.modules[name]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("allow", [("helpers.Plain", "helpers.WithState"), ("helpers.*",)])
@pytest.mark.parametrize("load", LOADERS.values(), ids=LOADERS.keys())
def test_allowed_classes_load_by_exact_name_or_prefix(
    load: Callable[..., Any], protocol: int, allow: tuple[str, ...]
) -> None:
    data = [Plain(1, "a"), WithState([1, 2])]
    assert load(data, protocol, allow=allow) == data


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("load", LOADERS.values(), ids=LOADERS.keys())
def test_a_class_outside_the_allow_list_is_refused_by_name(
    load: Callable[..., Any], protocol: int
) -> None:
    with pytest.raises(UnsafePayloadError, match=r"refused the global helpers\.Plain: "):
        load(Plain(1, 2), protocol, allow=("helpers.WithState",))


def test_the_first_refused_global_is_the_one_named() -> None:
    data = pickle.dumps([Plain(1, 2), WithState([1])], 4)
    with pytest.raises(UnsafePayloadError, match=r"helpers\.Plain") as info:
        restricted_loads(data)
    assert "WithState" not in str(info.value)


def test_a_prefix_covers_its_submodules_and_nested_classes(local_package: str) -> None:
    import localpkg.mod

    data = pickle.dumps([localpkg.mod.Good(1), localpkg.mod.Good.Inner], 4)
    loaded = restricted_loads(data, allow=("localpkg.*",))
    assert loaded[0] == localpkg.mod.Good(1) and loaded[1] is localpkg.mod.Good.Inner
    assert restricted_loads(data, allow=("localpkg.mod.Good.*", "localpkg.mod.Good"))


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("system", "defined in posix"),  # from os import system
        ("os", "it is a module"),  # import os
        ("Good.__init__.__globals__", "dunder"),
    ],
)
def test_a_prefix_does_not_cover_what_the_module_imports_or_dunder_paths(
    local_package: str, name: str, why: str
) -> None:
    data = b"\x80\x04\x8c\x0clocalpkg.mod\x8c" + bytes([len(name)]) + name.encode() + b"\x93."
    with pytest.raises(UnsafePayloadError, match=why):
        restricted_loads(data, allow=("localpkg.*",))


def test_an_exact_entry_allows_what_a_prefix_does_not(local_package: str) -> None:
    import localpkg.mod

    data = b"\x80\x04\x8c\x0clocalpkg.mod\x8c\x08REGISTRY\x93."
    assert restricted_loads(data, allow=("localpkg.mod.REGISTRY",)) is localpkg.mod.REGISTRY


@pytest.mark.parametrize(
    "entry",
    [
        "",
        " helpers.Plain",
        "helpers.Plain ",
        "helpers. Plain",
        "helpers.Plain\n",
        "*",
        "helpers*",
        "helpers.*.*",
        "helpers.P*",
        ".*",
        "*.Plain",
        "helpers..Plain",
        ".helpers.Plain",
        "helpers.Plain.",
        "helpers",
        "helpers.Pl-ain",
    ],
)
def test_a_malformed_allow_entry_raises_value_error(entry: str) -> None:
    with pytest.raises(ValueError, match="allow entry"):
        restricted_loads(pickle.dumps(1), allow=(entry,))
    with pytest.raises(ValueError, match="allow entry"):
        scan(pickle.dumps(1), allow=(entry,))
    with pytest.raises(ValueError, match="allow entry"):
        RestrictedUnpickler(io.BytesIO(b""), allow=["helpers.Plain", entry])
    with pytest.raises(ValueError, match="allow entry"):
        omnipickle.loads(omnipickle.dumps(1), restricted=True, allow=(entry,))


@pytest.mark.parametrize("allow", ["helpers.Plain", b"helpers.Plain", 42, [b"helpers.Plain"]])
def test_an_allow_list_that_is_not_an_iterable_of_str_raises_type_error(allow: Any) -> None:
    with pytest.raises(TypeError, match="allow"):
        restricted_loads(pickle.dumps(1), allow=allow)
    if not isinstance(allow, str):  # loads takes a single name as a one-name list
        with pytest.raises(TypeError, match="allow"):
            omnipickle.loads(omnipickle.dumps(1), restricted=True, allow=allow)


def test_a_malformed_allow_entry_raises_even_for_an_empty_stream() -> None:
    with pytest.raises(ValueError, match="allow entry"):
        restricted_loads(b"", allow=("*",))


def test_trusted_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="trusted"):
        restricted_loads(pickle.dumps(1), trusted="yes")  # type: ignore[arg-type]


# --- restricted loading: hostile payloads are refused, and nothing runs --------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pickle_is_refused_and_has_no_side_effect(
    tmp_path: Path, name: str, protocol: int
) -> None:
    marker = tmp_path / "marker"
    data = pickle.dumps(HOSTILE[name](marker), protocol)
    with pytest.raises(UnsafePayloadError, match=REFUSED_NAME[name].replace(".", r"\.")):
        restricted_loads(data)
    with pytest.raises(UnsafePayloadError):
        restricted_loads(data, trusted=True)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "getattr chain"])
def test_the_hostile_payloads_do_run_when_loaded_unrestricted(tmp_path: Path, name: str) -> None:
    """The payloads above are live: plain pickle.loads creates the marker."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(HOSTILE[name](marker)))
    assert marker.exists()


def test_a_hand_written_reduce_of_posix_system_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    data = b"cposix\nsystem\n(V" + touch(marker).encode() + b"\ntR."
    with pytest.raises(UnsafePayloadError, match=r"posix\.system"):
        restricted_loads(data)
    assert not marker.exists()


@pytest.mark.parametrize("trusted", [False, True])
def test_hostile_pickle_inside_a_dill_blob_is_refused(tmp_path: Path, trusted: bool) -> None:
    marker = tmp_path / "marker"
    data = pickle.dumps(Call(load_dill, dill.dumps(Call(os.system, touch(marker)))))
    expected = r"posix\.system" if trusted else r"load_dill: .*trusted=True"
    with pytest.raises(UnsafePayloadError, match=expected):
        restricted_loads(data, trusted=trusted)
    assert not marker.exists()


def test_by_value_code_inside_a_dill_blob_is_refused_untrusted(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    inner = dill.dumps(Call(lambda: os.system(touch(marker))), recurse=True)
    with pytest.raises(UnsafePayloadError, match="load_dill"):
        restricted_loads(pickle.dumps(Call(load_dill, inner)))
    assert not marker.exists()


def test_a_dill_blob_of_data_loads_when_trusted() -> None:
    data = pickle.dumps(Call(load_dill, dill.dumps({"a": [1, 2]})))
    assert restricted_loads(data, trusted=True) == {"a": [1, 2]}


@pytest.mark.parametrize("trusted", [False, True])
def test_hostile_global_inside_a_cloudpickle_payload_is_refused(
    tmp_path: Path, trusted: bool
) -> None:
    marker = tmp_path / "marker"
    data = cloudpickle.dumps([lambda: 1, Call(os.system, touch(marker))])
    with pytest.raises(UnsafePayloadError):
        restricted_loads(data, trusted=trusted)
    assert not marker.exists()


def test_by_value_function_called_while_loading_is_refused_untrusted(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    data = cloudpickle.dumps(Call(lambda: os.system(touch(marker))))
    with pytest.raises(UnsafePayloadError, match=r"cloudpickle\.cloudpickle\."):
        restricted_loads(data)
    assert not marker.exists()


def test_a_persistent_id_is_refused() -> None:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf)
    pickler.persistent_id = lambda obj: "row-42" if obj == "x" else None  # type: ignore[method-assign]
    pickler.dump(["x"])
    with pytest.raises(UnsafePayloadError, match="persistent id"):
        restricted_loads(buf.getvalue())


@pytest.mark.parametrize(
    "stream",
    [
        # BUILD with slot state on the class itself: collections.Counter.most_common = list
        b"\x80\x04\x8c\x0bcollections\x8c\x07Counter\x93N}\x8c\x0bmost_common"
        b"\x8c\x08builtins\x8c\x04list\x93s\x86b.",
        # BUILD with a dict state on an allowed function
        b"\x80\x04\x8c\x07copyreg\x8c\x0e_reconstructor\x93}\x8c\x01xK\x01sb.",
    ],
)
def test_a_payload_cannot_change_an_allowed_class_or_function(stream: bytes) -> None:
    before = (dict(vars(collections.Counter)), dict(copyreg._reconstructor.__dict__))
    with pytest.raises(UnsafePayloadError, match="tries to change"):
        restricted_loads(stream)
    assert before == (dict(vars(collections.Counter)), dict(copyreg._reconstructor.__dict__))


def test_a_payload_cannot_add_items_to_an_allowed_global_dict(local_package: str) -> None:
    import localpkg.mod

    stream = b"\x80\x04\x8c\x0clocalpkg.mod\x8c\x08REGISTRY\x93\x8c\x05admin\x88s."
    with pytest.raises(UnsafePayloadError, match="tries to change"):
        restricted_loads(stream, allow=("localpkg.mod.REGISTRY",))
    assert localpkg.mod.REGISTRY == {}


def test_restore_state_cannot_target_an_allowed_global() -> None:
    from omnipickle._reconstruct import restore_state

    stream = pickle.dumps(Call(restore_state, collections.Counter, (({"x": 1}, None), ())))
    with pytest.raises(UnsafePayloadError, match="tries to change"):
        restricted_loads(stream)
    assert "x" not in vars(collections.Counter)
    assert not scan(stream).accepted


def test_transient_attributes_come_back_as_none_in_restricted_loading(
    local_package: str,
) -> None:
    import localpkg.mod

    (Path(localpkg.mod.__file__).parent / "conn.py").write_text(
        "import omnipickle\n"
        "class Conn(omnipickle.TransientMixin):\n"
        "    __transient__ = ('lock',)\n"
        "    def __init__(self, lock):\n"
        "        self.host = 'db'\n"
        "        self.lock = lock\n"
    )
    from localpkg.conn import Conn

    stream = stream_of(omnipickle.dumps(Conn(threading.Lock())))
    loaded = restricted_loads(stream, allow=("localpkg.conn.Conn",))
    assert (loaded.host, loaded.lock) == ("db", None)


def test_a_reattached_resource_cannot_be_changed_by_the_payload() -> None:
    from omnipickle._reconstruct import REATTACH, dropped_resource

    live = Plain("connection", None)
    token = REATTACH.set([live])
    try:
        ok = restricted_loads(pickle.dumps([Call(dropped_resource, 0)]))
        assert ok == [live] and ok[0] is live
        hostile = b"\x80\x04\x8c\x17omnipickle._reconstruct\x8c\x10dropped_resource\x93K\x00\x85R"
        hostile += b"}\x8c\x01a\x8c\x06hacked\x94sb."
        with pytest.raises(UnsafePayloadError, match="tries to change"):
            restricted_loads(hostile)
    finally:
        REATTACH.reset(token)
    assert live.a == "connection"


def test_an_extension_code_goes_through_the_allow_list_even_when_cached(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    copyreg.add_extension("posix", "system", 0xF0)
    try:
        data = b"\x80\x02\x82\xf0(X" + len(touch(marker)).to_bytes(4, "little")
        data += touch(marker).encode() + b"tR."
        pickle.loads(b"\x80\x02\x82\xf0.")  # fills pickle's extension cache with os.system
        with pytest.raises(UnsafePayloadError, match=r"posix\.system"):
            restricted_loads(data)
    finally:
        copyreg.remove_extension("posix", "system", 0xF0)
    assert not marker.exists()


# --- restricted loading: code by value needs trusted=True -----------------------------------------


def _closure() -> Callable[[int], int]:
    offset = 10
    return lambda x: x + offset


@pytest.mark.parametrize("backend", ["auto", "cloudpickle", "dill"])
def test_by_value_code_is_refused_unless_trusted(backend: str) -> None:
    payload = omnipickle.dumps(_closure(), backend=backend)
    with pytest.raises(UnsafePayloadError, match=r"trusted=True"):
        restricted_loads(stream_of(payload))
    # dill gives a function of an importable module that module's namespace by name.
    allow = (f"{__name__}.__dict__",) if backend == "dill" else ()
    assert restricted_loads(stream_of(payload), trusted=True, allow=allow)(1) == 11


def test_by_value_classes_load_when_trusted() -> None:
    import enum

    class Color(enum.Enum):
        RED = 1

    class Point:
        __slots__ = ("x",)

        def __init__(self, x: int) -> None:
            self.x = x

    loaded = restricted_loads(stream_of(omnipickle.dumps([Color.RED, Point(3)])), trusted=True)
    assert loaded[0].name == "RED" and loaded[1].x == 3


def test_trusted_still_refuses_globals_outside_both_lists(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = stream_of(omnipickle.dumps([lambda: 1, Call(os.system, touch(marker))]))
    with pytest.raises(UnsafePayloadError, match=r"posix\.system"):
        restricted_loads(payload, trusted=True)
    assert not marker.exists()


# --- restricted loading: damaged streams ---------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (b"", TruncatedPayloadError),
        (pickle.dumps(plain_data())[:-7], TruncatedPayloadError),
        (b"\x80\x05\x96" + (1 << 40).to_bytes(8, "little") + b"abc.", TruncatedPayloadError),
        (b"this is not a pickle", CorruptPayloadError),
        (b"\x80\x04K\x01K\x02\x93.", CorruptPayloadError),  # STACK_GLOBAL of two ints
        (pickle.dumps(Call(fractions.Fraction, 1, 0)), UnpicklingError),
        (b"\x80\x05\x95garbage", TruncatedPayloadError),  # a frame header cut short
        (b"\x80\x02K", TruncatedPayloadError),  # an argument cut short
        (b".", CorruptPayloadError),  # STOP at the end of the data, with nothing to return
        (b"N(.", CorruptPayloadError),
        (b"\x80\x05\xff", CorruptPayloadError),  # an unknown opcode, last in the data
        # A string that runs past the end of its (complete) frame, with data after the frame.
        (b"\x80\x05\x95" + (3).to_bytes(8, "little") + b"\x8c\x05abcdefN.", CorruptPayloadError),
    ],
)
def test_a_bad_stream_raises_an_unpickling_error(stream: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        restricted_loads(stream)
    if error is CorruptPayloadError:
        assert not isinstance(info.value, TruncatedPayloadError)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_cut_of_a_stream_is_a_truncation_for_restricted_loads_and_scan(
    protocol: int,
) -> None:
    """Decided by where the reader stood (at the end of the data), whatever failed there."""
    data = pickle.dumps(
        {"a": [1, -2, 2.5, "t\u00e9xt", None, True, (1, (2,))], "n": 2**70}, protocol
    )
    for end in range(1, len(data)):
        with pytest.raises(TruncatedPayloadError):
            restricted_loads(data[:end])
        with pytest.raises(TruncatedPayloadError):
            scan(data[:end])


def test_a_huge_memo_index_costs_no_memory() -> None:
    """The C unpickler would allocate and clear 4 GB for this 8-byte stream."""
    assert restricted_loads(b"Nr" + (1 << 28).to_bytes(4, "little") + b".") is None


def test_a_str_is_not_a_stream() -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        restricted_loads("N.")  # type: ignore[arg-type]


# --- loads(..., restricted=True): the envelope path ---------------------------------------------


def test_malicious_payload_is_refused_without_side_effect(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for data in (
        pickle.dumps(Call(os.system, touch(marker))),
        omnipickle.dumps(Call(os.system, touch(marker))),
        omnipickle.dumps({"ok": 1, "bad": [Call(os.system, touch(marker))]}, compression="zstd"),
    ):
        with pytest.raises(omnipickle.UnsafePayloadError, match="system"):
            omnipickle.loads(data, restricted=True)
    assert not marker.exists()


def test_code_by_value_needs_a_verified_signature() -> None:
    unsigned = omnipickle.dumps(lambda x: x + 1)
    with pytest.raises(omnipickle.UnsafePayloadError):
        omnipickle.loads(unsigned, restricted=True)
    signed = omnipickle.dumps(lambda x: x + 1, key=KEY)
    with pytest.raises(omnipickle.UnsafePayloadError):
        omnipickle.loads(signed, restricted=True)  # signed, but not verified: no key given
    assert omnipickle.loads(signed, restricted=True, key=KEY)(1) == 2


def test_allow_without_restricted_is_refused() -> None:
    with pytest.raises(ValueError, match="restricted=True"):
        omnipickle.loads(omnipickle.dumps(1), allow=["helpers.Plain"])


def test_dill_handled_parts_are_restricted_too() -> None:
    target = Plain(1, 2)
    data = omnipickle.dumps({"t": target, "r": weakref.ref(target)}, key=KEY)
    with pytest.raises(omnipickle.UnsafePayloadError):
        omnipickle.loads(data, restricted=True, allow=["helpers.Plain"])
    out = omnipickle.loads(data, restricted=True, allow=["helpers.Plain"], key=KEY)
    assert out["r"]() is out["t"]


def test_numpy_arrays_and_sections_load_restricted(tmp_path: Path) -> None:
    arrays = {"a": np.arange(100_000.0), "b": np.ones(3, dtype=np.int8)}
    omnipickle.dump(arrays, tmp_path / "a.bin")
    out = omnipickle.load(tmp_path / "a.bin", restricted=True)
    assert np.array_equal(out["a"], arrays["a"]) and np.array_equal(out["b"], arrays["b"])
    out = omnipickle.loads(omnipickle.dumps(arrays), restricted=True)
    assert np.array_equal(out["a"], arrays["a"])


def test_restricted_file_object_of_plain_pickles(tmp_path: Path) -> None:
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with open(path, "rb") as f:
        assert omnipickle.load(f, restricted=True) == {"a": 1}


def test_serializer_holds_restricted_options() -> None:
    s = omnipickle.Serializer(restricted=True, allow=["helpers.Plain"])
    assert s.loads(omnipickle.dumps(Plain(3, 4))) == Plain(3, 4)
    with pytest.raises(omnipickle.UnsafePayloadError):
        s.loads(omnipickle.dumps(lambda: 1))


def test_a_signed_thread_that_is_not_running_loads_restricted_with_its_key() -> None:
    import threading

    key = b"r" * 32
    thread = threading.Thread(target=lambda x: x, args=("hi",), name="later", daemon=True)
    data = omnipickle.dumps(thread, key=key)
    back = omnipickle.loads(data, restricted=True, key=key)
    assert isinstance(back, threading.Thread) and back.name == "later" and back.daemon
    with pytest.raises(omnipickle.UnsafePayloadError, match="make_thread"):
        omnipickle.loads(omnipickle.dumps(thread), restricted=True)


def test_the_resource_and_session_errors_are_exported() -> None:
    assert issubclass(omnipickle.ResourceReopenError, omnipickle.UnpicklingError)
    assert issubclass(omnipickle.NotASessionError, omnipickle.UnpicklingError)


# --- allow-lists read once; large buffers copied once ---------------------------------------


def _names(*names: str) -> Iterator[str]:
    yield from names


def test_an_allow_list_given_as_an_iterator_is_read_once_and_kept() -> None:
    # restricted_loads builds a second unpickler after the fast path declines (WithState has
    # a __setstate__), and a verified scan parses the list a second time: an iterator must
    # give both the same entries.
    stream = pickle.dumps(WithState([1, 2]), protocol=5)
    assert restricted_loads(stream, allow=_names("helpers.WithState")).total == 3
    signed = omnipickle.dumps(WithState([1, 2]), key=KEY)
    assert scan(signed, key=KEY, allow=_names("helpers.WithState")).refused == ()
    assert scan(signed, key=KEY).refused == ("helpers.WithState",)
    data = omnipickle.dumps(Plain(1, 2))
    assert omnipickle.loads(data, restricted=True, allow=_names("helpers.Plain")) == Plain(1, 2)
    serializer = omnipickle.Serializer(restricted=True, allow=_names("helpers.Plain"))
    assert serializer.loads(data) == serializer.loads(data) == Plain(1, 2)


def test_the_same_allow_list_is_parsed_once_over_many_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from omnipickle.security import policy

    calls = []
    original = policy.parse_allow

    def counting(allow: Any) -> Any:
        calls.append(allow)
        return original(allow)

    monkeypatch.setattr(policy, "parse_allow", counting)
    allow = ("helpers.Plain", f"helpers.Unique{os.getpid()}x{id(calls)}")
    data = omnipickle.dumps(Plain(1, 2))
    for _ in range(5):
        assert omnipickle.loads(data, restricted=True, allow=allow) == Plain(1, 2)
        assert omnipickle.loads(data, restricted=True, allow=list(allow)) == Plain(1, 2)
    assert len(calls) == 1


def _peak(func: Callable[[], Any]) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


BIG = 8 << 20


def test_a_large_bytearray_on_the_checked_path_is_copied_once() -> None:
    # A tuple keeps the stream off the fast path; the bytearray lies outside any frame.
    stream = pickle.dumps((bytearray(b"\x07" * BIG),), protocol=5)
    loaded: list[Any] = []
    peak = _peak(lambda: loaded.append(restricted_loads(stream)))
    assert loaded[0] == (bytearray(b"\x07" * BIG),) and type(loaded[0][0]) is bytearray
    assert peak < 1.5 * BIG  # the result, and no second copy of it


@pytest.mark.parametrize("size", [0, 1, 100, 70_000])
def test_bytearrays_load_restricted_in_and_outside_frames_and_from_any_file(size: int) -> None:
    value = (bytearray(range(256)) * (size // 256 + 1))[:size]
    stream = pickle.dumps((value, b"after"), protocol=5)
    assert restricted_loads(stream) == (value, b"after")

    class ReadOnly:  # read and readline only: no readinto, no seek
        def __init__(self, data: bytes) -> None:
            self._file = io.BytesIO(data)
            self.read = self._file.read
            self.readline = self._file.readline

    assert RestrictedUnpickler(ReadOnly(stream)).load() == (value, b"after")

    class NoReadinto(ReadOnly):  # it can say its size, but not read into a buffer
        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.seek = self._file.seek
            self.tell = self._file.tell

    assert RestrictedUnpickler(NoReadinto(stream)).load() == (value, b"after")


class _NoSeek:
    """A file that reads (``read``, ``readline``, ``readinto``) but cannot seek or tell."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)
        self.read = self._file.read
        self.readline = self._file.readline
        self.readinto = self._file.readinto


def test_a_bytearray_cut_short_in_a_file_that_cannot_seek_is_truncated() -> None:
    stream = pickle.dumps((bytearray(BIG // 8),), protocol=5)

    with pytest.raises(TruncatedPayloadError, match="truncated"):
        RestrictedUnpickler(_NoSeek(stream[: len(stream) // 2])).load()


def test_a_crafted_bytearray_length_allocates_nothing_in_a_file_that_cannot_say_its_size() -> None:
    # 256 MiB claimed, 4 bytes there: a file with no seek cannot bound the length, so the
    # buffer must not be allocated before the bytes are read.
    stream = b"\x80\x05\x96" + struct.pack("<Q", 1 << 28) + b"abc."

    def load() -> None:
        with pytest.raises(TruncatedPayloadError, match="268435456 bytes, 4 there"):
            RestrictedUnpickler(_NoSeek(stream)).load()

    assert _peak(load) < 1 << 20


@pytest.mark.parametrize("kind", ["bytes", "memoryview"])
def test_a_restricted_load_of_a_large_payload_holds_at_most_two_copies_of_it(kind: str) -> None:
    # A checked-path payload (a tuple), given as bytes (the per-call path) or as a view (the
    # general reader): the stream without its header (one copy), then the result.
    data = omnipickle.dumps((b"\x01" * BIG,))
    given: Any = data if kind == "bytes" else memoryview(data)
    loaded: list[Any] = []
    peak = _peak(lambda: loaded.append(omnipickle.loads(given, restricted=True)))
    assert loaded[0] == (b"\x01" * BIG,)
    assert peak < 2.5 * BIG
