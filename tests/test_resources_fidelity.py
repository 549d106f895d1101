"""Live resources come back as faithfully as they can, checked with real threads, files, pipes
and loopback sockets, loading in a *fresh* interpreter wherever that is what counts."""

from __future__ import annotations

import errno
import functools
import io
import os
import pickle
import socket
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import check_python
from omnipickle.resources import ResourceReopenError


def _quietly(obj: Any, **options: Any) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", omnipickle.DroppedResourceWarning)
        return omnipickle.dumps(obj, **options)


# --- threads -----------------------------------------------------------------------------------

CALLS: list[Any] = []


def record(*args: Any, **kwargs: Any) -> None:
    CALLS.append((args, kwargs))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_unstarted_thread_is_recreated_with_target_args_kwargs_name_and_daemon(
    protocol: int,
) -> None:
    t = threading.Thread(target=record, args=(1, 2), kwargs={"k": 3}, name="job-7", daemon=True)
    out = omnipickle.loads(omnipickle.dumps(t, protocol=protocol))
    assert type(out) is threading.Thread
    assert (out.name, out.daemon, out.is_alive(), out.ident) == ("job-7", True, False, None)
    CALLS.clear()
    out.start()
    out.join()
    assert CALLS == [((1, 2), {"k": 3})]


def test_finished_thread_is_recreated_unstarted_and_can_run_again() -> None:
    t = threading.Thread(target=record, name="done", daemon=False)
    t.start()
    t.join()
    out = omnipickle.loads(omnipickle.dumps({"t": t}))["t"]
    assert (out.name, out.daemon, out.is_alive()) == ("done", False, False)
    CALLS.clear()
    out.start()  # Thread.run forgot its target when it finished: nothing left to call
    out.join()
    assert CALLS == []


def test_running_thread_is_refused_with_its_path(running: threading.Thread) -> None:
    with pytest.raises(omnipickle.PicklingError, match=r"threading\.Thread at root\['jobs'\]\[0\]"):
        omnipickle.dumps({"jobs": [running]})


def test_running_thread_is_dropped_under_the_drop_policy(running: threading.Thread) -> None:
    idle = threading.Thread(target=record, name="idle")
    with pytest.warns(omnipickle.DroppedResourceWarning, match=r"root\['busy'\]"):
        data = omnipickle.dumps({"busy": running, "idle": idle}, on_unpicklable="drop")
    out = omnipickle.loads(data)
    assert out["busy"] is None and out["idle"].name == "idle"
    assert omnipickle.info(data).dropped == ({"path": "root['busy']", "type": "threading.Thread"},)


class Worker(threading.Thread):
    def __init__(self, jobs: list[int]) -> None:
        super().__init__(daemon=True, name="worker")
        self.jobs = jobs
        self.done: list[int] = []

    def run(self) -> None:
        self.done = [j * 2 for j in self.jobs]


def test_thread_subclass_keeps_its_class_and_state() -> None:
    out = omnipickle.loads(omnipickle.dumps(Worker([1, 2])))
    assert type(out) is Worker and (out.jobs, out.daemon, out.name) == ([1, 2], True, "worker")
    out.start()
    out.join()
    assert out.done == [2, 4]


def test_thread_subclass_with_a_live_attribute_is_refused_at_that_attribute(
    server: socket.socket,
) -> None:
    worker = Worker([1])
    worker.sock = socket.create_connection(server.getsockname())  # type: ignore[attr-defined]
    try:
        with pytest.raises(omnipickle.PicklingError, match=r"socket\.socket at root\.sock"):
            omnipickle.dumps(worker)
    finally:
        worker.sock.close()  # type: ignore[attr-defined]


def test_unstarted_timer_is_recreated_with_its_interval_and_function() -> None:
    timer = threading.Timer(0.01, record, args=("tick",))
    out = omnipickle.loads(omnipickle.dumps(timer))
    assert type(out) is threading.Timer and out.interval == 0.01
    CALLS.clear()
    out.start()
    out.join()
    assert CALLS == [(("tick",), {})]


