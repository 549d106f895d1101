"""omnipickle.dask on a real ``distributed.LocalCluster(processes=True, n_workers=2)`` on
127.0.0.1, driven from a fresh interpreter's ``__main__``; the serialization family in process."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

from distributed.protocol import deserialize, serialize

import omnipickle
import omnipickle.dask
from conftest import check_python
from omnipickle.codecs import ZstdCodec
from pool_children import HELD_IN_A_WORKER, check_examples, child_report

HELD_IN_A_WORKER_BUMPED = [3, *HELD_IN_A_WORKER]
PAGE = Path(__file__).parent.parent / "docs" / "integrations.md"

# One cluster for all the checks (it starts in about 2 s), with pool_children's PRELUDE (Held,
# Store, make_store, outcome); each result in `report`.
_CLUSTER_CODE = """
import tempfile
from distributed import Client, LocalCluster
import omnipickle.dask

if __name__ == "__main__":
    store = make_store(os.path.join(tempfile.mkdtemp(), "db.sqlite"))
    cluster = LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                           host="127.0.0.1", dashboard_address=None)
    with cluster, Client(cluster) as client:
        submit, dmap = omnipickle.dask.submit, omnipickle.dask.map
        report["parent"] = PARENT
        report["addresses"] = sorted(client.scheduler_info()["workers"])
        report["transient"] = submit(
            client, lambda s, extra: [s.count() + extra + SCALE, os.getpid()], store, 1).result()
        report["held"] = submit(client, Held(1).bump, 2).result()
        report["map"] = [f.result() for f in dmap(client, lambda x, y: x * y + SCALE,
                                                  range(6), range(6))]
        report["map_pids"] = len({f.result() for f in dmap(client, lambda _: os.getpid(),
                                                           range(8))})
        adder = submit(client, make_adder, 5)
        chained = submit(client, lambda f, x: f(x), adder, 2)
        report["chained"] = [adder.result()(1), chained.result()]
        plain = client.submit(lambda x: x + 1, 1)
        report["dask_future_arg"] = submit(client, lambda v: v * 10, plain).result()
        report["error"] = outcome(lambda: submit(client, fail, 3).result())
        report["dask_default"] = outcome(lambda: client.submit(lambda s: s.count(), store).result())
        report["dask_default_lock"] = outcome(lambda: client.submit(Held(2).bump, 1).result())
        # Options set once: omnipickle's (drop, zstd) and Dask's (pinned to one worker).
        pids = client.run(os.getpid)
        first = report["addresses"][0]
        shipper = omnipickle.dask.Shipper(client, on_unpicklable="drop", compression="zstd",
                                          workers=[first], retries=1)
        report["shipper_pids"] = sorted({f.result() for f in shipper.map(lambda _: os.getpid(),
                                                                         range(6))})
        report["shipper_first_pid"] = pids[first]
        report["shipper_dropped"] = shipper.submit(
            lambda: {"conn": sqlite3.connect(":memory:"), "n": 1}).result()
"""


@pytest.fixture(scope="module")
def cluster_report() -> dict[str, Any]:
    return child_report(_CLUSTER_CODE)


def test_the_cluster_has_two_workers_on_loopback(cluster_report: dict[str, Any]) -> None:
    addresses = cluster_report["addresses"]
    assert len(addresses) == 2
    assert all(a.startswith("tcp://127.0.0.1:") for a in addresses)


def test_a_transient_sqlite_connection_reconnects_on_the_worker(
    cluster_report: dict[str, Any],
) -> None:
    total, pid = cluster_report["transient"]
    assert total == 3 + 1 + 10
    assert pid != cluster_report["parent"]


def test_dasks_default_cannot_send_a_lock(cluster_report: dict[str, Any]) -> None:
    """The baseline: Dask's own pickling (cloudpickle) refuses the lock."""
    assert cluster_report["dask_default_lock"][0] != "ok"


def test_a_transient_connection_travels_through_dasks_own_pickling_too(
    cluster_report: dict[str, Any],
) -> None:
    """A ``transient`` attribute is left out by any pickler, its ``__main__`` class by value."""
    assert cluster_report["dask_default"] == ["ok", 3]


def test_a_held_lock_is_recreated_and_slots_are_kept(cluster_report: dict[str, Any]) -> None:
    assert cluster_report["held"] == HELD_IN_A_WORKER_BUMPED


def test_map_runs_in_order_on_both_workers(cluster_report: dict[str, Any]) -> None:
    assert cluster_report["map"] == [x * x + 10 for x in range(6)]
    assert cluster_report["map_pids"] == 2


def test_results_carry_code_and_futures_chain(cluster_report: dict[str, Any]) -> None:
    assert cluster_report["chained"] == [51, 52]
    assert cluster_report["dask_future_arg"] == 20


def test_an_exception_in_the_task_is_raised_by_result(cluster_report: dict[str, Any]) -> None:
    assert cluster_report["error"][:2] == ["MainError", "bad 3"]


def test_a_shipper_passes_dasks_options_and_omnipickles_to_every_task(
    cluster_report: dict[str, Any],
) -> None:
    assert cluster_report["shipper_pids"] == [cluster_report["shipper_first_pid"]]
    # A live connection in the result, dropped on the worker (it raises without the option).
    assert cluster_report["shipper_dropped"] == {"conn": None, "n": 1}


def test_the_docs_example_runs() -> None:
    check_examples(PAGE, "Dask distributed")


