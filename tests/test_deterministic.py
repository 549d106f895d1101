"""``dumps(obj, deterministic=True)``: equal objects, equal bytes, in every process and under
every ``PYTHONHASHSEED`` (docs/deterministic.md).

The cross-process claims are checked in fresh interpreters: tests/scripts/deterministic_cases.py
builds each kind of object in ``__main__`` and reports its payload's hash and its digests, under
several hash seeds, twice each; and loads the payloads another interpreter wrote.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime
import decimal
import fractions
import io
import ipaddress
import json
import pathlib
import pickle
import threading
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

import omnipickle
from conftest import check_python
from omnipickle import DeterminismError, PicklingError

CASES = [
    "mixed_set",
    "frozensets_of_tuples",
    "nested_dicts",
    "dataclasses",
    "main_class",
    "main_enum",
    "main_instances",
    "lambda",
    "closures",
    "numpy",
    "transient",
]
FIELDS = ("payload", "blake2b", "sha256", "xxh3_128", "stripped", "dask")
SEEDS: list[str | None] = ["0", "1", "2024", None]  # None: a random seed


def det(obj: Any, **options: Any) -> bytes:
    return omnipickle.dumps(obj, deterministic=True, **options)


# --- the subprocess matrix --------------------------------------------------------------------


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every (seed, run) pair's report, and a report from loading run 0's payloads under yet
    another seed."""
    runs = [(seed, i) for seed in SEEDS for i in range(2)]
    folders = {run: tmp_path_factory.mktemp(f"det-{run[0]}-{run[1]}") for run in runs}

    def dump(run: tuple[str | None, int]) -> dict[str, Any]:
        out = check_python(
            "deterministic_cases.py",
            "dump",
            str(folders[run]),
            env_overrides={"PYTHONHASHSEED": run[0]},
        )
        return json.loads(out)  # type: ignore[no-any-return]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        reports = dict(zip(runs, pool.map(dump, runs), strict=True))
    loaded = json.loads(
        check_python(
            "deterministic_cases.py",
            "load",
            str(folders[runs[0]]),
            env_overrides={"PYTHONHASHSEED": "777"},
        )
    )
    return {"reports": reports, "loaded": loaded}


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("case", CASES)
def test_every_seed_and_every_run_gives_the_same_bytes_and_digests(
    matrix: dict[str, Any], case: str, field: str
) -> None:
    seen = {run: report[case][field] for run, report in matrix["reports"].items()}
    assert len(set(map(str, seen.values()))) == 1, seen


@pytest.mark.parametrize("case", ["mixed_set", "main_class", "frozensets_of_tuples"])
def test_the_ordinary_payload_of_the_same_objects_varies_between_runs(
    matrix: dict[str, Any], case: str
) -> None:
    """The control: without deterministic=True these bytes do change (so the matrix can fail)."""
    seen = {report[case]["ordinary"] for report in matrix["reports"].values()}
    assert len(seen) > 1


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("case", CASES)
def test_a_payload_loaded_in_another_interpreter_dumps_again_to_the_same_bytes(
    matrix: dict[str, Any], case: str, field: str
) -> None:
    """The loader checked each object works (``check`` in the script), then dumped it again."""
    first = next(iter(matrix["reports"].values()))
    assert matrix["loaded"][case][field] == first[case][field]


# --- sets ---------------------------------------------------------------------------------------


def test_sets_built_in_any_order_give_the_same_bytes() -> None:
    items = [f"k{i}" for i in range(500)] + list(range(100)) + [(i, "t") for i in range(50)]
    forward, backward = set(items), set(reversed(items))
    assert list(forward) != list(backward)  # the iteration orders differ...
    assert det(forward) == det(backward)  # ...the bytes do not
    assert det(frozenset(items)) == det(frozenset(reversed(items)))


