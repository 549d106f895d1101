"""explain(): every problem at once, and what each special part needs."""

from __future__ import annotations

import socket
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import omnipickle
from helpers import Plain, importable_function


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
        "root['keys']": "cloudpickle",
    }
    assert report.ok


def test_agrees_with_dumps_on_what_fails(sock: socket.socket) -> None:
    ok = {"x": [1, 2], "l": lambda: 3}
    assert omnipickle.explain(ok).ok
    omnipickle.dumps(ok)
    bad = [ok, sock]
    assert not omnipickle.explain(bad).ok
    with pytest.raises(omnipickle.PicklingError):
        omnipickle.dumps(bad)


def test_handles_cycles_and_deep_graphs(running: threading.Thread) -> None:
    a = Plain(None, None)
    a.a = a
    deep: Any = [running]
    for _ in range(50_000):
        deep = [deep]
    report = omnipickle.explain({"cycle": a, "deep": deep})
    assert len(report.problems) == 1
    assert report.problems[0].path.startswith("root['deep'][0][0]")


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
    obj = {"ref": weakref.ref(holder), "view": memoryview(b"abc"), "prop": property(len)}
    kinds = {row.path: row.kind for row in omnipickle.explain(obj).rows}
    for key, value in obj.items():
        assert kinds[f"root[{key!r}]"] == borrowed_reducer(type(value))
