"""Bound methods, ``functools.lru_cache`` functions and unhashable classes round-trip through a
*fresh* interpreter.

pickle writes a bound method as ``getattr(obj, name)`` and an ``lru_cache`` function by its
name without checking, in the process that dumps, that the name leads back to them; auto
writes them by value when it does not (and by name, byte for byte as pickle, when it does).
Everything is dumped in one fresh interpreter that defines it in ``__main__`` and loaded in
another, whose ``__main__`` has none of it. The ``fast_path_*`` cases put the object after 499
instances of an importable class, where auto first tries the bare C pickler.
"""

from __future__ import annotations

import fractions
import functools
import json
import pickle
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import check_python
from omnipickle.backends.plain import INSTANCES, METHODS, PlainTable, plain_pickler, probe

# Methods of every kind; defined both in an importable module (on sys.path in both children)
# and in the dumping child's __main__.
KINDS = """
import functools


def no_wraps(f):
    def inner(self, *args):
        return f(self, *args) + 100
    return inner


class Kinds:
    def __init__(self, x):
        self.x = x

    def plain(self):
        return self.x + 1

    @no_wraps
    def decorated(self):
        return self.x

    as_lambda = lambda self: self.x * 2

    def renamed(self):
        return self.x + 3

    renamed.__name__ = "something_else"

    @classmethod
    def named_classmethod(cls):
        return cls.__name__

    lambda_classmethod = classmethod(lambda cls: cls.__name__ + "!")


class WithCache:
    def __init__(self, x):
        self.x = x

    @functools.lru_cache
    def cached(self):
        return self.x + 7

    def __hash__(self):
        return hash(self.x)
"""

SHAPES = (
    KINDS
    + """

def area_of(shape):
    return shape.x ** 2


def extra(shape):
    return shape.x + 1


@functools.lru_cache
def cached_square(n):
    return n * n


def crowd():
    return [Kinds(i) for i in range(499)]
"""
)

DUMP = (
    """
import functools, pickle, sys, types
import omnipickle

sys.path.insert(0, sys.argv[2])
import fidelity_shapes as shapes
"""
    + KINDS
    + """

def times_ten(self):
    return self.x * 10


def x_times_ten(obj):
    return obj.x * 10


@functools.lru_cache
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


@functools.cache
def square(n):
    return n * n


@functools.lru_cache(maxsize=2, typed=True)
def typed(n):
    return n


typed.note = "kept"


def wraps_deco(f):
    @functools.wraps(f)
    def wrapper(*args):
        return f(*args) + 1000
    return wrapper


@wraps_deco
@functools.lru_cache
def wraps_over_cache(n):
    return n


@functools.lru_cache
@wraps_deco
def cache_over_wraps(n):
    return n


class Meta(type):
    def __eq__(cls, other):
        return cls is other


class Unhashable(metaclass=Meta):
    y = 5

    def method(self):
        return "method"


fib(20)  # a full cache here; the loader's starts empty
m = Kinds(4)
stored = Kinds(5)
stored.callback = types.MethodType(times_ten, stored)
shapes.Kinds.patched = x_times_ten  # patched onto an importable class, from __main__

CASES = {
    "plain": (m.plain, "obj()"),
    "decorated": (m.decorated, "obj()"),
    "lambda_attribute": (m.as_lambda, "obj()"),
    "renamed": (m.renamed, "obj()"),
    "method_type": (types.MethodType(times_ten, m), "obj()"),
    "method_type_importable": (types.MethodType(shapes.area_of, m), "obj.__func__.__name__"),
    "named_classmethod": (Kinds.named_classmethod, "obj()"),
    "lambda_classmethod": (Kinds.lambda_classmethod, "obj()"),
    "cached_method": (WithCache(3).cached, "obj()"),
    "stored_on_its_own_object": (stored, "obj.callback()"),
    "fib": (fib, "(obj.cache_info().currsize, obj(30), obj.__wrapped__.__globals__['fib'] is obj)"),
    "square": (square, "(obj(9), obj.cache_parameters())"),
    "typed": (typed, "(obj(1), obj.cache_parameters(), obj.note)"),
    "wraps_over_cache": (wraps_over_cache, "obj(1)"),
    "cache_over_wraps": (cache_over_wraps, "obj(1)"),
    "unhashable_class": (
        Unhashable, "(obj.y, obj().method(), obj.__qualname__, type(obj).__name__)"
    ),
    "unhashable_class_twice": ([Unhashable, Unhashable], "obj[0] is obj[1]"),
    "fast_path_by_name": (shapes.crowd() + [shapes.Kinds(3).plain], "(len(obj), obj[-1]())"),
    "fast_path_classmethod": (
        shapes.crowd() + [shapes.Kinds.named_classmethod], "(len(obj), obj[-1]())"
    ),
    "fast_path_decorated": (shapes.crowd() + [shapes.Kinds(3).decorated], "obj[-1]()"),
    "fast_path_lambda_attribute": (shapes.crowd() + [shapes.Kinds(3).as_lambda], "obj[-1]()"),
    "fast_path_renamed": (shapes.crowd() + [shapes.Kinds(3).renamed], "obj[-1]()"),
    "fast_path_method_type": (
        shapes.crowd() + [types.MethodType(shapes.area_of, shapes.Kinds(3))], "obj[-1]()"
    ),
    "fast_path_patched": (shapes.crowd() + [shapes.Kinds(3).patched], "obj[-1]()"),
    "fast_path_main_method": (shapes.crowd() + [m.decorated], "obj[-1]()"),
    "fast_path_cached_method": (shapes.crowd() + [shapes.WithCache(3).cached], "obj[-1]()"),
    "fast_path_fib": (shapes.crowd() + [fib], "obj[-1](25)"),
    "fast_path_unhashable_class": (shapes.crowd() + [Unhashable], "obj[-1].y"),
}
payloads = {}
for name, (obj, check) in CASES.items():
    try:
        payloads[name] = (omnipickle.dumps(obj), check)
    except Exception as exc:  # each case fails on its own, with what went wrong
        payloads[name] = (None, f"FAILED to dump: {type(exc).__name__}: {exc}")
with open(sys.argv[1], "wb") as f:
    pickle.dump(payloads, f)
"""
)

