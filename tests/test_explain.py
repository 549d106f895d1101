"""explain(): every problem at once, and what each special part needs."""

from __future__ import annotations

import re
import socket
import threading
import types
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import omnipickle
from helpers import Plain, importable_function
from omnipickle.diagnostics import type_name


def _assert_one_problem_where_dumps_fails(obj: Any, path: str) -> None:
    """explain finds one problem, at ``path``, and dumps fails there."""
    assert [row.path for row in omnipickle.explain(obj).problems] == [path]
    with pytest.raises(omnipickle.PicklingError) as info:
        omnipickle.dumps(obj)
    assert info.value.path == path


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    s = socket.socket()
    try:
        yield s
    finally:
        s.close()


def test_lists_every_problem_not_just_the_first(
    sock: socket.socket, running: threading.Thread
) -> None:
    obj = {"a": Plain(sock, 1), "b": [(i for i in range(2)), 3], "c": running}
    report = omnipickle.explain(obj)
    assert not report.ok
    assert {row.path for row in report.problems} == {"root['a'].a", "root['b'][0]", "root['c']"}
    assert all(row.fix for row in report.problems)


def test_reports_what_each_special_part_needs(tmp_path: Any) -> None:
    target = Plain(1, 2)
    with open(tmp_path / "f", "wb") as f:
        obj = {
            "fn": lambda: 1,
            "ok": importable_function,
            "lock": threading.Lock(),
            "ref": weakref.ref(target),
            "target": target,
            "file": f,
            "keys": {}.keys(),
        }
        report = omnipickle.explain(obj)
    kinds = {row.path: row.kind for row in report.rows}
    assert kinds == {
        "root['fn']": "by value",
        "root['lock']": "recreated",
        "root['ref']": "dill",
        "root['file']": "reopened",
    }  # a dict view is auto's own, plain to pickle (backends/builtin_types.py)
    assert report.ok


def test_agrees_with_dumps_on_what_fails(sock: socket.socket) -> None:
    ok = {"x": [1, 2], "l": lambda: 3}
    assert omnipickle.explain(ok).ok
    omnipickle.dumps(ok)
    bad = [ok, sock]
    assert not omnipickle.explain(bad).ok
    with pytest.raises(omnipickle.PicklingError):
        omnipickle.dumps(bad)


def test_handles_cycles_and_reports_a_graph_too_deep_for_the_pickler(
    running: threading.Thread,
) -> None:
    a = Plain(None, None)
    a.a = a
    deep: Any = [running]
    for _ in range(50_000):
        deep = [deep]
    obj = {"cycle": a, "deep": deep}
    report = omnipickle.explain(obj)
    assert not report.ok
    too_deep, thread = report.problems
    # The pickler gives up on the nesting long before it reaches the thread: that comes first,
    # named by the bottom of the nesting (where the pickler gives up depends on the caller).
    assert too_deep.path == thread.path == "root['deep']<50,001 x [0]>"
    assert "nested too deeply for the pickler: 50,002 levels" in too_deep.reason
    assert thread.type_name == "threading.Thread"
    with pytest.raises(omnipickle.PicklingError, match="nested too deeply"):
        omnipickle.dumps(obj)


@pytest.mark.parametrize(
    ("make", "label"),
    [(lambda x: [x], "[0]"), (lambda x: Plain(x, 1), ".a"), (lambda x: {"next": x}, "['next']")],
    ids=["lists", "objects", "dicts"],
)
def test_a_linked_list_of_100_000_is_too_deep(make: Any, label: str) -> None:
    node: Any = None
    for _ in range(100_000):
        node = make(node)
    report = omnipickle.explain(node)  # no RecursionError escapes
    assert not report.ok
    [problem] = report.problems
    assert problem.path == f"root<99,999 x {label}>"  # the last node, with parts of its own
    assert problem.type_name == type_name(node)
    assert "nested too deeply for the pickler: 99,999 levels" in problem.reason
    gives_up = re.search(r"gives up after about ([\d,]+)", problem.reason)
    assert gives_up is not None
    assert 10 < int(gives_up.group(1).replace(",", "")) < 99_999
    assert problem.fix
    with pytest.raises(omnipickle.PicklingError):
        omnipickle.dumps(node)


