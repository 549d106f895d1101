"""The C fast paths of ``loads`` and ``dumps`` (``omnipickle._speedups``) do what the Python
ones do.

``omnipickle.loads`` is, where the extension was built, a C callable standing in front of the
pure-Python function (its ``__wrapped__``): it answers ``loads(data)`` for an intact small
envelope of plain data and for a plain pickle stream, and hands every other call to the Python
function. ``omnipickle.dumps`` likewise answers ``dumps(obj)`` for an atom or a flat dict, list
or tuple of atoms. These tests compare the two on the same inputs (results, errors, tracebacks),
check that it follows the state the Python fast path reads, attack its header parsing with
crafted lengths in a child process, and check the package without it.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import inspect
import os
import pickle
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import omnipickle
from conftest import check_python
from omnipickle._reconstruct import LOAD_HOOKS
from omnipickle.checksums import SMALL
from omnipickle.codecs import MAGICS, GzipCodec, register_codec, unregister_codec

ACCELERATED = hasattr(omnipickle.loads, "__wrapped__")
PYTHON_LOADS: Callable[..., Any] = getattr(omnipickle.loads, "__wrapped__", omnipickle.loads)
PYTHON_DUMPS: Callable[..., Any] = getattr(omnipickle.dumps, "__wrapped__", omnipickle.dumps)
needs_c = pytest.mark.skipif(not ACCELERATED, reason="omnipickle._speedups is not built here")


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def test_the_extension_is_built_wherever_a_c_compiler_is() -> None:
    if os.environ.get("OMNIPICKLE_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("OMNIPICKLE_PURE_PYTHON is set")
    if _compiler() is None:
        pytest.skip("no C compiler: the package installs without its C fast path")
    assert ACCELERATED, "a C compiler is here, but omnipickle._speedups was not built"
    assert type(omnipickle.loads).__module__ == "omnipickle._speedups"
    assert type(omnipickle.dumps).__module__ == "omnipickle._speedups"
    assert omnipickle.api.loads is omnipickle.loads
    assert omnipickle.api.dumps is omnipickle.dumps


# --- the C CRC-32 is zlib's ------------------------------------------------------------------


@needs_c
@given(st.binary(max_size=300), st.integers(0, 2**32 - 1), st.integers(0, 7))
@settings(max_examples=300, deadline=None)
def test_the_c_crc32_is_zlibs(data: bytes, start: int, offset: int) -> None:
    from omnipickle._speedups import crc32

    view = memoryview(data)[min(offset, len(data)) :]  # every alignment
    assert crc32(view, start) == zlib.crc32(view, start)
    assert crc32(data) == zlib.crc32(data)


# --- it looks and travels like the function --------------------------------------------------


@needs_c
@pytest.mark.parametrize("name", ["loads", "dumps"])
def test_it_introspects_pickles_and_copies_as_the_function_it_stands_for(name: str) -> None:
    fast = getattr(omnipickle, name)
    python = fast.__wrapped__
    assert inspect.isfunction(python) and not inspect.isfunction(fast)
    assert inspect.signature(fast) == inspect.signature(python)
    for attribute in ("__name__", "__qualname__", "__module__", "__doc__", "__kwdefaults__"):
        assert getattr(fast, attribute) == getattr(python, attribute), attribute
    assert fast.__defaults__ == python.__defaults__
    assert fast.__name__ == name and len(fast.__doc__ or "") > 200
    assert name in repr(fast)
    assert pickle.loads(pickle.dumps(fast)) is fast
    assert omnipickle.loads(omnipickle.dumps(fast)) is fast
    assert copy.copy(fast) is fast and copy.deepcopy(fast) is fast
    with pytest.raises(TypeError):
        type(fast)()  # only accelerate_loads makes one


# --- the same outcome as the Python function -------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Raises:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self) -> Any:
        return (_raise, (self.error,))


def _raise(error: BaseException) -> None:
    raise error


OBJECTS: list[Any] = [
    None,
    True,
    -(2**70),
    1.5,
    "é" * 5,
    b"\x80\x05B",
    [1, [2, [3]]],
    {"id": 7, "name": "job-7", "ok": True},
    {(1, 2): frozenset({3})},
    Point(1, 2.5),
    "x" * (SMALL + 10),  # a stream the C fast path leaves to Python (too large to check there)
]


def _outcome(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        return ("ok", re.sub(" at 0x[0-9a-f]+", "", repr(call())))  # no addresses
    except Exception as exc:
        cause = exc.__cause__
        return (
            f"{type(exc).__module__}.{type(exc).__qualname__}",
            f"{exc} | {type(cause).__name__}: {cause}" if cause is not None else str(exc),
        )


def _same(data: bytes) -> tuple[str, str]:
    fast = _outcome(lambda: omnipickle.loads(data))
    assert fast == _outcome(lambda: PYTHON_LOADS(data)), data[:80]
    return fast


def _payloads() -> Iterator[bytes]:
    for obj in OBJECTS:
        for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
            yield omnipickle.dumps(obj, protocol)
            yield omnipickle.dumps(obj, protocol, raw=True)
            yield pickle.dumps(obj, protocol)
        yield omnipickle.dumps(obj, compression="zstd")
        yield omnipickle.dumps(obj, key=b"k" * 32)
    yield omnipickle.dumps(lambda x: x + 1)
    yield omnipickle.dumps(threading.Lock())


@pytest.mark.parametrize("data", list(_payloads()), ids=lambda d: d[:3].hex())
def test_every_kind_of_payload_loads_as_through_the_python_function(data: bytes) -> None:
    outcome = _same(data)
    assert outcome[0] == "ok" or "SignatureError" in outcome[0]


def test_damaged_truncated_and_extended_payloads_get_the_python_functions_errors() -> None:
    for obj in ({"a": [1, 2]}, Point(3, 4.0)):
        for data in (omnipickle.dumps(obj), pickle.dumps(obj, 5)):
            for cut in range(len(data)):
                assert _same(data[:cut])[0] != "ok", cut
            for i in range(len(data)):
                for flip in (0x01, 0x20, 0x80):
                    damaged = bytearray(data)
                    damaged[i] ^= flip
                    _same(bytes(damaged))
            assert _same(data + b"\x00")[0] != "ok" or data[2] != 0x42


@given(
    st.sampled_from([omnipickle.dumps({"k": [1, 2.0]}), pickle.dumps(Point(1, 2.0), 4)]),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
)
@settings(max_examples=400, deadline=None)
def test_random_rewrites_get_the_python_functions_outcome(
    data: bytes, edits: list[tuple[int, int]]
) -> None:
    changed = bytearray(data)
    for where, value in edits:
        if where < len(changed):
            changed[where] = value
    _same(bytes(changed))


def test_an_error_raised_by_loaded_code_comes_out_unchanged_with_its_frames() -> None:
    for error in (ValueError("mine"), KeyError("k"), omnipickle.CorruptPayloadError("ours")):
        for data in (omnipickle.dumps(Raises(error)), pickle.dumps(Raises(error), 5)):
            with pytest.raises(type(error)) as fast:
                omnipickle.loads(data)
            with pytest.raises(type(error)) as python:
                PYTHON_LOADS(data)
            assert type(fast.value) is type(python.value) is type(error)
            assert str(fast.value) == str(python.value)
            assert fast.value.__cause__ is None
            assert any(entry.name == "_raise" for entry in fast.traceback)


def test_a_keyboard_interrupt_from_loaded_code_is_not_turned_into_a_payload_error() -> None:
    with pytest.raises(KeyboardInterrupt):
        omnipickle.loads(omnipickle.dumps(Raises(KeyboardInterrupt())))


def test_a_missing_module_is_an_unpickling_error_that_keeps_its_name() -> None:
    data = pickle.dumps(Point, 5).replace(b"test_speedups", b"no_such_mod__")
    with pytest.raises(ModuleNotFoundError) as caught:
        omnipickle.loads(data)
    assert isinstance(caught.value, omnipickle.UnpicklingError)
    assert caught.value.name == "no_such_mod__"
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
    assert caught.value.__context__ is caught.value.__cause__
    assert caught.value.__suppress_context__


# --- what it takes for granted, it reads on every call ----------------------------------------


def _enters(function: Callable[..., Any], call: Callable[[], Any]) -> bool:
    """Whether ``call`` ran the Python ``function``."""
    entered = []
    code = function.__code__

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is code:
            entered.append(True)

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return bool(entered)


def _enters_python(call: Callable[[], Any]) -> bool:
    """Whether ``call`` ran the pure-Python loads."""
    return _enters(PYTHON_LOADS, call)


class _ProtoCodec(GzipCodec):
    codec_id = 78
    magic = b"\x80\x05\x95"


@needs_c
def test_it_takes_only_the_calls_it_can_answer_and_hands_on_the_rest(
    restore_registries: None,
) -> None:
    small = omnipickle.dumps({"a": 1})
    stream = pickle.dumps({"a": 1}, 5)
    assert not _enters_python(lambda: omnipickle.loads(small))
    assert not _enters_python(lambda: omnipickle.loads(stream))
    handed_on: list[Callable[[], Any]] = [
        lambda: omnipickle.loads(bytearray(small)),
        lambda: omnipickle.loads(memoryview(stream)),
        lambda: omnipickle.loads(small, fix_imports=True),
        lambda: omnipickle.loads(small, buffers=None),
        lambda: omnipickle.loads(omnipickle.dumps("x" * SMALL)),
        lambda: omnipickle.loads(omnipickle.dumps({"a": 1}, compression="zstd")),
        lambda: omnipickle.loads(small[:-1]),  # damaged: Python says what is wrong
    ]
    for call in handed_on:
        assert _enters_python(lambda call=call: _outcome(call))
    token = LOAD_HOOKS.set(LOAD_HOOKS.get())  # set, to None: still the fast path
    try:
        assert not _enters_python(lambda: omnipickle.loads(small))
    finally:
        LOAD_HOOKS.reset(token)
    register_codec("proto_like_c", _ProtoCodec())
    assert not MAGICS.proto_unclaimed
    assert _enters_python(lambda: _outcome(lambda: omnipickle.loads(stream)))
    assert not _enters_python(lambda: omnipickle.loads(small))  # an envelope is never a codec's
    unregister_codec("proto_like_c")
    assert not _enters_python(lambda: omnipickle.loads(stream))


@needs_c
def test_load_hooks_in_effect_send_the_call_to_python() -> None:
    small = omnipickle.dumps([1])

    class Hooks:
        pass

    token = LOAD_HOOKS.set(Hooks())  # type: ignore[arg-type]  # any value but None
    try:
        assert _enters_python(lambda: _outcome(lambda: omnipickle.loads(small)))
    finally:
        LOAD_HOOKS.reset(token)


@needs_c
def test_a_replaced_pickle_backend_sends_envelopes_to_python(restore_registries: None) -> None:
    from omnipickle.backends import DEFAULTS, Backend, Pickled, register_backend

    class Mine(Backend):
        name = "mine"

        def dumps(
            self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: Any
        ) -> Pickled:
            data = pickle.dumps(obj, protocol)
            return Pickled([data], len(data), None, frozenset({"pickle"}), by_value=False)

    small = omnipickle.dumps({"a": 1})
    register_backend("pickle", Mine(), replace=True)
    assert not DEFAULTS.builtin
    assert _enters_python(lambda: _outcome(lambda: omnipickle.loads(small)))
    assert _outcome(lambda: omnipickle.loads(small)) == _outcome(lambda: PYTHON_LOADS(small))


@needs_c
def test_threads_loading_while_the_registries_change_get_right_answers(
    restore_registries: None,
) -> None:
    payloads = [(omnipickle.dumps(i), i) for i in range(50)]
    payloads += [(pickle.dumps([i], 5), [i]) for i in range(50)]
    wrong: list[Any] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for data, expected in payloads:
                got = omnipickle.loads(data)
                if got != expected:
                    wrong.append((got, expected))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(200):
            register_codec("proto_like_t", _ProtoCodec())
            unregister_codec("proto_like_t")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert wrong == []


def _kept(cases: list[Any], call: Callable[[Any], Any], rounds: int) -> tuple[bool, int]:
    """Whether ``rounds`` calls of ``call`` on each case left every case's reference count as
    it was, and how many bytes of memory they kept."""
    for case in cases:
        call(case)  # warm up
    gc.collect()  # an error raised by loaded code is in a cycle with its traceback's frames
    before = [sys.getrefcount(case) for case in cases]
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(rounds):
            for case in cases:
                call(case)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    return [sys.getrefcount(case) for case in cases] == before, grown


@needs_c
def test_many_calls_keep_no_references_or_memory() -> None:
    good = omnipickle.dumps({"a": [1, 2]})
    damaged_raw = pickle.dumps({"a": [1, 2]}, 5)[:-1] + b"!"  # the C path maps this error
    user_error = omnipickle.dumps(Raises(ValueError("x")))
    same, grown = _kept(
        [good, damaged_raw, user_error], lambda d: _outcome(lambda: omnipickle.loads(d)), 5_000
    )
    assert same and grown < 200_000, grown


# --- dumps ---------------------------------------------------------------------------------


def _dump_outcome(call: Callable[[], bytes]) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except Exception as exc:
        return (type(exc).__name__, str(exc))


DUMPED: list[Any] = [
    None,
    False,
    2**80,
    -1.5,
    "é",
    b"\x80\x05B",
    bytearray(b"ab"),
    {},
    [],
    (),
    {"a": 1, "b": 2.0, "c": "z"},
    {i: str(i) for i in range(8)},  # the Python path's item-by-item loop
    {i: str(i) for i in range(9)},  # and its issuperset
    {i: i for i in range(64)},
    {i: i for i in range(65)},  # past the Python path's budget: the general path
    list(range(64)),
    tuple(range(65)),
    [1, [2]],
    {"a": [1]},
    {(1, 2): 3},
    {1, 2},
    frozenset({3}),
    Point(1, 2.0),
    [Point(1, 2.0)],
    "x" * SMALL,  # a stream too large for the C envelope: the Python one wraps it
    b"y" * (SMALL + 100),
]
PROTOCOLS: list[Any] = [None, 2, 3, 4, 5, 0, 1, -1, 6, True, "5", 2**70]


@pytest.mark.parametrize("obj", DUMPED, ids=lambda o: type(o).__name__)
def test_dumps_writes_what_the_python_function_writes(obj: Any) -> None:
    for protocol in PROTOCOLS:
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
            ((obj, protocol), {}),
            ((obj,), {"protocol": protocol}),
            ((obj, protocol), {"raw": True}),
            ((obj,), {"protocol": protocol, "raw": False}),
            ((obj, protocol), {"raw": 1}),
        ]
        for args, kwargs in calls:
            fast = _dump_outcome(lambda a=args, k=kwargs: omnipickle.dumps(*a, **k))
            python = _dump_outcome(lambda a=args, k=kwargs: PYTHON_DUMPS(*a, **k))
            assert fast == python, (protocol, kwargs)
    assert omnipickle.dumps(obj) == PYTHON_DUMPS(obj)
    assert repr(omnipickle.loads(omnipickle.dumps(obj))) == repr(obj)
    assert omnipickle.dumps(obj, raw=True) == PYTHON_DUMPS(obj, raw=True)


def test_dumps_misuse_gets_the_python_functions_errors() -> None:
    calls: list[Callable[[], Any]] = [
        lambda: omnipickle.dumps(),  # type: ignore[call-arg]
        lambda: omnipickle.dumps(1, 5, 6),  # type: ignore[misc]
        lambda: omnipickle.dumps(1, 5, protocol=4),  # type: ignore[misc]
        lambda: omnipickle.dumps(1, nonsense=True),  # type: ignore[call-arg]
        lambda: omnipickle.dumps(1, compression="nope"),
    ]
    for call in calls:
        fast = _dump_outcome(call)
        assert fast[0] != "ok"
    # The same calls on the Python function raise the same errors.
    assert _dump_outcome(lambda: omnipickle.dumps(1, 5, protocol=4)) == _dump_outcome(
        lambda: PYTHON_DUMPS(1, 5, protocol=4)
    )
    assert _dump_outcome(lambda: omnipickle.dumps(1, raw="yes")) == _dump_outcome(  # truthy
        lambda: PYTHON_DUMPS(1, raw="yes")
    )


def _enters_python_dumps(call: Callable[[], Any]) -> bool:
    """Whether ``call`` ran the pure-Python dumps."""
    return _enters(PYTHON_DUMPS, call)


@needs_c
def test_dumps_takes_flat_plain_data_and_hands_on_the_rest(restore_registries: None) -> None:
    for obj in (None, 1, "s", {"a": 1}, [1, 2.0], (b"x",)):
        assert not _enters_python_dumps(lambda o=obj: omnipickle.dumps(o))
        assert not _enters_python_dumps(lambda o=obj: omnipickle.dumps(o, 4, raw=True))
    for obj in ({"a": [1]}, [Point(1, 2.0)], {1}, list(range(65))):
        assert _enters_python_dumps(lambda o=obj: omnipickle.dumps(o))
    assert _enters_python_dumps(lambda: omnipickle.dumps(1, compression="zstd"))
    assert _enters_python_dumps(lambda: omnipickle.dumps(1, deterministic=True))

    from omnipickle import register_resource, unregister_resource

    class Held:
        pass

    register_resource(Held, "drop")
    try:
        assert _enters_python_dumps(lambda: omnipickle.dumps({"a": 1}))  # a user rule
    finally:
        unregister_resource(Held)
    assert not _enters_python_dumps(lambda: omnipickle.dumps({"a": 1}))


@needs_c
def test_dumps_with_a_replaced_auto_backend_is_the_python_functions(
    restore_registries: None,
) -> None:
    from omnipickle.backends import DEFAULTS, Backend, Pickled, register_backend

    calls = []

    class Mine(Backend):
        name = "mine"

        def dumps(
            self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: Any
        ) -> Pickled:
            calls.append(obj)
            data = pickle.dumps(obj, protocol)
            return Pickled([data], len(data), None, frozenset({"pickle"}), by_value=False)

    register_backend("auto", Mine(), replace=True)
    assert not DEFAULTS.builtin
    assert omnipickle.dumps({"a": 1}) == PYTHON_DUMPS({"a": 1})
    assert calls == [{"a": 1}, {"a": 1}]


@needs_c
def test_many_dumps_keep_no_references_or_memory() -> None:
    def both(obj: Any) -> None:
        omnipickle.dumps(obj)
        omnipickle.dumps(obj, 2, raw=True)

    cases = [None, {"a": 1, "b": [1]}, {"a": 1}, "x" * SMALL, [1, 2, 3]]
    same, grown = _kept(cases, both, 3_000)
    assert same and grown < 200_000, grown


# --- hostile headers: crafted lengths with valid CRCs ------------------------------------------


_HOSTILE_HEADERS = r"""
import pickle, struct, sys, zlib
import omnipickle
from omnipickle.format.header import PLAIN_LAYOUT as L

