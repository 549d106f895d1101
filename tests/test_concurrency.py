"""Many threads dumping and loading at once, through shared registries and a shared Serializer."""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import omnipickle
from conftest import check_python
from helpers import Plain


def _job(serializer: omnipickle.Serializer, i: int) -> bool:
    target = Plain(i, str(i))
    obj: dict[str, Any] = {
        "i": i,
        "fn": (lambda x, i=i: x + i),
        "lock": threading.Lock(),
        "ref": weakref.ref(target),
        "target": target,
        "rows": [Plain(j, None) for j in range(200)],
    }
    data = serializer.dumps(obj, compression=("zstd", "gzip", None)[i % 3])
    out = serializer.loads(data)
    return (
        out["i"] == i
        and out["fn"](1) == 1 + i
        and out["ref"]() is out["target"]
        and out["lock"].acquire(timeout=1)
        and [r.a for r in out["rows"]] == list(range(200))
    )


def test_threads_share_a_serializer_and_the_registries() -> None:
    serializer = omnipickle.Serializer(key=b"shared-key-0123456789")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: _job(serializer, i), range(200)))
    assert all(results)


def test_drop_reports_stay_per_dump_across_threads() -> None:
    """Each thread's dropped resources are recorded in its own payload, not a neighbour's."""
    import warnings

    def job(i: int) -> list[str]:
        gen = (x for x in range(i))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", omnipickle.DroppedResourceWarning)
            data = omnipickle.dumps({f"g{i}": gen, "n": i}, on_unpicklable="drop")
        return [d["path"] for d in omnipickle.info(data).dropped]

    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(job, range(100)))
    assert paths == [[f"root['g{i}']"] for i in range(100)]


def test_threads_meeting_dill_for_the_first_time_all_get_the_whole_module() -> None:
    """The first dump that needs dill imports it; threads that need it meanwhile wait for the
    import instead of using a half-initialized module (a fresh interpreter, so that dill is not
    imported yet)."""
    out = check_python(
        code="""
import sys, threading, weakref
import omnipickle
assert "dill" not in sys.modules

class Target:
    pass

target = Target()
errors = []
barrier = threading.Barrier(8)

def job():
    barrier.wait()
    try:
        omnipickle.loads(omnipickle.dumps({"ref": weakref.ref(Target)}))
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=job) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("errors:", errors)
"""
    )
    assert "errors: []" in out


def test_threads_meeting_cloudpickle_for_the_first_time_all_dump_code() -> None:
    out = check_python(
        code="""
import sys, threading
import omnipickle
assert "cloudpickle" not in sys.modules
errors = []
barrier = threading.Barrier(8)

def job(i):
    barrier.wait()
    try:
        assert omnipickle.loads(omnipickle.dumps([lambda x: x + i] * 3))[0](1) == 1 + i
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=job, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("errors:", errors)
"""
    )
    assert "errors: []" in out
