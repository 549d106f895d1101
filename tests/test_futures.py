"""omnipickle.futures, omnipickle.wrap and the ForkingPickler, on real process pools, in fresh
``python -c`` interpreters (see pool_children.py)."""

from __future__ import annotations

import concurrent.futures
import copy
import multiprocessing
import pickle
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import check_python
from omnipickle.futures import (
    DEFAULT_COMPRESS_ABOVE,
    DEFAULT_PREFETCH_PER_WORKER,
    ForkingPickler,
    ProcessPoolExecutor,
    RemoteTraceback,
    _Payloads,
    _resize_call_queue,
    install_forking_pickler,
    uninstall_forking_pickler,
)
from pool_children import HELD_IN_A_WORKER, check_examples, child_report

KEY = b"k" * 32

# --- spawn: everything on one pool -----------------------------------------------------------

_SPAWN = """
import concurrent.futures, concurrent.futures.process, time
from omnipickle.futures import DEFAULT_PREFETCH_PER_WORKER, ProcessPoolExecutor, RemoteTraceback

store = make_store(sys.argv[1])


class BadLoad(Exception):
    def __reduce__(self):
        return (load_bad, (PARENT,))


def load_bad(parent):
    if os.getpid() == parent:
        raise RuntimeError("this exception only loads in a worker")
    return BadLoad()


def bad_load():
    raise BadLoad()


def raise_unserializable():
    raise ValueError(socket.socket())


def remote(exc):
    cause = exc.__cause__
    return [type(cause).__name__, cause.tb if isinstance(cause, RemoteTraceback) else ""]


with ProcessPoolExecutor(2, "spawn") as ex:
    k = 3
    report["lambda"] = ex.submit(lambda x, y=0: x * k + y, 2, y=1).result()
    report["map lambda"] = list(ex.map(lambda x: x * k, range(5)))
    report["map closure chunks"] = list(ex.map(make_adder(2), range(7), chunksize=3))
    report["map two iterables"] = list(ex.map(lambda a, b: a - b, [5, 6, 7], [1, 2]))
    report["bound method, held lock"] = ex.submit(Held(4).bump, 1).result()
    back = ex.submit(lambda: Held(9)).result()
    report["main class instance back"] = [isinstance(back, Held), back.n, back.lock.locked()]
    report["transient sqlite"] = ex.submit(store.count).result()
    try:
        ex.submit(fail, 4).result()
    except MainError as exc:
        report["main exception"] = [str(exc), *remote(exc)]
    try:
        ex.submit({}.__getitem__, "nope").result()
    except KeyError as exc:
        report["builtin exception"] = [exc.args[0], *remote(exc)]
    try:
        list(ex.map(lambda x: 1 // (x - 2), range(4)))
    except ZeroDivisionError as exc:
        report["map exception"] = remote(exc)
    try:
        ex.submit(raise_unserializable).result()
    except omnipickle.PicklingError as exc:
        report["unserializable exception"] = [str(exc), exc.type_name, *remote(exc)]
    try:
        ex.submit(bad_load).result()
    except omnipickle.PicklingError as exc:
        report["exception not loadable here"] = [str(exc), *remote(exc)]
    try:
        ex.submit(lambda: socket.socket()).result()
    except omnipickle.PicklingError as exc:
        report["unserializable result"] = [str(exc), *remote(exc)]
    try:
        ex.submit(len, sqlite3.connect(":memory:"))
    except omnipickle.PicklingError as exc:
        report["unserializable argument"] = [str(exc), exc.path, type(exc.__cause__).__name__]
    report["after an unserializable argument"] = ex.submit(abs, -2).result()
    sleepers = [ex.submit(time.sleep, 0.5) for _ in range(2)]
    # More than the two sleepers leave room for in the tasks sent ahead to the workers.
    queued = [ex.submit(abs, -i) for i in range(2 * DEFAULT_PREFETCH_PER_WORKER + 4)]
    last = queued[-1]
    report["cancel"] = [last.cancel(), last.cancelled(), queued[0].result()]
    squares = [ex.submit(lambda i=i: i * i) for i in range(4)]
    report["as_completed"] = sorted(f.result() for f in concurrent.futures.as_completed(squares))
    done, not_done = concurrent.futures.wait([ex.submit(abs, -5)], timeout=60)
    report["wait"] = [[f.result() for f in done], len(not_done)]
    try:
        ex.submit(os._exit, 1).result()  # last: the pool is broken afterwards
    except concurrent.futures.process.BrokenProcessPool as exc:
        report["dead worker"] = type(exc).__name__
"""


