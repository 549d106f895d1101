"""Errors say what, where and what to do; the exception tree matches pickle's."""

from __future__ import annotations

import pickle
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from helpers import Plain


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.host = "127.0.0.1"
        self._sock = sock


@pytest.fixture
def connected_socket() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    try:
        yield client
    finally:
        for s in (conn, client, server):
            s.close()


def test_socket_error_names_path_type_reason_and_fix(connected_socket: socket.socket) -> None:
    jobs = [None, None, None, Plain("job", Client(connected_socket))]
    with pytest.raises(omnipickle.PicklingError) as info:
        omnipickle.dumps({"jobs": jobs})
    message = str(info.value)
    assert message.startswith("cannot serialize socket.socket at root['jobs'][3].b._sock: ")
    assert "live resources" in message
    assert info.value.path == "root['jobs'][3].b._sock"
    assert info.value.type_name == "socket.socket"


def test_sqlite_connection_error_names_its_path(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        with pytest.raises(omnipickle.PicklingError, match=r"sqlite3\.Connection at root\.a"):
            omnipickle.dumps(Plain(conn, 1))
    finally:
        conn.close()


def test_thread_and_subprocess_errors_name_their_paths() -> None:
    thread = threading.Thread(target=lambda: None)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        with pytest.raises(omnipickle.PicklingError, match=r"at root\[1\]\['proc'\]"):
            omnipickle.dumps([thread.name, {"proc": proc}])
    finally:
        proc.wait()


def test_lambda_capturing_a_socket_names_the_closure(connected_socket: socket.socket) -> None:
    sock = connected_socket

    def send() -> Any:
        return sock.send(b"x")

    with pytest.raises(omnipickle.PicklingError, match=r"at root\['cb'\]<closure sock>"):
        omnipickle.dumps({"cb": send})


@pytest.mark.parametrize("backend", ["auto", "pickle", "cloudpickle", "dill"])
def test_every_backend_reports_the_path(backend: str, connected_socket: socket.socket) -> None:
    with pytest.raises(omnipickle.PicklingError, match=r"at root\.b\._sock"):
        omnipickle.dumps(Plain(1, Client(connected_socket)), backend=backend)


def test_lambda_with_the_pickle_backend_says_it_cannot_be_found_by_name() -> None:
    with pytest.raises(omnipickle.PicklingError, match=r"function.*at root\[0\]"):
        omnipickle.dumps([lambda: 1], backend="pickle")


def test_misbehaving_getattr_does_not_break_the_report() -> None:
    class Weird:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("boom")

        def __reduce__(self) -> Any:
            raise TypeError("refuses to be pickled")

    with pytest.raises(omnipickle.PicklingError, match=r"Weird at root\[0\]"):
        omnipickle.dumps([Weird()])


def test_recursion_too_deep_is_a_picklingerror() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(omnipickle.PicklingError, match="nested too deeply") as info:
        omnipickle.dumps(deep)
    assert isinstance(info.value, RecursionError)  # what pickle raises for it


def test_exception_tree_matches_pickles() -> None:
    E = omnipickle
    assert issubclass(E.PicklingError, pickle.PicklingError)
    assert issubclass(E.UnpicklingError, pickle.UnpicklingError)
    for sub in (
        E.CorruptPayloadError,
        E.SignatureError,
        E.UnsafePayloadError,
        E.IncompatiblePayloadError,
        E.TruncatedPayloadError,
    ):
        assert issubclass(sub, E.UnpicklingError)
    assert issubclass(E.TruncatedPayloadError, EOFError)
    assert issubclass(E.BackendNotInstalledError, ImportError)
    assert issubclass(E.CodecNotInstalledError, ImportError)
    assert issubclass(E.UnknownBackendError, ValueError)
    assert issubclass(E.UnknownCodecError, ValueError)
    for sub, also in (
        (E.PicklingTypeError, TypeError),
        (E.PicklingAttributeError, AttributeError),
        (E.PicklingRecursionError, RecursionError),
    ):
        assert issubclass(sub, E.PicklingError)
        assert issubclass(sub, also)
    for cls in (
        E.PicklingError,
        E.UnpicklingError,
        E.BackendNotInstalledError,
        E.UnknownCodecError,
    ):
        assert issubclass(cls, E.OmnipickleError)
    from omnipickle import errors

    assert errors.PicklingError is E.PicklingError


def test_picklingerror_chains_the_original_cause() -> None:
    with pytest.raises(omnipickle.PicklingError) as info:
        omnipickle.dumps([(i for i in range(2))])
    assert info.value.__cause__ is not None


class Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.jobs: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        self.stop.wait()


@pytest.mark.parametrize("many", [False, True], ids=["alone", "among-instances"])
def test_running_thread_subclass_is_refused_not_pickled_as_a_zombie(many: bool) -> None:
    """A Thread's state is picklable once locks are recreated; running, it must be refused."""
    data: list[Any] = [Plain(i, i) for i in range(1000)] if many else []
    worker = Worker()
    worker.start()
    data.append(worker)
    try:
        with pytest.raises(omnipickle.PicklingError, match=r"Worker at root\[\d+\]: live"):
            omnipickle.dumps(data)
    finally:
        worker.stop.set()
        worker.join()


def test_popen_is_refused() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        with pytest.raises(omnipickle.PicklingError, match=r"Popen at root\.a"):
            omnipickle.dumps(Plain(proc, None))
    finally:
        proc.wait()


def test_path_is_right_when_a_large_array_sits_beside_the_problem() -> None:
    """The locator test-pickles siblings; a large in-band buffer (handed to the sink whole,
    without len()) must not be mistaken for the culprit."""
    import numpy as np

    with socket.socket() as sock, pytest.raises(omnipickle.PicklingError) as info:
        omnipickle.dumps({"arr": np.arange(200_000.0), "z": sock})
    assert info.value.path == "root['z']"


def test_budget_exceeded_is_an_unsafe_payload_and_exported() -> None:
    assert issubclass(omnipickle.BudgetExceededError, omnipickle.UnsafePayloadError)
    assert omnipickle.BudgetExceededError is omnipickle.errors.BudgetExceededError
