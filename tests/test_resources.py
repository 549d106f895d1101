"""Live resources: mixins, transient attributes, the registry, the drop policy, re-attach."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import omnipickle
from helpers import AwareClient, Client, LazyRepository, Repository
from omnipickle.resources import BUILTIN_RULES

# --- TransientMixin ----------------------------------------------------------------------------


def test_transient_attribute_is_left_out_and_restored_by_the_hook(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path / "db.sqlite"))
    repo.add("apple")
    data = omnipickle.dumps(repo)
    assert b"sqlite3" not in data
    out = omnipickle.loads(data)
    assert out.names() == ["apple"]
    out.add("banana")
    assert repo.names() == ["apple", "banana"]  # the same file, reconnected


class Base(omnipickle.TransientMixin):
    __transient__ = ("a",)

    def __init__(self) -> None:
        self.a = threading.Thread(target=print)
        self.keep = 1


class Child(Base):
    __transient__ = ("b",)

    def __init__(self) -> None:
        super().__init__()
        self.b = (i for i in range(3))


def test_transient_names_of_every_base_are_merged() -> None:
    out = omnipickle.loads(omnipickle.dumps(Child()))
    assert (out.a, out.b, out.keep) == (None, None, 1)


class Slotted(omnipickle.TransientMixin):
    __slots__ = ("conn", "value")
    __transient__ = ("conn",)

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.value = 42


def test_transient_with_slots() -> None:
    out = omnipickle.loads(omnipickle.dumps(Slotted()))
    assert out.value == 42
    assert out.conn is None
    assert not hasattr(out, "__dict__")


@dataclasses.dataclass
class DataRepo(omnipickle.TransientMixin):
    __transient__: ClassVar[tuple[str, ...]] = ("conn",)
    path: str
    conn: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenSlots(omnipickle.TransientMixin):
    __transient__: ClassVar[tuple[str, ...]] = ("lockish",)
    name: str
    lockish: Any


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_transient_with_dataclasses_plain_and_frozen_slots(protocol: int) -> None:
    repo = DataRepo("x.db", sqlite3.connect(":memory:"))
    out = omnipickle.loads(omnipickle.dumps(repo, protocol))
    assert (out.path, out.conn) == ("x.db", None)
    frozen = FrozenSlots("n", socket.socket())
    try:
        out2 = omnipickle.loads(omnipickle.dumps(frozen, protocol))
    finally:
        frozen.lockish.close()
    assert (out2.name, out2.lockish) == ("n", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out2.name = "changed"  # type: ignore[misc]


class OwnState(omnipickle.TransientMixin):
    __transient__ = ("cache",)

    def __init__(self) -> None:
        self.items = [1, 2]
        self.cache = threading.Thread(target=print)
        self.derived = 3

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["derived"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.derived = sum(self.items)


def test_transient_composes_with_the_class_own_getstate_and_setstate() -> None:
    out = omnipickle.loads(omnipickle.dumps(OwnState()))
    assert (out.items, out.derived, out.cache) == ([1, 2], 3, None)


class Evolving(omnipickle.TransientMixin):
    __slots__ = ("conn", "value")
    __transient__ = ("conn",)

    def __init__(self) -> None:
        self.conn = None
        self.value = 1


def test_state_tolerates_missing_and_extra_keys() -> None:
    """A payload written when the class had an attribute it has lost (``old_slot``), and
    lacked one it has gained (``value``), still loads."""
    from omnipickle._reconstruct import restore_state

    obj = Evolving.__new__(Evolving)
    restore_state(obj, ((None, {"old_slot": 7}), ("conn",)))
    assert obj.conn is None
    assert not hasattr(obj, "value")
    restore_state(obj, ((None, {"value": 3}), ("conn",)))
    assert obj.value == 3


def test_transient_declaration_errors_at_class_definition() -> None:
    with pytest.raises(TypeError, match="tuple of attribute names"):

        class NotATuple(omnipickle.TransientMixin):
            __transient__ = "conn"  # type: ignore[assignment]

    with pytest.raises(TypeError, match="identifiers"):

        class NotNames(omnipickle.TransientMixin):
            __transient__ = ("conn", 3)  # type: ignore[assignment]

    with pytest.raises(ValueError, match=r"'conm'.*did you mean 'conn'"):

        class Typo(omnipickle.TransientMixin):
            __transient__ = ("conm",)

            def __init__(self) -> None:
                self.conn = None


def test_main_class_with_transient_travels_to_a_fresh_interpreter(tmp_path: Path) -> None:
    from conftest import check_python

    db = tmp_path / "db.sqlite"
    payload = tmp_path / "repo.pkl"
    dump = f"""
