"""Restricted loading, static scanning and signature checks (omnipickle.security)."""

from __future__ import annotations

import collections
import copyreg
import datetime
import decimal
import fractions
import gzip
import io
import os
import pathlib
import pickle
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import dill
import pytest

import omnipickle
from conftest import check_python
from helpers import Plain, Slotted, WithState
from omnipickle._reconstruct import load_dill, make_bounded_semaphore
from omnipickle.codecs import get_codec
from omnipickle.errors import (
    CorruptPayloadError,
    SignatureError,
    TruncatedPayloadError,
    UnpicklingError,
    UnsafePayloadError,
)
from omnipickle.format import header as envelope
from omnipickle.security import (
    DEFAULT_ALLOW,
    TRUSTED_ALLOW,
    RestrictedUnpickler,
    restricted_loads,
    scan,
    verify_signature,
)

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
KEY = b"a key of at least sixteen bytes"


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


# --- restricted loading: what the default allow-list accepts -------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_default_allow_list_loads_plain_data(protocol: int) -> None:
    data = plain_data()
    assert restricted_loads(pickle.dumps(data, protocol)) == data


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


def test_numpy_object_arrays_still_need_their_elements_allowed() -> None:
    np = pytest.importorskip("numpy")
    array = np.array([Plain(1, 2)], dtype=object)
    with pytest.raises(UnsafePayloadError, match=r"helpers\.Plain"):
        restricted_loads(pickle.dumps(array))


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
def test_allowed_classes_load_by_exact_name_or_prefix(
    protocol: int, allow: tuple[str, ...]
) -> None:
    data = [Plain(1, "a"), WithState([1, 2])]
    assert restricted_loads(pickle.dumps(data, protocol), allow=allow) == data


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_class_outside_the_allow_list_is_refused_by_name(protocol: int) -> None:
    with pytest.raises(UnsafePayloadError, match=r"refused the global helpers\.Plain: "):
        restricted_loads(pickle.dumps(Plain(1, 2), protocol), allow=("helpers.WithState",))


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


@pytest.mark.parametrize("allow", ["helpers.Plain", b"helpers.Plain", 42, [b"helpers.Plain"]])
def test_an_allow_list_that_is_not_an_iterable_of_str_raises_type_error(allow: Any) -> None:
    with pytest.raises(TypeError, match="allow"):
        restricted_loads(pickle.dumps(1), allow=allow)


def test_a_malformed_allow_entry_raises_even_for_an_empty_stream() -> None:
    with pytest.raises(ValueError, match="allow entry"):
        restricted_loads(b"", allow=("*",))


def test_trusted_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="trusted"):
        restricted_loads(pickle.dumps(1), trusted="yes")  # type: ignore[arg-type]


# --- restricted loading: hostile payloads are refused, and nothing runs --------------------------


def _touch(marker: Path) -> str:
    return f"touch {marker}"