@pytest.mark.parametrize(
    "items",
    [
        ["b", "a", "c"],
        [b"b", b"a"],
        [3, 1, 2],
        [2.5, float("nan"), -0.0, 1e300],
        [1, "a", None, 2.5, (1,), frozenset({1})],
    ],
    ids=["str", "bytes", "int", "float", "mixed"],
)
def test_sets_round_trip_with_their_elements(items: list[Any]) -> None:
    out = omnipickle.loads(det(set(items)))
    assert type(out) is set and len(out) == len(items)
    assert {repr(x) for x in out} == {repr(x) for x in items}


def test_set_and_frozenset_subclasses_keep_their_class_and_state() -> None:
    class Tags(set[str]):
        pass

    tags = Tags([f"t{i}" for i in range(40)])
    tags.note = "kept"  # type: ignore[attr-defined]
    reordered = Tags(sorted(tags, reverse=True))
    reordered.note = "kept"  # type: ignore[attr-defined]
    assert det(tags) == det(reordered)
    tags = Tags(["x", "y", "z"])
    tags.note = "kept"  # type: ignore[attr-defined]
    out = omnipickle.loads(det(tags))
    assert type(out).__name__ == "Tags" and out == {"x", "y", "z"} and out.note == "kept"


def test_weak_sets_and_abc_registries_are_ordered() -> None:
    import abc
    import weakref

    classes = [type(f"K{i}", (), {}) for i in range(20)]
    forward, backward = weakref.WeakSet(classes), weakref.WeakSet(reversed(classes))
    assert det(forward) == det(backward)

    def make_abc(order: list[type]) -> type:
        class Base(abc.ABC):  # noqa: B024 - registrations only
            pass

        for cls in order:
            Base.register(cls)
        return Base

    assert det(make_abc(classes)) == det(make_abc(classes[::-1]))
    # An ABC holds its registered classes weakly: load one beside it, to keep it alive.
    base, k3 = omnipickle.loads(det([make_abc(classes), classes[3]]))
    assert issubclass(k3, base)


def test_a_set_of_items_that_serialize_alike_raises_naming_its_path() -> None:
    class Node:
        pass

    with pytest.raises(DeterminismError) as info:
        det({"cfg": {Node(), Node()}})
    err = info.value
    assert isinstance(err, PicklingError) and isinstance(err, pickle.PicklingError)
    assert err.path == "root['cfg']"
    assert str(err).startswith("root['cfg'] is a set of unorderable items: ")
    assert "Node" in str(err)


def test_the_path_of_an_unorderable_set_inside_an_instance() -> None:
    class Node:
        pass

    class Holder:
        def __init__(self) -> None:
            self.nodes = frozenset({Node(), Node()})

    with pytest.raises(DeterminismError) as info:
        det([Holder()])
    assert info.value.path == "root[0].nodes"


def test_equal_atoms_in_a_set_are_not_an_error() -> None:
    """Two distinct NaN objects tie, but they write the same bytes and are never shared."""
    nan1, nan2 = float("nan"), float("nan")
    assert len(omnipickle.loads(det({nan1, nan2, 1.0}))) == 3


def test_a_set_that_holds_an_object_holding_the_set_keeps_the_cycle() -> None:
    class Member:
        group: Any = None

    member = Member()
    group = {member}
    member.group = group
    out = omnipickle.loads(det(group))
    (loaded,) = out
    assert loaded.group is out


# --- identity of atoms, and of everything else ------------------------------------------------


def fresh_str(s: str) -> str:
    return "".join(list(s))