LOAD = """
import json, pickle, sys
import omnipickle

sys.path.insert(0, sys.argv[2])
with open(sys.argv[1], "rb") as f:
    payloads = pickle.load(f)
results = {}
for name, (data, check) in payloads.items():
    if data is None:
        results[name] = check
        continue
    try:
        obj = omnipickle.loads(data)
        results[name] = repr(eval(check))
    except Exception as exc:
        results[name] = f"FAILED {type(exc).__name__}: {exc}"
print(json.dumps(results))
"""

EXPECTED = {
    "plain": "5",
    "decorated": "104",
    "lambda_attribute": "8",
    "renamed": "7",
    "method_type": "40",
    "method_type_importable": "'area_of'",
    "named_classmethod": "'Kinds'",
    "lambda_classmethod": "'Kinds!'",
    "cached_method": "10",
    "stored_on_its_own_object": "50",
    "fib": "(0, 832040, True)",
    "square": "(81, {'maxsize': None, 'typed': False})",
    "typed": "(1, {'maxsize': 2, 'typed': True}, 'kept')",
    "wraps_over_cache": "1001",
    "cache_over_wraps": "1001",
    "unhashable_class": "(5, 'method', 'Unhashable', 'Meta')",
    "unhashable_class_twice": "True",
    "fast_path_by_name": "(500, 4)",
    "fast_path_classmethod": "(500, 'Kinds')",
    "fast_path_decorated": "103",
    "fast_path_lambda_attribute": "6",
    "fast_path_renamed": "6",
    "fast_path_method_type": "9",
    "fast_path_patched": "30",
    "fast_path_main_method": "104",
    "fast_path_cached_method": "10",
    "fast_path_fib": "75025",
    "fast_path_unhashable_class": "5",
}


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shapes")
    (folder / "fidelity_shapes.py").write_text(textwrap.dedent(SHAPES))
    return folder


@pytest.fixture(scope="module")
def payloads(shapes_dir: Path) -> dict[str, tuple[bytes | None, str]]:
    path = shapes_dir / "payloads.bin"
    check_python(str(path), str(shapes_dir), code=DUMP)
    with path.open("rb") as f:
        loaded: dict[str, tuple[bytes | None, str]] = pickle.load(f)
    return loaded


@pytest.fixture(scope="module")
def results(payloads: dict[str, tuple[bytes | None, str]], shapes_dir: Path) -> dict[str, str]:
    out = check_python(str(shapes_dir / "payloads.bin"), str(shapes_dir), code=LOAD)
    loaded: dict[str, str] = json.loads(out)
    return loaded


