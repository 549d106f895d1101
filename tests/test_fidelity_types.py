"""Built-in objects that pickle cannot name or gets wrong, round-tripped by the auto backend.

Nameless C types, descriptors, memoryviews, dict views, ndarray subclasses with attributes,
enums with multi-bit members. Each family is checked in this process and across two fresh
interpreters (one dumps, another loads).
"""

from __future__ import annotations

import abc
import collections
import enum
import fractions
import gc
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import omnipickle
from conftest import check_python
from fidelity_types_helpers import OwnPickleArray, Shadowed, Slots, SlottedArray, TaggedArray
from helpers import Plain
from omnipickle import _rebuild
from omnipickle.backends import auto, builtin_types, small

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
TESTS = Path(__file__).parent
KEY = b"fidelity-types-key-0123456789"

# The children import the test helpers by name, as a user's program imports its own modules.
PRELUDE = f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nimport omnipickle\n"


def across(tmp_path: Path, dump: str, load: str) -> str:
    """Run ``dump`` (which sets ``OBJ``) in one fresh interpreter, then ``load`` (which reads
    the loaded ``OBJ`` and prints) in another; return what the second printed."""
    payload = tmp_path / "payload.bin"
    check_python(
        str(payload),
        code=PRELUDE + dump + "\nopen(sys.argv[1], 'wb').write(omnipickle.dumps(OBJ))\n",
    )
    return check_python(
        str(payload),
        code=PRELUDE + "OBJ = omnipickle.loads(open(sys.argv[1], 'rb').read())\n" + load,
    )


def round_trip(obj: Any, protocol: int = pickle.HIGHEST_PROTOCOL, **options: Any) -> Any:
    return omnipickle.loads(omnipickle.dumps(obj, protocol=protocol, **options), **options)


def instance_heavy(obj: Any) -> list[Any]:
    """``obj`` past what auto's probe looks at, in data auto first gives the bare C pickler."""
    return [Plain(i, str(i)) for i in range(300)] + [obj]


# --- type objects of C types without a public name --------------------------------------------

# Written here independently of omnipickle._rebuild's table (which a test keeps in step).
TYPE_CASES = {
    "dict_keys": "type({}.keys())",
    "dict_values": "type({}.values())",
    "dict_items": "type({}.items())",
    "dict_keyiterator": "type(iter({}))",
    "dict_valueiterator": "type(iter({}.values()))",
    "dict_itemiterator": "type(iter({}.items()))",
    "dict_reversekeyiterator": "type(reversed({}))",
    "dict_reversevalueiterator": "type(reversed({}.values()))",
    "dict_reverseitemiterator": "type(reversed({}.items()))",
    "odict_keys": "type(collections.OrderedDict().keys())",
    "odict_values": "type(collections.OrderedDict().values())",
    "odict_items": "type(collections.OrderedDict().items())",
    "odict_iterator": "type(iter(collections.OrderedDict()))",
    "list_iterator": "type(iter([]))",
    "list_reverseiterator": "type(reversed([]))",
    "tuple_iterator": "type(iter(()))",
    "range_iterator": "type(iter(range(3)))",
    "longrange_iterator": "type(iter(range(10**30)))",
    "set_iterator": "type(iter({1}))",
    "str_ascii_iterator": "type(iter('abc'))",
    "str_iterator": "type(iter('\\u00e9\\u0101'))",
    "bytes_iterator": "type(iter(b'ab'))",
    "bytearray_iterator": "type(iter(bytearray(b'ab')))",
    "callable_iterator": "type(iter(list, None))",
    "iterator": "type(iter(Seq()))",
    "memory_iterator": "type(iter(memoryview(b'ab')))",
    "coroutine_wrapper": "type(coroutine().__await__())",
}
TYPE_SETUP = (
    "import collections, warnings\n"
    "warnings.simplefilter('ignore', RuntimeWarning)  # the coroutine is never awaited\n"
    "class Seq:\n"
    "    def __getitem__(self, i):\n"
    "        if i < 2: return i\n"
    "        raise IndexError(i)\n"
    "async def coroutine(): pass\n"
)


def _types_here() -> dict[str, type]:
    namespace: dict[str, Any] = {}
    exec(TYPE_SETUP, namespace)
    return {key: eval(expr, namespace) for key, expr in TYPE_CASES.items()}


