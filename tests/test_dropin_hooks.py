"""``omnipickle.Unpickler`` subclasses keep pickle's hooks for every payload, envelope or plain.

The pickle documentation's "Restricting Globals" recipe, ported with ``import omnipickle as
pickle``, must refuse what it refuses under pickle, whatever wrote the payload: pickle, the auto
backend (compressed, signed), dill (whole, or as a blob nested in our stream), cloudpickle's
by-value code.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle as stdlib_pickle
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import dill
import pytest

import omnipickle as pickle
from helpers import Plain
from omnipickle._reconstruct import LOAD_HOOKS, load_dill
from omnipickle.backends import Backend, Pickled
from omnipickle.backends.base import ChunkSink
from omnipickle.codecs import get_codec
from omnipickle.format.writer import encode
from payloads import Call, touch

KEY = b"k" * 32

# --- the recipe, as the pickle documentation writes it ------------------------------------------

SAFE_BUILTINS = {"range", "complex", "set", "frozenset", "slice"}


class RestrictedUnpickler(pickle.Unpickler):
    """The "Restricting Globals" recipe, plus ``extra``: names a variant also allows."""

    extra: ClassVar[frozenset[tuple[str, str]]] = frozenset()

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in SAFE_BUILTINS:
            return getattr(builtins, name)
        if (module, name) in self.extra:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is forbidden")


def restricted_loads(data: bytes, **options: Any) -> Any:
    return RestrictedUnpickler(io.BytesIO(data), **options).load()


class Recording(pickle.Unpickler):
    """Allows everything, and records every global it is asked for."""

    def __init__(self, file: Any, **options: Any) -> None:
        super().__init__(file, **options)
        self.seen: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> Any:
        self.seen.append((module, name))
        return super().find_class(module, name)


def recorded(data: bytes) -> tuple[Any, list[tuple[str, str]]]:
    unpickler = Recording(io.BytesIO(data))
    return unpickler.load(), unpickler.seen


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "the payload ran"


# --- find_class -----------------------------------------------------------------------------------


def test_the_recipe_loads_the_data_it_allows() -> None:
    value = [1, "two", range(3), {4}, frozenset({5}), complex(1, 2)]
    assert restricted_loads(stdlib_pickle.dumps(value)) == value
    assert restricted_loads(pickle.dumps(value)) == value
    assert restricted_loads(pickle.dumps(value, compression="zstd", key=KEY), key=KEY) == value


def test_the_recipe_refuses_os_system_in_a_plain_pickle(marker: Path) -> None:
    with pytest.raises(stdlib_pickle.UnpicklingError, match=r"posix\.system.* is forbidden"):
        restricted_loads(stdlib_pickle.dumps(Call(os.system, touch(marker))))


@pytest.mark.parametrize("compression", [None, "zstd"])
@pytest.mark.parametrize("key", [None, KEY])
def test_the_recipe_refuses_os_system_in_an_omnipickle_payload(
    marker: Path, compression: str | None, key: bytes | None
) -> None:
    data = pickle.dumps(Call(os.system, touch(marker)), compression=compression, key=key)
    with pytest.raises(stdlib_pickle.UnpicklingError, match=r"posix\.system.* is forbidden"):
        restricted_loads(data, key=key)


@pytest.mark.parametrize("backend", ["pickle", "cloudpickle", "dill"])
def test_the_recipe_refuses_os_system_whichever_backend_wrote_it(
    marker: Path, backend: str
) -> None:
    data = pickle.dumps(Call(os.system, touch(marker)), backend=backend)
    with pytest.raises(stdlib_pickle.UnpicklingError, match=r"posix\.system.* is forbidden"):
        restricted_loads(data)


def test_a_subclass_sees_the_names_of_dills_part() -> None:
    target = Plain(1, 2)
    value, seen = recorded(pickle.dumps([target, weakref.ref(target)]))
    assert value[1]() is value[0]
    assert ("dill._dill", "_create_weakref") in seen


def test_a_subclass_allowing_dills_part_still_refuses_os_system(marker: Path) -> None:
    class AllowingWeakrefs(RestrictedUnpickler):
        extra = frozenset({("dill._dill", "_create_weakref"), ("helpers", "Plain")})

    target = Plain(1, 2)
    data = pickle.dumps([target, weakref.ref(target), Call(os.system, touch(marker))])
    with pytest.raises(stdlib_pickle.UnpicklingError, match=r"posix\.system.* is forbidden"):
        AllowingWeakrefs(io.BytesIO(data)).load()


def test_the_recipe_refuses_dills_part() -> None:
    target = Plain(1, 2)
    with pytest.raises(stdlib_pickle.UnpicklingError, match="is forbidden"):
        restricted_loads(pickle.dumps([weakref.ref(target)]))


@pytest.mark.parametrize("outer", ["omnipickle", "plain"])
def test_os_system_inside_a_nested_dill_blob_is_refused(marker: Path, outer: str) -> None:
    """The blob is read by dill's unpickler, which defers to the subclass's find_class."""

    class AllowingDillBlobs(RestrictedUnpickler):
        extra = frozenset({("omnipickle._reconstruct", "load_dill")})

    hostile = Call(load_dill, dill.dumps(Call(os.system, touch(marker))))
    data = pickle.dumps(hostile) if outer == "omnipickle" else stdlib_pickle.dumps(hostile)
    with pytest.raises(stdlib_pickle.UnpicklingError, match=r"posix\.system.* is forbidden"):
        AllowingDillBlobs(io.BytesIO(data)).load()


def test_the_globals_of_a_nested_dill_blob_reach_the_subclass() -> None:
    value, seen = recorded(pickle.dumps(Call(load_dill, dill.dumps(Plain(1, 2)))))
    assert value == Plain(1, 2)
    assert seen == [("omnipickle._reconstruct", "load_dill"), ("helpers", "Plain")]


def test_a_subclass_sees_the_names_a_lambda_and_a_class_by_value_are_built_with() -> None:
    value, seen = recorded(pickle.dumps(lambda x: x + 1))
    assert value(1) == 2
    assert seen == [("omnipickle._rebuild", "function")]

    def local() -> type:
        class Local:
            pass

        return Local

    value, seen = recorded(pickle.dumps(local()))
    assert value.__name__ == "Local"
    assert ("cloudpickle.cloudpickle", "_make_skeleton_class") in seen


def test_the_recipe_refuses_a_lambda_by_value_before_it_runs(marker: Path) -> None:
    command = touch(marker)
    data = pickle.dumps(Call(lambda: os.system(command)))
    with pytest.raises(stdlib_pickle.UnpicklingError, match=r"_rebuild.function' is forbidden"):
        restricted_loads(data)
    assert not marker.exists()


def test_super_find_class_resolves_the_names_only_dill_knows() -> None:
    """dill's stream of a ``__main__`` function names ``__builtin__.__main__``, which only
    dill's lookup maps."""
    in_main = eval("lambda x: x * 3", vars(sys.modules["__main__"]))
    value, seen = recorded(pickle.dumps(in_main, backend="dill"))
    assert value(2) == 6
    assert ("__builtin__", "__main__") in seen