def test_threads_of_main_travel_by_value_to_a_fresh_interpreter(tmp_path: Path) -> None:
    """A ``__main__`` target function and a ``__main__`` Thread subclass load where they were
    never defined."""
    payload = tmp_path / "threads.pkl"
    out = tmp_path / "out.txt"
    check_python(
        code=f"""
import threading, omnipickle
def write(path, text, *, suffix):
    with open(path, "a") as f:
        f.write(text + suffix)
class Counter(threading.Thread):
    def __init__(self, path):
        super().__init__(name="counter")
        self.path = path
        self.count = 3
    def run(self):
        write(self.path, "n" * self.count, suffix="|")
plain = threading.Thread(target=write, args=({str(out)!r}, "plain"), kwargs={{"suffix": "|"}},
                         name="plain", daemon=True)
omnipickle.dump({{"plain": plain, "counter": Counter({str(out)!r})}}, {str(payload)!r})
"""
    )
    loaded = check_python(
        code=f"""
import omnipickle
threads = omnipickle.load({str(payload)!r})
for t in threads.values():
    t.start()
    t.join()
print(type(threads["counter"]).__name__, threads["plain"].name, threads["plain"].daemon)
"""
    )
    assert loaded.split() == ["Counter", "plain", "True"]
    assert out.read_text() == "plain|nnn|"


def test_resource_aware_mixin_drops_a_running_thread_and_keeps_an_idle_one(
    running: threading.Thread,
) -> None:
    from helpers import Plain

    class Holder(omnipickle.ResourceAwareMixin, Plain):
        pass

    out = omnipickle.loads(omnipickle.dumps(Holder(running, threading.Thread(name="idle"))))
    assert out.a is None and out.b.name == "idle"


# --- files -------------------------------------------------------------------------------------

MODES = ["rb", "wb", "ab", "r+b", "xb", "r", "w", "a", "r+", "x"]


def _opened(path: Path, mode: str, buffering: int = -1) -> Any:
    if "x" not in mode:
        path.write_bytes(b"0123456789")
    return open(path, mode, buffering=buffering)


@pytest.mark.parametrize("mode", MODES)
def test_closed_file_comes_back_closed_with_its_name_and_mode(tmp_path: Path, mode: str) -> None:
    f = _opened(tmp_path / "data.bin", mode)
    f.close()
    out = omnipickle.loads(omnipickle.dumps({"f": f}))["f"]
    assert (type(out), out.closed, out.name, out.mode) == (type(f), True, f.name, f.mode)


def test_closed_unbuffered_file_comes_back_as_the_same_kind(tmp_path: Path) -> None:
    f = _opened(tmp_path / "data.bin", "rb", buffering=0)
    f.close()
    out = omnipickle.loads(omnipickle.dumps(f))
    assert (type(out), out.closed, out.name, out.mode) == (io.FileIO, True, f.name, "rb")