python = omnipickle.loads.__wrapped__
base = bytearray(omnipickle.dumps([1, 2, 3]))
after, end = L["after_fields"], L["header_end"]

def outcome(call):
    try:
        return ("ok", repr(call()))
    except Exception as exc:
        return (type(exc).__name__, str(exc))

def crafted(extra, stored, raw, checksum, pad=b""):
    data = bytearray(base) + pad
    struct.pack_into("<IQQI", data, after, extra, stored, raw, checksum)
    fields_crc = zlib.crc32(bytes(data[7:after]))
    struct.pack_into("<I", data, end, zlib.crc32(bytes(data[after:end]), fields_crc))
    return bytes(data)

true_stored = len(base) - L["plain_size"]
checksum = struct.unpack_from("<I", base, after + 20)[0]
cases = []
for stored in (0, 1, true_stored - 1, true_stored + 1, L["small"] - 1, L["small"],
               2**31, 2**32 - 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1):
    for raw in ((stored + 2) % 2**64, stored, 2**64 - 1, 0):
        for extra in (0, 1, 2**32 - 1):
            cases.append(crafted(extra, stored, raw, checksum))
cases.append(crafted(0, true_stored, true_stored + 2, checksum ^ 1))
cases.append(crafted(0, true_stored + 5, true_stored + 7, checksum, pad=b"\x00" * 5))
cases += [bytes(base[:n]) for n in range(L["plain_size"] + 2)]
for data in cases:
    assert outcome(lambda: omnipickle.loads(data)) == outcome(lambda: python(data)), data[:64]