import sqlite3, omnipickle
class Repo(omnipickle.TransientMixin):
    __transient__ = ("conn",)
    def __init__(self, path):
        self.path = path
        self.conn = sqlite3.connect(path)
        self.conn.execute("create table t (x)")
        self.conn.execute("insert into t values (5)")
        self.conn.commit()
    def __restore__(self):
        self.conn = sqlite3.connect(self.path)
omnipickle.dump(Repo({str(db)!r}), {str(payload)!r})
"""
    check_python(code=dump)
    load = f"""
import omnipickle
repo = omnipickle.load({str(payload)!r})
print(repo.conn.execute("select x from t").fetchall())
"""
    assert check_python(code=load).strip() == "[(5,)]"


# --- transient() ---------------------------------------------------------------------------------


def test_transient_descriptor_is_never_pickled_and_rebuilt_lazily(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    Repository(path).add("pear")
    lazy = LazyRepository(path)
    assert lazy.names() == ["pear"]
    data = omnipickle.dumps(lazy)
    out = omnipickle.loads(data)
    assert "conn" not in out.__dict__
    assert out.names() == ["pear"]
    assert "conn" in out.__dict__


def test_transient_factory_runs_once_with_threads_racing() -> None:
    calls: list[int] = []
    gate = threading.Barrier(8)

    class Holder:
        def slow(self) -> object:
            calls.append(1)
            return object()

        value = omnipickle.transient(lambda self: self.slow())

    holder = Holder()
    seen: list[object] = []

    def worker() -> None:
        gate.wait()
        seen.append(holder.value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(v is seen[0] for v in seen)


def test_failing_factory_names_class_and_attribute_and_retries() -> None:
    attempts: list[int] = []

    def flaky(self: Any) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionRefusedError("db down")
        return "connected"

    class Service:
        conn = omnipickle.transient(flaky)

    svc = Service()
    with pytest.raises(omnipickle.ResourceRebuildError, match=r"Service\.conn.*db down") as info:
        svc.conn
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert svc.conn == "connected"


def test_plain_pickle_leaves_a_transient_attribute_out_too(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    Repository(path).add("fig")
    lazy = LazyRepository(path)
    assert lazy.names() == ["fig"]  # the connection is open here
    out = pickle.loads(pickle.dumps(lazy))
    assert "conn" not in out.__dict__
    assert out.names() == ["fig"]


def test_a_main_class_with_a_transient_attribute_travels_by_value_through_cloudpickle(
    tmp_path: Path,
) -> None:
    """cloudpickle (what Ray and loky use by default) carries a ``__main__`` class by value,
    its ``transient`` descriptor included: the descriptor's own locks stay behind."""
    from conftest import check_python

    db, payload = tmp_path / "db.sqlite", tmp_path / "store.pkl"
    dump = f"""
import sqlite3, cloudpickle, omnipickle
class Store:
    conn = omnipickle.transient(lambda self: sqlite3.connect(self.path))
    def __init__(self, path):
        self.path = path
store = Store({str(db)!r})
store.conn.execute("create table t (x)")
store.conn.execute("insert into t values (7)")
store.conn.commit()
with open({str(payload)!r}, "wb") as f:
    cloudpickle.dump(store, f)
"""
    check_python(code=dump)
    load = f"""
import pickle
with open({str(payload)!r}, "rb") as f:
    store = pickle.load(f)  # Store is defined nowhere here: it came by value
left_out = "conn" not in vars(store)
rows = store.conn.execute("select x from t").fetchall()  # reopened here
print(type(store).__module__, left_out, rows)
"""
    assert check_python(code=load).split() == ["__main__", "True", "[(7,)]"]