@pytest.fixture
def shapes(shapes_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    monkeypatch.syspath_prepend(str(shapes_dir))
    import fidelity_shapes

    yield fidelity_shapes


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_object_dumped_in_main_loads_and_works_in_a_fresh_interpreter(
    results: dict[str, str], case: str
) -> None:
    assert results[case] == EXPECTED[case]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_payload_names_nothing_in_main(
    payloads: dict[str, tuple[bytes | None, str]], case: str
) -> None:
    """By reference, a ``__main__`` name loads only in the process that wrote it."""
    data, check = payloads[case]
    assert data is not None, check
    report = omnipickle.scan(data)
    assert [g.qualified_name for g in report.globals if g.module == "__main__"] == []


def test_by_value_method_of_importable_parts_needs_no_cloudpickle(
    payloads: dict[str, tuple[bytes | None, str]],
) -> None:
    """``types.MethodType(shapes.area_of, shape)``: both parts by name, bound again at load."""
    data, check = payloads["fast_path_method_type"]
    assert data is not None, check
    about = omnipickle.info(data)
    assert about.backends == ("pickle",)
    assert about.by_value is False


def test_lru_cache_by_value_records_code_by_value(
    payloads: dict[str, tuple[bytes | None, str]],
) -> None:
    data, check = payloads["fib"]
    assert data is not None, check
    about = omnipickle.info(data)
    assert about.by_value is True
    assert about.backends == ("pickle",)  # the wrapped function is rebuilt by omnipickle


# --- in this process: what is written by name stays exactly pickle's ------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_methods_whose_name_leads_back_are_written_byte_for_byte_as_pickle(
    shapes: types.ModuleType, protocol: int
) -> None:
    kinds = shapes.Kinds(3)
    point = fractions.Fraction(1, 3)
    for obj in (
        kinds.plain,
        shapes.Kinds.named_classmethod,
        shapes.WithCache(3).cached,
        point.limit_denominator,
        fractions.Fraction.from_float,
        [kinds.plain, kinds.plain, {}.get],
        [*shapes.crowd(), kinds.plain, shapes.Kinds.named_classmethod],  # the fast path
    ):
        assert omnipickle.dumps(obj, protocol=protocol, raw=True) == pickle.dumps(obj, protocol)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_importable_lru_cache_function_is_written_as_pickle_writes_it(
    shapes: types.ModuleType, protocol: int
) -> None:
    cached = shapes.cached_square
    for obj in (cached, [*shapes.crowd(), cached], shapes.WithCache.cached):
        assert omnipickle.dumps(obj, protocol=protocol, raw=True) == pickle.dumps(obj, protocol)


def test_bound_methods_take_the_plain_pickler_path_wherever_they_are(
    shapes: types.ModuleType,
) -> None:
    """Past the probed items, the bare pickler meets it (and the stream is redone with the
    table); among them, the plain pickler starts with the table."""
    method = types.MethodType(shapes.area_of, shapes.Kinds(3))
    assert probe([*shapes.crowd(), method]) == INSTANCES
    assert probe([method, *shapes.crowd()]) == METHODS
    assert probe(method) == METHODS


@pytest.mark.parametrize("protocol", [0, 2, 4, pickle.HIGHEST_PROTOCOL, -1])
def test_plain_table_binds_a_method_again_when_its_name_does_not_lead_back(
    shapes: types.ModuleType, protocol: int
) -> None:
    import io

    shape = shapes.Kinds(3)
    buf = io.BytesIO()
    plain_pickler(buf, protocol, table=PlainTable).dump([types.MethodType(shapes.area_of, shape)])
    (method,) = pickle.loads(buf.getvalue())
    assert (method.__func__, method.__self__.x, method()) == (shapes.area_of, 3, 9)
    globals_named = {g.qualified_name for g in omnipickle.scan(buf.getvalue()).globals}
    assert "omnipickle._reconstruct.make_method" in globals_named


