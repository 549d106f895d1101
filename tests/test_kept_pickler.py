"""Each thread reuses the pickler it built for code by value: reuse must change nothing.

A registration made between two dumps is honoured by the second, a dumps nested in a dumps
gets its own pickler, threads do not share one, nothing dumped is kept alive by it, and a
failure leaves no trace in the next dump.
"""

from __future__ import annotations

import copyreg
import gc
import threading
import tracemalloc
import types
import weakref
from typing import Any

import pytest

import omnipickle
from omnipickle.resources import register_resource, unregister_resource

COUNTER = 10


class Box:
    def __init__(self, value: Any) -> None:
        self.value = value


def _rebuilt_box(value: Any) -> Box:
    return Box(("rebuilt", value))


def _closure_over(obj: Any) -> Any:
    return lambda: obj


def test_a_copyreg_registration_between_two_dumps_is_honoured() -> None:
    first = omnipickle.loads(omnipickle.dumps(_closure_over(Box(1))))
    assert first().value == 1
    copyreg.pickle(Box, lambda b: (_rebuilt_box, (b.value,)))
    try:
        again = omnipickle.loads(omnipickle.dumps(_closure_over(Box(2))))
        assert again().value == ("rebuilt", 2)
    finally:
        del copyreg.dispatch_table[Box]
    assert omnipickle.loads(omnipickle.dumps(_closure_over(Box(3))))().value == 3


def test_a_resource_rule_registered_between_two_dumps_is_honoured() -> None:
    assert omnipickle.loads(omnipickle.dumps(_closure_over(Box(1))))().value == 1
    register_resource(Box, "drop")
    try:
        with pytest.raises(omnipickle.PicklingError, match="Box"):
            omnipickle.dumps(_closure_over(Box(2)))
    finally:
        unregister_resource(Box)
    assert omnipickle.loads(omnipickle.dumps(_closure_over(Box(3))))().value == 3


class DumpsWhileDumped:
    """Its reduction runs a dumps of a lambda: nested in the outer one, on the same thread."""

    def __reduce__(self) -> Any:
        inner = omnipickle.dumps(lambda: "inner")
        return (omnipickle.loads, (inner,))


def test_a_dumps_nested_in_a_dumps_gets_its_own_pickler() -> None:
    outer = _closure_over([DumpsWhileDumped(), lambda: "sibling"])
    back = omnipickle.loads(omnipickle.dumps(outer))()
    assert back[0]() == "inner"
    assert back[1]() == "sibling"


def test_threads_dumping_code_at_once_each_get_their_own_results() -> None:
    errors: list[BaseException] = []
    results: dict[int, list[int]] = {}

    def work(n: int) -> None:
        try:
            got = []
            for i in range(200):
                k = n * 1000 + i
                got.append(omnipickle.loads(omnipickle.dumps(lambda k=k: k + COUNTER))())
            results[n] = got
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for n in range(4):
        assert results[n] == [n * 1000 + i + COUNTER for i in range(200)]


def test_nothing_dumped_is_kept_alive() -> None:
    box = Box(1)
    ref = weakref.ref(box)
    omnipickle.dumps(_closure_over(box))
    del box
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("rows", [5_000, 100_000])
def test_a_large_dump_leaves_no_memo_table_behind(rows: int) -> None:
    """The C pickler's memo table keeps the size it grew to when its memo is cleared: a kept
    pickler must not hold on to one a large dump grew (8 MB after 100,000 dicts, wiped on every
    later dump), nor one a dump of a few thousand objects grew."""
    omnipickle.dumps(lambda: 1)  # this thread's kept pickler exists
    # What the first large payload imports and caches, before the count starts.
    omnipickle.loads(omnipickle.dumps([{"id": i, "name": f"n{i}"} for i in range(300)]))
    big = [{"id": i, "name": f"n{i}"} for i in range(rows)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        payload = omnipickle.dumps(big)
        assert omnipickle.loads(payload) == big
        del payload
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 4096, retained
    assert omnipickle.loads(omnipickle.dumps(_closure_over(Box(2))))().value == 2


@pytest.mark.parametrize("padding", [0, 5_000], ids=["small stream", "over 1 KiB"])
def test_the_code_of_a_function_by_value_is_not_kept(padding: int) -> None:
    """Neither after a small dump (the memo is cleared) nor after a larger one (the pickler
    gets a new memo table)."""
    import sys

    fn = eval("lambda: 41")
    code = fn.__code__
    before = sys.getrefcount(code)
    for _ in range(3):
        payload = omnipickle.dumps([fn, "x" * padding])
        assert omnipickle.loads(payload)[0]() == 41
    del payload
    assert sys.getrefcount(code) == before


def test_a_failed_dump_leaves_nothing_for_the_next() -> None:
    with socket_pair() as sock, pytest.raises(omnipickle.PicklingError, match="socket"):
        omnipickle.dumps(_closure_over(sock))
    payload = omnipickle.dumps(_closure_over(Box(5)))
    assert omnipickle.loads(payload)().value == 5


def test_each_payload_carries_its_own_globals() -> None:
    # Two functions by value in two dumps: the second's globals are its own, not the first's.
    namespace: dict[str, Any] = {"A": 1}
    exec("def f():\n    return A\n", namespace)
    namespace["f"].__module__ = "__main__"
    first = omnipickle.dumps(namespace["f"])
    namespace["A"] = 2
    second = omnipickle.dumps(namespace["f"])
    assert omnipickle.loads(first)() == 1
    assert omnipickle.loads(second)() == 2


class socket_pair:
    def __enter__(self) -> Any:
        import socket

        self.a, self.b = socket.socketpair()
        return self.a

    def __exit__(self, *exc: object) -> None:
        self.a.close()
        self.b.close()


def test_every_dump_of_code_records_the_backends_it_used() -> None:
    # What a type defined in C becomes is decided once; the header must still say, on every
    # dump, which backends' functions are named: cloudpickle's for a class by value (here one
    # holding a C type cloudpickle names), none but omnipickle's own for a function.
    def local(n: int) -> type:
        class Local:
            kind = types.CodeType
            value = n

        return Local

    payloads = [omnipickle.dumps(local(n)) for n in range(3)]
    for payload in payloads:
        info = omnipickle.info(payload)
        assert "cloudpickle" in info.backends
        assert info.by_value
    assert [omnipickle.loads(p).value for p in payloads] == [0, 1, 2]
    functions = [omnipickle.dumps(lambda n=n: n) for n in range(3)]
    for payload in functions:
        assert omnipickle.info(payload).backends == ("pickle",)
        assert omnipickle.info(payload).by_value
    assert [omnipickle.loads(p)() for p in functions] == [0, 1, 2]
    view_type = type({}.keys())
    assert omnipickle.loads(omnipickle.dumps(view_type)) is view_type
    assert omnipickle.loads(omnipickle.dumps([view_type, lambda: view_type]))[1]() is view_type


class Interrupts:
    def __init__(self) -> None:
        self.calls = 0

    def __reduce__(self) -> Any:
        self.calls += 1
        raise KeyboardInterrupt


def test_an_interrupt_during_a_dump_is_not_swallowed_nor_redone() -> None:
    obj = Interrupts()
    with pytest.raises(KeyboardInterrupt):
        omnipickle.dumps(_closure_over(obj))
    assert obj.calls == 1
    assert omnipickle.loads(omnipickle.dumps(_closure_over(Box(4))))().value == 4