def test_a_transient_descriptor_pickled_with_its_locks_by_an_earlier_release_loads() -> None:
    """Earlier releases pickled the descriptor's whole ``__dict__``, its locks included (as
    ``object.__reduce_ex__`` does): such a payload still gives a working descriptor."""
    import copyreg

    class OldStylePickler(omnipickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is omnipickle.transient:
                return copyreg.__newobj__, (omnipickle.transient,), dict(vars(obj))
            return super().reducer_override(obj)

    class Holder:
        value = omnipickle.transient(lambda self: [self.n])

        def __init__(self) -> None:
            self.n = 4

    descriptor = Holder.__dict__["value"]
    assert isinstance(descriptor, omnipickle.transient)
    buffer = io.BytesIO()
    OldStylePickler(buffer).dump(descriptor)
    loaded = omnipickle.loads(buffer.getvalue())
    assert (loaded.name, loaded.owner) == ("value", descriptor.owner)
    assert loaded.__get__(Holder()) == [4]


def test_transient_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        omnipickle.transient(42)  # type: ignore[arg-type]


# --- ResourceAwareMixin ----------------------------------------------------------------------


def test_resource_aware_mixin_drops_live_attributes_by_type(server: socket.socket) -> None:
    client = AwareClient(server.getsockname())
    client.send(b"x")
    out = omnipickle.loads(omnipickle.dumps(client))
    assert out.sent == 1
    assert isinstance(out.sock, socket.socket)  # __restore__ reconnected
    out.send(b"y")
    out.sock.close()
    client.sock.close()


# --- the registry ----------------------------------------------------------------------------


class Handle:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def clean_rules() -> Iterator[None]:
    from omnipickle.resources.rules import RULES

    saved = RULES.snapshot()
    try:
        yield
    finally:
        RULES.restore(saved)


@pytest.mark.usefixtures("clean_rules")
def test_registered_drop_rule_applies_even_to_picklable_types() -> None:
    omnipickle.register_resource(Handle, "drop")
    with pytest.raises(omnipickle.PicklingError, match=r"Handle at root\[0\]"):
        omnipickle.dumps([Handle("h")])
    with pytest.warns(omnipickle.DroppedResourceWarning):
        out = omnipickle.loads(omnipickle.dumps([Handle("h")], on_unpicklable="drop"))
    assert out == [None]


@pytest.mark.usefixtures("clean_rules")
def test_registered_recreate_rule_by_dotted_name() -> None:
    omnipickle.register_resource(
        f"{Handle.__module__}.Handle", "recreate", reducer=lambda h: (Handle, ("fresh",))
    )
    assert omnipickle.loads(omnipickle.dumps(Handle("old"))).name == "fresh"


@pytest.mark.usefixtures("clean_rules")
def test_register_resource_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="recreate, reopen, drop"):
        omnipickle.register_resource(Handle, "explode")
    with pytest.raises(TypeError, match="type or a dotted name"):
        omnipickle.register_resource(42, "drop")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dotted name"):
        omnipickle.register_resource("nodots", "drop")
    with pytest.raises(ValueError, match="needs a reducer"):
        omnipickle.register_resource(Handle, "recreate")
    with pytest.raises(ValueError, match="takes no reducer"):
        omnipickle.register_resource(Handle, "drop", reducer=lambda h: (Handle, ("x",)))
    omnipickle.register_resource(Handle, "drop")
    with pytest.raises(ValueError, match="already registered"):
        omnipickle.register_resource(Handle, "drop")
    omnipickle.register_resource(Handle, "drop", replace=True)


@pytest.mark.usefixtures("clean_rules")
def test_unregistering_the_last_user_rule_brings_the_fast_path_back() -> None:
    from omnipickle.resources import has_user_rules, unregister_resource

    assert not has_user_rules()
    omnipickle.register_resource(Handle, "drop")
    omnipickle.register_resource("sqlite3.Row", "drop")
    assert has_user_rules()
    unregister_resource(Handle)
    assert has_user_rules()
    unregister_resource("sqlite3.Row")
    assert not has_user_rules()
    assert omnipickle.loads(omnipickle.dumps([Handle("h")]))[0].name == "h"


