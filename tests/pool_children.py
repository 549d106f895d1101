"""What test_futures.py and test_loky.py share: children that run pools, and the docs' examples.

A child is a fresh ``python -c`` interpreter: its ``__main__`` has no file, so a worker can
import nothing from it, and every function and class of ``__main__`` that works there was
carried by value. A child runs many checks on one pool (a pool takes a second or more to start)
and prints a JSON report; each test asserts one entry of it.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

from conftest import check_python

PRELUDE = """
import json, os, socket, sqlite3, sys, threading, warnings
import omnipickle

PARENT = os.getpid()
SCALE = 10
report = {}


class Held:
    __slots__ = ("n", "lock")

    def __init__(self, n):
        self.n = n
        self.lock = threading.Lock()
        self.lock.acquire()  # held: must come back unlocked

    def bump(self, k):
        return [self.n + k, self.lock.locked(), hasattr(self, "__dict__"), os.getpid() != PARENT]


class Store:
    conn = omnipickle.transient(lambda self: sqlite3.connect(self.path))

    def __init__(self, path):
        self.path = path

    def count(self):
        return self.conn.execute("select count(*) from t").fetchone()[0]


def make_store(path):
    with sqlite3.connect(path) as c:
        c.execute("create table t (x)")
        c.executemany("insert into t values (?)", [(1,), (2,), (3,)])
    store = Store(path)
    store.count()  # opens the connection here: it must not travel
    return store


class MainError(Exception):
    pass


def fail(n):
    raise MainError(f"bad {n}")


def make_adder(k):
    def add(x):
        return x + k * SCALE

    return add


def outcome(call):
    try:
        return ["ok", call()]
    except Exception as exc:
        cause = exc.__cause__
        return [type(exc).__name__, str(exc), str(cause) if cause is not None else ""]
"""

HELD_IN_A_WORKER = [False, False, True]
"""The end of ``Held(n).bump(k)`` run in a worker: unlocked, no ``__dict__``, another pid."""


def child_report(
    code: str, *args: str, env_overrides: dict[str, str | None] | None = None
) -> dict[str, Any]:
    """Run :data:`PRELUDE` and ``code`` in a fresh interpreter; return its ``report``."""
    out = check_python(
        *args, code=PRELUDE + code + "\nprint(json.dumps(report))\n", env_overrides=env_overrides
    )
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


_BLOCK = re.compile(r"```(python|text)\n(.*?)```", re.S)


def blocks(page: Path, section: str) -> list[tuple[str, str]]:
    """The ```python and ```text blocks of the ``## section`` of ``page``, in order, as
    ``(kind, text)``."""
    text = page.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    found: list[tuple[str, str]] = _BLOCK.findall(text[start : end if end >= 0 else len(text)])
    return found


def examples(page: Path, section: str) -> list[tuple[str, str]]:
    """The (code, expected output) pairs of the ``## section`` of ``page``: each ```python
    block followed by a ```text block."""
    pairs = [
        (code, out)
        for (kind, code), (next_kind, out) in itertools.pairwise(blocks(page, section))
        if kind == "python" and next_kind == "text"
    ]
    assert pairs, f"no example with its output in {page.name}, section {section!r}"
    return pairs


def check_examples(
    page: Path, section: str, env_overrides: dict[str, str | None] | None = None
) -> None:
    """Run every example of the section in a fresh interpreter; each must print its output."""
    for code, expected in examples(page, section):
        assert check_python(code=code, env_overrides=env_overrides) == expected, code