@pytest.fixture(scope="module")
def spawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    db = tmp_path_factory.mktemp("futures") / "store.db"
    return child_report(_SPAWN, str(db))


def test_submit_carries_a_lambda_with_its_arguments(spawn: dict[str, Any]) -> None:
    assert spawn["lambda"] == 7


def test_map_carries_a_lambda(spawn: dict[str, Any]) -> None:
    assert spawn["map lambda"] == [0, 3, 6, 9, 12]


def test_map_in_chunks_keeps_the_order(spawn: dict[str, Any]) -> None:
    assert spawn["map closure chunks"] == [20 + x for x in range(7)]


def test_map_over_two_iterables_stops_at_the_shortest(spawn: dict[str, Any]) -> None:
    assert spawn["map two iterables"] == [4, 4]


def test_bound_method_of_a_main_class_with_slots_and_a_held_lock(spawn: dict[str, Any]) -> None:
    """It runs in a worker, the lock comes unlocked, the class keeps its __slots__."""
    assert spawn["bound method, held lock"] == [5, *HELD_IN_A_WORKER]


def test_a_main_class_instance_comes_back_as_the_callers_class(spawn: dict[str, Any]) -> None:
    assert spawn["main class instance back"] == [True, 9, False]


def test_a_transient_connection_is_rebuilt_in_the_worker(spawn: dict[str, Any]) -> None:
    assert spawn["transient sqlite"] == 3


def test_a_main_exception_comes_back_as_itself_with_the_workers_traceback(
    spawn: dict[str, Any],
) -> None:
    message, cause, tb = spawn["main exception"]
    assert (message, cause) == ("bad 4", "RemoteTraceback")
    assert "in fail" in tb
    assert "MainError: bad 4" in tb


def test_a_builtin_exception_comes_back_as_itself(spawn: dict[str, Any]) -> None:
    key, cause, tb = spawn["builtin exception"]
    assert (key, cause) == ("nope", "RemoteTraceback")
    assert "KeyError: 'nope'" in tb


def test_map_raises_the_first_exception_of_the_workers(spawn: dict[str, Any]) -> None:
    cause, tb = spawn["map exception"]
    assert cause == "RemoteTraceback"
    assert "ZeroDivisionError" in tb


def test_an_exception_that_cannot_be_serialized_is_a_pickling_error(
    spawn: dict[str, Any],
) -> None:
    message, type_name, cause, tb = spawn["unserializable exception"]
    assert type_name == "builtins.ValueError"
    assert message.startswith("the task raised builtins.ValueError: <socket.socket")
    assert "it cannot be serialized" in message
    assert "live resource" in message
    assert cause == "RemoteTraceback"
    assert "ValueError: <socket.socket" in tb


def test_an_exception_that_cannot_be_loaded_here_is_a_pickling_error(
    spawn: dict[str, Any],
) -> None:
    message, cause, tb = spawn["exception not loadable here"]
    assert "the task raised __main__.BadLoad" in message
    assert "it cannot be loaded here: RuntimeError: this exception only loads in a worker" in (
        message
    )
    assert cause == "RemoteTraceback"
    assert "in bad_load" in tb


def test_a_result_that_cannot_travel_is_the_tasks_pickling_error(spawn: dict[str, Any]) -> None:
    message, cause, _ = spawn["unserializable result"]
    assert message.startswith("cannot serialize socket.socket at root")
    assert cause == "RemoteTraceback"


def test_an_argument_that_cannot_travel_is_refused_by_submit(spawn: dict[str, Any]) -> None:
    message, path, cause = spawn["unserializable argument"]
    assert path == "root['args'][0]"
    assert message.startswith("cannot serialize sqlite3.Connection at root['args'][0]")
    assert cause == "TypeError"  # the pickler's own exception


def test_the_pool_goes_on_after_an_argument_that_cannot_travel(spawn: dict[str, Any]) -> None:
    assert spawn["after an unserializable argument"] == 2


def test_a_queued_task_can_be_cancelled(spawn: dict[str, Any]) -> None:
    assert spawn["cancel"] == [True, True, 0]


def test_futures_work_with_as_completed(spawn: dict[str, Any]) -> None:
    assert spawn["as_completed"] == [0, 1, 4, 9]


