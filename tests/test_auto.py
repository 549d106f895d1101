"""The auto backend chooses per object inside one stream."""

from __future__ import annotations

import io
import marshal
import pickle
import pickletools
import threading
import types
import weakref
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import check_python
from helpers import Plain, importable_function
from omnipickle.format.header import HEADER_SIZE

# Format 2: the stream's PROTO, BINBYTES and its length, the 48-byte header, POP, then the
# rest of the stream.
OFFSET = 2 + 5 + HEADER_SIZE + 1


def test_plain_data_uses_only_pickle_and_is_a_plain_stream_after_the_header() -> None:
    obj = {"a": [1, 2.5, "x"], "b": (None, True)}
    data = omnipickle.dumps(obj)
    about = omnipickle.info(data)
    assert about.backends == ("pickle",)
    assert about.by_value is False
    # Same bytes as the C pickler, but for the header.
    assert data[:2] + data[OFFSET:] == pickle.dumps(obj, 5)


def test_instances_of_importable_classes_give_pickles_bytes() -> None:
    obj = [Plain(i, str(i)) for i in range(1000)]
    data = omnipickle.dumps(obj)
    assert data[:2] + data[OFFSET:] == pickle.dumps(obj, 5)
    assert omnipickle.info(data).backends == ("pickle",)


def test_importable_functions_go_by_reference() -> None:
    data = omnipickle.dumps([importable_function, len, Plain])
    assert data[:2] + data[OFFSET:] == pickle.dumps([importable_function, len, Plain], 5)
    assert omnipickle.loads(data)[0] is importable_function


def test_lambda_inside_plain_data_goes_by_value_and_the_rest_stays_shared() -> None:
    shared = {"k": 1}
    obj = {"rows": [shared, shared], "fn": lambda x: x * 2, "n": 5}
    out = omnipickle.loads(omnipickle.dumps(obj))
    assert out["fn"](4) == 8
    assert out["rows"][0] is out["rows"][1]
    about = omnipickle.info(omnipickle.dumps(obj))
    assert about.by_value is True
    assert about.backends == ("pickle",)  # omnipickle rebuilds the function: no cloudpickle


def test_lambda_half_way_through_instance_heavy_data_round_trips() -> None:
    """The plain first attempt fails half-way; the result must still be complete and right."""
    rows: list[Any] = [Plain(i, None) for i in range(5000)]
    rows[2500] = Plain(-1, lambda: "found")
    out = omnipickle.loads(omnipickle.dumps(rows))
    assert [r.a for r in out] == [r.a for r in rows]
    assert out[2500].b() == "found"


def test_closure_captures_its_values() -> None:
    def make(n: int) -> Any:
        def add(x: int) -> int:
            return x + n

        return add

    fns = omnipickle.loads(omnipickle.dumps([make(i) for i in range(5)]))
    assert [f(10) for f in fns] == [10, 11, 12, 13, 14]


def test_local_class_and_its_instances_round_trip() -> None:
    class Local:
        def __init__(self) -> None:
            self.v = 3

        def twice(self) -> int:
            return self.v * 2

    out = omnipickle.loads(omnipickle.dumps([Local(), Local()]))
    assert [o.twice() for o in out] == [6, 6]
    assert type(out[0]) is type(out[1])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_acquired_lock_and_rlock_come_back_unlocked_and_usable(protocol: int) -> None:
    lock, rlock = threading.Lock(), threading.RLock()
    lock.acquire()
    rlock.acquire()
    try:
        out_lock, out_rlock = omnipickle.loads(omnipickle.dumps((lock, rlock), protocol))
    finally:
        lock.release()
        rlock.release()
    assert isinstance(out_lock, type(threading.Lock()))
    assert out_lock.acquire(timeout=1)
    out_lock.release()
    assert out_rlock.acquire(timeout=1)
    assert out_rlock.acquire(timeout=1)  # re-entrant
    out_rlock.release()
    out_rlock.release()