def test_closed_file_touches_nothing_at_its_path_when_loaded(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    f = _opened(path, "w")
    f.close()
    data = omnipickle.dumps(f)
    path.write_text("written later")
    omnipickle.loads(data)
    assert path.read_text() == "written later"


def test_closed_file_keeps_name_and_mode_in_a_fresh_interpreter(tmp_path: Path) -> None:
    payload = tmp_path / "closed.pkl"
    check_python(
        code=f"""
import os, omnipickle
os.chdir({str(tmp_path)!r})
f = open("notes.txt", "a", encoding="latin-1")
f.close()
omnipickle.dump(f, {str(payload)!r})
"""
    )
    out = check_python(
        code=f"""
import omnipickle
f = omnipickle.load({str(payload)!r})
print(f.closed, f.name, f.mode, f.encoding, type(f).__name__)
"""
    )
    assert out.split() == ["True", "notes.txt", "a", "latin-1", "TextIOWrapper"]


def test_file_opened_by_a_relative_path_reopens_the_same_file_from_elsewhere(
    tmp_path: Path,
) -> None:
    """The loader runs in another directory, which holds a different file of the same name."""
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    (here / "data.txt").write_text("0123456789")
    (there / "data.txt").write_text("the wrong file")
    payload = tmp_path / "file.pkl"
    check_python(
        code=f"""
import os, omnipickle
os.chdir({str(here)!r})
f = open("data.txt")
f.read(4)
omnipickle.dump({{"f": f}}, {str(payload)!r})
"""
    )
    out = check_python(
        code=f"""
import os, omnipickle
os.chdir({str(there)!r})
f = omnipickle.load({str(payload)!r})["f"]
print(f.name, f.read())
"""
    )
    assert out.split() == [str(here / "data.txt"), "456789"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_relative_file_is_found_after_the_program_changed_directory(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("abcdef")
    payload = tmp_path / "file.pkl"
    check_python(
        code=f"""
import os, omnipickle
os.chdir({str(tmp_path)!r})
f = open("data.txt")
f.read(2)
os.chdir("/")
omnipickle.dump(f, {str(payload)!r})
"""
    )
    out = check_python(code=f"import omnipickle; print(omnipickle.load({str(payload)!r}).read())")
    assert out.strip() == "cdef"


def _load_in_child(payload: Path) -> str:
    """Load ``payload`` in a fresh interpreter; describe what came back or what was raised."""
    return check_python(
        code=f"""
import warnings, omnipickle
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        out = omnipickle.load({str(payload)!r})
    except omnipickle.UnpicklingError as exc:
        print("raised", type(exc).__name__, isinstance(exc, OSError), exc.errno, exc.filename)
        print(exc)
    else:
        print("loaded", out)
        for w in caught:
            print(w.category.__name__, w.message)
"""
    )


def test_file_that_cannot_be_reopened_raises_the_documented_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.txt"
    with _opened(path, "r") as f:
        payload = tmp_path / "p.pkl"
        omnipickle.dump({"f": f}, payload)
    path.unlink()
    first, message = _load_in_child(payload).splitlines()[:2]
    assert first == f"raised ResourceReopenError True {errno.ENOENT} {path}"
    assert f"cannot reopen the file {str(path)!r} (mode 'r')" in message
    assert "No such file or directory" in message and 'on_unpicklable="drop"' in message


def test_reopen_error_is_an_unpickling_error_and_an_oserror(tmp_path: Path) -> None:
    path = tmp_path / "dir-now.bin"
    with _opened(path, "rb") as f:
        data = omnipickle.dumps(f)
    path.unlink()
    path.mkdir()  # a directory where the file was
    with pytest.raises(ResourceReopenError) as info:
        omnipickle.loads(data)
    exc = info.value
    assert isinstance(exc, omnipickle.UnpicklingError) and isinstance(exc, pickle.UnpicklingError)
    assert isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)
    assert (exc.errno, exc.filename, exc.mode) == (errno.EISDIR, str(path), "rb")
    assert isinstance(exc.__cause__, IsADirectoryError)


def test_file_that_cannot_be_reopened_loads_as_none_when_dumped_with_drop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gone.log"
    with _opened(path, "a") as f:
        payload = tmp_path / "p.pkl"
        omnipickle.dump({"f": f, "n": 1}, payload, on_unpicklable="drop")
    assert omnipickle.info(payload).dropped == ()  # it could be reopened when dumped
    path.unlink()
    lines = _load_in_child(payload).splitlines()
    assert lines[0] == "loaded {'f': None, 'n': 1}"
    assert lines[1].startswith(f"DroppedResourceWarning the file {str(path)!r} (mode 'a')")
    assert lines[1].endswith("it loads as None")


def test_file_dumped_with_drop_still_reopens_where_it_exists(tmp_path: Path) -> None:
    with _opened(tmp_path / "kept.txt", "r+") as f:
        f.read(3)
        data = omnipickle.dumps([f], on_unpicklable="drop")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (out,) = omnipickle.loads(data)
    try:
        assert out.read() == "3456789"
    finally:
        out.close()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_opened_by_path_is_refused_not_an_oserror(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with open(fifo, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
        with pytest.raises(omnipickle.PicklingError) as info:
            omnipickle.dumps({"f": f})
        assert info.value.path == "root['f']"
        assert "cannot seek" in str(info.value.__cause__)
        assert omnipickle.loads(_quietly({"f": f}, on_unpicklable="drop")) == {"f": None}


# --- the drop policy at the root -----------------------------------------------------------------


def test_root_pipe_is_dropped_under_the_drop_policy() -> None:
    read_fd, write_fd = os.pipe()
    pipe = open(read_fd, "rb")  # noqa: SIM115 - closed below
    try:
        with pytest.warns(omnipickle.DroppedResourceWarning, match=r"root \(_io\.BufferedReader\)"):
            data = omnipickle.dumps(pipe, on_unpicklable="drop")
    finally:
        pipe.close()
        os.close(write_fd)
    assert omnipickle.info(data).dropped == ({"path": "root", "type": "_io.BufferedReader"},)
    assert check_python(code=f"import omnipickle; print(omnipickle.loads({data!r}))") == "None\n"


def test_root_running_thread_is_dropped_under_the_drop_policy(running: threading.Thread) -> None:
    data = _quietly(running, on_unpicklable="drop")
    assert omnipickle.loads(data) is None
    assert omnipickle.info(data).dropped == ({"path": "root", "type": "threading.Thread"},)


def test_root_pipe_without_drop_advises_the_drop_policy() -> None:
    read_fd, write_fd = os.pipe()
    try:
        with open(read_fd, "rb") as pipe, pytest.raises(omnipickle.PicklingError) as info:
            omnipickle.dumps(pipe)
    finally:
        os.close(write_fd)
    assert 'pass on_unpicklable="drop"' in str(info.value)


def test_too_deep_a_graph_is_refused_not_cut_under_the_drop_policy() -> None:
    """Dropping the node where the pickler ran out of stack would silently lose the rest."""

    class Node:
        def __init__(self, child: Any) -> None:
            self.child = child

    node: Any = None
    for _ in range(sys.getrecursionlimit() * 2):
        node = Node(node)
    with pytest.raises(omnipickle.PicklingError, match="nested too deeply") as info:
        _quietly(node, on_unpicklable="drop")
    assert "on_unpicklable" not in str(info.value)


def test_too_many_unknown_failures_are_refused_without_advising_the_policy() -> None:
    class Refuses:
        def __reduce__(self) -> Any:
            raise TypeError("never")

    with pytest.raises(omnipickle.PicklingError, match="more than 64 different parts") as info:
        _quietly([Refuses() for _ in range(65)], on_unpicklable="drop")
    assert "on_unpicklable" not in str(info.value)


def test_a_part_the_policy_cannot_leave_out_is_not_told_to_use_the_policy() -> None:
    from omnipickle.backends import auto

    class Refuses:
        def __reduce__(self) -> Any:
            raise TypeError("never")

    obj = {"x": Refuses()}
    locate = functools.partial(auto._DroppingPickler, protocol=5, fix_imports=True)
    cause = TypeError("never")
    error = auto._cannot_drop(obj, cause, cause, locate, "root['x']", obj["x"])
    assert isinstance(error, omnipickle.PicklingError)
    assert "root['x']" in str(error) and 'on_unpicklable="drop" could not leave it out' in str(
        error
    )
    assert 'pass on_unpicklable="drop"' not in str(error)


# --- ResourceAwareMixin: resources inside container attributes ----------------------------------


class Pool(omnipickle.ResourceAwareMixin):
    def __init__(self, address: Any) -> None:
        self.address = address
        self.socks = [socket.create_connection(address), socket.create_connection(address)]
        self.by_name = {"a": socket.create_connection(address), "n": 1}
        self.pairs = (("x", socket.create_connection(address)), ("y", 2))
        self.members = {socket.create_connection(address), "kept"}
        self.data = [1, 2, {"deep": [3]}]

    def all_socks(self) -> list[socket.socket]:
        return [
            *self.socks,
            self.by_name["a"],
            self.pairs[0][1],
            *(m for m in self.members if m != "kept"),
        ]


def test_resource_aware_mixin_leaves_sockets_out_of_container_attributes(
    server: socket.socket,
) -> None:
    pool = Pool(server.getsockname())
    try:
        out = omnipickle.loads(omnipickle.dumps(pool))
        assert pool.socks[0].fileno() >= 0  # the original is untouched
    finally:
        for sock in pool.all_socks():
            sock.close()
    assert out.socks == [None, None]
    assert out.by_name == {"a": None, "n": 1}
    assert out.pairs == (("x", None), ("y", 2))
    assert out.members == {"kept"}
    assert out.data == [1, 2, {"deep": [3]}]


def test_resource_aware_mixin_containers_in_a_fresh_interpreter(
    server: socket.socket, tmp_path: Path
) -> None:
    payload = tmp_path / "pool.pkl"
    host, port = server.getsockname()
    check_python(
        code=f"""
import socket, omnipickle
class Peers(omnipickle.ResourceAwareMixin):
    def __init__(self, address):
        self.address = address
        self.peers = {{"main": (address, socket.create_connection(address))}}
    def __restore__(self):
        address, sock = self.peers["main"]
        assert sock is None
        self.peers["main"] = (address, socket.create_connection(address))
omnipickle.dump(Peers(({host!r}, {port})), {str(payload)!r})
"""
    )
    out = check_python(
        code=f"""
import omnipickle
peers = omnipickle.load({str(payload)!r})
address, sock = peers.peers["main"]
print(type(peers).__name__, type(sock).__name__, sock.getpeername()[1] == address[1])
"""
    )
    assert out.split() == ["Peers", "socket", "True"]


def test_resource_aware_mixin_keeps_shared_containers_shared_when_nothing_is_live() -> None:
    class Holder(omnipickle.ResourceAwareMixin):
        def __init__(self) -> None:
            self.a = [1, [2]]
            self.b = self.a

    out = omnipickle.loads(omnipickle.dumps(Holder()))
    assert out.a is out.b and out.a == [1, [2]]


def test_resource_aware_mixin_looks_four_levels_deep_and_no_deeper(
    server: socket.socket,
) -> None:
    class Holder(omnipickle.ResourceAwareMixin):
        def __init__(self, sock: socket.socket, depth: int) -> None:
            value: Any = sock
            for _ in range(depth):
                value = [value]
            self.nested = value

    with socket.create_connection(server.getsockname()) as sock:
        out = omnipickle.loads(omnipickle.dumps(Holder(sock, 4)))
        assert out.nested == [[[[None]]]]
        with pytest.raises(
            omnipickle.PicklingError, match=r"root\.nested\[0\]\[0\]\[0\]\[0\]\[0\]"
        ):
            omnipickle.dumps(Holder(sock, 5))


def test_resource_aware_mixin_drops_a_pipe_attribute_its_file_rule_refuses() -> None:
    class Reader(omnipickle.ResourceAwareMixin):
        def __init__(self, pipe: Any) -> None:
            self.pipe = pipe
            self.n = 1

    read_fd, write_fd = os.pipe()
    try:
        with open(read_fd, "rb") as pipe:
            out = omnipickle.loads(omnipickle.dumps(Reader(pipe)))
    finally:
        os.close(write_fd)
    assert (out.pipe, out.n) == (None, 1)


# --- transient() and __slots__ -------------------------------------------------------------------


def _definition_error(exc: BaseException) -> BaseException:
    """The TypeError transient() raises when a class is defined (Python 3.11 wraps it)."""
    if isinstance(exc, RuntimeError) and sys.version_info < (3, 12):
        assert exc.__cause__ is not None
        return exc.__cause__
    return exc


def test_transient_on_a_slots_class_fails_when_the_class_is_defined() -> None:
    with pytest.raises((TypeError, RuntimeError)) as info:

        class S:
            __slots__ = ("path",)
            conn = omnipickle.transient(lambda self: object())

    error = _definition_error(info.value)
    assert isinstance(error, TypeError)
    assert "S.conn" in str(error) and "no __dict__" in str(error) and "'__dict__'" in str(error)


def test_transient_works_on_a_slots_class_that_keeps_a_dict() -> None:
    class S:
        __slots__ = ("__dict__", "path")
        conn = omnipickle.transient(lambda self: f"connected to {self.path}")

        def __init__(self, path: str) -> None:
            self.path = path

    s = S("db")
    assert s.conn == "connected to db"
    out = omnipickle.loads(omnipickle.dumps(s))
    assert "conn" not in out.__dict__ and out.conn == "connected to db"


@pytest.mark.parametrize("mode", MODES)
def test_no_mode_creates_a_file_that_is_missing_at_load(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "app.log"
    with _opened(path, mode) as f:
        data = omnipickle.dumps(f)
    path.unlink()
    with pytest.raises(ResourceReopenError, match="No such file"):
        omnipickle.loads(data)
    assert not path.exists()


def test_open_unbuffered_file_reopens_as_a_raw_file_at_its_position(tmp_path: Path) -> None:
    with _opened(tmp_path / "raw.bin", "rb", buffering=0) as f:
        f.read(6)
        out = omnipickle.loads(omnipickle.dumps(f))
    with out:
        assert (type(out), out.read()) == (io.FileIO, b"6789")


class Poller(omnipickle.TransientMixin, threading.Thread):
    __transient__ = ("sock",)

    def __init__(self, address: Any) -> None:
        super().__init__(name="poller")
        self.address = address
        self.sock: Any = socket.create_connection(address)

    def __restore__(self) -> None:
        self.restored_with = self.sock


class AwarePoller(omnipickle.ResourceAwareMixin, threading.Thread):
    def __init__(self, address: Any) -> None:
        super().__init__(name="aware")
        self.address = address
        self.socks = [socket.create_connection(address)]


def test_thread_subclass_mixins_leave_their_attributes_out(server: socket.socket) -> None:
    poller, aware = Poller(server.getsockname()), AwarePoller(server.getsockname())
    try:
        out, out_aware = omnipickle.loads(omnipickle.dumps([poller, aware]))
    finally:
        poller.sock.close()
        aware.socks[0].close()
    assert (type(out), out.name, out.sock, out.restored_with) == (Poller, "poller", None, None)
    assert out.address == server.getsockname() and not out.is_alive()
    assert (type(out_aware), out_aware.name, out_aware.socks) == (AwarePoller, "aware", [None])
