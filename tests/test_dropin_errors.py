"""Drop-in exceptions: ``except`` clauses written for pickle keep catching what they caught.

Dumping: where pickle raises ``TypeError``, ``AttributeError`` or ``RecursionError``, omnipickle
raises a ``PicklingError`` that is also that type and names the path, from every backend and
entry point. Loading: what the code a stream runs raises (a ``__setstate__``, a constructor, an
import) propagates unchanged, for plain streams and envelopes alike; the stream's own damage is an
``UnpicklingError`` that is also the type pickle raised.
"""

from __future__ import annotations

import io
import pickle
import socket
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import check_python
from omnipickle.backends import Pickled
from omnipickle.format.writer import encode

# --- objects pickle refuses, and the type it raises -----------------------------------------------


class Wrap:
    def __init__(self, c: Any) -> None:
        self.c = c


class StateRaises:
    def __getstate__(self) -> Any:
        raise AttributeError("no state here")


class ReduceCallsItself:
    def __reduce__(self) -> Any:
        return self.__reduce__()


class GetattributeCallsItself:
    def __getattribute__(self, name: str) -> Any:
        return self.__getattribute__(name)


def _deep() -> Any:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    return deep


# name: (make the object, the type pickle raises, the path omnipickle gives)
REFUSED: dict[str, tuple[Callable[[], Any], type[BaseException], str]] = {
    "socket": (lambda: Wrap(socket.socket()), TypeError, "root.c"),
    "getstate-attribute-error": (lambda: Wrap(StateRaises()), AttributeError, "root.c"),
    "reduce-recursion": (lambda: Wrap(ReduceCallsItself()), RecursionError, "root.c"),
    "getattribute-recursion": (lambda: Wrap(GetattributeCallsItself()), RecursionError, "root.c"),
    "deep-graph": (_deep, RecursionError, "root<100,000 x [0]>"),
}


def _close(obj: Any) -> None:
    if type(obj) is Wrap and type(obj.c) is socket.socket:
        obj.c.close()


@pytest.fixture(params=sorted(REFUSED))
def refused(request: pytest.FixtureRequest) -> Iterator[tuple[Any, type[BaseException], str]]:
    make, kind, path = REFUSED[request.param]
    obj = make()
    try:
        yield obj, kind, path
    finally:
        _close(obj)


def _dump_to_path(obj: Any, tmp_path: Path) -> None:
    target = tmp_path / "out.pkl"
    try:
        omnipickle.dump(obj, target)
    finally:
        assert list(tmp_path.iterdir()) == []  # nothing left behind, not even a temporary file


def _with_pickler(obj: Any, tmp_path: Path) -> None:
    omnipickle.Pickler(io.BytesIO()).dump(obj)


ENTRY_POINTS: dict[str, Callable[[Any, Path], Any]] = {
    **{
        f"dumps-{b}": (lambda obj, _, b=b: omnipickle.dumps(obj, backend=b))
        for b in ("auto", "pickle", "cloudpickle", "dill")
    },
    "dumps-raw": lambda obj, _: omnipickle.dumps(obj, raw=True),
    "dumps-zstd": lambda obj, _: omnipickle.dumps(obj, compression="zstd"),
    "dump-file": lambda obj, _: omnipickle.dump(obj, io.BytesIO()),
    "dump-path": _dump_to_path,
    "Pickler": _with_pickler,
    "Serializer": lambda obj, _: omnipickle.Serializer(compression="gzip").dumps(obj),
}


def test_pickle_raises_the_types_listed(refused: tuple[Any, type[BaseException], str]) -> None:
    """The reference: what the standard library raises for each object."""
    obj, kind, _ = refused
    with pytest.raises(kind):
        pickle.dumps(obj)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_refused_object_raises_a_picklingerror_of_pickles_type_with_the_path(
    entry: str, refused: tuple[Any, type[BaseException], str], tmp_path: Path
) -> None:
    obj, kind, path = refused
    with pytest.raises(omnipickle.PicklingError) as info:
        ENTRY_POINTS[entry](obj, tmp_path)
    error = info.value
    assert isinstance(error, kind)
    assert isinstance(error, pickle.PicklingError)
    assert error.path == path
    assert f" at {path}: " in str(error)
    assert error.fix and str(error).endswith(error.fix)
    assert error.reason and error.reason in str(error)
    assert error.__cause__ is not None


def test_the_named_classes_are_the_ones_raised() -> None:
    with socket.socket() as sock, pytest.raises(omnipickle.PicklingTypeError):
        omnipickle.dumps(sock)
    with pytest.raises(omnipickle.PicklingAttributeError):
        omnipickle.dumps(StateRaises())
    with pytest.raises(omnipickle.PicklingRecursionError):
        omnipickle.dumps(_deep())
    assert omnipickle.errors.PicklingTypeError is omnipickle.PicklingTypeError