def test_futures_work_with_wait(spawn: dict[str, Any]) -> None:
    assert spawn["wait"] == [[5], 0]


def test_a_worker_that_dies_breaks_the_pool_as_in_the_stdlib(spawn: dict[str, Any]) -> None:
    assert spawn["dead worker"] == "BrokenProcessPool"


# --- when a task is serialized; failures and wait(); shutdown with tasks pending ------------

_WHEN = """
import concurrent.futures, multiprocessing, time
from omnipickle.futures import DEFAULT_PREFETCH_PER_WORKER, ProcessPoolExecutor


class Probe:
    # Records, in this process, whether the thread that serializes it is the main thread.
    seen = []

    def __reduce__(self):
        Probe.seen.append(threading.current_thread() is threading.main_thread())
        return (int, (7,))


def changed_after_submit(ex):
    # sum(items) submitted after three sleeps, which hold the one worker and its call queue
    # (2 places) for 0.4 s at least: the call is still waiting when items changes.
    ex.submit(abs, 0).result()  # the worker has started
    for _ in range(3):
        ex.submit(time.sleep, 0.4)
    items = [1]
    later = ex.submit(sum, items)
    items.append(2)
    return later.result()


with ProcessPoolExecutor(1, "spawn") as ex:
    report["changed after submit"] = changed_after_submit(ex)
    report["serialized in"] = [ex.submit(abs, Probe()).result(), list(Probe.seen)]
    failing = ex.submit(fail, 1)
    sleeper = ex.submit(time.sleep, 1)  # after it, on the one worker
    done, _ = concurrent.futures.wait(
        [failing, sleeper], timeout=60, return_when=concurrent.futures.FIRST_EXCEPTION
    )
    report["first exception"] = [f is failing for f in done]

with concurrent.futures.ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as ex:
    report["stdlib: changed after submit"] = changed_after_submit(ex)

ex = ProcessPoolExecutor(1, "spawn")
pending = [ex.submit(lambda i=i: i * i) for i in range(8)]
ex.shutdown(wait=False)
report["shutdown without waiting"] = [f.result(timeout=60) for f in pending]

ex = ProcessPoolExecutor(1, "spawn")
ex.submit(abs, 0).result()
first = ex.submit(time.sleep, 0.4)
while not first.running():  # sent to the worker
    time.sleep(0.01)
rest = [ex.submit(lambda i=i: -i) for i in range(DEFAULT_PREFETCH_PER_WORKER + 10)]
ex.shutdown(wait=True, cancel_futures=True)
report["shutdown cancelling"] = [
    first.result(),
    [f.cancelled() or f.result() == -i for i, f in enumerate(rest)],
    sum(f.cancelled() for f in rest) >= 10,
]
"""


@pytest.fixture(scope="module")
def when() -> dict[str, Any]:
    return child_report(_WHEN)


def test_a_change_to_an_argument_after_submit_does_not_reach_the_worker(
    when: dict[str, Any],
) -> None:
    """submit serializes the call at once; the standard executor pickles it when it sends it,
    and its worker sees the change."""
    assert when["changed after submit"] == 1
    assert when["stdlib: changed after submit"] == 3


def test_a_task_is_serialized_once_in_the_calling_thread(when: dict[str, Any]) -> None:
    assert when["serialized in"] == [7, [True]]


def test_wait_for_the_first_exception_returns_at_a_failed_task(when: dict[str, Any]) -> None:
    assert when["first exception"] == [True]


def test_tasks_pending_at_shutdown_without_waiting_still_run(when: dict[str, Any]) -> None:
    assert when["shutdown without waiting"] == [i * i for i in range(8)]


def test_shutdown_cancelling_futures_cancels_the_tasks_not_yet_sent(
    when: dict[str, Any],
) -> None:
    """The running task finishes; of the others, those sent ahead to the worker run (at most
    DEFAULT_PREFETCH_PER_WORKER with one worker), the rest are cancelled."""
    assert when["shutdown cancelling"] == [None, [True] * (DEFAULT_PREFETCH_PER_WORKER + 10), True]