def test_condition_semaphore_event_barrier_are_recreated() -> None:
    cond = threading.Condition()
    sem = threading.Semaphore(3)
    sem.acquire()
    bounded = threading.BoundedSemaphore(2)
    bounded.acquire()
    event_set, event_clear = threading.Event(), threading.Event()
    event_set.set()
    barrier = threading.Barrier(2, timeout=5)
    out = omnipickle.loads(omnipickle.dumps([cond, sem, bounded, event_set, event_clear, barrier]))
    out_cond, out_sem, out_bounded, out_set, out_clear, out_barrier = out
    with out_cond:
        out_cond.notify_all()
    assert out_sem._value == 2
    assert out_bounded._value == 1
    out_bounded.release()
    with pytest.raises(ValueError):
        out_bounded.release()  # still bounded at 2
    assert out_set.is_set() and not out_clear.is_set()
    assert out_barrier.parties == 2


def test_recreated_condition_works_across_real_threads() -> None:
    cond = omnipickle.loads(omnipickle.dumps(threading.Condition()))
    box: list[int] = []

    def waiter() -> None:
        with cond:
            cond.wait_for(lambda: box, timeout=5)

    t = threading.Thread(target=waiter)
    t.start()
    with cond:
        box.append(1)
        cond.notify_all()
    t.join(timeout=5)
    assert not t.is_alive()


def test_shared_lock_stays_shared_after_loading() -> None:
    lock = threading.Lock()
    a, b = omnipickle.loads(omnipickle.dumps([Plain(1, lock), Plain(2, lock)]))
    assert a.b is b.b


def test_weakref_goes_to_dill_for_that_object_only_and_keeps_identity() -> None:
    target = Plain(1, 2)
    data = omnipickle.dumps({"target": target, "ref": weakref.ref(target), "n": list(range(5))})
    about = omnipickle.info(data)
    assert set(about.backends) == {"pickle", "dill"}
    out = omnipickle.loads(data)
    assert out["ref"]() is out["target"]


def test_weak_proxy_round_trips() -> None:
    target = Plain(1, 2)
    out = omnipickle.loads(omnipickle.dumps([target, weakref.proxy(target)]))
    assert out[1].a == 1


