"""The frame watch of the plain first attempt (``backends.base.Watch``): it finds exactly what
``marker in frame`` finds, however common the marker's rare byte, and a dump whose late frames
name ``__main__`` or ``getattr`` is still redone."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import check_python
from omnipickle.backends.base import NO_WATCH, Watch, WatchedMarkerFound

MARKERS = (b"__main__", b"getattr")


def found(watch: Watch, frame: bytes) -> bytes | None:
    try:
        watch.check(frame)
    except WatchedMarkerFound as exc:
        return exc.args[0]
    return None


def expected(markers: tuple[bytes, ...], frame: bytes) -> bytes | None:
    return next((marker for marker in markers if marker in frame), None)


@pytest.mark.parametrize("at", [0, 1, 100, 65_528])
def test_a_marker_is_found_at_the_start_the_middle_and_the_end(at: int) -> None:
    for marker in MARKERS:
        frame = bytearray(b"\x94" * 65_536)
        at = min(at, len(frame) - len(marker))
        frame[at : at + len(marker)] = marker
        assert found(Watch(MARKERS), bytes(frame)) == marker


def test_pieces_of_a_marker_are_not_a_marker() -> None:
    frame = b"__mai_n__ getatt r _main__ __main_ etattr getattR" * 1000
    assert found(Watch(MARKERS), frame) is None


def test_the_first_marker_in_watch_order_is_reported() -> None:
    frame = b"getattr" + b"x" * 100 + b"__main__"
    assert found(Watch(MARKERS), frame) == b"__main__"
    assert found(Watch((b"getattr", b"__main__")), frame) == b"getattr"


def test_a_marker_after_many_false_starts_is_found_and_the_watch_keeps_finding() -> None:
    """Hundreds of ``_`` and ``g`` (the markers' rare bytes) before the marker: the watch gives
    up on the rare byte for that marker, and must find it in this frame and every later one."""
    noise = b"_g_x" * 5000
    assert found(Watch(MARKERS), noise + b"__main__") == b"__main__"  # in the frame it gave up
    assert found(Watch(MARKERS), noise + b"getattr") == b"getattr"
    watch = Watch(MARKERS)
    assert found(watch, noise) is None
    assert found(watch, noise + b"__main__") == b"__main__"
    assert found(watch, noise + b"getattr" + noise) == b"getattr"
    assert found(watch, b"__main__") == b"__main__"
    assert found(watch, noise) is None


def test_it_agrees_with_in_on_random_frames() -> None:
    """Frames made of the markers' own bytes, so that false starts and overlaps are common."""
    rng = random.Random(11)
    alphabet = b"_maingetr\x94"
    for _ in range(3000):
        markers = tuple(
            bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
            for _ in range(rng.randint(1, 3))
        )
        watch = Watch(markers)
        for _ in range(3):
            frame = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
            assert found(watch, frame) == expected(markers, frame), (markers, frame)


def test_no_watch_finds_nothing_and_an_empty_marker_is_in_every_frame() -> None:
    """As ``b"" in frame``: a module registered by value under an empty name sends every dump
    to the pickler that checks each object, as it did before markers had plans."""
    assert not NO_WATCH
    assert found(NO_WATCH, b"__main__ getattr") is None
    assert found(Watch((b"getattr", b"")), b"x" * 100) == b""
    assert found(Watch((b"",)), b"") == b""


CHILD_DUMP = """
import sys
sys.path.insert(0, {tests!r})
import omnipickle
from helpers import Plain

class Local:  # defined in __main__: it only loads elsewhere by value
    def __init__(self, tag):
        self.tag = tag
    def greet(self):
        return "hello " + self.tag

# Text full of the markers' rare bytes, in instances of an importable class: many frames
# before the last rows, which refer to __main__ and to a bound method.
rows = [Plain(i, "a_g_" * 20 + str(i)) for i in range(20_000)]
rows.append(Plain(-1, Local("late")))
rows.append(Plain(-2, Local("method").greet))
omnipickle.dump(rows, sys.argv[1])
"""

CHILD_LOAD = """
import sys
sys.path.insert(0, {tests!r})
import omnipickle
rows = omnipickle.load(sys.argv[1])
assert len(rows) == 20_002 and rows[19_999].b.endswith("19999"), rows[-3]
assert rows[-2].b.tag == "late" and rows[-2].b.greet() == "hello late"
assert rows[-1].b() == "hello method"
print("ok")
"""


def test_late_references_in_text_heavy_instances_load_in_a_fresh_interpreter(
    tmp_path: Path,
) -> None:
    tests = str(Path(__file__).resolve().parent)
    path = tmp_path / "rows.pkl"
    check_python(str(path), code=CHILD_DUMP.format(tests=tests))
    assert check_python(str(path), code=CHILD_LOAD.format(tests=tests)).strip() == "ok"