def _sent(payload: Any = None) -> concurrent.futures.Future[Any]:
    """A plain future as the executor's manager thread leaves it: running, or settled."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()
    if payload is not None:
        future.set_result(payload)
    return future


def test_a_task_sent_before_submit_returns_gets_a_future_that_follows_the_executors() -> None:
    """The executor's threads may send a task (and settle its future, as a plain Future)
    before submit has made that future a _TaskFuture: submit then returns a second future,
    running, that is settled as the first is."""
    ex = ProcessPoolExecutor(1, "spawn")  # no worker starts before a task is submitted
    payloads = _Payloads(None, "raise", None, None, DEFAULT_COMPRESS_ABOVE)
    failure = (payloads.dumps(KeyError("k")), "", "tb text", "builtins.KeyError", "'k'")
    try:
        running = _sent()
        follower = ex._follower(running)
        assert (follower.running(), follower.cancel()) == (True, False)
        running.set_result(payloads.dumps([1, 2]))
        assert follower.result(timeout=0) == [1, 2]
        assert ex._follower(_sent(payloads.dumps("done"))).result(timeout=0) == "done"
        error = ex._follower(_sent(failure)).exception(timeout=0)
        assert isinstance(error, KeyError)
        assert isinstance(error.__cause__, RemoteTraceback)
        assert error.__cause__.tb == "tb text"
        broken = _sent()
        broken.set_exception(RuntimeError("the pool broke"))
        assert str(ex._follower(broken).exception(timeout=0)) == "the pool broke"
        cancelled: concurrent.futures.Future[Any] = concurrent.futures.Future()
        cancelled.cancel()
        follower = ex._follower(cancelled)
        assert follower.cancelled()
        assert concurrent.futures.wait([follower], timeout=0).done == {follower}
    finally:
        ex.shutdown()


# --- how many tasks are sent ahead to the workers (prefetch) ---------------------------------

_PREFETCH = """
import concurrent.futures, multiprocessing, tempfile, time
from omnipickle.futures import DEFAULT_PREFETCH_PER_WORKER, ProcessPoolExecutor


def hold(folder):
    # Occupies its worker until the caller creates folder/release.
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(folder, "release")) and time.monotonic() < deadline:
        time.sleep(0.01)
    return 0


def sent_ahead(ex, hold, workers, tasks):
    \"\"\"With every worker holding a task, submit `tasks` more: how many the executor sends
    ahead (running, as far as their futures say), then which of them cancel() stops.\"\"\"
    folder = tempfile.mkdtemp()
    holders = [ex.submit(hold, folder) for _ in range(workers)]
    deadline = time.monotonic() + 60
    while len(os.listdir(folder)) < workers and time.monotonic() < deadline:
        time.sleep(0.01)
    quick = [ex.submit(abs, -i) for i in range(tasks)]
    # The manager thread sends tasks ahead until the queue is full: wait until it has stopped.
    running, since = -1, time.monotonic()
    while time.monotonic() - since < 0.5:
        now = sum(f.running() for f in quick)
        if now != running:
            running, since = now, time.monotonic()
        time.sleep(0.01)
    cancelled = [f.cancel() for f in quick]
    open(os.path.join(folder, "release"), "w").close()
    results = [f.result(timeout=60) for f in quick if not f.cancelled()]
    [h.result(timeout=60) for h in holders]
    return [running, cancelled, results]


default = 2 * DEFAULT_PREFETCH_PER_WORKER
with ProcessPoolExecutor(2, "spawn") as ex:
    report["default"] = [default, sent_ahead(ex, hold, 2, default + 4)]
with ProcessPoolExecutor(1, "spawn", prefetch=1) as ex:
    report["one"] = [1, sent_ahead(ex, hold, 1, 5)]
with ProcessPoolExecutor(2, "forkserver", prefetch=5) as ex:
    report["forkserver"] = [5, sent_ahead(ex, hold, 2, 9)]
spawn = multiprocessing.get_context("spawn")
with concurrent.futures.ProcessPoolExecutor(2, spawn) as ex:
    report["stdlib"] = [3, sent_ahead(ex, omnipickle.wrap(hold), 2, 7)]