def test_every_key_of_the_type_table_is_tested() -> None:
    assert set(TYPE_CASES) == set(_rebuild.TYPE_EXPRESSIONS)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("key", sorted(TYPE_CASES))
def test_a_nameless_builtin_type_loads_as_itself(key: str, protocol: int) -> None:
    cls = _types_here()[key]
    assert round_trip(cls, protocol) is cls


def test_nameless_builtin_types_load_as_themselves_in_a_fresh_interpreter(
    tmp_path: Path,
) -> None:
    setup = TYPE_SETUP + f"CASES = {TYPE_CASES!r}\n"
    out = across(
        tmp_path,
        setup + "OBJ = {k: eval(e) for k, e in CASES.items()}",
        setup + "for k, e in CASES.items():\n    print(k, OBJ[k] is eval(e))\n",
    )
    assert out.split() == [w for key in TYPE_CASES for w in (key, "True")]


def test_a_nameless_builtin_type_is_written_by_reference_with_pickle_alone() -> None:
    about = omnipickle.info(omnipickle.dumps([type({}.keys()), type(iter([]))]))
    assert about.backends == ("pickle",)
    assert about.by_value is False


def test_a_nameless_builtin_type_past_the_probe_loads_as_itself() -> None:
    loaded = round_trip(instance_heavy(type(iter(()))))
    assert loaded[-1] is type(iter(()))
    assert loaded[:-1] == instance_heavy(None)[:-1]


def test_a_payload_naming_an_unknown_builtin_type_is_a_damaged_payload() -> None:
    stream = pickle.dumps(_Call(_rebuild.builtin_type, "no_such_iterator"))
    with pytest.raises(omnipickle.UnpicklingError, match="no_such_iterator"):
        omnipickle.loads(stream)


class _Call:
    """Pickles as ``func(*args)``: hand-made streams for the tests of bad input."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


# --- descriptors -------------------------------------------------------------------------------

DESCRIPTORS: dict[str, Callable[[], Any]] = {
    "classmethod_descriptor": lambda: dict.__dict__["fromkeys"],
    "classmethod_descriptor of int": lambda: int.__dict__["from_bytes"],
    "method_descriptor": lambda: dict.__dict__["keys"],
    "wrapper_descriptor": lambda: dict.__dict__["__len__"],
    "getset_descriptor": lambda: type.__dict__["__name__"],
    "getset __abstractmethods__": lambda: type.__dict__["__abstractmethods__"],
    "getset of a function": lambda: type(len).__dict__["__text_signature__"],
    "member_descriptor of a stdlib class": lambda: fractions.Fraction.__dict__["_numerator"],
    "member_descriptor of a slots class": lambda: Slots.__dict__["y"],
    "member_descriptor getattr cannot reach": lambda: Shadowed.__dict__["x"],
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", list(DESCRIPTORS))
def test_a_descriptor_loads_as_the_identical_object(name: str, protocol: int) -> None:
    descriptor = DESCRIPTORS[name]()
    assert round_trip(descriptor, protocol) is descriptor


@pytest.mark.parametrize("name", list(DESCRIPTORS))
def test_a_descriptor_past_the_probe_loads_as_the_identical_object(name: str) -> None:
    """Where auto first tries the bare C pickler, which writes a member descriptor as
    getattr(cls, name)."""
    descriptor = DESCRIPTORS[name]()
    assert round_trip(instance_heavy(descriptor))[-1] is descriptor


def test_getattr_would_not_have_found_the_shadowed_slot() -> None:
    """The case above that only a lookup in the class's __dict__ gets right."""
    assert Shadowed.x == "the metaclass's x"


def test_descriptors_load_as_the_identical_objects_in_a_fresh_interpreter(
    tmp_path: Path,
) -> None:
    exprs = [
        "dict.__dict__['fromkeys']",
        "dict.__dict__['keys']",
        "dict.__dict__['__len__']",
        "type.__dict__['__name__']",
        "type.__dict__['__abstractmethods__']",
        "fidelity_types_helpers.Slots.__dict__['x']",
        "fidelity_types_helpers.Shadowed.__dict__['x']",
    ]
    setup = f"import fidelity_types_helpers\nEXPRS = {exprs!r}\n"
    out = across(
        tmp_path,
        setup + "OBJ = [eval(e) for e in EXPRS]",
        setup + "print([o is eval(e) for o, e in zip(OBJ, EXPRS)])",
    )
    assert out.strip() == str([True] * len(exprs))