def _write(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


HOSTILE: dict[str, Callable[[Path], Any]] = {
    "os.system": lambda m: Call(os.system, _touch(m)),
    "subprocess.Popen": lambda m: Call(subprocess.Popen, ["touch", str(m)]),
    "subprocess.check_output": lambda m: Call(subprocess.check_output, ["touch", str(m)]),
    "builtins.eval": lambda m: Call(eval, _write(m)),
    "builtins.exec": lambda m: Call(exec, _write(m)),
    "getattr chain": lambda m: Call(Call(getattr, Call(__import__, "os"), "system"), _touch(m)),
    "inside a list": lambda m: [1, {"x": Call(os.system, _touch(m))}],
}
REFUSED_NAME = {
    "os.system": "posix.system",
    "subprocess.Popen": "subprocess.Popen",
    "subprocess.check_output": "subprocess.check_output",
    "builtins.eval": "builtins.eval",
    "builtins.exec": "builtins.exec",
    "getattr chain": "builtins.getattr",
    "inside a list": "posix.system",
}


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
    data = b"cposix\nsystem\n(V" + _touch(marker).encode() + b"\ntR."
    with pytest.raises(UnsafePayloadError, match=r"posix\.system"):
        restricted_loads(data)
    assert not marker.exists()


@pytest.mark.parametrize("trusted", [False, True])
def test_hostile_pickle_inside_a_dill_blob_is_refused(tmp_path: Path, trusted: bool) -> None:
    marker = tmp_path / "marker"
    data = pickle.dumps(Call(load_dill, dill.dumps(Call(os.system, _touch(marker)))))
    expected = r"posix\.system" if trusted else r"load_dill: .*trusted=True"
    with pytest.raises(UnsafePayloadError, match=expected):
        restricted_loads(data, trusted=trusted)
    assert not marker.exists()


def test_by_value_code_inside_a_dill_blob_is_refused_untrusted(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    inner = dill.dumps(Call(lambda: os.system(_touch(marker))), recurse=True)
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
    data = cloudpickle.dumps([lambda: 1, Call(os.system, _touch(marker))])
    with pytest.raises(UnsafePayloadError):
        restricted_loads(data, trusted=trusted)
    assert not marker.exists()


def test_by_value_function_called_while_loading_is_refused_untrusted(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    data = cloudpickle.dumps(Call(lambda: os.system(_touch(marker))))
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
        data = b"\x80\x02\x82\xf0(X" + len(_touch(marker)).to_bytes(4, "little")
        data += _touch(marker).encode() + b"tR."
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
    payload = stream_of(omnipickle.dumps([lambda: 1, Call(os.system, _touch(marker))]))
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
    ],
)
def test_a_bad_stream_raises_an_unpickling_error(stream: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        restricted_loads(stream)


def test_a_huge_memo_index_costs_no_memory() -> None:
    """The C unpickler would allocate and clear 4 GB for this 8-byte stream."""
    assert restricted_loads(b"Nr" + (1 << 28).to_bytes(4, "little") + b".") is None


def test_a_str_is_not_a_stream() -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        restricted_loads("N.")  # type: ignore[arg-type]


# --- scan ----------------------------------------------------------------------------------


def test_scan_of_plain_data_lists_no_globals_and_accepts_it() -> None:
    report = scan(omnipickle.dumps({"a": [1, 2.5, "x"]}))
    assert report.format == "omnipickle"
    assert report.globals == ()
    assert report.accepted and report.refused == ()
    assert not report.by_value
    assert report.backends == ("pickle",)
    assert report.protocol == pickle.HIGHEST_PROTOCOL
    assert "accepted by restricted loading" in str(report)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_scan_resolves_globals_and_counts_calls(protocol: int) -> None:
    report = scan(pickle.dumps([Plain(1, 2), Plain(3, 4), collections.OrderedDict()], protocol))
    rows = {use.qualified_name: use for use in report.globals}
    assert rows["helpers.Plain"].imports == 1
    assert rows["helpers.Plain"].builds == 2
    assert rows["collections.OrderedDict"].calls == 1
    assert rows["collections.OrderedDict"].allowed
    assert not rows["helpers.Plain"].allowed
    assert report.refused == ("helpers.Plain",)


def test_scan_of_a_lambda_reports_code_by_value_and_cloudpickle() -> None:
    report = scan(omnipickle.dumps(lambda x: x + 1))
    names = [use.qualified_name for use in report.globals]
    assert "cloudpickle.cloudpickle._make_function" in names
    assert report.by_value
    assert report.backends == ("pickle", "cloudpickle")
    assert not report.accepted
    assert any(use.code for use in report.globals)
    assert scan(omnipickle.dumps(lambda x: x + 1), trusted=True).accepted


def test_scan_of_a_hostile_pickle_names_the_call(tmp_path: Path) -> None:
    report = scan(pickle.dumps(HOSTILE["os.system"](tmp_path / "m")))
    (use,) = report.globals
    assert (use.module, use.name, use.calls, use.allowed) == ("posix", "system", 1, False)
    assert report.refused == ("posix.system",)
    assert "REFUSED" in str(report) and "posix.system" in str(report)
    assert not (tmp_path / "m").exists()


def test_scan_of_a_getattr_chain_lists_every_link(tmp_path: Path) -> None:
    report = scan(pickle.dumps(HOSTILE["getattr chain"](tmp_path / "m")))
    assert {u.qualified_name for u in report.globals} == {"builtins.getattr", "builtins.__import__"}
    assert report.refused[0] == "builtins.getattr"


@pytest.mark.parametrize("codec", sorted(n for n in omnipickle.codecs() if n != "xz"))
def test_scan_decompresses_every_codec(codec: str) -> None:
    data = [Plain(1, 2), {"k": 1}]
    report = scan(omnipickle.dumps(data, compression=codec))
    assert report.codec == get_codec(codec).name
    assert [u.qualified_name for u in report.globals] == ["helpers.Plain"]
    assert report.stream_size > 0


@pytest.mark.parametrize("codec", ["gzip", "bz2", "lzma", "zstd"])
def test_scan_reads_pickle_files_compressed_whole(tmp_path: Path, codec: str) -> None:
    raw = pickle.dumps(Plain(1, 2))
    compressed = get_codec(codec).compress(raw)
    (tmp_path / "p").write_bytes(compressed)
    report = scan(tmp_path / "p")
    assert report.format == "compressed pickle" and report.codec == codec
    assert report.refused == ("helpers.Plain",)


def test_scan_reads_a_plain_pickle_file_by_path_and_by_file_object(tmp_path: Path) -> None:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(plain_data(), 2))
    by_path = scan(str(path))
    with path.open("rb") as f:
        by_file = scan(f)
    assert by_path.format == by_file.format == "pickle"
    assert by_path.rows() == by_file.rows()
    assert by_path.accepted
    assert by_path.protocol == 2


def test_scan_sees_a_second_pickle_hidden_after_the_first(tmp_path: Path) -> None:
    data = pickle.dumps([1, 2]) + pickle.dumps(HOSTILE["os.system"](tmp_path / "m"))
    report = scan(data)
    assert report.streams == 2
    assert report.refused == ("posix.system",)


def test_scan_notes_trailing_bytes_that_are_not_a_pickle() -> None:
    report = scan(pickle.dumps([1]) + b"\xffgarbage")
    assert report.streams == 1 and report.accepted
    assert any("not a pickle" in note for note in report.notes)


def test_scan_reports_a_nested_dill_blob_and_what_it_holds() -> None:
    report = scan(pickle.dumps(Call(load_dill, dill.dumps(Call(os.system, "true")))))
    assert report.refused[0] == "omnipickle._reconstruct.load_dill"
    (blob,) = report.nested
    assert blob.report is not None
    assert blob.report.refused == ("posix.system",)
    assert "dill" in report.backends
    trusted = scan(pickle.dumps(Call(load_dill, dill.dumps(Call(os.system, "true")))), trusted=True)
    assert trusted.refused == ("posix.system (in the blob at byte 90)",) or (
        trusted.refused[0].startswith("posix.system (in the blob")
    )


def test_scan_reports_a_payload_that_changes_a_global() -> None:
    stream = b"\x80\x04\x8c\x0bcollections\x8c\x07Counter\x93N}\x8c\x01xK\x01s\x86b."
    report = scan(stream)
    assert report.mutations == ("collections.Counter",)
    assert not report.accepted


def test_scan_reports_an_unresolvable_global_as_refused() -> None:
    report = scan(b"\x80\x04\x8c\x02osK\x01\x93.")
    assert report.globals[0].qualified_name == "<unresolved>"
    assert not report.accepted


def test_scan_reports_persistent_ids_and_out_of_band_buffers() -> None:
    buffers: list[pickle.PickleBuffer] = []
    payload = omnipickle.dumps(
        [pickle.PickleBuffer(bytearray(b"abc"))], buffer_callback=buffers.append
    )
    assert scan(payload).out_of_band_buffers == 1
    report = scan(b"\x80\x02Prow\n.")
    assert report.persistent_ids == 1 and not report.accepted


def test_scan_includes_the_envelope() -> None:
    report = scan(omnipickle.dumps([1], key=KEY, compression="gzip"))
    assert report.envelope is not None and report.envelope.signed
    assert "signed (not verified by scan)" in str(report)


def test_scan_rows_are_the_table_as_data() -> None:
    report = scan(pickle.dumps([Plain(1, 2), collections.deque()]))
    assert report.rows() == [
        {
            "global": use.qualified_name,
            "imports": use.imports,
            "calls": use.calls,
            "builds": use.builds,
            "code": use.code,
            "allowed": use.allowed,
            "reason": use.reason,
        }
        for use in report.globals
    ]
    text = str(report)
    for use in report.globals:
        assert use.qualified_name in text


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(plain_data(), 0),
        pickle.dumps(plain_data(), 5),
        pickle.dumps([Plain(1, 2)]),
        stream_of(omnipickle.dumps(lambda x: x)),
        stream_of(omnipickle.dumps([threading.Lock(), threading.Event()])),
        pickle.dumps(Call(os.system, "true")),
        pickle.dumps(Call(load_dill, dill.dumps([1]))),
        b"\x80\x04\x8c\x0bcollections\x8c\x07Counter\x93N}\x8c\x01xK\x01s\x86b.",
    ],
    ids=["data-p0", "data-p5", "class", "lambda", "locks", "system", "blob", "mutation"],
)
@pytest.mark.parametrize("trusted", [False, True])
def test_scan_verdict_agrees_with_restricted_loads(payload: bytes, trusted: bool) -> None:
    verdict = scan(payload, trusted=trusted).accepted
    if verdict:
        restricted_loads(payload, trusted=trusted)
    else:
        with pytest.raises(UnsafePayloadError):
            restricted_loads(payload, trusted=trusted)