@pytest.mark.usefixtures("clean_rules")
def test_unregistering_a_replacing_rule_brings_back_the_rule_it_replaced() -> None:
    from omnipickle.resources import has_user_rules, resource_rule, unregister_resource

    def fresh_thread(thread: threading.Thread) -> Any:
        return (threading.Thread, ())

    omnipickle.register_resource(threading.Thread, "recreate", reducer=fresh_thread, replace=True)
    assert resource_rule(threading.Thread).action == "recreate"  # type: ignore[union-attr]
    assert has_user_rules()
    unregister_resource(threading.Thread)
    rule = resource_rule(threading.Thread)
    assert rule is not None and rule.builtin and rule.reducer is not fresh_thread
    assert not has_user_rules()


def test_unregistering_a_target_without_a_rule_is_a_key_error() -> None:
    from omnipickle.resources import unregister_resource

    with pytest.raises(KeyError, match="Handle"):
        unregister_resource(Handle)


@pytest.mark.parametrize(
    ("target", "action"),
    [(target, action) for target, action, _ in BUILTIN_RULES],
)
def test_every_builtin_rule_is_in_force(target: type | str, action: str) -> None:
    from omnipickle.resources.rules import RULES

    rule = RULES.find(target)
    assert rule is not None and rule.builtin and rule.action == action


def test_refuse_is_the_public_drop_reducer_and_names_the_type() -> None:
    from omnipickle.resources import refuse

    with pytest.raises(TypeError, match="'Thread' object: it is a live resource"):
        refuse(threading.Thread())


def test_dbapi_lookalike_counts_as_a_connection() -> None:
    class FakeConnection:
        def cursor(self) -> None: ...
        def commit(self) -> None: ...
        def rollback(self) -> None: ...
        def close(self) -> None: ...

    with pytest.raises(omnipickle.PicklingError, match="live resources"):
        omnipickle.dumps({"db": FakeConnection()})


# --- the policy ------------------------------------------------------------------------------


def test_drop_policy_with_real_resources_records_paths_and_types(
    tmp_path: Path, server: socket.socket
) -> None:
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    client = Client(server.getsockname())
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)  # running: cannot travel
    thread.start()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    read_fd, write_fd = os.pipe()
    pipe = os.fdopen(read_fd, "rb")
    state = {
        "db": conn,
        "client": client,
        "thread": thread,
        "proc": proc,
        "pipe": pipe,
        "data": [1, 2, 3],
        "lock": threading.Lock(),
    }
    try:
        with pytest.warns(omnipickle.DroppedResourceWarning, match="root\\['db'\\]") as record:
            data = omnipickle.dumps(state, on_unpicklable="drop")
        assert len(record) == 1
        dropped = {d["path"]: d["type"] for d in omnipickle.info(data).dropped}
        assert dropped == {
            "root['db']": "sqlite3.Connection",
            "root['client'].sock": "socket.socket",
            "root['thread']": "threading.Thread",
            "root['proc']": "subprocess.Popen",
            "root['pipe']": "_io.BufferedReader",
        }
        out = omnipickle.loads(data)
        assert out["data"] == [1, 2, 3]
        assert (out["db"], out["client"].sock, out["thread"], out["proc"], out["pipe"]) == (
            None,
            None,
            None,
            None,
            None,
        )
        assert out["lock"].acquire(timeout=1)
        out["client"].send(b"reconnects")  # the client sees None and reconnects
        out["client"].sock.close()
    finally:
        stop.set()
        thread.join()
        proc.wait()
        conn.close()
        client.sock.close()
        pipe.close()
        os.close(write_fd)


def test_default_policy_error_names_both_fixes(server: socket.socket) -> None:
    client = Client(server.getsockname())
    try:
        with pytest.raises(omnipickle.PicklingError) as info:
            omnipickle.dumps({"c": client})
    finally:
        client.sock.close()
    message = str(info.value)
    assert "root['c'].sock" in message
    assert "TransientMixin" in message and 'on_unpicklable="drop"' in message
    assert "explain" in message