@pytest.mark.parametrize(
    ("make", "label"),
    [
        (lambda: fresh_str("a string long enough"), "str"),
        (lambda: bytes(bytearray(b"some bytes")), "bytes"),
        (lambda: (1, fresh_str("in a tuple"), 2.5), "tuple"),
        (lambda: frozenset({1, 2, 3}), "frozenset"),
        (lambda: complex(1, 2), "complex"),
        (lambda: datetime.datetime(2024, 1, 2, 3, 4, 5), "datetime"),
        (lambda: decimal.Decimal("1.25"), "Decimal"),
        (lambda: fractions.Fraction(1, 3), "Fraction"),
        (lambda: uuid.UUID(int=5), "UUID"),
        (lambda: pathlib.PurePosixPath("/a/b"), "path"),
        (lambda: pathlib.Path("/a/b"), "concrete path"),
        (lambda: ipaddress.ip_address("10.0.0.1"), "IPv4Address"),
        (lambda: ipaddress.ip_network("10.0.0.0/8"), "IPv4Network"),
        (lambda: range(3, 9), "range"),
        (lambda: slice(1, 5), "slice"),
        (lambda: datetime.timedelta(days=2), "timedelta"),
        (lambda: np.dtype("f8").newbyteorder("="), "dtype"),
        (lambda: np.float64(2.5), "numpy scalar"),
        (lambda: Pair(fresh_str("left side"), 1), "namedtuple"),
        (lambda: FrozenPoint(1, 2), "frozen dataclass"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_an_immutable_value_gives_the_same_bytes_shared_or_copied(make: Any, label: str) -> None:
    one = make()
    shared, copied = [one, one], [one, make()]
    assert shared[1] is shared[0] and copied[1] is not copied[0]
    assert det(shared) == det(copied)


class Pair(NamedTuple):
    left: str
    right: int


@dataclasses.dataclass(frozen=True)
class FrozenPoint:
    x: int
    y: int


def test_a_shared_mutable_object_stays_shared_and_differs_from_a_copy() -> None:
    inner = [1, 2]
    shared, copied = [inner, inner], [inner, list(inner)]
    assert det(shared) != det(copied)
    out = omnipickle.loads(det(shared))
    assert out[0] is out[1]


def test_a_shared_instance_stays_shared() -> None:
    point = Point(1)
    out = omnipickle.loads(det({"a": point, "b": point}))
    assert out["a"] is out["b"]


@dataclasses.dataclass
class Point:
    x: int


def test_recursive_lists_and_dicts_round_trip() -> None:
    lst: list[Any] = [1]
    lst.append(lst)
    d: dict[str, Any] = {"k": "v"}
    d["self"] = d
    out = omnipickle.loads(det([lst, d]))
    assert out[0][1] is out[0] and out[1]["self"] is out[1]


def test_strings_equal_to_module_names_do_not_depend_on_their_identity() -> None:
    """A data string equal to a module name the stream names (``collections``) is written the
    same whether or not it is the module name's own string object."""
    literal = ["collections", collections.OrderedDict(a=1)]
    built = [fresh_str("collections"), collections.OrderedDict(a=1)]
    assert det(literal) == det(built)


# --- what loads, and how ---------------------------------------------------------------------


def test_a_deterministic_payload_loads_with_plain_loads_and_pickle() -> None:
    obj = {"s": {"a", "b"}, "f": frozenset({1}), "t": (1, "x"), "d": datetime.date(2024, 1, 1)}
    data = det(obj)
    assert omnipickle.loads(data) == obj
    assert pickle.loads(data) == obj  # format 2: an uncompressed payload is a pickle stream
    assert pickle.loads(det(obj, raw=True)) == obj


def test_restricted_loading_accepts_deterministic_data() -> None:
    obj = {"s": {"a", "b"}, "f": frozenset({1, 2}), "big": b"x" * 100_000}
    assert omnipickle.loads(det(obj), restricted=True) == obj


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol_is_deterministic_and_round_trips(protocol: int) -> None:
    obj = {"s": {f"k{i}" for i in range(30)}, "n": complex(1, 2), "b": b"y" * 70_000}
    reordered = {"s": set(sorted(obj["s"], reverse=True)), "n": complex(1, 2), "b": b"y" * 70_000}
    assert det(obj, protocol=protocol) == det(reordered, protocol=protocol)
    assert omnipickle.loads(det(obj, protocol=protocol)) == obj


@pytest.mark.parametrize("compression", ["gzip", "zstd", "bz2", "lzma", "lz4"])
def test_compressed_and_signed_payloads_are_deterministic(compression: str) -> None:
    obj = {"s": {f"k{i}" for i in range(300)}}
    other = {"s": set(sorted(obj["s"], reverse=True))}
    key = b"k" * 32
    assert det(obj, compression=compression, key=key) == det(
        other, compression=compression, key=key
    )


def test_gzip_payloads_carry_no_timestamp(tmp_path: Path) -> None:
    data = det({"s": {1, 2}}, compression="gzip")
    start = data.index(b"\x1f\x8b\x08")
    assert data[start + 4 : start + 8] == bytes(4)  # the member header's MTIME
    omnipickle.dump({"s": {1, 2}}, tmp_path / "x.gz", deterministic=True)
    written = (tmp_path / "x.gz").read_bytes()
    start = written.index(b"\x1f\x8b\x08")
    assert written[start + 4 : start + 8] == bytes(4)


def test_large_bytes_round_trip_and_are_never_shared_by_identity() -> None:
    big = b"z" * (1 << 17)
    assert det([big, big]) == det([big, bytes(bytearray(big))])
    assert omnipickle.loads(det([big, big])) == [big, big]


def test_dump_to_a_path_is_deterministic_with_arrays_in_sections(tmp_path: Path) -> None:
    obj = {"a": np.arange(100_000.0), "s": {f"k{i}" for i in range(100)}}
    omnipickle.dump(obj, tmp_path / "one.pkl", deterministic=True)
    obj2 = {"a": np.arange(100_000.0), "s": set(sorted(obj["s"], reverse=True))}
    omnipickle.dump(obj2, tmp_path / "two.pkl", deterministic=True)
    assert (tmp_path / "one.pkl").read_bytes() == (tmp_path / "two.pkl").read_bytes()
    assert "sections" in omnipickle.info(tmp_path / "one.pkl").extra  # the array went there
    assert np.array_equal(omnipickle.load(tmp_path / "one.pkl")["a"], obj["a"])


def test_dump_to_a_file_object_matches_dumps() -> None:
    buffer = io.BytesIO()
    omnipickle.dump({"s": {1, 2}}, buffer, deterministic=True)
    assert buffer.getvalue() == det({"s": {2, 1}})


def test_serializer_holds_the_options() -> None:
    serializer = omnipickle.Serializer(deterministic=True, strip_source_info=True)
    obj = {"s": {"x", "y"}, "f": lambda: 1}
    assert serializer.dumps(obj) == det(obj, strip_source_info=True)
    assert serializer.loads(serializer.dumps(obj))["s"] == {"x", "y"}


def test_buffer_callback_takes_large_buffers_out_of_band() -> None:
    arr = np.arange(50_000.0)
    buffers: list[pickle.PickleBuffer] = []
    data = det({"a": arr}, buffer_callback=buffers.append)
    assert buffers and data == det({"a": arr.copy()}, buffer_callback=[].append)
    assert np.array_equal(omnipickle.loads(data, buffers=buffers)["a"], arr)


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"backend": "pickle"}, ValueError, "needs the auto backend"),
        ({"on_unpicklable": "drop"}, ValueError, "cannot be combined"),
        ({"deterministic": "yes"}, TypeError, "deterministic must be True or False"),
        ({"strip_source_info": 1}, TypeError, "strip_source_info must be"),
    ],
)
def test_bad_option_combinations_are_refused(
    options: dict[str, Any], error: type[Exception], words: str
) -> None:
    merged = {"deterministic": True, **options}
    with pytest.raises(error, match=words):
        omnipickle.dumps([1], **merged)


