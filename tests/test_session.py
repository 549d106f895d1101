"""dump_session/load_session save what can travel and report the rest (in fresh interpreters)."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import check_python
from omnipickle.session import SESSION_MARKER, NotASessionError


def test_session_round_trips_through_fresh_interpreters(tmp_path: Path) -> None:
    session = tmp_path / "session.pkl.zst"
    db = tmp_path / "db.sqlite"
    dump = f"""
import socket, sqlite3, threading, warnings, omnipickle
numbers = [1, 2, 3]
square = lambda x: x * x
class Point:
    def __init__(self, x): self.x = x
origin = Point(0)
conn = sqlite3.connect({str(db)!r})
holder = {{"sock": socket.socket(), "n": 5}}
gen = (i for i in range(3))
lock = threading.Lock()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    report = omnipickle.dump_session({str(session)!r})
print(sorted(report.saved))
print(sorted(f"{{path}}={{kind}}" for path, kind in report.dropped.items()))
print(len(caught))
"""
    out = check_python(code=dump).splitlines()
    assert "numbers" in out[0] and "square" in out[0] and "Point" in out[0]
    assert "root['conn']=sqlite3.Connection" in out[1]
    assert "root['holder']['sock']=socket.socket" in out[1]
    assert out[2] == "1"
    load = f"""
import omnipickle
report = omnipickle.load_session({str(session)!r})
print(numbers, square(4), origin.x, conn, holder, gen, lock.acquire(timeout=1))
print(sorted(report.dropped))
marker = omnipickle.session.SESSION_MARKER
print(marker in globals(), marker in report.saved)
"""
    lines = check_python(code=load).splitlines()
    assert lines[0] == "[1, 2, 3] 16 0 None {'sock': None, 'n': 5} None True"
    assert "root['gen']" in lines[1]
    assert lines[2] == "False False"


def test_a_variable_that_cannot_be_saved_is_skipped_not_fatal(tmp_path: Path) -> None:
    session = tmp_path / "s.pkl"
    code = f"""
import omnipickle, warnings
class Refuses:
    def __reduce__(self):
        raise RuntimeError("I refuse")
bad = Refuses()
good = "kept"
warnings.simplefilter("ignore")
report = omnipickle.dump_session({str(session)!r})
print(sorted(report.skipped), "good" in report.saved)
"""
    assert check_python(code=code).strip() == "['bad'] True"


def test_load_session_refuses_a_dict_that_dump_session_did_not_write(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    omnipickle.dump({"weights": [1, 2], "config": "x"}, path)
    main = types.ModuleType("notebook")
    main.weights = "mine"  # type: ignore[attr-defined]
    with pytest.raises(NotASessionError, match="without the session marker") as info:
        omnipickle.load_session(path, main=main)
    assert isinstance(info.value, omnipickle.UnpicklingError) and isinstance(info.value, TypeError)
    assert "legacy=True" in str(info.value)
    assert vars(main).get("weights") == "mine" and "config" not in vars(main)


@pytest.mark.parametrize("payload", [[1, 2], "text", {1: "int key"}, None])
def test_load_session_refuses_what_is_not_a_dict_of_names(tmp_path: Path, payload: Any) -> None:
    path = tmp_path / "other.pkl"
    omnipickle.dump(payload, path)
    with pytest.raises(NotASessionError, match="does not hold a session"):
        omnipickle.load_session(path, main=types.ModuleType("m"))


def test_load_session_loads_a_marker_less_session_with_legacy(tmp_path: Path) -> None:
    """Sessions written before the marker were plain dicts of variables, dumped with drop."""
    path = tmp_path / "old-session.pkl"
    omnipickle.dump({"numbers": [1, 2], "name": "old"}, path, on_unpicklable="drop")
    main = types.ModuleType("m")
    report = omnipickle.load_session(path, main=main, legacy=True)
    assert (main.numbers, main.name, report.saved) == ([1, 2], "old", ["numbers", "name"])  # type: ignore[attr-defined]


def test_load_session_refuses_a_session_format_it_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "future.pkl"
    omnipickle.dump({SESSION_MARKER: 99, "x": 1}, path)
    with pytest.raises(omnipickle.IncompatiblePayloadError, match="session format 99"):
        omnipickle.load_session(path, main=types.ModuleType("m"))
    omnipickle.dump({SESSION_MARKER: "1", "x": 1}, path)
    with pytest.raises(NotASessionError, match="damaged session marker"):
        omnipickle.load_session(path, main=types.ModuleType("m"))


def test_the_marker_never_reaches_the_restored_module(tmp_path: Path) -> None:
    path = tmp_path / "s.pkl"
    source = types.ModuleType("source")
    source.x = 1  # type: ignore[attr-defined]
    report = omnipickle.dump_session(path, main=source)
    assert report.saved == ["x"]
    target = types.ModuleType("target")
    assert omnipickle.load_session(path, main=target).saved == ["x"]
    assert SESSION_MARKER not in vars(target) and target.x == 1  # type: ignore[attr-defined]
