"""`import omnipickle as pickle` keeps ordinary pickle code working."""

from __future__ import annotations

import io
import pickle as stdlib_pickle
from typing import Any

import pytest

import omnipickle as pickle
from helpers import Plain


def test_the_module_has_pickles_names() -> None:
    for name in (
        "dumps",
        "loads",
        "dump",
        "load",
        "Pickler",
        "Unpickler",
        "HIGHEST_PROTOCOL",
        "DEFAULT_PROTOCOL",
        "PicklingError",
        "UnpicklingError",
        "PickleError",
        "PickleBuffer",
    ):
        assert hasattr(pickle, name), name
    assert pickle.HIGHEST_PROTOCOL == stdlib_pickle.HIGHEST_PROTOCOL
    assert pickle.DEFAULT_PROTOCOL <= pickle.HIGHEST_PROTOCOL


def test_positional_protocol_and_keywords_as_in_pickle() -> None:
    data = pickle.dumps([1, 2], 2, fix_imports=True)
    assert pickle.loads(data, fix_imports=True, encoding="ASCII", errors="strict") == [1, 2]


def test_errors_are_caught_by_pickles_exception_types() -> None:
    with pytest.raises(stdlib_pickle.PicklingError):
        pickle.dumps(i for i in range(2))
    with pytest.raises(stdlib_pickle.UnpicklingError):
        pickle.loads(b"garbage!")
    with pytest.raises(EOFError):
        pickle.loads(b"")


def test_pickler_writes_a_plain_stream_readable_by_stdlib_pickle() -> None:
    buf = io.BytesIO()
    pickle.Pickler(buf).dump({"a": Plain(1, 2)})
    assert stdlib_pickle.loads(buf.getvalue()) == {"a": Plain(1, 2)}


def test_pickler_writes_lambdas_by_value() -> None:
    buf = io.BytesIO()
    pickle.Pickler(buf, 5).dump(lambda x: x - 1)
    assert stdlib_pickle.loads(buf.getvalue())(3) == 2


def test_pickler_and_unpickler_stream_several_objects() -> None:
    buf = io.BytesIO()
    p = pickle.Pickler(buf)
    p.dump(1)
    p.dump("two")
    buf.seek(0)
    u = pickle.Unpickler(buf)
    assert (u.load(), u.load()) == (1, "two")


def test_unpickler_reads_omnipickle_payloads_from_the_file() -> None:
    buf = io.BytesIO()
    pickle.dump("enveloped", buf, compression="gzip")
    stdlib_pickle.dump("plain", buf)
    buf.seek(0)
    u = pickle.Unpickler(buf)
    assert u.load() == "enveloped"
    assert u.load() == "plain"


def test_pickler_subclass_with_persistent_id() -> None:
    class DBRef:
        def __init__(self, key: str) -> None:
            self.key = key

    class P(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return ("db", obj.key) if isinstance(obj, DBRef) else None

    class U(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return f"loaded {pid[1]}"

    buf = io.BytesIO()
    P(buf).dump([DBRef("x"), 2])
    buf.seek(0)
    assert U(buf).load() == ["loaded x", 2]


def test_pickler_subclass_dispatch_table_is_honoured() -> None:
    import copyreg

    class P(pickle.Pickler):
        dispatch_table = copyreg.dispatch_table.copy()
        dispatch_table[Plain] = lambda obj: (str, (f"Plain({obj.a})",))

    buf = io.BytesIO()
    P(buf).dump(Plain(4, 5))
    assert stdlib_pickle.loads(buf.getvalue()) == "Plain(4)"


def test_pickler_subclass_reducer_override_can_defer_to_ours() -> None:
    class P(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, complex):
                return (str, ("a complex",))
            return super().reducer_override(obj)

    buf = io.BytesIO()
    P(buf).dump([1j, lambda: "by value"])
    out = stdlib_pickle.loads(buf.getvalue())
    assert out[0] == "a complex"
    assert out[1]() == "by value"


def test_serializer_holds_options() -> None:
    s = pickle.Serializer(compression="lzma", protocol=4)
    data = s.dumps([1, 2])
    about = pickle.info(data)
    assert (about.codec, about.protocol) == ("lzma", 4)
    assert s.loads(data) == [1, 2]
    assert pickle.info(s.dumps(1, compression=None)).codec is None


def test_serializer_rejects_unknown_options_and_bad_values() -> None:
    with pytest.raises(TypeError, match="unknown Serializer option"):
        pickle.Serializer(compresion="zstd")
    with pytest.raises(pickle.UnknownCodecError):
        pickle.Serializer(compression="snappy")
    with pytest.raises(pickle.UnknownBackendError):
        pickle.Serializer(backend="marshal")


def test_serializer_repr_hides_the_key() -> None:
    s = pickle.Serializer(key=b"s" * 16)
    assert "sss" not in repr(s)


def test_serializer_dump_and_load_files(tmp_path: Any) -> None:
    s = pickle.Serializer(compression="gzip", key=b"q" * 20)
    s.dump({"x": 1}, tmp_path / "f")
    assert s.load(tmp_path / "f") == {"x": 1}
    with pytest.raises(pickle.SignatureError):
        pickle.load(tmp_path / "f", key=b"z" * 20)