def test_a_slot_descriptor_of_a_main_class_sent_by_value_is_that_class_slot(
    tmp_path: Path,
) -> None:
    out = across(
        tmp_path,
        "class Point:\n    __slots__ = ('x', 'y')\nOBJ = (Point, Point.__dict__['x'])",
        "Point, x = OBJ\np = Point()\nx.__set__(p, 5)\n"
        "print(x is Point.__dict__['x'], p.x, hasattr(p, '__dict__'))",
    )
    assert out.split() == ["True", "5", "False"]


def test_a_descriptor_its_class_no_longer_holds_is_refused_with_its_path() -> None:
    class Gone:
        __slots__ = ("x",)

    descriptor = Gone.__dict__["x"]
    del Gone.x
    with pytest.raises(omnipickle.PicklingError, match=r"root\[0\].*__dict__"):
        omnipickle.dumps([descriptor])


# --- classes with __abstractmethods__ ----------------------------------------------------------


def test_an_abc_sent_by_value_keeps_its_abstract_methods_in_a_fresh_interpreter(
    tmp_path: Path,
) -> None:
    dump = (
        "import abc\n"
        "class Shape(abc.ABC):\n"
        "    @abc.abstractmethod\n"
        "    def area(self): ...\n"
        "    @property\n"
        "    @abc.abstractmethod\n"
        "    def name(self): ...\n"
        "class Square(Shape):\n"
        "    def __init__(self, side): self.side = side\n"
        "    def area(self): return self.side ** 2\n"
        "    name = 'square'\n"
        "Shape.register(complex)\n"
        "OBJ = (Shape, Square(3), type.__dict__['__abstractmethods__'])"
    )
    load = (
        "Shape, square, getset = OBJ\n"
        "try:\n    Shape()\n    print('instantiated')\n"
        "except TypeError:\n    print('refused')\n"
        "print(sorted(Shape.__abstractmethods__), type(square).__abstractmethods__ == set())\n"
        "print(square.area(), isinstance(square, Shape), isinstance(1j, Shape))\n"
        "print(getset is type.__dict__['__abstractmethods__'])\n"
    )
    assert across(tmp_path, dump, load).split() == [
        "refused",
        "['area',",
        "'name']",
        "True",
        "9",
        "True",
        "True",
        "True",
    ]


def test_an_abc_round_trips_in_process() -> None:
    class Base(abc.ABC):
        @abc.abstractmethod
        def run(self) -> None: ...

    loaded = round_trip(Base)
    assert loaded.__abstractmethods__ == frozenset({"run"})
    with pytest.raises(TypeError):
        loaded()


# --- memoryview --------------------------------------------------------------------------------