def test_strip_source_info_needs_deterministic() -> None:
    with pytest.raises(ValueError, match="only applies with deterministic=True"):
        omnipickle.dumps([1], strip_source_info=True)


def test_an_object_that_cannot_be_serialized_still_names_its_path() -> None:
    with pytest.raises(PicklingError) as info:
        det({"conn": [threading.Thread(target=print)]} | {"gen": (x for x in ())})
    assert not isinstance(info.value, DeterminismError)
    assert info.value.path == "root['gen']"


# --- classes and code -------------------------------------------------------------------------


def test_pickling_instances_does_not_change_their_class_bytes() -> None:
    """copyreg caches ``__slotnames__`` on a class the first time one of its instances is
    pickled: the class's bytes must not see it."""

    class Fresh:
        def method(self) -> int:
            return 1

    before = det(Fresh)
    det(Fresh())
    assert "__slotnames__" in Fresh.__dict__
    assert det(Fresh) == before


def test_a_class_by_value_loaded_twice_in_a_process_is_one_class() -> None:
    class Local:
        value = 3

    data = det(Local)
    first, second = omnipickle.loads(data), omnipickle.loads(data)
    assert first is second and first.value == 3


def test_equal_class_definitions_get_the_same_identity() -> None:
    def make() -> type:
        class Twin:
            def get(self) -> int:
                return 5

        return Twin

    one, two = make(), make()
    assert one is not two
    assert det(one) == det(two)
    loaded = omnipickle.loads(det([one, two]))
    assert loaded[0] is loaded[1] and loaded[0]().get() == 5


