"""``omnipickle.Pickler`` subclasses with their own ``dispatch_table`` keep auto's abilities.

The user's table is consulted first; auto's own still covers the rest: code by value, locks
recreated, live resources refused. Every way the pickle documentation (and loky) sets a table is
tested: a class attribute, an instance attribute, a ``dict(...)`` copy assigned back, and
``copyreg.pickle`` registrations.
"""

from __future__ import annotations

import copyreg
import io
import pickle as stdlib_pickle
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import omnipickle as pickle
from helpers import Plain


def _reduce_plain(obj: Plain) -> Any:
    return (str, (f"Plain({obj.a})",))


class WithClassTable(pickle.Pickler):
    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[Plain] = _reduce_plain


def _class_attribute(buf: io.BytesIO) -> pickle.Pickler:
    return WithClassTable(buf)


def _instance_attribute(buf: io.BytesIO) -> pickle.Pickler:
    # The pickle documentation's per-pickler pattern: a copy, then an entry added to it.
    pickler = pickle.Pickler(buf)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table[Plain] = _reduce_plain
    return pickler


def _loky_copy(buf: io.BytesIO) -> pickle.Pickler:
    # What loky does: a plain dict copy of the pickler's own table, updated, assigned back.
    pickler = pickle.Pickler(buf)
    table = dict(pickler.dispatch_table)
    table[Plain] = _reduce_plain
    pickler.dispatch_table = table
    return pickler


def _set_in_subclass_init(buf: io.BytesIO) -> pickle.Pickler:
    class SetsItFirst(pickle.Pickler):
        def __init__(self, file: Any) -> None:
            self.dispatch_table = {Plain: _reduce_plain}
            super().__init__(file)

    return SetsItFirst(buf)


WAYS: dict[str, Callable[[io.BytesIO], pickle.Pickler]] = {
    "class attribute": _class_attribute,
    "instance attribute": _instance_attribute,
    "dict copy": _loky_copy,
    "set before __init__": _set_in_subclass_init,
}


def _round_trip(make: Callable[[io.BytesIO], pickle.Pickler], obj: Any) -> Any:
    buf = io.BytesIO()
    make(buf).dump(obj)
    return stdlib_pickle.loads(buf.getvalue())


@pytest.mark.parametrize("way", WAYS)
def test_the_users_table_is_consulted_first(way: str) -> None:
    assert _round_trip(WAYS[way], [Plain(4, 5)]) == ["Plain(4)"]


@pytest.mark.parametrize("way", WAYS)
def test_code_still_goes_by_value(way: str) -> None:
    offset = 3
    out = _round_trip(WAYS[way], [lambda x: x + offset, Plain(1, 2)])
    assert out[0](1) == 4
    assert out[1] == "Plain(1)"


@pytest.mark.parametrize("way", WAYS)
def test_locks_are_still_recreated(way: str) -> None:
    lock = threading.Lock()
    lock.acquire()
    out = _round_trip(WAYS[way], {"lock": lock, "rlock": threading.RLock()})
    assert out["lock"].acquire(blocking=False)
    assert isinstance(out["rlock"], type(threading.RLock()))


@pytest.mark.parametrize("way", WAYS)
def test_live_resources_are_still_refused(way: str) -> None:
    with socket.socket() as sock, pytest.raises(TypeError, match="live resource"):
        WAYS[way](io.BytesIO()).dump({"conn": sock})


def test_the_instance_table_is_the_object_that_was_set() -> None:
    pickler = pickle.Pickler(io.BytesIO())
    table = copyreg.dispatch_table.copy()
    pickler.dispatch_table = table
    assert pickler.dispatch_table is table
    assert WithClassTable(io.BytesIO()).dispatch_table is WithClassTable.dispatch_table


def test_entries_added_to_the_users_table_later_are_honoured() -> None:
    table: dict[type, Any] = {}
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf)
    pickler.dispatch_table = table
    table[Plain] = _reduce_plain
    pickler.dump(Plain(7, 8))
    assert stdlib_pickle.loads(buf.getvalue()) == "Plain(7)"


# --- copyreg --------------------------------------------------------------------------------------


@pytest.fixture
def registered() -> Iterator[Callable[[type, Any], None]]:
    """``copyreg.pickle``, undone after the test."""
    added: list[type] = []

    def register(cls: type, reducer: Any) -> None:
        copyreg.pickle(cls, reducer)
        added.append(cls)

    try:
        yield register
    finally:
        for cls in added:
            del copyreg.dispatch_table[cls]


@pytest.mark.parametrize("way", [None, *WAYS])
def test_copyreg_registrations_are_honoured(
    registered: Callable[[type, Any], None], way: str | None
) -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    registered(Point, lambda p: (complex, (p.x, 0)))
    if way is None:
        assert pickle.loads(pickle.dumps([Point(2)])) == [2 + 0j]
    else:  # auto's own table, behind the user's, has copyreg's entries of now
        assert _round_trip(WAYS[way], [Point(2)]) == [2 + 0j]


def test_copyreg_registration_for_the_instances_of_a_class_sent_by_value(
    registered: Callable[[type, Any], None],
) -> None:
    class Local:  # not importable: the class goes by value
        def __init__(self, x: int) -> None:
            self.x = x

    def rebuild(cls: type, x: int) -> Any:
        return cls(x * 10)

    registered(Local, lambda obj: (rebuild, (type(obj), obj.x)))
    out = pickle.loads(pickle.dumps(Local(4)))
    assert type(out).__qualname__ == Local.__qualname__
    assert out.x == 40


def test_copyreg_registration_for_the_metaclass_of_a_class_sent_by_value(
    registered: Callable[[type, Any], None],
) -> None:
    class Meta(type):
        pass

    class Local(metaclass=Meta):
        pass

    registered(Meta, lambda cls: (str, (f"class {cls.__name__}",)))
    assert pickle.loads(pickle.dumps(Local)) == "class Local"
    assert _round_trip(WAYS["class attribute"], Local) == "class Local"