class _ReadingItsOwnWay(Backend):
    """A third-party backend whose loads reads the stream with pickle.loads, no hooks."""

    name = "own_way"

    def dumps(self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: Any) -> Pickled:
        sink = ChunkSink()
        stdlib_pickle.Pickler(sink, protocol).dump(obj)
        return Pickled(sink.chunks, sink.length, sink.crc, frozenset({"own_way"}), False, "own_way")

    def loads(self, data: memoryview, **options: Any) -> Any:
        return stdlib_pickle.loads(data)


@pytest.mark.usefixtures("restore_registries")
def test_a_backend_that_cannot_defer_is_refused_under_hooks(marker: Path) -> None:
    pickle.register_backend("own_way", _ReadingItsOwnWay())
    data = pickle.dumps(Call(os.system, touch(marker)), backend="own_way")
    with pytest.raises(pickle.UnpicklingError, match=r"'own_way'.*find_class"):
        restricted_loads(data)
    assert pickle.Unpickler(io.BytesIO(pickle.dumps([1], backend="own_way"))).load() == [1]


def test_hooks_are_only_active_while_the_subclass_loads() -> None:
    restricted_loads(pickle.dumps([1]))
    assert LOAD_HOOKS.get() is None
    with pytest.raises(stdlib_pickle.UnpicklingError):
        restricted_loads(pickle.dumps(Plain(1, 2)))
    assert LOAD_HOOKS.get() is None