def _flip(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0x40
    return bytes(out)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedPayloadError),
        (omnipickle.dumps([1, 2, 3])[:30], TruncatedPayloadError),
        (omnipickle.dumps([1, 2, 3])[:-2], TruncatedPayloadError),
        (_flip(omnipickle.dumps([1, 2, 3]), -3), CorruptPayloadError),
        (_flip(omnipickle.dumps([1, 2, 3]), 20), CorruptPayloadError),
        (pickle.dumps(plain_data())[:-9], TruncatedPayloadError),
        (b"\x80\x05\xff\xff\xff", CorruptPayloadError),
        (b"no pickle here", CorruptPayloadError),
        (gzip.compress(pickle.dumps([1]))[:-4], CorruptPayloadError),
        (b"\x80\x04\x94.", CorruptPayloadError),  # MEMOIZE on an empty stack
        (b"\x80\x04h\x07.", CorruptPayloadError),  # a memo entry never set
    ],
    ids=[
        "empty",
        "header-cut",
        "payload-cut",
        "payload-flip",
        "header-flip",
        "plain-cut",
        "bad-opcode",
        "text",
        "gzip-cut",
        "underflow",
        "memo",
    ],
)
def test_scan_of_damaged_data_raises_the_documented_error(
    data: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        scan(data)


def test_scan_checks_the_sections_of_a_file_with_large_arrays(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    path = tmp_path / "arrays.pkl"
    omnipickle.dump({"a": np.arange(20_000, dtype="f8")}, path)
    assert omnipickle.info(path).extra.get("sections"), "expected the array in a section"
    report = scan(path)
    assert report.accepted and report.out_of_band_buffers == 1
    damaged = bytearray(path.read_bytes())
    damaged[-100] ^= 1
    with pytest.raises(CorruptPayloadError, match="section"):
        scan(bytes(damaged))


def test_scan_reads_pickles_other_tools_compressed() -> None:
    report = scan(zlib.compress(pickle.dumps(Plain(1, 2))))
    assert report.format == "compressed pickle"
    assert report.refused == ("helpers.Plain",)


def test_scan_rejects_what_is_not_data() -> None:
    with pytest.raises(TypeError, match="scan"):
        scan(12)  # type: ignore[arg-type]


def test_scan_executes_nothing_and_imports_nothing(tmp_path: Path) -> None:
    code = (
        "import sys, pickle\n"
        "from omnipickle.security import scan\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "scan(data)\n"
        "found = ('cloudpickle', 'dill', 'numpy', 'localpkg')\n"
        "print(sorted(m for m in found if m in sys.modules))\n"
    )
    path = tmp_path / "p"
    path.write_bytes(
        pickle.dumps(Call(load_dill, dill.dumps(Call(os.system, f"touch {tmp_path / 'm'}"))))
        + cloudpickle.dumps(lambda: 1)
    )
    assert check_python(str(path), code=code).strip() == "[]"
    assert not (tmp_path / "m").exists()


def test_importing_the_security_module_imports_no_optional_package() -> None:
    code = (
        "import sys\nimport omnipickle.security\n"
        "print(sorted(m for m in ('cloudpickle', 'dill', 'numpy', 'zstandard', 'pickletools')"
        " if m in sys.modules))\n"
    )
    assert check_python(code=code).strip() == "[]"


# --- verify_signature ------------------------------------------------------------------------


def test_a_signed_payload_verifies_with_its_key(tmp_path: Path) -> None:
    payload = omnipickle.dumps(Slotted(1), key=KEY, compression="zstd")
    verify_signature(payload, KEY)
    (tmp_path / "p").write_bytes(payload)
    verify_signature(tmp_path / "p", bytearray(KEY))


def test_a_payload_verifies_with_any_key_of_a_rotation_list() -> None:
    old, new = b"the old key, retired soon", b"the new key, in use from now"
    payload = omnipickle.dumps([1], key=old)
    verify_signature(payload, [new, old])
    with pytest.raises(SignatureError):
        verify_signature(payload, [new])
    with pytest.raises(ValueError, match="empty"):
        verify_signature(payload, [])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (omnipickle.dumps([1], key=KEY), "does not verify"),
        (omnipickle.dumps([1]), "not signed"),
        (pickle.dumps([1]), "plain pickle"),
    ],
)
def test_a_payload_that_does_not_verify_raises_signature_error(
    payload: bytes, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify_signature(payload, b"another key, also long enough")


def test_a_tampered_signed_payload_is_reported_as_damaged() -> None:
    with pytest.raises(CorruptPayloadError):
        verify_signature(_flip(omnipickle.dumps([1, 2], key=KEY), 60), KEY)


@pytest.mark.parametrize(
    ("key", "error"), [(b"short", ValueError), ("a str key!!!!!!!!!", TypeError)]
)
def test_verify_signature_refuses_a_bad_key(key: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        verify_signature(omnipickle.dumps(1, key=KEY), key)