def test_open_binary_file_is_reopened_at_its_position(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as f:
        f.read(4)
        data = omnipickle.dumps({"f": f})
    out = omnipickle.loads(data)["f"]
    try:
        assert out.read() == b"456789"
    finally:
        out.close()
    assert omnipickle.info(data).backends == ("pickle",)


def test_file_open_for_writing_is_reopened_without_truncating(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    with open(path, "w", encoding="utf-8") as f:
        f.write("first line\n")
        data = omnipickle.dumps(f)
    out = omnipickle.loads(data)
    try:
        out.write("second line\n")
    finally:
        out.close()
    assert path.read_text(encoding="utf-8") == "first line\nsecond line\n"


def test_standard_streams_come_back_as_the_loading_process_streams() -> None:
    import sys

    # (pytest replaces sys.stdout with its own capture object; the real one is __stdout__.)
    assert omnipickle.loads(omnipickle.dumps(sys.__stdout__)) is sys.stdout


def test_plain_data_does_not_import_cloudpickle_or_dill() -> None:
    code = (
        "import sys, omnipickle\n"
        "class Local: pass\n"
        "omnipickle.loads(omnipickle.dumps({'a': [1, 2], 'b': 'x', 'c': (1.5, None)}))\n"
        "import fractions\n"
        "omnipickle.loads(omnipickle.dumps([fractions.Fraction(1, 3)] * 10))\n"
        "optional = ('cloudpickle', 'dill', 'zstandard', 'lz4')\n"
        "print(sorted(m for m in optional if m in sys.modules))\n"
    )
    assert check_python(code=code).strip() == "[]"


def test_buffer_callback_sees_each_buffer_once_even_when_the_dump_is_redone() -> None:
    """Instance-heavy data with a lambda at the end makes auto redo the dump; the user's
    callback must still be called once per buffer, in order."""
    bufs = [pickle.PickleBuffer(bytearray([i]) * 1000) for i in range(3)]
    rows: list[Any] = [Plain(i, bufs[i % 3]) for i in range(30)]
    rows.append(Plain(99, lambda: 1))
    seen: list[pickle.PickleBuffer] = []
    data = omnipickle.dumps(rows, buffer_callback=seen.append)
    # pickle hands each occurrence to the callback (buffers are not memoized): 30, not 60.
    assert len(seen) == 30
    out = omnipickle.loads(data, buffers=seen)
    assert bytes(out[4].b) == bytes([1]) * 1000
    assert out[-1].b() == 1


def test_modules_registered_by_value_are_written_by_value(tmp_path: Path) -> None:
    """A function from a module registered with cloudpickle.register_pickle_by_value loads
    where the module does not exist."""
    (tmp_path / "private_helpers.py").write_text("def triple(x):\n    return 3 * x\n")
    payload = tmp_path / "p.bin"
    dump = (
        "import sys, cloudpickle, omnipickle\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import fractions, private_helpers\n"
        "cloudpickle.register_pickle_by_value(private_helpers)\n"
        "data = [fractions.Fraction(1, 2)] * 100 + [private_helpers.triple]\n"
        f"omnipickle.dump(data, {str(payload)!r})\n"
    )
    check_python(code=dump)
    (tmp_path / "private_helpers.py").unlink()
    load = f"import omnipickle\nprint(omnipickle.load({str(payload)!r})[-1](5))\n"
    assert check_python(code=load).strip() == "15"


def test_pickling_error_from_user_reduce_keeps_its_type() -> None:
    class Refuses:
        def __reduce__(self) -> Any:
            raise ValueError("not today")

    with pytest.raises(ValueError, match="not today"):
        omnipickle.dumps([Refuses()])


def test_bytesio_is_not_dropped_and_keeps_its_data() -> None:
    buf = io.BytesIO(b"payload")
    buf.seek(3)
    out = omnipickle.loads(omnipickle.dumps(buf))
    assert out.getvalue() == b"payload"
    assert out.tell() == 3


def test_large_dumps_checksum_on_a_second_thread_and_leave_no_thread_behind() -> None:
    big = [{"i": i, "s": str(i) * 8} for i in range(300_000)]  # > 4 MiB of stream
    before = threading.active_count()
    data = omnipickle.dumps(big)
    assert omnipickle.info(data).checksum_ok is True
    assert omnipickle.loads(data) == big
    rows = [Plain(i, str(i) * 8) for i in range(200_000)]
    assert omnipickle.loads(omnipickle.dumps(rows))[-1] == rows[-1]

    class Refuses:
        def __reduce__(self) -> Any:
            raise ValueError("late failure")

    with pytest.raises(ValueError, match="late failure"):
        omnipickle.dumps([*rows, Refuses()])
    with pytest.raises(ValueError, match="late failure"):
        omnipickle.dumps([*big, Refuses()])
    assert threading.active_count() == before


def test_a_code_object_alone_is_code_by_value() -> None:
    code = (lambda: 42).__code__
    data = omnipickle.dumps(code)
    assert omnipickle.info(data).by_value is True
    assert eval(omnipickle.loads(data)) == 42


_CODE_FIELDS = (
    "co_code",
    "co_consts",
    "co_names",
    "co_varnames",
    "co_freevars",
    "co_cellvars",
    "co_filename",
    "co_name",
    "co_qualname",
    "co_firstlineno",
    "co_linetable",
    "co_exceptiontable",
    "co_flags",
    "co_argcount",
    "co_kwonlyargcount",
    "co_posonlyargcount",
    "co_stacksize",
)


def _make_adder(k: int) -> Any:
    def add(x: int) -> int:
        return x + k + sum(i for i in range(3))  # a nested code object: the generator

    return add


def test_code_by_value_is_marshal_bytes_and_comes_back_field_for_field() -> None:
    fn = _make_adder(2)
    stream = omnipickle.dumps(fn, raw=True)
    names = {arg for op, arg, _ in pickletools.genops(stream) if "UNICODE" in op.name}
    assert marshal.dumps(fn.__code__) in stream
    assert {"omnipickle._rebuild", "function"} <= names
    assert "CodeType" not in names  # no field-by-field rebuild
    assert "cloudpickle.cloudpickle" not in names
    back = omnipickle.loads(omnipickle.dumps(fn))
    assert back(1) == 6
    for field in _CODE_FIELDS:
        assert getattr(back.__code__, field) == getattr(fn.__code__, field), field
    nested = next(c for c in back.__code__.co_consts if isinstance(c, types.CodeType))
    assert nested.co_name == "<genexpr>"
    assert pickle.loads(stream)(1) == 6  # plain pickle loads it (omnipickle installed)


def test_functions_sharing_a_code_object_write_it_once() -> None:
    adders = [_make_adder(k) for k in range(5)]
    blob = marshal.dumps(adders[0].__code__)
    stream = omnipickle.dumps(adders, raw=True)
    assert stream.count(blob) == 1
    back = omnipickle.loads(omnipickle.dumps(adders))
    assert [f(0) for f in back] == [3, 4, 5, 6, 7]
    assert len({id(f.__code__) for f in back}) == 1


def test_a_code_object_marshal_cannot_write_goes_by_cloudpickles_reducer() -> None:
    # A constant no compiler makes (an instance), set by hand: marshal refuses it.
    code = (lambda: "placeholder").__code__
    fn = types.FunctionType(code.replace(co_consts=(None, Fraction(1, 3))), {})
    with pytest.raises(ValueError):
        marshal.dumps(fn.__code__)
    data = omnipickle.dumps(fn)
    assert omnipickle.info(data).by_value is True
    assert omnipickle.loads(data)() == Fraction(1, 3)


def test_deterministic_dumps_write_code_field_by_field() -> None:
    # marshal's bytes depend on reference counts (the docs' reason)...
    held = ("".join(["ab", "cd"]),)
    alone = marshal.dumps(held)
    also_here = held[0]
    assert marshal.dumps(held) != alone and also_here
    # ...so deterministic payloads do not use it.
    stream = omnipickle.dumps(_make_adder(2), raw=True, deterministic=True)
    assert b"marshal" not in stream
    assert omnipickle.loads(omnipickle.dumps(_make_adder(2), deterministic=True))(1) == 6


def test_builtin_oddities_saved_by_cloudpickles_class_reducer_are_not_code_by_value() -> None:
    """NoneType cannot be found by name, but cloudpickle writes it as ``type(None)``."""
    data = omnipickle.dumps([type(None), type(Ellipsis), type(NotImplemented)])
    assert omnipickle.info(data).by_value is False
    assert omnipickle.loads(data) == [type(None), type(Ellipsis), type(NotImplemented)]


def test_a_class_by_value_without_methods_is_code_by_value() -> None:
    empty = type("Empty", (), {})
    assert omnipickle.info(omnipickle.dumps(empty)).by_value is True


def test_borrowed_reducer_says_whose_reducer_auto_uses() -> None:
    from omnipickle.backends.auto import borrowed_reducer

    assert borrowed_reducer(weakref.ReferenceType) == "dill"
    assert borrowed_reducer(property) == "cloudpickle"
    assert borrowed_reducer(memoryview) is None  # auto's own (backends/builtin_types.py)
    assert borrowed_reducer(dict) is None
    assert borrowed_reducer(Plain) is None