# --- persistent_load ------------------------------------------------------------------------------


class _Ref:
    def __init__(self, key: str) -> None:
        self.key = key


def _with_persistent_ids(obj: Any) -> bytes:
    class P(stdlib_pickle.Pickler):
        def persistent_id(self, o: Any) -> Any:
            return ("db", o.key) if isinstance(o, _Ref) else None

    buf = io.BytesIO()
    P(buf, 5).dump(obj)
    return buf.getvalue()


def _enveloped(stream: bytes, compression: str | None) -> bytes:
    """``stream`` inside an omnipickle envelope, as a backend's dumps would hand it over."""
    codec = get_codec(compression) if compression else None
    pickled = Pickled([stream], len(stream), None, frozenset({"pickle"}), by_value=False)
    return b"".join(bytes(part) for part in encode(pickled, 5, codec, None, None, False))


class Persistent(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        return f"loaded {pid[1]}"


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_persistent_load_is_honoured_inside_an_envelope(compression: str | None) -> None:
    data = _enveloped(_with_persistent_ids([_Ref("x"), 2]), compression)
    assert Persistent(io.BytesIO(data)).load() == ["loaded x", 2]


def test_persistent_load_set_on_the_instance_is_honoured_inside_an_envelope() -> None:
    unpickler = pickle.Unpickler(io.BytesIO(_enveloped(_with_persistent_ids(_Ref("y")), None)))
    unpickler.persistent_load = lambda pid: f"got {pid[1]}"
    assert unpickler.load() == "got y"


def test_persistent_load_is_honoured_inside_a_nested_dill_blob() -> None:
    class D(dill.Pickler):  # type: ignore[misc]
        def persistent_id(self, o: Any) -> Any:
            return ("db", o.key) if isinstance(o, _Ref) else None

    buf = io.BytesIO()
    D(buf).dump([_Ref("z")])
    data = pickle.dumps(Call(load_dill, buf.getvalue()))
    assert Persistent(io.BytesIO(data)).load() == ["loaded z"]


def test_a_persistent_id_with_no_persistent_load_is_an_unpickling_error() -> None:
    class NoPersistentLoad(RestrictedUnpickler):
        extra = frozenset({("omnipickle._reconstruct", "load_dill")})

    data = pickle.dumps(Call(load_dill, _with_persistent_ids(_Ref("z"))))
    with pytest.raises(stdlib_pickle.UnpicklingError, match="persistent"):
        NoPersistentLoad(io.BytesIO(data)).load()


# --- key= -----------------------------------------------------------------------------------------


def test_unpickler_key_verifies_envelopes_and_refuses_plain_streams() -> None:
    buf = io.BytesIO(pickle.dumps("signed", key=KEY))
    assert pickle.Unpickler(buf, key=KEY).load() == "signed"
    with pytest.raises(pickle.SignatureError):
        pickle.Unpickler(io.BytesIO(pickle.dumps("signed", key=KEY)), key=b"w" * 32).load()
    with pytest.raises(pickle.SignatureError):
        pickle.Unpickler(io.BytesIO(stdlib_pickle.dumps("plain")), key=KEY).load()
