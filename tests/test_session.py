"""dump_session/load_session save what can travel and report the rest (in fresh interpreters)."""

from __future__ import annotations

from pathlib import Path

from conftest import check_python


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
"""
    lines = check_python(code=load).splitlines()
    assert lines[0] == "[1, 2, 3] 16 0 None {'sock': None, 'n': 5} None True"
    assert "root['gen']" in lines[1]


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