# --- in process: the family, and what submit refuses before Dask sees it --------------------


def test_the_serialization_family_round_trips_code() -> None:
    base = 4
    header, frames = serialize(lambda x: x + base, serializers=["omnipickle"])
    assert header["serializer"] == "omnipickle"
    assert omnipickle.loads(bytes(frames[0]))(1) == 5
    assert deserialize(header, frames, deserializers=["omnipickle"])(2) == 6


def test_submit_refuses_a_live_resource_in_the_caller() -> None:
    class Client:  # submit must raise before it reaches the client
        def submit(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("reached the client")

    with socket.socket() as sock, pytest.raises(omnipickle.PicklingError, match=r"root"):
        omnipickle.dask.submit(Client(), lambda s: s, sock)


def test_a_shipped_result_unpickles_as_the_value_itself() -> None:
    import pickle

    shipped = omnipickle.dask.Shipped(lambda: 3)
    assert pickle.loads(pickle.dumps(shipped))() == 3
    assert omnipickle.dask.call_payload(omnipickle.dumps((len, ("abc",), {})), ()) == 3
    shipped_list = omnipickle.dask.call_payload(omnipickle.dumps((list, ("ab",), {})), ())
    assert isinstance(shipped_list, omnipickle.dask.Shipped)
    assert shipped_list.value == ["a", "b"]


def test_the_benchmark_quick_mode_runs_and_checks_results() -> None:
    bench = Path(__file__).parent.parent / "benchmarks" / "bench_dask.py"
    out = check_python("--quick", code=bench.read_text())
    assert "| omnipickle.dask |" in out
    assert "| Dask (cloudpickle) |" in out


class _Recording:
    """A stand-in with a client's ``submit``, recording what the helpers hand to Dask."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def submit(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))


def test_every_keyword_goes_to_fn_and_every_task_is_impure() -> None:
    client = _Recording()
    omnipickle.dask.submit(client, lambda workers, retries: [workers, retries], "w", retries=2)
    omnipickle.dask.map(client, lambda x: x, [1, 2])
    assert len(client.calls) == 3
    for (fn, _payload, slots), kwargs in client.calls:
        assert fn is omnipickle.dask.call_payload
        assert kwargs == {"pure": False}
        assert slots == ()
    first_payload = client.calls[0][0][1]
    assert omnipickle.dask.call_payload(first_payload, ()).value == ["w", 2]


def test_a_shipper_sends_its_options_with_every_task() -> None:
    client = _Recording()
    shipper = omnipickle.dask.Shipper(client, compression="zstd", workers=["w"], retries=2)
    shipper.submit(lambda x: [x], 1)
    shipper.map(lambda x: [x], [1, 2])
    assert len(client.calls) == 3
    for (runner, options, payload, slots), kwargs in client.calls:
        assert runner is omnipickle.dask.call_payload_with
        assert options == (("compression", "zstd"),)
        assert omnipickle.info(payload).codec == "zstd"
        assert slots == ()
        assert kwargs == {"workers": ["w"], "retries": 2, "pure": False}
    # The worker's side: the result is written with the same options.
    options, payload = client.calls[0][0][1:3]
    shipped = omnipickle.dask.call_payload_with(options, payload, ())
    loader, (result_payload,) = shipped.__reduce__()
    assert loader is omnipickle.dask.load_shipped
    assert omnipickle.info(result_payload).codec == "zstd"
    assert pickle_round_trip(shipped) == [1]


def test_a_shipper_without_options_sends_what_submit_sends() -> None:
    client = _Recording()
    omnipickle.dask.Shipper(client).submit(len, "abc")
    (runner, _payload, _slots), kwargs = client.calls[0]
    assert runner is omnipickle.dask.call_payload
    assert kwargs == {"pure": False}


def test_a_shipper_drops_what_cannot_travel_in_the_call_and_in_the_result() -> None:
    client = _Recording()
    shipper = omnipickle.dask.Shipper(client, on_unpicklable="drop")
    with socket.socket() as sock, pytest.warns(omnipickle.DroppedResourceWarning):
        shipper.submit(lambda s, n: [s, n], sock, 2)
    (runner, options, payload, slots), _ = client.calls[0]
    shipped = runner(options, payload, slots)
    assert shipped.value == [None, 2]
    with socket.socket() as sock:
        result = omnipickle.dask.Shipped({"sock": sock}, options)
        with pytest.warns(omnipickle.DroppedResourceWarning):
            assert pickle_round_trip(result) == {"sock": None}
        with pytest.raises(omnipickle.PicklingError):
            pickle_round_trip(omnipickle.dask.Shipped({"sock": sock}))


def pickle_round_trip(obj: Any) -> Any:
    import pickle

    return pickle.loads(pickle.dumps(obj))


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"key": "k"}, TypeError, "not key"),
        ({"pure": True}, TypeError, "not pure"),
        ({"actor": True}, TypeError, "not actor"),
        ({"wrokers": ["w"]}, TypeError, "not wrokers"),
        ({"compression": ZstdCodec()}, TypeError, "codec's name"),
        ({"compression": "nope"}, omnipickle.UnknownCodecError, "nope"),
        ({"on_unpicklable": "ignore"}, ValueError, "ignore"),
    ],
)
def test_a_shipper_refuses_options_it_cannot_honour(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    client = _Recording()
    with pytest.raises(error, match=match):
        omnipickle.dask.Shipper(client, **options)
    assert client.calls == []