def test_in_the_dumping_process_a_class_by_value_loads_as_a_copy() -> None:
    class Original:
        pass

    assert omnipickle.loads(det(Original)) is not Original
    assert omnipickle.loads(omnipickle.dumps(Original)) is Original  # auto gives it back


def test_bound_methods_and_cached_functions_by_value_are_deterministic() -> None:
    import functools

    class Counter:
        def __init__(self, names: set[str]) -> None:
            self.names = names

        def count(self) -> int:
            return len(self.names)

    names = [f"n{i}" for i in range(30)]
    first, second = Counter(set(names)), Counter(set(reversed(names)))
    assert det(first.count) == det(second.count)
    assert omnipickle.loads(det(first.count))() == 30

    def make_cached() -> Any:
        @functools.lru_cache(maxsize=8)
        def square(x: int) -> int:
            return x * x

        return square

    assert det(make_cached()) == det(make_cached())
    assert omnipickle.loads(det(make_cached()))(4) == 16


def test_strip_source_info_leaves_line_numbers_out_and_code_still_runs() -> None:
    source = "def f(x):\n    return x + 1\n"
    moved = "\n\n\n# moved down\n" + source
    f1, f2 = _compile(source, "a.py"), _compile(moved, "b.py")
    assert det(f1) != det(f2)
    assert det(f1, strip_source_info=True) == det(f2, strip_source_info=True)
    loaded = omnipickle.loads(det(f2, strip_source_info=True))
    assert loaded(1) == 2 and loaded.__code__.co_firstlineno == 1
    assert {line for _, _, line in loaded.__code__.co_lines()} == {None}


def _compile(source: str, filename: str) -> Any:
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": filename}
    exec(compile(source, filename, "exec"), namespace)
    return namespace["f"]


def test_the_adapters_import_their_libraries_only_when_called() -> None:
    out = check_python(
        code="import sys\n"
        "import omnipickle.adapters.dask, omnipickle.adapters.joblib\n"
        "print(sorted(m for m in ('dask', 'joblib') if m in sys.modules))\n"
        "omnipickle.adapters.joblib.hash(1), omnipickle.adapters.dask.register()\n"
        "print(sorted(m for m in ('dask', 'joblib') if m in sys.modules))\n"
    )
    assert out.split("\n")[:2] == ["[]", "['dask']"]


def test_import_omnipickle_does_not_import_the_deterministic_modules() -> None:
    out = check_python(
        code="import sys, omnipickle\n"
        "names = ('omnipickle.backends.deterministic', 'omnipickle.backends.canonical', "
        "'omnipickle.hashing', 'omnipickle.adapters')\n"
        "print(sorted(n for n in names if n in sys.modules))\n"
        "omnipickle.dumps({1}, deterministic=True)\n"
        "print(sorted(n for n in names if n in sys.modules))\n"
        "omnipickle.digest(1), omnipickle.DeterminismError\n"
        "print(sorted(n for n in names if n in sys.modules))\n"
    )
    assert out.split("\n")[:3] == [
        "[]",
        "['omnipickle.backends.canonical', 'omnipickle.backends.deterministic']",
        "['omnipickle.backends.canonical', 'omnipickle.backends.deterministic', "
        "'omnipickle.hashing']",
    ]