def test_a_too_deep_graph_says_so() -> None:
    with pytest.raises(RecursionError, match="nested too deeply"):
        omnipickle.dumps(_deep())


@pytest.mark.parametrize("name", ["reduce-recursion", "getattribute-recursion"])
def test_recursion_in_the_objects_own_code_names_that_code_not_the_depth(name: str) -> None:
    make, _, _ = REFUSED[name]
    obj = make()
    with pytest.raises(RecursionError) as info:
        omnipickle.dumps(obj)
    message = str(info.value)
    assert "nested too deeply" not in message
    assert f"{type(obj.c).__qualname__}.__" in message  # ReduceCallsItself.__reduce__ ...
    assert __file__ in message


def test_recursion_in_getattribute_at_the_root_is_a_picklingerror() -> None:
    """The auto backend's first look at the data (the probe) reads attributes: a
    ``__getattribute__`` that calls itself must surface from the pickler, with the path."""
    with pytest.raises(omnipickle.PicklingRecursionError) as info:
        omnipickle.dumps([GetattributeCallsItself()])
    assert info.value.path == "root[0]"


def test_a_too_deep_graph_with_the_drop_policy_is_a_recursionerror() -> None:
    with pytest.raises(omnipickle.PicklingRecursionError):
        omnipickle.dumps(_deep(), on_unpicklable="drop")


class MyTypeError(TypeError):
    pass


class RaisesMine:
    def __reduce__(self) -> Any:
        raise MyTypeError("mine")


class RaisesValueError:
    def __reduce__(self) -> Any:
        raise ValueError("on purpose")


@pytest.mark.parametrize("entry", ["dumps-auto", "dumps-pickle", "Pickler"])
def test_a_users_own_typeerror_subclass_is_still_caught_by_its_class(
    entry: str, tmp_path: Path
) -> None:
    with pytest.raises(MyTypeError) as info:
        ENTRY_POINTS[entry](Wrap(RaisesMine()), tmp_path)
    assert isinstance(info.value, omnipickle.PicklingError)
    assert info.value.path == "root.c"


