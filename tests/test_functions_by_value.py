"""Functions that cannot be found by name go by value, rebuilt by ``_rebuild.function``.

The state kept is what cloudpickle's reducer keeps; each test compares what comes back with the
original (and, where it matters, with what cloudpickle itself gives).
"""

from __future__ import annotations

import pickle
import pickletools
import types
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import omnipickle
from conftest import check_python
from omnipickle import _rebuild

GLOBAL_OFFSET = 10


def _names(stream: bytes) -> list[str]:
    return [arg for op, arg, _ in pickletools.genops(stream) if "UNICODE" in op.name]


def _round_trip(obj: Any) -> Any:
    data = omnipickle.dumps(obj)
    assert omnipickle.info(data).by_value
    return omnipickle.loads(data)


def _rich() -> Any:
    scale = 3

    def rich(x: int, y: int = 2, *, z: int = 5) -> int:
        """Adds things."""
        return x * scale + y + z + GLOBAL_OFFSET

    rich.__name__ = "renamed"
    rich.__qualname__ = "somewhere.renamed"
    rich.tag = {"kind": "rich"}  # type: ignore[attr-defined]
    return rich


def test_every_attribute_of_a_function_comes_back() -> None:
    fn = _rich()
    back = _round_trip(fn)
    assert back(1) == fn(1) == 1 * 3 + 2 + 5 + 10
    assert back(1, 0, z=0) == fn(1, 0, z=0)
    for name in (
        "__name__",
        "__qualname__",
        "__module__",
        "__doc__",
        "__defaults__",
        "__kwdefaults__",
        "__annotations__",
        "__dict__",
    ):
        assert getattr(back, name) == getattr(fn, name), name
    assert back.__code__.co_code == fn.__code__.co_code
    assert back.__closure__[0].cell_contents == 3
    # As cloudpickle gives it.
    theirs = cloudpickle.loads(cloudpickle.dumps(fn))
    assert [getattr(back, n) for n in ("__name__", "__qualname__", "__doc__")] == [
        getattr(theirs, n) for n in ("__name__", "__qualname__", "__doc__")
    ]


def test_a_lambda_is_one_global_and_needs_no_cloudpickle() -> None:
    data = omnipickle.dumps(lambda x: x + 1)
    assert omnipickle.info(data).backends == ("pickle",)
    stream = omnipickle.dumps(lambda x: x + 1, raw=True)
    assert _names(stream).count("function") == 1
    assert "cloudpickle.cloudpickle" not in _names(stream)
    assert pickle.loads(stream)(1) == 2  # plain pickle reads it where omnipickle is installed


def test_a_function_by_value_loads_where_cloudpickle_cannot_be_imported(tmp_path: Path) -> None:
    scale = 4
    path = tmp_path / "f.omni"
    omnipickle.dump({"f": lambda x: x * scale + GLOBAL_OFFSET, "g": lambda: "g"}, path)
    out = check_python(
        str(path),
        code=(
            "import sys\n"
            "sys.modules['cloudpickle'] = None  # import cloudpickle now fails\n"
            "import omnipickle\n"
            "got = omnipickle.load(sys.argv[1])\n"
            "print(got['f'](2), got['g']())\n"
        ),
    )
    assert out.split() == ["18", "g"]


def test_a_recursive_function_and_a_recursive_closure_come_back() -> None:
    def outer() -> Any:
        def countdown(n: int) -> int:
            return 0 if n == 0 else 1 + countdown(n - 1)  # through its own cell

        return countdown

    back = _round_trip(outer())
    assert back(5) == 5
    assert back.__closure__[0].cell_contents is back

    namespace: dict[str, Any] = {}
    exec("def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n", namespace)
    back = _round_trip(namespace["fact"])
    assert back(5) == 120
    assert back.__globals__["fact"] is back  # through its globals


def test_a_default_that_is_the_function_itself_comes_back() -> None:
    def selfish(me: Any = None) -> Any:
        return me

    selfish.__defaults__ = (selfish,)
    back = _round_trip(selfish)
    assert back() is back


def test_functions_of_one_module_share_their_globals_after_loading() -> None:
    namespace: dict[str, Any] = {"__name__": "made_up"}
    exec("counter = 0\ndef bump():\n    global counter\n    counter += 1\n", namespace)
    exec("def read():\n    return counter\n", namespace)
    bump, read = _round_trip([namespace["bump"], namespace["read"]])
    assert bump.__globals__ is read.__globals__
    bump()
    bump()
    assert read() == 2


def test_a_submodule_the_code_uses_is_imported_when_the_function_loads(tmp_path: Path) -> None:
    path = tmp_path / "f.omni"
    check_python(
        str(path),
        code=(
            "import sys, concurrent.futures, omnipickle\n"
            "f = lambda: concurrent.futures.Future().done()\n"
            "omnipickle.dump(f, sys.argv[1])\n"
        ),
    )
    # A fresh interpreter that has imported the package only: loading imports the submodule.
    out = check_python(
        str(path),
        code=(
            "import sys, concurrent, omnipickle\n"
            "assert 'concurrent.futures' not in sys.modules\n"
            "f = omnipickle.load(sys.argv[1])\n"
            "print(f())\n"
        ),
    )
    assert out.strip() == "False"