def test_a_graph_just_deep_enough_to_be_tried_dumps_and_is_ok() -> None:
    deep: Any = 1
    for _ in range(150):  # deeper than explain's walk trusts, well within the pickler's reach
        deep = [Plain(deep, 2)]
    assert omnipickle.explain(deep).ok
    omnipickle.dumps(deep)


class _CountsReductions:
    """Callable (pickle wants that of a reduction's callable); counts how often it is pickled."""

    def __init__(self) -> None:
        self.pickled = 0

    def __call__(self) -> int:
        return 0

    def __reduce_ex__(self, protocol: Any) -> Any:
        self.pickled += 1
        return (int, ())


class _MadeBy:
    """Reduces to ``(by, ())``: only a real pickler saves (and so reduces) ``by``."""

    def __init__(self, by: Any) -> None:
        self.by = by

    def __reduce__(self) -> Any:
        return (self.by, ())


@pytest.mark.parametrize(("depth", "pickled"), [(3, 0), (150, 1), (5_000, 2)])
def test_only_a_deep_graph_is_pickled_once_or_twice_if_too_deep(depth: int, pickled: int) -> None:
    counter = _CountsReductions()
    deep: Any = None
    for _ in range(depth):
        deep = [deep]
    report = omnipickle.explain([_MadeBy(counter), deep])
    assert counter.pickled == pickled
    assert report.ok == (depth < 1_000)


def test_a_problem_met_before_the_pickler_gets_too_deep_comes_first(sock: socket.socket) -> None:
    deep: Any = None
    for _ in range(5_000):
        deep = [deep]
    report = omnipickle.explain([sock, deep])
    assert report.problems[0].path == "root[0]"
    assert "nested too deeply" in report.problems[1].reason
    with pytest.raises(omnipickle.PicklingError) as info:
        omnipickle.dumps([sock, deep])
    assert info.value.path == "root[0]"


def test_numpy_arrays_are_plain() -> None:
    """numpy reduces an array to a PickleBuffer, which the pickler writes itself."""
    np = pytest.importorskip("numpy")
    for array in (np.arange(3), np.ones((3, 4))[::2, ::2], np.zeros(2, dtype=[("a", "i4")])):
        report = omnipickle.explain({"a": array})
        assert report.ok, report
        assert not report.rows
        omnipickle.dumps({"a": array})


def test_a_socket_in_an_object_array_is_found(sock: socket.socket) -> None:
    np = pytest.importorskip("numpy")
    array = np.array([1, sock], dtype=object)
    _assert_one_problem_where_dumps_fails(array, "root<state>[4][1]")


def test_pandas_dataframes_are_plain() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [1.5, None]})
    assert omnipickle.explain(frame).ok
    omnipickle.dumps(frame)


LIVE: dict[str, Any] = {}
"""Live resources a test puts here, for the methods of local classes to reach as a global."""


def test_looks_inside_a_class_sent_by_value(tmp_path: Any) -> None:
    """A local class goes by value: its methods, and the globals they use, go with it."""

    class Repo:
        def count(self) -> Any:
            return LIVE["conn"].execute("select 1").fetchone()

    import sqlite3

    LIVE["conn"] = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        report = omnipickle.explain(Repo())
        assert [row.path for row in report.problems] == [
            "root.__class__.count<global LIVE>['conn']"
        ]
        assert "live resources" in report.problems[0].reason
        kinds = {row.path: row.kind for row in report.rows}
        assert kinds["root.__class__"] == "by value"
        assert kinds["root.__class__.count"] == "by value"
        with pytest.raises(omnipickle.PicklingError):
            omnipickle.dumps(Repo())
    finally:
        LIVE.pop("conn").close()


THREAD = threading.Thread()


def uses_a_module_thread() -> threading.Thread:
    return THREAD


