"""Backend and codec registries: strict verbs, lazy imports, clear errors."""

from __future__ import annotations

import importlib
import pickle
import re
from typing import Any

import pytest

import omnipickle
from omnipickle.backends import Backend, Pickled, get_backend
from omnipickle.backends.base import ChunkSink
from omnipickle.codecs import Codec, get_codec


class ReversingBackend(Backend):
    """A toy backend: pickle, with the list reversed (to see it was used)."""

    name = "reversing"

    def dumps(self, obj: Any, *, protocol: int, fix_imports: bool, buffer_callback: Any) -> Pickled:
        sink = ChunkSink()
        pickle.Pickler(sink, protocol).dump(list(reversed(obj)))
        return Pickled(
            sink.chunks, sink.length, sink.crc, frozenset({"reversing"}), False, loader="reversing"
        )

    def loads(self, data: memoryview, **options: Any) -> Any:
        return list(reversed(pickle.loads(data)))


@pytest.mark.usefixtures("restore_registries")
def test_registered_backend_is_used_and_recorded_by_name() -> None:
    omnipickle.register_backend("reversing", ReversingBackend())
    data = omnipickle.dumps([1, 2, 3], backend="reversing")
    about = omnipickle.info(data)
    assert about.backends == ("reversing",)
    assert about.loader == "reversing"
    assert about.extra == {"backends": ["reversing"], "loader": "reversing"}
    assert omnipickle.loads(data) == [1, 2, 3]


@pytest.mark.usefixtures("restore_registries")
def test_registering_over_a_name_needs_replace() -> None:
    omnipickle.register_backend("reversing", ReversingBackend())
    with pytest.raises(ValueError, match="already registered"):
        omnipickle.register_backend("reversing", ReversingBackend())
    omnipickle.register_backend("reversing", ReversingBackend(), replace=True)
    with pytest.raises(ValueError, match="already registered"):
        omnipickle.register_backend("pickle", ReversingBackend())


@pytest.mark.parametrize("name", ["", "has space", "1abc", None])
def test_backend_name_must_be_an_identifier(name: Any) -> None:
    with pytest.raises(ValueError, match="identifier"):
        omnipickle.register_backend(name, ReversingBackend())


def test_backend_must_be_a_backend_instance() -> None:
    with pytest.raises(TypeError, match="Backend"):
        omnipickle.register_backend("x", object())  # type: ignore[arg-type]


@pytest.mark.usefixtures("restore_registries")
def test_backend_whose_package_is_missing_says_what_to_install() -> None:
    omnipickle.register_backend("ghost", "ghost_package_that_is_not_there.mod:BACKEND")
    with pytest.raises(omnipickle.BackendNotInstalledError, match="pip install") as info:
        omnipickle.dumps(1, backend="ghost")
    assert isinstance(info.value, ImportError)
    assert not isinstance(info.value, ValueError)


@pytest.mark.usefixtures("restore_registries")
def test_payload_naming_an_unregistered_backend_is_refused_clearly() -> None:
    omnipickle.register_backend("reversing", ReversingBackend())
    data = omnipickle.dumps([1], backend="reversing")
    from omnipickle.backends import REGISTRY

    REGISTRY.unregister("reversing")
    with pytest.raises(omnipickle.UnknownBackendError, match="reversing"):
        omnipickle.loads(data)


def test_backends_view_is_read_only_and_lists_the_builtins() -> None:
    view = omnipickle.backends()
    assert {"auto", "pickle", "cloudpickle", "dill"} <= set(view)
    with pytest.raises(TypeError):
        view["x"] = None  # type: ignore[index]


@pytest.mark.parametrize("name", ["auto", "pickle", "cloudpickle", "dill"])
def test_each_builtin_backend_loads_lazily(name: str) -> None:
    assert isinstance(get_backend(name), Backend)


# --- codecs --------------------------------------------------------------------------------------

# What each codec must do is in tests/conformance/codec.py; here, the registry's verbs.


def test_xz_is_an_alias_of_lzma() -> None:
    assert omnipickle.info(omnipickle.dumps(1, compression="xz")).codec == "lzma"


def test_unknown_codec_lists_the_known_ones() -> None:
    with pytest.raises(omnipickle.UnknownCodecError, match=r"'gzip'.*'zstd'"):
        omnipickle.dumps(1, compression="snappy")


def test_level_without_compression_is_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        omnipickle.dumps(1, level=3)


class UpperCodec(Codec):
    """A toy codec (reversible: reverses the bytes) registered by name only."""

    name = "reverse"
    magic = b""
    levels = None

    def compress(self, data: Any, level: int | None = None) -> bytes:
        return bytes(data)[::-1]

    def decompress(self, data: Any, max_size: int | None = None) -> bytes:
        return bytes(data)[::-1]


@pytest.mark.usefixtures("restore_registries")
def test_registered_codec_is_recorded_by_name() -> None:
    omnipickle.register_codec("reverse", UpperCodec())
    data = omnipickle.dumps([1, 2], compression="reverse")
    assert omnipickle.info(data).codec == "reverse"
    assert omnipickle.loads(data) == [1, 2]