"""


@pytest.fixture(scope="module")
def prefetch() -> dict[str, Any]:
    return child_report(_PREFETCH)


@pytest.mark.parametrize("case", ["default", "one", "forkserver"])
def test_prefetch_tasks_are_sent_ahead_and_the_rest_stay_cancellable(
    prefetch: dict[str, Any], case: str
) -> None:
    """While every worker holds a task, exactly `prefetch` more are sent ahead (the default:
    DEFAULT_PREFETCH_PER_WORKER per worker): their futures are running, cancel() cannot stop
    them and they run; every later task is still pending, and cancel() stops it."""
    size, (running, cancelled, results) = prefetch[case]
    extra = len(cancelled) - size
    assert extra > 0
    assert running == size
    assert cancelled == [False] * size + [True] * extra
    assert results == list(range(size))


def test_the_standard_executor_sends_ahead_one_task_more_than_its_workers(
    prefetch: dict[str, Any],
) -> None:
    """What omnipickle.futures changes: the standard executor's call queue holds
    max_workers + 1 tasks."""
    size, (running, cancelled, results) = prefetch["stdlib"]
    assert (running, cancelled, results) == (size, [False] * 3 + [True] * 4, [0, 1, 2])


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1, ValueError), (True, TypeError), (2.0, TypeError)]
)
def test_a_prefetch_that_is_not_a_positive_int_is_refused(
    value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="prefetch"):
        ProcessPoolExecutor(1, "spawn", prefetch=value)  # type: ignore[arg-type]


def test_the_call_queue_is_left_alone_once_a_worker_holds_it() -> None:
    """The queue's size is changed only before any worker or feeder thread holds it."""
    with ProcessPoolExecutor(1, "spawn", prefetch=3) as ex:
        assert ex.submit(abs, -1).result(timeout=60) == 1
        assert _resize_call_queue(ex, 7) is False
        queue = ex._call_queue  # type: ignore[attr-defined]
        assert (queue._maxsize, queue._sem.get_value()) == (3, 3)


# --- options: key, drop, compression, initializer --------------------------------------------

_OPTIONS = """
from omnipickle.futures import ProcessPoolExecutor, _run_task

KEY = b"k" * 32
with ProcessPoolExecutor(2, "spawn", key=KEY) as ex:
    report["signed"] = ex.submit(Held(1).bump, 1).result()
    task = {"fn": abs, "args": (-1,), "kwargs": {}}
    for name, payload in [
        ("other key", omnipickle.dumps(task, key=b"o" * 32)),
        ("unsigned", omnipickle.dumps(task)),
    ]:
        try:
            ex._submit(_run_task, payload).result()  # past submit(), which always signs
        except omnipickle.SignatureError as exc:
            report[name] = type(exc).__name__

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with ProcessPoolExecutor(
        2,
        "spawn",
        on_unpicklable="drop",
        compression="zstd",
        compress_above=1000,
        initializer=lambda tag: os.environ.__setitem__("OMNI_INIT", tag),
        initargs=("ready",),
    ) as ex:
        sock = socket.socket()
        report["dropped"] = ex.submit(lambda s: s is None, sock).result()
        sock.close()
        report["dropped result"] = ex.submit(lambda: [1, socket.socket()]).result()
        big = os.urandom(200_000)
        report["large argument"] = ex.submit(lambda b: b[::-1], big).result() == big[::-1]
        report["initializer"] = ex.submit(lambda: os.environ.get("OMNI_INIT")).result()
    dropped = omnipickle.DroppedResourceWarning
    report["warned"] = [str(w.message) for w in caught if w.category is dropped]
"""


@pytest.fixture(scope="module")
def options() -> dict[str, Any]:
    return child_report(_OPTIONS)


def test_a_signed_pool_round_trips(options: dict[str, Any]) -> None:
    assert options["signed"][:3] == [2, False, False]


@pytest.mark.parametrize("payload", ["other key", "unsigned"])
def test_workers_refuse_a_task_their_key_does_not_verify(
    options: dict[str, Any], payload: str
) -> None:
    assert options[payload] == "SignatureError"


def test_drop_sends_a_live_resource_as_none_and_warns(options: dict[str, Any]) -> None:
    assert options["dropped"] is True
    assert len(options["warned"]) == 1
    assert "root['args'][0] (socket.socket)" in options["warned"][0]


def test_drop_sends_a_live_resource_of_a_result_back_as_none(options: dict[str, Any]) -> None:
    assert options["dropped result"] == [1, None]


def test_a_compressed_pool_carries_a_large_argument(options: dict[str, Any]) -> None:
    assert options["large argument"] is True


def test_the_initializer_may_be_a_lambda(options: dict[str, Any]) -> None:
    assert options["initializer"] == "ready"