def test_does_not_look_inside_what_goes_by_name() -> None:
    """An importable function is written by name: the globals it uses do not travel."""
    report = omnipickle.explain({"f": uses_a_module_thread, "cls": Plain})
    assert report.ok
    assert not report.rows
    omnipickle.dumps({"f": uses_a_module_thread, "cls": Plain})


def test_attribute_names_are_not_taken_for_globals() -> None:
    class Holder:
        def get(self) -> Any:
            return self.THREAD  # an attribute that shares its name with a module global

    assert omnipickle.explain(Holder()).ok
    omnipickle.dumps(Holder())


def test_globals_used_in_comprehensions_and_properties_are_found(sock: socket.socket) -> None:
    class Uses:
        @property
        def socks(self) -> list[Any]:
            return [LIVE["sock"] for _ in range(2)]

    LIVE["sock"] = sock
    try:
        report = omnipickle.explain(Uses())
        path = "root.__class__.socks.fget<global LIVE>['sock']"
        assert [row.path for row in report.problems] == [path]
        with pytest.raises(omnipickle.PicklingError):
            omnipickle.dumps(Uses())
    finally:
        del LIVE["sock"]


def test_the_referent_of_a_weak_reference_travels(sock: socket.socket) -> None:
    holder = Plain(sock, 1)
    _assert_one_problem_where_dumps_fails([weakref.ref(holder), holder], "root[0]().a")


def test_a_shared_object_is_reported_where_the_pickler_meets_it_first() -> None:
    gen = (i for i in range(2))
    shared = Plain(gen, 1)
    obj = [Plain(shared, 2), shared]
    _assert_one_problem_where_dumps_fails(obj, "root[0].a.a")


def test_long_repetitions_in_a_path_are_shortened() -> None:
    from omnipickle.diagnostics import format_path

    assert format_path([]) == "root"
    assert format_path(["[0]"] * 8 + [".a"]) == "root" + "[0]" * 8 + ".a"
    assert format_path(["[0]"] * 9 + [".a"]) == "root<9 x [0]>.a"
    assert format_path([".x", ".next", ".v"] * 1000) == "root<1,000 x .x.next.v>"
    assert format_path(["['k']"] + [".a", "[1]"] * 20 + [".b"]) == "root['k']<20 x .a[1]>.b"


def test_never_raises_on_a_strange_object() -> None:
    class Weird:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("boom")

        def __reduce_ex__(self, protocol: Any) -> Any:
            raise RuntimeError("reduce boom")

    class BadReduce:
        def __reduce__(self) -> Any:
            return 42

    report = omnipickle.explain([Weird(), BadReduce()])
    assert [row.path for row in report.problems] == ["root[0]", "root[1]"]
    assert "reduce boom" in report.problems[0].reason
    assert "not a tuple" in report.problems[1].reason
    str(report)
    deep: Any = 1
    for _ in range(150):  # deep enough for explain to try the pickler, which meets Weird first
        deep = [deep]
    report = omnipickle.explain([Weird(), deep])
    assert [row.path for row in report.problems] == ["root[0]"]


def test_huge_containers_are_summarised() -> None:
    report = omnipickle.explain([lambda i=i: i for i in range(5000)])
    text = str(report)
    assert len(text.splitlines()) < 60
    assert "5,000 x function (by value)" in text
    assert report.ok


def test_str_of_a_clean_object_says_so() -> None:
    assert "nothing to report" in str(omnipickle.explain({"a": [1, 2, 3]}))


def test_explain_reports_what_auto_does_with_each_borrowed_type() -> None:
    """explain asks the auto backend (one place decides), so the two cannot disagree."""
    from omnipickle.backends.auto import borrowed_reducer

    class Holder:
        pass

    holder = Holder()
    obj = {"ref": weakref.ref(holder), "proxy": types.MappingProxyType({}), "prop": property(len)}
    kinds = {row.path: row.kind for row in omnipickle.explain(obj).rows}
    for key, value in obj.items():
        assert kinds[f"root[{key!r}]"] == borrowed_reducer(type(value))