# (builder, format and shape it comes back with, readonly)
MEMORYVIEWS: dict[str, tuple[Callable[[], memoryview], str, tuple[int, ...], bool]] = {
    "bytes": (lambda: memoryview(b"abc"), "B", (3,), True),
    "bytearray": (lambda: memoryview(bytearray(b"abcd")), "B", (4,), False),
    "read-only bytearray": (lambda: memoryview(bytearray(b"ab")).toreadonly(), "B", (2,), True),
    "empty": (lambda: memoryview(b""), "B", (0,), True),
    "cast to ints, 2-d": (
        lambda: memoryview(bytearray(24)).cast("i", (2, 3)),
        "i",
        (2, 3),
        False,
    ),
    "strided slice": (lambda: memoryview(np.arange(6.0))[::2], "d", (3,), False),
    "numpy 3-d": (
        lambda: memoryview(np.arange(24, dtype=np.int16).reshape(2, 3, 4)),
        "h",
        (2, 3, 4),
        False,
    ),
    "0-d": (lambda: memoryview(np.array(7, dtype=np.int64)), "l", (), False),
    "sliced bytes": (lambda: memoryview(b"0123456789")[2:8:3], "B", (2,), True),
    "chars": (lambda: memoryview(b"xy").cast("c"), "c", (2,), True),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", list(MEMORYVIEWS))
def test_a_memoryview_loads_as_a_memoryview_with_its_layout(name: str, protocol: int) -> None:
    build, fmt, shape, readonly = MEMORYVIEWS[name]
    view = build()
    loaded = round_trip(view, protocol)
    assert type(loaded) is memoryview
    assert (loaded.format, loaded.shape, loaded.readonly) == (fmt, shape, readonly)
    assert loaded.tolist() == view.tolist()
    assert type(loaded.obj) is (bytes if readonly else bytearray)


def test_a_layout_memoryview_cannot_rebuild_comes_back_as_its_bytes() -> None:
    """Documented: formats memoryview.cast does not take (byte order, structs) become 'B'; a
    shape with a zero becomes one dimension."""
    big_endian = memoryview(np.arange(3, dtype=">i4"))
    loaded = round_trip(big_endian)
    assert (loaded.format, loaded.shape, loaded.tobytes()) == ("B", (12,), big_endian.tobytes())
    empty_2d = round_trip(memoryview(np.zeros((0, 3))))
    assert (empty_2d.format, empty_2d.shape) == ("d", (0,))


def test_a_loaded_writable_memoryview_writes_into_its_own_buffer() -> None:
    original = bytearray(b"abc")
    loaded = round_trip(memoryview(original))
    loaded[0] = ord("z")
    assert (bytes(loaded.obj), original) == (b"zbc", bytearray(b"abc"))


def test_what_a_loaded_memoryview_does_not_keep() -> None:
    """Documented: the exporter (two views of one buffer load over two copies) and strides."""
    buffer = bytearray(b"abcdef")
    first, second, strided = round_trip(
        [memoryview(buffer), memoryview(buffer)[1:], memoryview(buffer)[::2]]
    )
    first[1] = ord("z")
    assert second.tobytes() == b"bcdef"
    assert (strided.tobytes(), strided.c_contiguous, strided.strides) == (b"ace", True, (1,))


def test_one_memoryview_twice_in_a_graph_loads_as_one_object() -> None:
    view = memoryview(b"shared")
    first, second = round_trip([view, view])
    assert first is second


def test_memoryviews_past_the_probe_load_as_memoryviews() -> None:
    loaded = round_trip(instance_heavy(memoryview(bytearray(b"xyz"))))
    assert type(loaded[-1]) is memoryview and loaded[-1].tobytes() == b"xyz"


def test_a_released_memoryview_is_refused_with_its_path() -> None:
    view = memoryview(b"gone")
    view.release()
    with pytest.raises(omnipickle.PicklingError, match=r"memoryview at root\['v'\].*released"):
        omnipickle.dumps({"v": view})


def test_memoryviews_load_with_their_layout_in_a_fresh_interpreter(tmp_path: Path) -> None:
    out = across(
        tmp_path,
        "OBJ = [memoryview(b'abc'), memoryview(bytearray(b'\\x01\\x00\\x02\\x00')).cast('h'),"
        " memoryview(bytearray(range(6))).cast('B', (2, 3))]",
        "for v in OBJ:\n    print(type(v).__name__, v.format, v.shape, v.readonly, v.tolist())\n",
    )
    assert out.splitlines() == [
        "memoryview B (3,) True [97, 98, 99]",
        "memoryview h (2,) False [1, 2]",
        "memoryview B (2, 3) False [[0, 1, 2], [3, 4, 5]]",
    ]


# --- dict views --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_dict_views_that_travel_with_their_dict_stay_live_views_of_it(protocol: int) -> None:
    d = {"a": 1}
    loaded, keys, values, items = round_trip((d, d.keys(), d.values(), d.items()), protocol)
    loaded["b"] = 2
    assert (list(keys), list(values), list(items)) == (["a", "b"], [1, 2], [("a", 1), ("b", 2)])


def test_a_view_written_before_its_dict_is_still_a_view_of_it() -> None:
    d = {"a": 1}
    keys, loaded = round_trip([d.keys(), d])
    loaded["b"] = 2
    assert list(keys) == ["a", "b"]


def test_a_view_inside_its_own_dict_and_inside_an_object() -> None:
    d: dict[str, Any] = {"n": 1}
    d["keys"] = d.keys()
    holder = Plain(d, d.values())
    loaded = round_trip(holder)
    loaded.a["m"] = 2
    assert list(loaded.a["keys"]) == ["n", "keys", "m"]
    assert 2 in loaded.b


def test_a_lone_view_loads_as_a_view_of_a_fresh_dict() -> None:
    d = {"a": 1, "b": 2}
    for view in (d.keys(), d.values(), d.items()):
        loaded = round_trip(view)
        assert type(loaded) is type(view)
        assert list(loaded) == list(view)


def test_a_lone_values_view_carries_its_whole_dict() -> None:
    """Documented: a view is a view of a dict, so the keys travel with a values view."""
    loaded = round_trip({"k": "v"}.values())
    keys_of_its_dict = next(iter(gc.get_referents(loaded)))
    assert keys_of_its_dict == {"k": "v"}


def test_ordered_dict_and_counter_views_keep_their_kind_and_their_link() -> None:
    od = collections.OrderedDict(a=1)
    counter = collections.Counter("aab")
    od2, okeys, plain_keys, c2, citems = round_trip(
        [od, od.keys(), dict.keys(od), counter, counter.items()]
    )
    assert (type(okeys), type(plain_keys)) == (type(od.keys()), type({}.keys()))
    od2["z"] = 0
    c2["c"] += 5
    assert list(okeys) == list(plain_keys) == ["a", "z"]
    assert ("c", 5) in citems


def test_dict_views_past_the_probe_stay_linked() -> None:
    d = {"a": 1}
    loaded = round_trip(instance_heavy((d, d.keys())))
    dd, keys = loaded[-1]
    dd["b"] = 2
    assert list(keys) == ["a", "b"]


def test_dict_views_stay_live_in_a_fresh_interpreter(tmp_path: Path) -> None:
    out = across(
        tmp_path,
        "d = {'a': 1}\nOBJ = {'d': d, 'views': [d.keys(), d.values(), d.items()]}",
        "OBJ['d']['b'] = 2\nprint([list(v) for v in OBJ['views']])\n",
    )
    assert out.strip() == "[['a', 'b'], [1, 2], [('a', 1), ('b', 2)]]"


# --- ndarray subclasses ------------------------------------------------------------------------


def _tagged(tag: Any) -> TaggedArray:
    array = np.arange(6, dtype=np.int32).reshape(2, 3).view(TaggedArray)
    array.tag = tag
    array.extra = {"unit": "m"}
    return array


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_ndarray_subclass_keeps_its_instance_attributes(protocol: int) -> None:
    loaded = round_trip(_tagged("calibrated"), protocol)
    assert type(loaded) is TaggedArray
    assert loaded.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert (loaded.tag, loaded.extra) == ("calibrated", {"unit": "m"})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_plain_arrays_beside_code_by_value_pickle_as_numpy_pickles_them(protocol: int) -> None:
    """Beside a lambda the whole dump goes through auto's dispatch table: a plain ndarray (no
    __dict__ at all) keeps numpy's own reduction there."""
    arrays = [np.arange(5.0), np.arange(6).reshape(2, 3)[:, ::2], np.array([1, "x"], dtype=object)]
    func, *loaded = round_trip([lambda: 1, *arrays], protocol)
    assert func() == 1
    assert [(type(a), a.tolist()) for a in loaded] == [(np.ndarray, a.tolist()) for a in arrays]
    table = auto.DispatchTable(protocol)
    assert table[np.ndarray] is table[Plain]  # the plain __reduce_ex__


def test_an_ndarray_subclass_without_a_dict_pickles_as_numpy_pickles_it() -> None:
    array = np.arange(3).view(SlottedArray)
    assert not hasattr(array, "__dict__")
    func, loaded = round_trip([lambda: 2, array])
    assert (type(loaded), loaded.tolist(), func()) == (SlottedArray, [0, 1, 2], 2)


def test_an_ndarray_subclass_past_the_probe_keeps_its_instance_attributes() -> None:
    loaded = round_trip(instance_heavy(_tagged("deep")))
    assert (type(loaded[-1]), loaded[-1].tag) == (TaggedArray, "deep")


def test_an_ndarray_subclass_attribute_shares_references_with_the_graph() -> None:
    shared = ["shared"]
    array, other = round_trip([_tagged(shared), shared])
    assert array.tag is other


def test_an_ndarray_subclass_with_its_own_reduce_is_left_to_it() -> None:
    array = np.arange(3).view(OwnPickleArray)
    array.tag = "t"
    assert round_trip(array).tag == ("t", "own")


def test_numpy_own_subclasses_pickle_as_numpy_pickles_them(tmp_path: Path) -> None:
    mapped = np.memmap(tmp_path / "m.bin", dtype="i4", mode="w+", shape=(3,))
    mapped[:] = 7
    records = np.rec.fromrecords([(1, 2.5)], names="a,b")
    loaded_map, loaded_records = round_trip([mapped, records])
    assert (type(loaded_map), loaded_map.tolist()) == (np.memmap, [7, 7, 7])
    assert (type(loaded_records), loaded_records.tolist()) == (np.recarray, [(1, 2.5)])


def test_an_ndarray_subclass_keeps_its_attributes_in_a_fresh_interpreter(
    tmp_path: Path,
) -> None:
    dump = (
        "import numpy as np\n"
        "from fidelity_types_helpers import TaggedArray\n"
        "class MainArray(np.ndarray):\n"
        "    pass\n"
        "a = np.arange(3).view(TaggedArray)\na.tag = 'importable'\n"
        "b = np.arange(2).view(MainArray)\nb.note = 'by value'\n"
        "OBJ = [a, b]"
    )
    load = "a, b = OBJ\nprint(type(a).__name__, a.tag, a.tolist(), type(b).__name__, b.note)\n"
    assert across(tmp_path, dump, load).split() == [
        "TaggedArray",
        "importable",
        "[0,",
        "1,",
        "2]",
        "MainArray",
        "by",
        "value",
    ]


# --- enums with multi-bit members and aliases --------------------------------------------------

FLAG_DUMP = (
    "import enum\n"
    "class Perm(enum.IntFlag):\n"
    "    RW = 6\n"
    "    R = 4\n"
    "    W = 2\n"
    "    X = 1\n"
    "    RWX = 7\n"
    "    READ = 4\n"
    "class Color(enum.Enum):\n"
    "    RED = 1\n"
    "    CRIMSON = 1\n"
    "    BLUE = 2\n"
    "OBJ = (Perm, Perm.R | Perm.X, Perm.RW, Color, Color.CRIMSON)"
)
FLAG_LOAD = (
    "Perm, rx, rw, Color, crimson = OBJ\n"
    "print(list(Perm.__members__))\n"
    "print(rx == 5, rx is Perm(5), rw is Perm.RW, Perm.RW.name, Perm.READ is Perm.R)\n"
    "print(Perm(7) is Perm.RWX, Perm.R | Perm.W is Perm.RW, int(Perm.RWX & ~Perm.X))\n"
    "print(list(Color.__members__), crimson is Color.RED, Color['CRIMSON'] is Color.RED)\n"
)
FLAG_EXPECTED = [
    "['RW', 'R', 'W', 'X', 'RWX', 'READ']",
    "True True True RW True",
    "True True 6",
    "['RED', 'CRIMSON', 'BLUE'] True True",
]


def test_an_intflag_with_multi_bit_members_loads_whole_in_a_fresh_interpreter(
    tmp_path: Path,
) -> None:
    assert across(tmp_path, FLAG_DUMP, FLAG_LOAD).splitlines() == FLAG_EXPECTED


def test_an_intflag_with_multi_bit_members_round_trips_in_process() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(FLAG_DUMP, namespace)
    obj = namespace["OBJ"]
    perm, rx, rw, color, crimson = round_trip(obj)
    assert perm is obj[0] and color is obj[3]
    assert (rx, rw, crimson) == (perm.R | perm.X, perm.RW, color.RED)


def test_a_local_flag_keeps_its_members() -> None:
    class Mode(enum.Flag):
        A = enum.auto()
        B = enum.auto()
        AB = A | B

    assert list(Mode.__members__) == ["A", "B", "AB"]
    loaded = round_trip(Mode)
    assert loaded is Mode  # the same process keeps the class it tracked
    assert Mode.AB.value == 3


# --- restricted loading and scan ---------------------------------------------------------------


def test_restricted_loading_accepts_memoryviews_and_dict_views() -> None:
    d = {"a": 1}
    data = omnipickle.dumps([memoryview(b"xy"), d, d.items()])
    view, loaded, items = omnipickle.loads(data, restricted=True)
    loaded["b"] = 2
    assert (view.tobytes(), list(items)) == (b"xy", [("a", 1), ("b", 2)])
    assert omnipickle.scan(data).refused == ()


@pytest.mark.parametrize(
    ("obj", "name"),
    [
        (type({}.keys()), "omnipickle._rebuild.builtin_type"),
        (dict.__dict__["fromkeys"], "omnipickle._rebuild.descriptor"),
    ],
    ids=["builtin_type", "descriptor"],
)
def test_restricted_loading_refuses_types_and_descriptors_unless_signed(
    obj: Any, name: str
) -> None:
    data = omnipickle.dumps(obj)
    with pytest.raises(omnipickle.UnsafePayloadError, match=name.replace(".", r"\.")):
        omnipickle.loads(data, restricted=True)
    assert omnipickle.scan(data).refused == (name,)
    signed = omnipickle.dumps(obj, key=KEY)
    assert omnipickle.loads(signed, key=KEY, restricted=True) is obj


def test_restricted_loading_refuses_ndarray_subclass_attributes_even_signed() -> None:
    """numpy objects are rebuilt only by the validating constructors, which make plain arrays;
    array_state (numpy's own __setstate__) is refused too, and scan says so."""
    array = _tagged("t")
    allow = ("fidelity_types_helpers.*",)
    assert "omnipickle._rebuild.array_state" in omnipickle.scan(omnipickle.dumps(array)).refused
    signed = omnipickle.dumps(array, key=KEY)
    with pytest.raises(omnipickle.UnsafePayloadError):
        omnipickle.loads(signed, key=KEY, restricted=True, allow=allow)


@pytest.mark.parametrize(
    "call",
    [
        _Call(_rebuild.memory_view, [1, 2], "B", None),
        _Call(_rebuild.memory_view, b"abc", "i", (5,)),
        _Call(_rebuild.memory_view, b"abcd", "i", [1]),
        _Call(_rebuild.dict_view, [1], "keys"),
        _Call(_rebuild.dict_view, {}, "pop"),
        _Call(_rebuild.dict_view, {}, "odict_keys"),
    ],
    ids=["not-bytes", "wrong-size", "shape-list", "not-a-dict", "unknown-kind", "not-ordered"],
)
def test_bad_arguments_to_the_data_constructors_are_unpickling_errors(call: _Call) -> None:
    stream = pickle.dumps(call)
    with pytest.raises(omnipickle.UnpicklingError):
        omnipickle.loads(stream, restricted=True)
    with pytest.raises(omnipickle.UnpicklingError):
        omnipickle.loads(stream)


# --- plain data never meets these reducers -----------------------------------------------------


def test_plain_data_dumps_run_none_of_the_builtin_type_reducers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    for name in ("reduce_builtin_type", "array_reducer", "plain_path_markers", "enum_reduce"):
        original = getattr(builtin_types, name)

        def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(builtin_types, name, spy)
        if hasattr(small, name):
            monkeypatch.setattr(small, name, spy)
    plain = {"ints": list(range(1000)), "text": ["x" * 10] * 100, "nested": [{"a": (1.5, None)}]}
    assert round_trip(plain) == plain
    assert round_trip({"small": [1, "x"]}) == {"small": [1, "x"]}  # the per-call fast path
    assert calls == []


def test_the_dispatch_table_holds_the_builtin_reducers_by_exact_type() -> None:
    table = auto.DispatchTable(pickle.HIGHEST_PROTOCOL)
    for cls, reducer in builtin_types.REDUCERS.items():
        assert table[cls] is reducer
    assert auto.borrowed_reducer(memoryview) is None
    assert omnipickle.explain({"v": memoryview(b"a"), "k": {}.keys()}).ok


def test_no_numpy_subclass_markers_without_such_classes_in_a_fresh_interpreter() -> None:
    out = check_python(
        code="import numpy\nfrom omnipickle.backends import builtin_types\n"
        "print(builtin_types.plain_path_markers())\n"
        "class Mine(numpy.ndarray): pass\n"
        "class Below(Mine): pass\n"
        "class Own(numpy.ndarray):\n    def __reduce__(self): return (list, ())\n"
        "print(sorted(builtin_types.plain_path_markers()))\n"
    )
    assert out.splitlines() == ["()", "[b'Below', b'Mine']"]


def test_without_numpy_imported_there_is_nothing_to_watch() -> None:
    out = check_python(
        code="import sys\nimport omnipickle\nfrom omnipickle.backends import builtin_types\n"
        "omnipickle.dumps([object(), 1])\n"
        "print(builtin_types.plain_path_markers(), 'numpy' in sys.modules)\n"
    )
    assert out.split() == ["()", "False"]