def test_objects_pickle_restores_faithfully_are_never_dropped() -> None:
    import logging

    state = {
        "bio": io.BytesIO(b"abc"),
        "sio": io.StringIO("text"),
        "log": logging.getLogger("omni.test"),
        "it": iter([1, 2, 3]),
    }
    next(state["it"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", omnipickle.DroppedResourceWarning)
        out = omnipickle.loads(omnipickle.dumps(state, on_unpicklable="drop"))
    assert out["bio"].getvalue() == b"abc"
    assert out["sio"].getvalue() == "text"
    assert out["log"] is logging.getLogger("omni.test")
    assert list(out["it"]) == [2, 3]
    assert omnipickle.info(omnipickle.dumps(state, on_unpicklable="drop")).dropped == ()


def test_drop_policy_drops_unknown_unpicklable_objects_too() -> None:
    class Refuses:
        def __reduce__(self) -> Any:
            raise TypeError("never")

    with pytest.warns(omnipickle.DroppedResourceWarning):
        data = omnipickle.dumps({"a": Refuses(), "b": [Refuses(), 5]}, on_unpicklable="drop")
    assert omnipickle.loads(data) == {"a": None, "b": [None, 5]}


def test_shared_resource_is_dropped_once_and_stays_shared() -> None:
    gen = (i for i in range(3))
    with pytest.warns(omnipickle.DroppedResourceWarning):
        data = omnipickle.dumps([gen, {"again": gen}], on_unpicklable="drop")
    assert len(omnipickle.info(data).dropped) == 1
    assert omnipickle.loads(data) == [None, {"again": None}]


def test_drop_policy_needs_the_auto_backend() -> None:
    with pytest.raises(ValueError, match="auto backend"):
        omnipickle.dumps(1, backend="pickle", on_unpicklable="drop")


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="on_unpicklable"):
        omnipickle.dumps(1, on_unpicklable="ignore")


# --- re-attach -------------------------------------------------------------------------------


def _dropping(obj: Any) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", omnipickle.DroppedResourceWarning)
        return omnipickle.dumps(obj, on_unpicklable="drop")


def test_reattach_by_path_and_by_type(server: socket.socket) -> None:
    a, b = Client(server.getsockname()), Client(server.getsockname())
    conn = sqlite3.connect(":memory:")
    try:
        data = _dropping({"a": a, "b": b, "db": conn})
    finally:
        a.sock.close()
        b.sock.close()
    fresh = sqlite3.connect(":memory:")
    out = omnipickle.loads(data, resources={"root['a'].sock": "A", sqlite3.Connection: fresh})
    assert out["a"].sock == "A"
    assert out["b"].sock is None
    assert out["db"] is fresh


def test_reattach_naming_a_path_not_in_the_payload_is_refused_before_loading() -> None:
    data = _dropping({"g": (i for i in range(2))})
    with pytest.raises(ValueError, match=r"root\['nope'\].*it dropped: root\['g'\]"):
        omnipickle.loads(data, resources={"root['nope']": 1, "root['g']": 2})
    with pytest.raises(ValueError, match="did not drop"):
        omnipickle.loads(data, resources={socket.socket: 1})
    with pytest.raises(TypeError, match="mapping"):
        omnipickle.loads(data, resources=[1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keys"):
        omnipickle.loads(data, resources={1: 2})  # type: ignore[dict-item]


def test_reattach_does_not_leak_into_other_loads() -> None:
    data = _dropping({"g": (i for i in range(2))})
    assert omnipickle.loads(data, resources={"root['g']": "x"}) == {"g": "x"}
    assert omnipickle.loads(data) == {"g": None}


class _Ledger:
    """Looks like a DB-API connection (cursor, commit, rollback, close), but says how it is
    pickled: it is data, and must travel whole."""

    def __init__(self, rows: list[int]) -> None:
        self.rows = rows

    def cursor(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...

    def __getstate__(self) -> dict[str, Any]:
        return {"rows": self.rows}


def test_a_class_that_says_how_it_is_pickled_is_not_taken_for_a_connection() -> None:
    ledger = _Ledger([1, 2, 3])
    assert omnipickle.loads(omnipickle.dumps(ledger)).rows == [1, 2, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped, so no warning either
        assert omnipickle.loads(omnipickle.dumps(ledger, on_unpicklable="drop")).rows == [1, 2, 3]