def test_copyreg_reducer_for_bound_methods_comes_before_autos(
    shapes: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import copyreg

    monkeypatch.setitem(copyreg.dispatch_table, types.MethodType, lambda m: (str, ("mine",)))
    assert omnipickle.loads(omnipickle.dumps(shapes.Kinds(3).decorated)) == "mine"
    assert (
        omnipickle.loads(omnipickle.dumps([*shapes.crowd(), shapes.Kinds(3).plain]))[-1] == "mine"
    )


def test_method_stored_on_its_own_object_loads_where_pickle_cannot(
    shapes: types.ModuleType,
) -> None:
    """Its name leads back only through the object's own ``__dict__``: by name, it would be
    looked up while that object's state is still being loaded."""
    kinds = shapes.Kinds(4)
    kinds.extra = types.MethodType(shapes.extra, kinds)
    with pytest.raises(AttributeError, match="extra"):
        pickle.loads(pickle.dumps(kinds))
    loaded = omnipickle.loads(omnipickle.dumps(kinds))
    assert loaded.extra.__self__ is loaded
    assert loaded.extra() == 5


def unhashable_class() -> type:
    """A local class (so it goes by value) whose metaclass defines ``__eq__`` only."""

    class Meta(type):
        def __eq__(cls, other: object) -> bool:
            return cls is other

        __hash__ = None  # type: ignore[assignment]

    class Local(metaclass=Meta):
        value = 3

    return Local


def test_unhashable_class_and_its_metaclass_go_by_value_within_one_payload_as_one() -> None:
    Local = unhashable_class()
    with pytest.raises(TypeError):
        hash(Local)
    first, second = omnipickle.loads(omnipickle.dumps([Local, Local]))
    assert first is second
    assert first.value == 3
    assert first.__qualname__ == Local.__qualname__


@pytest.mark.parametrize("make", ["make_method", "make_lru_cache"])
def test_restricted_loading_takes_by_value_methods_and_caches_only_when_signed(
    make: str,
) -> None:
    from helpers import Plain, importable_function

    obj: Any
    if make == "make_method":
        obj = types.MethodType(importable_function, Plain(1, 2))
    else:
        obj = functools.lru_cache(lambda x: x * 2)
    key = b"k" * 32
    signed = omnipickle.dumps(obj, key=key)
    assert f"omnipickle._reconstruct.{make}" in {
        g.qualified_name for g in omnipickle.scan(signed).globals
    }
    with pytest.raises(omnipickle.UnsafePayloadError, match=make):
        omnipickle.loads(omnipickle.dumps(obj), restricted=True, allow=("helpers.*",))
    loaded = omnipickle.loads(signed, key=key, restricted=True, allow=("helpers.*",))
    if make == "make_method":
        assert (loaded.__func__, loaded.__self__) == (importable_function, Plain(1, 2))
    else:
        assert loaded(5) == 10


def test_each_payload_loads_its_own_copy_of_an_unhashable_class() -> None:
    """cloudpickle's registry (one class for two payloads of it) needs the class's hash."""
    Local = unhashable_class()
    first = omnipickle.loads(omnipickle.dumps(Local))
    second = omnipickle.loads(omnipickle.dumps(Local))
    assert first is not second
    assert first.__qualname__ == second.__qualname__ == Local.__qualname__


def test_instances_of_an_unhashable_class_are_refused_as_pickle_refuses_them() -> None:
    Local = unhashable_class()
    with pytest.raises(TypeError, match="unhashable"):
        pickle.dumps(Local())
    with pytest.raises(TypeError, match="unhashable"):
        omnipickle.dumps(Local())


PEERS_DUMP = """
import functools, pickle, sys
import cloudpickle, dill


class Meta(type):
    def __eq__(cls, other):
        return cls is other


class Unhashable(metaclass=Meta):
    pass


@functools.lru_cache
def cached(n):
    return n


results = {}
for library in (cloudpickle, dill):
    try:
        library.dumps(Unhashable)
        results[library.__name__ + " unhashable class"] = "dumped"
    except TypeError:
        results[library.__name__ + " unhashable class"] = "fails"
with open(sys.argv[1], "wb") as f:
    pickle.dump((results, cloudpickle.dumps(cached)), f)
"""

PEERS_LOAD = """
import json, pickle, sys

with open(sys.argv[1], "rb") as f:
    results, blob = pickle.load(f)
try:
    pickle.loads(blob)
    results["cloudpickle lru_cache of __main__"] = "loads"
except AttributeError:
    results["cloudpickle lru_cache of __main__"] = "fails"
print(json.dumps(results))
"""


def test_the_peers_still_fail_where_the_docs_say_omnipickle_does_better(tmp_path: Path) -> None:
    """docs/backends.md ("Where it does better") says so; update it when this fails."""
    payload = tmp_path / "peers.bin"
    check_python(str(payload), code=PEERS_DUMP)
    assert json.loads(check_python(str(payload), code=PEERS_LOAD)) == {
        "cloudpickle unhashable class": "fails",
        "dill unhashable class": "fails",
        "cloudpickle lru_cache of __main__": "fails",
    }
