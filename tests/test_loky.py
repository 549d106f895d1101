"""loky and joblib with omnipickle as their pickler, on real worker processes, in fresh
``python -c`` interpreters (see pool_children.py)."""

from __future__ import annotations

import io
import pickle
import threading
from pathlib import Path
from typing import Any

import pytest

from pool_children import HELD_IN_A_WORKER, check_examples, child_report

loky = pytest.importorskip("loky")
pytest.importorskip("joblib")

# --- loky's executor, with set_loky_pickler ------------------------------------------------------

_LOKY = """
import loky

store = make_store(sys.argv[1])
ex = loky.get_reusable_executor(max_workers=2)
# loky's default (cloudpickle) first: what omnipickle changes.
report["cloudpickle held lock"] = outcome(lambda: ex.submit(Held(1).bump, 2).result())[0]
empty = Held.__new__(Held)  # no lock in it: cloudpickle can send it
report["cloudpickle slots"] = ex.submit(lambda h: hasattr(h, "__dict__"), empty).result()

loky.set_loky_pickler("omnipickle")
k = 5
report["name"] = loky.backend.reduction.get_loky_pickler_name()
report["lambda"] = list(ex.map(lambda x: x * k, range(4)))
report["held lock, slots"] = ex.submit(Held(3).bump, 2).result()
back = ex.submit(lambda: Held(7)).result()
report["result with a held lock"] = [back.n, back.lock.locked(), isinstance(back, Held)]
report["transient"] = ex.submit(store.count).result()
report["sqlite argument"] = outcome(lambda: ex.submit(len, sqlite3.connect(":memory:")).result())
sock = socket.socket()
report["connection argument"] = ex.submit(lambda s: type(s).__name__, sock).result()
sock.close()
ex.shutdown()
"""


@pytest.fixture(scope="module")
def loky_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return child_report(_LOKY, str(tmp_path_factory.mktemp("loky") / "store.db"))


def test_without_omnipickle_loky_cannot_send_a_lock_and_loses_slots(
    loky_report: dict[str, Any],
) -> None:
    """The baseline docs/integrations.md compares with: loky's default is cloudpickle."""
    assert loky_report["cloudpickle held lock"] != "ok"
    assert loky_report["cloudpickle slots"] is True


def test_set_loky_pickler_takes_omnipickle(loky_report: dict[str, Any]) -> None:
    assert loky_report["name"] == "omnipickle"


def test_loky_carries_a_lambda(loky_report: dict[str, Any]) -> None:
    assert loky_report["lambda"] == [0, 5, 10, 15]


def test_loky_recreates_a_held_lock_and_keeps_slots(loky_report: dict[str, Any]) -> None:
    assert loky_report["held lock, slots"] == [5, *HELD_IN_A_WORKER]


def test_loky_workers_send_results_with_omnipickle(loky_report: dict[str, Any]) -> None:
    assert loky_report["result with a held lock"] == [7, False, True]


def test_loky_rebuilds_a_transient_connection_in_the_worker(loky_report: dict[str, Any]) -> None:
    assert loky_report["transient"] == 3


def test_loky_refuses_a_live_connection_with_omnipickles_reason(
    loky_report: dict[str, Any],
) -> None:
    kind, message, cause = loky_report["sqlite argument"]
    assert kind == "PicklingError"
    assert message == "Could not pickle the task to send it to the workers."
    assert "cannot pickle 'Connection' object: it is a live resource" in cause


def test_lokys_own_socket_reducer_comes_first(loky_report: dict[str, Any]) -> None:
    assert loky_report["connection argument"] == "socket"


# --- joblib, with the environment variable and with set_loky_pickler ----------------------------

# joblib with set_loky_pickler is the docs' example (test_the_docs_example_runs): a joblib
# pool takes seconds to start, so the other checks run once, with the environment variable.
_JOBLIB = """
os.environ["LOKY_PICKLER"] = "omnipickle"  # before loky is imported, as documented
import joblib
from joblib.externals import loky

k = 3
run = joblib.Parallel(n_jobs=2)
report["name"] = loky.backend.reduction.get_loky_pickler_name()
report["lambda"] = run(joblib.delayed(lambda x: x * k)(i) for i in range(4))
report["held lock, slots"] = run(joblib.delayed(Held(i).bump)(2) for i in range(3))
report["results"] = [h.lock.locked() for h in run(joblib.delayed(Held)(i) for i in range(2))]
report["connection argument"] = outcome(
    lambda: run(joblib.delayed(str)(sqlite3.connect(":memory:")) for _ in range(2))
)
"""


def test_joblib_parallel_with_loky_pickler_set_in_the_environment() -> None:
    report = child_report(_JOBLIB)
    kind, _, cause = report.pop("connection argument")
    assert (kind, "live resource" in cause) == ("PicklingError", True)
    assert report == {
        "name": "omnipickle",
        "lambda": [0, 3, 6, 9],
        "held lock, slots": [[i + 2, *HELD_IN_A_WORKER] for i in range(3)],
        "results": [False, False],
    }


# --- in this process -----------------------------------------------------------------------------


def test_lokys_copy_of_the_dispatch_table_keeps_omnipickles_rules() -> None:
    """loky builds its pickler on omnipickle.Pickler and assigns it ``dict(dispatch_table)``
    plus its own reducers: locks must still be recreated, code still go by value."""
    from loky.backend import reduction

    previous = reduction.get_loky_pickler_name()
    reduction.set_loky_pickler("omnipickle")
    try:
        held = threading.Lock()
        held.acquire()
        k = 4
        buf = io.BytesIO()
        reduction.get_loky_pickler()(buf).dump([held, lambda: k])
        lock, fn = pickle.loads(buf.getvalue())
        assert (lock.locked(), fn()) == (False, 4)
    finally:
        reduction.set_loky_pickler(previous)


def test_the_docs_example_runs() -> None:
    check_examples(Path(__file__).parent.parent / "docs" / "integrations.md", "loky / joblib")