@pytest.mark.parametrize("entry", ["dumps-auto", "dumps-cloudpickle", "Pickler"])
def test_other_exceptions_of_the_users_code_keep_their_type(entry: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on purpose") as info:
        ENTRY_POINTS[entry](Wrap(RaisesValueError()), tmp_path)
    assert type(info.value) is ValueError


def test_pickling_errors_travel_to_another_process_with_their_path() -> None:
    """A worker that fails to dump sends the error back: it pickles, by name or as its base."""
    errors = []
    with socket.socket() as sock:
        for obj in (Wrap(sock), Wrap(RaisesMine())):
            try:
                omnipickle.dumps(obj)
            except omnipickle.PicklingError as exc:
                errors.append(exc)
    for error in errors:
        back = pickle.loads(pickle.dumps(error))
        assert isinstance(back, omnipickle.PicklingTypeError)
        assert (str(back), back.path, back.fix) == (str(error), error.path, error.fix)


# --- loading: the code's exceptions propagate, the stream's are UnpicklingErrors --------------


class SetstateRaises:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __setstate__(self, state: dict[str, Any]) -> None:
        raise state["exc"]


class LoadFailed(Exception):
    pass


def explode(why: str) -> Any:
    raise LoadFailed(why)


class ConstructorRaises:
    def __reduce__(self) -> Any:
        return (explode, ("constructor",))


class PersistentIdFailed(pickle.UnpicklingError):
    pass


def _loads(data: bytes) -> Any:
    return omnipickle.loads(data)


def _load_file(data: bytes) -> Any:
    return omnipickle.load(io.BytesIO(data))


def _unpickler(data: bytes) -> Any:
    return omnipickle.Unpickler(io.BytesIO(data)).load()


def _load_path(data: bytes, tmp_path: Path) -> Any:
    path = tmp_path / "payload"
    path.write_bytes(data)
    return omnipickle.load(path)


WRITERS: dict[str, Callable[[Any], bytes]] = {
    "pickle": lambda obj: pickle.dumps(obj),
    "pickle-protocol-0": lambda obj: pickle.dumps(obj, 0),
    "raw": lambda obj: omnipickle.dumps(obj, raw=True),
    "envelope": omnipickle.dumps,
    "envelope-gzip": lambda obj: omnipickle.dumps(obj, compression="gzip"),
    "envelope-dill": lambda obj: omnipickle.dumps(obj, backend="dill"),
}
READERS: dict[str, Callable[[bytes], Any]] = {
    "loads": _loads,
    "load-file": _load_file,
    "Unpickler": _unpickler,
}


def _raised(run: Callable[[], Any]) -> BaseException:
    try:
        run()
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


USER_FAILURES: dict[str, Callable[[], Any]] = {
    "setstate-valueerror": lambda: SetstateRaises(ValueError("boom")),
    "setstate-keyerror": lambda: SetstateRaises(KeyError("missing")),
    "setstate-unpicklingerror": lambda: SetstateRaises(PersistentIdFailed("mine")),
    "constructor": ConstructorRaises,
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("failure", sorted(USER_FAILURES))
def test_what_the_streams_code_raises_propagates_as_under_pickle(
    failure: str, writer: str, reader: str
) -> None:
    data = WRITERS[writer](USER_FAILURES[failure]())
    expected = _raised(lambda: pickle.loads(pickle.dumps(USER_FAILURES[failure]())))
    got = _raised(lambda: READERS[reader](data))
    assert type(got) is type(expected)
    assert str(got) == str(expected)


class _TemporaryModule:
    """A module importable from a folder, that can be taken away again."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name = f"omni_gone_{abs(hash(folder)) % 10**8}"
        (folder / f"{self.name}.py").write_text("class Gone:\n    pass\n")
        self.folder = folder
        self.monkeypatch = monkeypatch
        monkeypatch.syspath_prepend(str(folder))

    def load(self) -> Any:
        __import__(self.name)
        return sys.modules[self.name]

    def remove(self) -> None:
        self.monkeypatch.delitem(sys.modules, self.name)
        (self.folder / f"{self.name}.py").unlink()


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("writer", ["pickle", "raw", "envelope"])
@pytest.mark.parametrize(
    ("missing", "kind"), [("module", ModuleNotFoundError), ("attribute", AttributeError)]
)
def test_a_missing_name_is_the_error_pickle_raises_naming_it(
    missing: str,
    kind: type[BaseException],
    writer: str,
    reader: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = _TemporaryModule(tmp_path, monkeypatch)
    data = WRITERS[writer]([module.load().Gone()])
    if missing == "module":
        module.remove()
    else:
        monkeypatch.delattr(module.load(), "Gone")
    expected = _raised(lambda: pickle.loads(data))  # an uncompressed envelope is a pickle too
    assert type(expected) is kind
    error = _raised(lambda: READERS[reader](data))
    assert isinstance(error, kind)
    assert isinstance(error, pickle.UnpicklingError)
    assert str(expected) in str(error)
    assert error.name == expected.name  # type: ignore[attr-defined]


# Streams pickle's C unpickler refuses, each with the type it raises.
DAMAGED: dict[str, bytes] = {
    "unsupported protocol (ValueError)": b"\x80\x06N.",
    "negative PUT (ValueError)": b"Va\np-1\n.",
    "bad int literal (ValueError)": b"I9223372036854775807JUNK\n.",
    "calls None (TypeError)": b"N)R.",
    "REDUCE of a non-tuple (TypeError)": b"\x80\x05K\x01K\x02R.",
    "bad utf-8 in a global (UnicodeDecodeError)": b"c\xff\nlog\n.",
    "unknown codec (LookupError)": b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x03\x00\x00"
    b"\x00bad\x86R.",
    "bad decimal (decimal.InvalidOperation)": b"cdecimal\nDecimal\n(Vx\ntR.",
    "invalid opcode (UnpicklingError)": b"\x80\x05\xff.",
    "truncated (UnpicklingError)": pickle.dumps(list(range(100)))[:-20],
    "APPEND onto a number (AttributeError)": b"\x80\x05K\x01K\x02a.",
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("data", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_stream_is_an_unpicklingerror_and_pickles_type(data: bytes, reader: str) -> None:
    expected = _raised(lambda: pickle.loads(data))
    error = _raised(lambda: READERS[reader](data))
    assert isinstance(error, omnipickle.UnpicklingError)
    assert isinstance(error, type(expected))
    assert str(expected) in str(error)
    assert error.__cause__ is not None


def test_a_damaged_stream_is_a_corruptpayloaderror_that_is_a_valueerror() -> None:
    with pytest.raises(omnipickle.CorruptPayloadError, match="unsupported pickle protocol: 6"):
        omnipickle.loads(b"\x80\x06N.")
    with pytest.raises(ValueError, match="unsupported pickle protocol: 6"):
        omnipickle.loads(b"\x80\x06N.")


def test_a_truncated_stream_is_a_truncatedpayloaderror() -> None:
    with pytest.raises(omnipickle.TruncatedPayloadError):
        omnipickle.loads(pickle.dumps(list(range(100)))[:-20])


def test_restricted_loading_keeps_its_documented_errors() -> None:
    with pytest.raises(omnipickle.CorruptPayloadError) as info:
        omnipickle.loads(b"\x80\x06N.", restricted=True)
    assert not isinstance(info.value, ValueError)


def test_loading_errors_travel_to_another_process_as_their_base() -> None:
    error = _raised(lambda: omnipickle.loads(b"\x80\x06N."))
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is omnipickle.CorruptPayloadError
    assert str(back) == str(error)
    missing = _raised(lambda: omnipickle.loads(b"cnosuchmodule_x\nthing\n."))
    assert type(pickle.loads(pickle.dumps(missing))) is omnipickle.UnpicklingError


def _with_persistent_ids(obj: Any) -> bytes:
    class Ids(pickle.Pickler):
        def persistent_id(self, o: Any) -> Any:
            return "id" if o == "persistent" else None

    buf = io.BytesIO()
    Ids(buf, 5).dump(obj)
    return buf.getvalue()


def _enveloped(stream: bytes) -> bytes:
    pickled = Pickled([stream], len(stream), None, frozenset({"pickle"}), by_value=False)
    return b"".join(bytes(part) for part in encode(pickled, 5, None, None, None, False))


@pytest.mark.parametrize("envelope", [False, True], ids=["plain", "envelope"])
def test_a_persistent_load_that_raises_keeps_its_exception(envelope: bool) -> None:
    class Loader(omnipickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            raise PersistentIdFailed(f"no object for {pid}")

    data = _with_persistent_ids(["persistent"])
    if envelope:
        data = _enveloped(data)
    with pytest.raises(PersistentIdFailed, match="no object for id") as info:
        Loader(io.BytesIO(data)).load()
    assert type(info.value) is PersistentIdFailed


BUFFER_READERS: dict[str, Callable[[bytes, Any], Any]] = {
    "loads": lambda data, buffers: omnipickle.loads(data, buffers=buffers),
    "load-file": lambda data, buffers: omnipickle.load(io.BytesIO(data), buffers=buffers),
    "Unpickler": lambda data, buffers: omnipickle.Unpickler(io.BytesIO(data), buffers=buffers),
}


@pytest.mark.parametrize("reader", sorted(BUFFER_READERS))
@pytest.mark.parametrize("raw", [False, True], ids=["envelope", "raw"])
def test_buffers_that_are_not_iterable_are_the_callers_typeerror(reader: str, raw: bool) -> None:
    data = omnipickle.dumps(pickle.PickleBuffer(b"abc"), buffer_callback=lambda b: False, raw=raw)
    with pytest.raises(TypeError, match="iterable") as info:
        BUFFER_READERS[reader](data, object())
    assert not isinstance(info.value, omnipickle.UnpicklingError)


# --- across processes -----------------------------------------------------------------------------

_DUMPER = textwrap.dedent(
    """
    import sys, omnipickle

    class Fragile:
        def __init__(self):
            self.state = 1

        def __setstate__(self, state):
            raise ValueError("cannot come back here")

    folder = sys.argv[1]
    sys.path.insert(0, folder)
    import omni_only_here
    omnipickle.dump(Fragile(), folder + "/fragile.pkl")
    omnipickle.dump(Fragile(), folder + "/fragile-raw.pkl", raw=True)
    omnipickle.dump(omni_only_here.Thing(), folder + "/module.pkl")
    """
)

_LOADER = textwrap.dedent(
    """
    import socket, sys
    import omnipickle as pickle

    folder = sys.argv[1]
    for name in ("fragile.pkl", "fragile-raw.pkl"):
        try:
            pickle.load(folder + "/" + name)
        except ValueError as exc:  # the __setstate__'s own exception, by value from __main__
            print(name, type(exc).__name__, exc)
    try:
        pickle.load(folder + "/module.pkl")
    except ModuleNotFoundError as exc:
        print("module", exc.name, isinstance(exc, pickle.UnpicklingError))
    with socket.socket() as sock:
        try:
            pickle.dumps({"conn": sock})
        except TypeError as exc:  # written for pickle's "cannot pickle 'socket' object"
            print("socket", exc.path, isinstance(exc, pickle.PicklingError))
    """
)


def test_except_clauses_written_for_pickle_work_in_a_fresh_interpreter(tmp_path: Path) -> None:
    (tmp_path / "omni_only_here.py").write_text("class Thing:\n    pass\n")
    check_python(str(tmp_path), code=_DUMPER)
    (tmp_path / "omni_only_here.py").unlink()
    out = check_python(str(tmp_path), code=_LOADER).splitlines()
    assert out == [
        "fragile.pkl ValueError cannot come back here",
        "fragile-raw.pkl ValueError cannot come back here",
        "module omni_only_here True",
        "socket root['conn'] True",
    ]