print("checked", len(cases))
"""


@needs_c
def test_crafted_lengths_with_valid_header_crcs_read_nothing_outside_the_data(
    tmp_path: Path,
) -> None:
    # In a child: a read outside the buffer would crash it rather than this test run.
    out = check_python(code=_HOSTILE_HEADERS)
    assert out.startswith("checked ")
    assert int(out.split()[1]) > 200


# --- without the extension ---------------------------------------------------------------------


def test_with_omnipickle_pure_python_set_loads_is_the_python_function() -> None:
    code = (
        "import inspect, omnipickle\n"
        "assert inspect.isfunction(omnipickle.loads)\n"
        "assert inspect.isfunction(omnipickle.dumps)\n"
        "assert omnipickle.loads(omnipickle.dumps({'a': [1]})) == {'a': [1]}\n"
        "print('pure')"
    )
    assert check_python(code=code, env_overrides={"OMNIPICKLE_PURE_PYTHON": "1"}) == "pure\n"
    if ACCELERATED:
        code_c = "import omnipickle; print(type(omnipickle.loads).__name__)"
        assert check_python(code=code_c, env_overrides={"OMNIPICKLE_PURE_PYTHON": "0"}) == (
            "FastLoads\n"
        )


def test_where_the_extension_cannot_be_imported_the_package_works_without_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['omnipickle._speedups'] = None  # as if it was never built\n"
        "import inspect, pickle, omnipickle\n"
        "assert inspect.isfunction(omnipickle.loads)\n"
        "assert inspect.isfunction(omnipickle.dumps)\n"
        "assert omnipickle.loads(omnipickle.dumps([1, 2])) == [1, 2]\n"
        "assert omnipickle.loads(pickle.dumps(None)) is None\n"
        "print('without')"
    )
    assert check_python(code=code) == "without\n"


def test_the_package_builds_and_installs_where_no_c_compiler_works(tmp_path: Path) -> None:
    root = Path(__file__).parent.parent
    if not (root / "setup.py").exists() or not (root / "pyproject.toml").exists():
        pytest.skip("not run from a source checkout")
    # A copy without what earlier builds left (build/, the built extension).
    source = tmp_path / "source"
    shutil.copytree(
        root,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.so", "*.egg-info", "__pycache__", "tests"
        ),
    )
    target = tmp_path / "site"
    env = dict(os.environ, CC="false", LDSHARED="false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), "."],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list((target / "omnipickle").glob("_speedups*.so"))
    code = (
        "import sys, inspect\n"
        f"sys.path.insert(0, {str(target)!r})\n"
        "import omnipickle\n"
        f"assert omnipickle.__file__.startswith({str(target)!r}), omnipickle.__file__\n"
        "assert inspect.isfunction(omnipickle.loads)\n"
        "assert omnipickle.loads(omnipickle.dumps({'a': 1})) == {'a': 1}\n"
        "print('installed')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0 and out.stdout == "installed\n", out.stderr