def test_codec_must_be_a_codec_instance() -> None:
    with pytest.raises(TypeError, match="Codec"):
        omnipickle.register_codec("x", object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "hint"), [("zstd", "pip install zstandard"), ("lz4", "pip install 'omnipickle[lz4]'")]
)
def test_missing_codec_package_says_what_to_install(
    name: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    codec = get_codec(name)
    real = importlib.import_module

    def fake(module: str, *args: Any) -> Any:
        if module.startswith(("zstandard", "lz4")):
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
        return real(module, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(omnipickle.CodecNotInstalledError, match=re.escape(hint)) as info:
        codec.compress(b"data")
    assert isinstance(info.value, ImportError)


def test_every_registry_can_unregister_from_the_top_level_package() -> None:
    # ``omnipickle.backends`` and ``omnipickle.codecs`` are the listing functions; the
    # subpackages are reached by their full names.
    backends = importlib.import_module("omnipickle.backends")
    codecs = importlib.import_module("omnipickle.codecs")
    resources = importlib.import_module("omnipickle.resources")
    assert omnipickle.unregister_backend is backends.unregister_backend
    assert omnipickle.unregister_codec is codecs.unregister_codec
    assert omnipickle.unregister_resource is resources.unregister_resource
    with pytest.raises(ValueError, match="auto"):
        omnipickle.unregister_backend("auto")


def test_a_serializer_cannot_be_changed_after_it_is_made() -> None:
    serializer = omnipickle.Serializer(compression="zstd")
    with pytest.raises(AttributeError, match="immutable"):
        serializer.key = b"k" * 16  # type: ignore[attr-defined]
    assert omnipickle.info(serializer.dumps([1])).signed is False


def test_remembered_answers_are_worked_out_again_after_the_registry_changes(
    restore_registries: None,
) -> None:
    from omnipickle._registry import Remembered
    from omnipickle.backends import REGISTRY, bits_for, register_backend

    calls: list[frozenset[str]] = []

    def compute(key: frozenset[str]) -> int:
        calls.append(key)
        return len(calls)

    remembered = Remembered(REGISTRY, compute, limit=2)
    key = frozenset({"pickle"})
    assert remembered(key) == remembered(key) == 1
    register_backend("mine", "somewhere:Backend")
    assert remembered(key) == 2  # the registry changed: worked out again
    for i in range(3):
        remembered(frozenset({str(i)}))
    assert len(remembered._known) <= 2
    unnamed = bits_for(frozenset({"pickle", "mine"}))[1]
    unnamed.append("changed by the caller")
    assert bits_for(frozenset({"pickle", "mine"}))[1] == ["mine"]  # callers get copies


def _records() -> list[Any]:
    from omnipickle._registry import Entry
    from omnipickle.backends.rows import BackendRow
    from omnipickle.options import DumpOptions, load_options
    from omnipickle.resources.rules import ResourceRule

    return [
        Entry("gzip", "omnipickle.codecs.gzip_codec:GZIP", None),
        BackendRow("x", "x.y:Z", package="x-dist", bit=8),
        ResourceRule("socket.socket", "drop"),
        # A backend's name where the backend goes: its instances compare by identity.
        DumpOptions(5, True, None, "pickle", None, None, b"k" * 16, False, False),
        load_options(
            fix_imports=True,
            encoding="ASCII",
            errors="strict",
            buffers=None,
            key=None,
            resources=None,
            restricted=False,
            allow=None,
        ),
    ]


@pytest.mark.parametrize("record", _records(), ids=lambda r: type(r).__name__)
def test_table_rows_and_options_are_frozen_records(record: Any) -> None:
    """What a frozen dataclass gave them: equality and hash by fields, a repr naming the
    fields, assignment refused, and copies (and pickles) equal to the original."""
    import copy

    fields = type(record).__slots__
    assert copy.copy(record) == record
    assert copy.copy(record) is not record
    assert hash(copy.copy(record)) == hash(record)
    assert pickle.loads(pickle.dumps(record)) == record
    assert repr(record) == (
        f"{type(record).__qualname__}("
        + ", ".join(f"{name}={getattr(record, name)!r}" for name in fields)
        + ")"
    )
    with pytest.raises(AttributeError, match="cannot assign to field"):
        setattr(record, fields[0], None)
    with pytest.raises(AttributeError, match="cannot delete field"):
        delattr(record, fields[0])
    assert record != type(record)(*[None] * len(fields))
    assert record.__eq__(tuple(getattr(record, name) for name in fields)) is NotImplemented


def test_a_backend_row_takes_its_fields_by_keyword_with_the_defaults() -> None:
    from omnipickle.backends.rows import BackendRow

    row = BackendRow("x", "x.y:Z", loader_id=9)
    assert (row.package, row.bit, row.loader_id, row.streams, row.supports_drop) == (
        None,
        None,
        9,
        False,
        False,
    )
    assert row.global_prefixes == ()


def test_put_all_stores_in_order_with_one_change_notice_and_stops_at_a_refusal() -> None:
    from omnipickle._registry import Table

    notices: list[int] = []
    table: Table[str, int] = Table("thing", KeyError, on_change=lambda: notices.append(1))
    table.put_all([("a", 1), ("b", 2)])
    assert dict(table.view()) == {"a": 1, "b": 2}
    assert (notices, table.generation) == ([1], 1)
    with pytest.raises(ValueError, match="already registered"):
        table.put_all([("c", 3), ("a", 9), ("d", 4)])
    assert dict(table.view()) == {"a": 1, "b": 2, "c": 3}
    assert notices == [1, 1]
    table.put_all([])
    assert notices == [1, 1]  # nothing stored, nothing to notice


def test_what_the_reader_found_is_a_mutable_unhashable_row_of_fields() -> None:
    """What a plain dataclass gave it: equality by fields, a repr naming them, assignment
    allowed, no hash."""
    from omnipickle.format.reader import PLAIN, Payload

    payload = Payload(PLAIN, size=3)
    assert payload == Payload(PLAIN, size=3)
    assert payload != Payload(PLAIN, size=4)
    assert repr(payload).startswith("Payload(kind='pickle', header=None, stream=None, ")
    payload.size = 4
    assert payload == Payload(PLAIN, size=4)
    with pytest.raises(TypeError, match="unhashable"):
        hash(payload)