def test_a_method_calling_super_in_a_class_by_value_comes_back() -> None:
    def make() -> type:
        class Base:
            def hello(self) -> str:
                return "base"

        class Child(Base):
            def hello(self) -> str:
                return "child+" + super().hello()

        return Child

    child = _round_trip(make())
    assert child().hello() == "child+base"


def test_a_closure_with_an_empty_cell_goes_by_cloudpickles_reducer() -> None:
    def make() -> Any:
        def later() -> Any:
            return value  # not yet assigned when dumped

        return later
        value = 1

    fn = make()
    data = omnipickle.dumps(fn)
    assert "cloudpickle" in omnipickle.info(data).backends
    back = omnipickle.loads(data)
    with pytest.raises(NameError):
        back()


def test_one_code_object_loads_once_and_is_shared() -> None:
    def make(k: int) -> Any:
        return lambda x: x + k

    first, second = _round_trip([make(1), make(2)])
    assert first.__code__ is second.__code__
    assert (first(0), second(0)) == (1, 2)


def test_the_cache_of_code_objects_stays_bounded() -> None:
    for i in range(_rebuild._CODES_MAX + 40):
        fn = eval(f"lambda: {i}")
        assert _round_trip(fn)() == i
    assert len(_rebuild._CODES) <= _rebuild._CODES_MAX


def test_a_large_code_object_is_not_kept() -> None:
    lines = "".join(f"    x{i} = {i}\n" for i in range(8000))
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec(f"def big():\n{lines}    return x7999\n", namespace)
    big = namespace["big"]
    assert len(omnipickle.dumps(big)) > _rebuild._CODE_MAX_BYTES
    _rebuild._CODES.clear()
    assert _round_trip(big)() == 7999
    assert not _rebuild._CODES


@pytest.mark.parametrize(
    "args",
    [
        ("not bytes", {}, None, None),
        (b"x", "not a dict", None, None),
        (b"x", {}, None, "3"),
    ],
    ids=["code", "globals", "cells"],
)
def test_the_constructor_refuses_arguments_of_the_wrong_type(args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError, match=r"omnipickle\._rebuild\.function"):
        _rebuild.function(*args)


def test_marshal_data_that_is_not_code_is_refused() -> None:
    import marshal

    with pytest.raises(TypeError, match="holds a tuple, not a code object"):
        _rebuild.function(marshal.dumps((1, 2)), {}, None, None)
    with pytest.raises((ValueError, EOFError)):
        _rebuild.function(b"\xff\x00 not marshal", {}, None, None)


def test_the_state_setter_refuses_a_state_of_the_wrong_shape() -> None:
    fn = types.FunctionType((lambda: 1).__code__, {})
    with pytest.raises(TypeError, match="7-tuple"):
        _rebuild.function(fn, ({}, "q"))
    with pytest.raises(TypeError, match="7-tuple"):
        _rebuild.function(len, ({}, "q", "m", None, None, None, None))


def test_restricted_loading_refuses_a_function_by_value_unless_signed_and_trusted() -> None:
    key = b"f" * 32
    data = omnipickle.dumps(lambda: "ran", key=key)
    with pytest.raises(omnipickle.UnsafePayloadError, match=r"omnipickle\._rebuild\.function"):
        omnipickle.loads(omnipickle.dumps(lambda: "ran"), restricted=True)
    assert omnipickle.loads(data, key=key, restricted=True)() == "ran"


def test_a_lambdas_stream_is_smaller_than_cloudpickles_and_names_one_global_to_its_three() -> None:
    """docs/backends.md."""
    fn = lambda x: x + 1  # noqa: E731
    ours = omnipickle.dumps(fn, raw=True)
    theirs = cloudpickle.dumps(fn, protocol=5)

    def globals_named(stream: bytes) -> int:
        return sum(op.name in ("STACK_GLOBAL", "GLOBAL") for op, _, _ in pickletools.genops(stream))

    assert len(ours) < len(theirs)
    assert (globals_named(ours), globals_named(theirs)) == (1, 3)


def test_a_failed_dump_names_the_first_part_the_pickler_meets() -> None:
    """The state is written in the order the diagnostics walk a function: attributes, then
    the closure, then the globals."""
    import socket

    left, right = socket.socketpair()
    try:

        def make() -> Any:
            held = right

            def fn() -> Any:
                return held, left

            return fn

        fn = make()
        with pytest.raises(omnipickle.PicklingError, match=r"at root<closure held>"):
            omnipickle.dumps(fn)
        fn.conn = left  # type: ignore[attr-defined]
        with pytest.raises(omnipickle.PicklingError, match=r"at root\.conn:"):
            omnipickle.dumps(fn)
    finally:
        left.close()
        right.close()