def test_payloads_are_compressed_only_above_the_threshold() -> None:
    payloads = _Payloads(None, "raise", "zstd", None, 1000)
    assert omnipickle.info(payloads.dumps(b"x" * 900)).codec is None
    assert omnipickle.info(payloads.dumps(b"x" * 1100)).codec == "zstd"
    assert payloads.loads(payloads.dumps(b"x" * 1100)) == b"x" * 1100


def test_a_large_payload_is_pickled_once_and_a_dropped_resource_reported_once() -> None:
    class Counted:
        reduced = 0

        def __reduce__(self) -> tuple[Any, ...]:
            Counted.reduced += 1
            return (dict, ())

    payloads = _Payloads(None, "drop", "zstd", None, 1000)
    with pytest.warns(omnipickle.DroppedResourceWarning) as caught, socket.socket() as sock:
        data = payloads.dumps([Counted(), sock, b"x" * 2000])
    assert (Counted.reduced, len(caught)) == (1, 1)
    assert omnipickle.info(data).codec == "zstd"
    assert payloads.loads(data) == [{}, None, b"x" * 2000]


def test_payloads_are_signed_with_the_key() -> None:
    payloads = _Payloads(KEY, "raise", None, None, DEFAULT_COMPRESS_ABOVE)
    data = payloads.dumps([1, 2])
    assert omnipickle.info(data).signed
    with pytest.raises(omnipickle.SignatureError):
        _Payloads(b"o" * 32, "raise", None, None, DEFAULT_COMPRESS_ABOVE).loads(data)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"compression": "nope"}, omnipickle.UnknownCodecError),
        ({"key": "secret-but-a-str"}, TypeError),
        ({"key": b"short"}, ValueError),
        ({"on_unpicklable": "ignore"}, ValueError),
        ({"compress_above": "1k"}, TypeError),
        ({"max_tasks_per_child": 0}, ValueError),  # the standard executor's own check
    ],
)
def test_bad_options_are_refused_when_the_pool_is_made(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        ProcessPoolExecutor(1, "spawn", **options)


def test_map_refuses_a_chunksize_below_one() -> None:
    with ProcessPoolExecutor(1, "spawn") as ex, pytest.raises(ValueError, match="chunksize"):
        ex.map(abs, [1], chunksize=0)


# --- the standard library's pools: omnipickle.wrap, then the ForkingPickler installed --------

_STDLIB_POOLS = """
import concurrent.futures, multiprocessing
from omnipickle.futures import install_forking_pickler

ctx = multiprocessing.get_context(sys.argv[1])
k = 4
add = omnipickle.wrap(lambda x: x + k)
with ctx.Pool(2) as pool:
    report["pool lambda"] = pool.map(add, range(4))
    report["pool closure"] = pool.map(omnipickle.wrap(make_adder(1)), range(3))
    report["pool method"] = pool.apply(omnipickle.wrap(Held(2).bump), (3,))
with concurrent.futures.ProcessPoolExecutor(2, ctx) as ex:
    report["stdlib executor"] = list(ex.map(add, range(3)))

install_forking_pickler()
# The pool's workers are started (spawn, forkserver: the process object pickled), get their
# tasks through a pipe and send results through a queue, all with the ForkingPickler.
with ctx.Pool(2, initializer=install_forking_pickler) as pool:
    report["installed pool"] = pool.map(lambda x: x * k, range(4))
    report["installed pool, code back"] = [f(1) for f in pool.map(make_adder, range(3))]
"""

_EXECUTOR = """
from omnipickle.futures import ProcessPoolExecutor

with ProcessPoolExecutor(2, sys.argv[1]) as ex:
    k = 3
    report["executor map"] = list(ex.map(lambda x: x * k, range(4)))
    report["executor method"] = ex.submit(Held(4).bump, 1).result()
    try:
        ex.submit(fail, 1).result()
    except MainError as exc:
        report["executor error"] = type(exc.__cause__).__name__
"""

_STDLIB_EXPECTED = {
    "pool lambda": [4, 5, 6, 7],
    "pool closure": [10, 11, 12],
    "pool method": [5, *HELD_IN_A_WORKER],
    "stdlib executor": [4, 5, 6],
    "installed pool": [0, 4, 8, 12],
    "installed pool, code back": [1, 11, 21],
}


@pytest.fixture(scope="module")
def stdlib_pools() -> dict[str, Any]:
    return child_report(_STDLIB_POOLS, "spawn")


@pytest.mark.parametrize("method", ["forkserver", "fork"])
def test_other_start_methods(method: str) -> None:
    """omnipickle.futures, wrap and the installed ForkingPickler, under forkserver and fork."""
    report = child_report(_EXECUTOR + _STDLIB_POOLS, method)
    assert report == {
        "executor map": [0, 3, 6, 9],
        "executor method": [5, *HELD_IN_A_WORKER],
        "executor error": "RemoteTraceback",
        **_STDLIB_EXPECTED,
    }


def test_a_stdlib_pool_carries_a_wrapped_lambda(stdlib_pools: dict[str, Any]) -> None:
    assert stdlib_pools["pool lambda"] == [4, 5, 6, 7]


def test_a_stdlib_pool_carries_a_wrapped_closure(stdlib_pools: dict[str, Any]) -> None:
    assert stdlib_pools["pool closure"] == [10, 11, 12]


def test_a_stdlib_pool_carries_a_wrapped_bound_method(stdlib_pools: dict[str, Any]) -> None:
    assert stdlib_pools["pool method"] == [5, *HELD_IN_A_WORKER]


def test_the_stdlib_executor_carries_a_wrapped_lambda(stdlib_pools: dict[str, Any]) -> None:
    assert stdlib_pools["stdlib executor"] == [4, 5, 6]


def test_with_the_forking_pickler_installed_a_pool_carries_code(
    stdlib_pools: dict[str, Any],
) -> None:
    assert stdlib_pools["installed pool"] == [0, 4, 8, 12]


def test_workers_with_the_forking_pickler_installed_send_code_back(
    stdlib_pools: dict[str, Any],
) -> None:
    assert stdlib_pools["installed pool, code back"] == [1, 11, 21]


def test_with_the_forking_pickler_installed_a_queue_carries_code() -> None:
    queue = multiprocessing.get_context("spawn").Queue()
    k = 5
    install_forking_pickler()
    try:
        queue.put(lambda x: x * k)  # pickled by the queue's feeder thread
        assert queue.get(timeout=30)(2) == 10
    finally:
        uninstall_forking_pickler()
        queue.close()
        queue.join_thread()


# --- omnipickle.wrap, in this process --------------------------------------------------------


def test_a_wrapper_is_called_like_its_function_and_looks_like_it() -> None:
    def double(x: int, *, plus: int = 0) -> int:
        """Twice x."""
        return 2 * x + plus

    w = omnipickle.wrap(double)
    assert w(3, plus=1) == 7
    assert (w.__name__, w.__doc__, w.__wrapped__) == ("double", "Twice x.", double)
    assert repr(w) == f"omnipickle.wrap({double!r})"


def test_a_wrapper_pickled_by_the_stdlib_loads_as_a_wrapper() -> None:
    k = 5
    loaded = pickle.loads(pickle.dumps(omnipickle.wrap(lambda x: x * k)))
    assert isinstance(loaded, omnipickle.wrapping.Wrapped)
    assert loaded(2) == 10


def test_copy_and_deepcopy_of_a_wrapper() -> None:
    k = [1]
    w = omnipickle.wrap(lambda: k)
    shallow, deep = copy.copy(w), copy.deepcopy({"w": w})["w"]
    assert shallow is not w and shallow.__wrapped__ is w.__wrapped__
    # deepcopy copies a function as itself, as it does without the wrapper.
    assert deep is not w and deep.__wrapped__ is w.__wrapped__


def test_a_wrapper_sends_its_closures_current_values() -> None:
    k = [1]
    w = omnipickle.wrap(lambda: list(k))
    first = pickle.dumps(w)
    k.append(2)
    assert (pickle.loads(first)(), pickle.loads(pickle.dumps(w))()) == ([1], [1, 2])


def test_deepcopy_of_a_wrapped_bound_method_copies_its_object() -> None:
    class Box:
        def __init__(self) -> None:
            self.items = [1, 2]

        def get(self) -> list[int]:
            return self.items

    box = Box()
    deep = copy.deepcopy(omnipickle.wrap(box.get))
    assert deep() == [1, 2]
    assert deep.__wrapped__.__self__ is not box
    assert deep() is not box.items


def test_wrapping_a_wrapper_returns_it_and_a_non_callable_is_refused() -> None:
    w = omnipickle.wrap(len)
    assert omnipickle.wrap(w) is w
    with pytest.raises(TypeError, match="needs a callable, not int"):
        omnipickle.wrap(3)  # type: ignore[arg-type]


# --- the ForkingPickler, in this process ----------------------------------------------------


def test_install_and_uninstall_replace_every_binding_of_the_pickler() -> None:
    import multiprocessing.connection
    import multiprocessing.queues
    import multiprocessing.reduction

    stdlib = multiprocessing.reduction.ForkingPickler
    modules = (multiprocessing.connection, multiprocessing.queues)
    try:
        install_forking_pickler()
        install_forking_pickler()  # twice: the same
        assert multiprocessing.reduction.ForkingPickler is ForkingPickler
        assert all(m._ForkingPickler is ForkingPickler for m in modules)  # type: ignore[attr-defined]
    finally:
        uninstall_forking_pickler()
    assert multiprocessing.reduction.ForkingPickler is stdlib
    assert all(m._ForkingPickler is stdlib for m in modules)  # type: ignore[attr-defined]


def test_assigning_reduction_forking_pickler_alone_does_not_reach_queues() -> None:
    """Why install_forking_pickler exists (docs/integrations.md says so)."""
    code = (
        "import multiprocessing, multiprocessing.reduction, omnipickle.futures, sys\n"
        "multiprocessing.reduction.ForkingPickler = omnipickle.futures.ForkingPickler\n"
        "q = multiprocessing.get_context('spawn').SimpleQueue()\n"
        "try:\n"
        "    q.put(lambda: 1)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    assert check_python(code=code).strip() == "PicklingError"


def test_the_forking_pickler_keeps_multiprocessings_reducers_and_writes_code() -> None:
    k = 2
    data = ForkingPickler.dumps([lambda: k, threading.Lock()])
    fn, lock = pickle.loads(data)
    assert (fn(), lock.locked()) == (2, False)
    reader, writer = multiprocessing.Pipe()
    try:
        # A connection is reduced by multiprocessing's own reducer (a duplicated descriptor),
        # not refused as a live resource.
        assert pickle.loads(ForkingPickler.dumps(reader)) is not None
    finally:
        reader.close()
        writer.close()


def test_a_process_is_still_refused_outside_of_spawning() -> None:
    process = multiprocessing.get_context("spawn").Process(target=print)
    with pytest.raises(omnipickle.PicklingError, match="live resource"):
        omnipickle.dumps(process)
    with pytest.raises(TypeError, match="live resource"):
        ForkingPickler.dumps(process)


def test_a_pool_of_the_stdlib_can_use_the_forking_pickler_unlike_the_stdlibs() -> None:
    """The baseline: without omnipickle, the stdlib's pickler refuses the lambda."""
    with pytest.raises((pickle.PicklingError, AttributeError)):
        multiprocessing.reduction.ForkingPickler.dumps(lambda: 1)
    assert pickle.loads(ForkingPickler.dumps(lambda: 1))() == 1


# --- importing -----------------------------------------------------------------------------------


def test_import_omnipickle_imports_no_pool_machinery() -> None:
    code = (
        "import sys, omnipickle\n"
        "mods = ('multiprocessing', 'concurrent.futures', 'omnipickle.futures', "
        "'omnipickle.wrapping')\n"
        "print(sorted(m for m in mods if m in sys.modules))\n"
        "omnipickle.wrap\n"
        "print(sorted(m for m in mods if m in sys.modules))\n"
        "print(omnipickle.futures.ProcessPoolExecutor.__module__)\n"
    )
    assert check_python(code=code).split("\n")[:3] == [
        "[]",
        "['omnipickle.wrapping']",
        "omnipickle.futures",
    ]


def test_wrap_and_futures_are_public_names() -> None:
    assert "wrap" in omnipickle.__all__
    assert omnipickle.wrap is omnipickle.wrapping.wrap
    assert omnipickle.futures.ProcessPoolExecutor is ProcessPoolExecutor
    assert issubclass(ProcessPoolExecutor, concurrent.futures.ProcessPoolExecutor)
    assert issubclass(ForkingPickler, multiprocessing.reduction.ForkingPickler)


def test_the_docs_examples_run() -> None:
    """Each example of docs/integrations.md prints what the page says it prints."""
    check_examples(Path(__file__).parent.parent / "docs" / "integrations.md", "Process pools")


if sys.platform != "linux":  # pragma: no cover - the project's machines are Linux
    pytestmark = pytest.mark.skip("fork and forkserver are tested on Linux")
