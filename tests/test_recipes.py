"""The recipes of docs/integrations.md for engines omnipickle does not depend on: each runs
when its package is installed (CI need not install them) and is skipped otherwise.

Last run with torch 2.13.0 (CPU build) and ray 2.60.0 on Python 3.11 (docs/integrations.md).
"""

from __future__ import annotations

import io
import pickle
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import check_python
from pool_children import HELD_IN_A_WORKER, check_examples, child_report

PAGE = Path(__file__).parent.parent / "docs" / "integrations.md"


def test_the_hooks_torch_uses_work_on_omnipickles_pickler_and_unpickler() -> None:
    """What torch.save/torch.load do with ``pickle_module``, without torch: assign
    ``persistent_id`` on a Pickler, subclass the Unpickler with ``find_class`` and assign its
    ``persistent_load``."""

    class Storage:
        pass

    storage = Storage()
    found: list[str] = []
    buffer = io.BytesIO()
    pickler = omnipickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = lambda obj: ("storage", 7) if obj is storage else None
    pickler.dump({"w": storage, "f": lambda x: x + 1, "lock": threading.Lock()})
    buffer.seek(0)

    class Unpickler(omnipickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            found.append(f"{module}.{name}")
            return super().find_class(module, name)

    unpickler = Unpickler(buffer, encoding="utf-8")
    unpickler.persistent_load = lambda pid: ("restored", pid)
    loaded = unpickler.load()
    assert loaded["w"] == ("restored", ("storage", 7))
    assert loaded["f"](1) == 2
    assert loaded["lock"].locked() is False
    assert found  # find_class saw the globals


def test_the_pickler_torch_uses_writes_a_plain_stream_without_an_envelope() -> None:
    """What the PyTorch section says: no envelope (so no checksum or signature) inside."""
    buffer = io.BytesIO()
    omnipickle.Pickler(buffer, protocol=2).dump([1, 2])
    assert pickle.loads(buffer.getvalue()) == [1, 2]
    assert omnipickle.info(buffer.getvalue()).format_version is None


# --- PyTorch ---------------------------------------------------------------------------------


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _training_state(torch: Any) -> dict[str, Any]:
    """What a training loop checkpoints: a model, its optimizer after one step, tensors, plus
    what torch's default pickle refuses (a lambda, a held lock, a model holding a lock)."""

    class Net(torch.nn.Module):  # local: only by value can it travel
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 2)
            self.lock = threading.Lock()

        def forward(self, x: Any) -> Any:
            with self.lock:
                return self.linear(x)

    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    shift = 1.5
    held = threading.Lock()
    held.acquire()
    return {
        "weights": torch.arange(6.0).reshape(2, 3),
        "view": torch.arange(10)[2:5],  # a view: its storage is larger than the tensor
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "whole_model": model,
        "transform": lambda t: t + shift,
        "lock": held,
        "epoch": 3,
    }


def _assert_same_training_state(torch: Any, loaded: dict[str, Any], saved: dict[str, Any]) -> None:
    assert torch.equal(loaded["weights"], saved["weights"])
    assert torch.equal(loaded["view"], torch.tensor([2, 3, 4]))
    assert loaded["model"].keys() == saved["model"].keys()
    for name, tensor in saved["model"].items():
        assert torch.equal(loaded["model"][name], tensor), name
    assert loaded["optimizer"]["param_groups"] == saved["optimizer"]["param_groups"]
    for index, state in saved["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(loaded["optimizer"]["state"][index][name], value), name
    probe = torch.ones(1, 3)
    assert torch.equal(loaded["whole_model"](probe), saved["whole_model"](probe))
    assert loaded["whole_model"].lock.locked() is False
    assert loaded["transform"](torch.zeros(2)).tolist() == [1.5, 1.5]
    assert loaded["lock"].locked() is False
    assert loaded["epoch"] == 3
    # The state dicts load into fresh objects, as a resumed training loop does.
    model = type(saved["whole_model"])()
    model.load_state_dict(loaded["model"])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    optimizer.load_state_dict(loaded["optimizer"])


def _map_locations(torch: Any) -> list[Any]:
    return [None, "cpu", torch.device("cpu"), {"cpu": "cpu"}, lambda storage, location: storage]


@pytest.mark.parametrize("legacy_format", [False, True], ids=["zip", "legacy"])
def test_a_training_checkpoint_round_trips_through_a_path(
    torch: Any, tmp_path: Path, legacy_format: bool
) -> None:
    saved = _training_state(torch)
    path = tmp_path / "checkpoint.pt"
    torch.save(
        saved,
        path,
        pickle_module=omnipickle,
        _use_new_zipfile_serialization=not legacy_format,
    )
    for map_location in _map_locations(torch):
        loaded = torch.load(
            path, map_location=map_location, pickle_module=omnipickle, weights_only=False
        )
        _assert_same_training_state(torch, loaded, saved)


@pytest.mark.parametrize("legacy_format", [False, True], ids=["zip", "legacy"])
def test_a_training_checkpoint_round_trips_through_a_bytesio(
    torch: Any, legacy_format: bool
) -> None:
    saved = _training_state(torch)
    buffer = io.BytesIO()
    torch.save(
        saved,
        buffer,
        pickle_module=omnipickle,
        _use_new_zipfile_serialization=not legacy_format,
    )
    for map_location in _map_locations(torch):
        buffer.seek(0)
        loaded = torch.load(
            buffer, map_location=map_location, pickle_module=omnipickle, weights_only=False
        )
        _assert_same_training_state(torch, loaded, saved)


def test_a_checkpoint_loads_memory_mapped(torch: Any, tmp_path: Path) -> None:
    saved = _training_state(torch)
    path = tmp_path / "checkpoint.pt"
    torch.save(saved, path, pickle_module=omnipickle)
    loaded = torch.load(path, mmap=True, pickle_module=omnipickle, weights_only=False)
    _assert_same_training_state(torch, loaded, saved)


def test_a_checkpoint_of_plain_state_loads_with_plain_torch_load(
    torch: Any, tmp_path: Path
) -> None:
    """No code inside: torch's default ``weights_only=True`` loader reads what omnipickle
    wrote."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "checkpoint.pt"
    saved = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1}
    torch.save(saved, path, pickle_module=omnipickle)
    loaded = torch.load(path)
    assert loaded["epoch"] == 1
    for name, tensor in saved["model"].items():
        assert torch.equal(loaded["model"][name], tensor)
    momentum = loaded["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, saved["optimizer"]["state"][0]["momentum_buffer"])


def test_torch_refuses_weights_only_with_a_pickle_module(torch: Any) -> None:
    """Why the docs say loading needs ``weights_only=False``."""
    buffer = io.BytesIO()
    torch.save({"x": torch.ones(2)}, buffer, pickle_module=omnipickle)
    buffer.seek(0)
    with pytest.raises(RuntimeError, match="pickle_module"):
        torch.load(buffer, pickle_module=omnipickle, weights_only=True)


def test_a_checkpoint_signed_as_the_docs_say_verifies_and_a_tampered_one_is_refused(
    torch: Any, tmp_path: Path
) -> None:
    key = b"a checkpoint signing key"
    shift = 2.0
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(3.0), "f": lambda t: t * shift}, buffer, pickle_module=omnipickle)
    path = tmp_path / "checkpoint.pt.signed"
    omnipickle.dump(buffer.getvalue(), path, key=key)
    loaded = torch.load(
        io.BytesIO(omnipickle.load(path, key=key)), pickle_module=omnipickle, weights_only=False
    )
    assert loaded["f"](loaded["w"]).tolist() == [0.0, 2.0, 4.0]
    with pytest.raises(omnipickle.SignatureError):
        omnipickle.load(path, key=b"another key, not the one it was signed with")


def test_a_checkpoint_with_main_code_loads_in_another_process(torch: Any, tmp_path: Path) -> None:
    """A ``__main__`` module class and a lambda, saved by one interpreter and loaded by one
    where neither is defined."""
    path = tmp_path / "checkpoint.pt"
    save = f"""
import threading, torch, omnipickle
class Doubler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))
        self.lock = threading.Lock()
    def forward(self, x):
        with self.lock:
            return x * self.scale
offset = 1.0
model = Doubler()
model.lock.acquire()
torch.save({{"model": model, "post": lambda t: t + offset}}, {str(path)!r},
           pickle_module=omnipickle)
"""
    check_python(code=save)
    load = f"""
import torch, omnipickle
ck = torch.load({str(path)!r}, map_location="cpu", pickle_module=omnipickle, weights_only=False)
model = ck["model"]
print(type(model).__name__, model.lock.locked(), ck["post"](model(torch.arange(3.0))).tolist())
"""
    assert check_python(code=load).split() == ["Doubler", "False", "[1.0,", "3.0,", "5.0]"]


def test_the_pytorch_example_runs(torch: Any) -> None:
    check_examples(PAGE, "PyTorch checkpoints")


# --- Ray -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_env() -> Iterator[dict[str, str | None]]:
    """The environment of a child that starts Ray on loopback only (docs/integrations.md): no
    usage report, 127.0.0.1 as the node address, no cloud-metadata probe (a HOME holding
    ``ray_bootstrap_config.yaml``), Ray's session files in a temporary folder."""
    pytest.importorskip("ray")
    # Not tmp_path: Ray's Unix socket paths under it would be longer than Linux allows.
    folder = tempfile.mkdtemp(prefix="ray")
    try:
        home = Path(folder, "home")
        home.mkdir()
        (home / "ray_bootstrap_config.yaml").write_text("{}\n", encoding="utf-8")
        yield {
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "HOME": str(home),
            "RAY_TMPDIR": folder,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# With pool_children's PRELUDE (Held: __slots__ and a held lock; Store: a transient sqlite
# connection, opened here; outcome); one Ray instance, no setup hook, for every check.
_RAY_CODE = """
import ray

class Plain:
    def __init__(self, path):
        self.conn = sqlite3.connect(path)  # neither transient nor droppable by Ray

def use_omnipickle():
    for cls in (Held, Store, Plain):
        ray.util.register_serializer(cls, serializer=omnipickle.dumps,
                                     deserializer=omnipickle.loads)

@ray.remote
def bump(held, k):
    return held.bump(k)

@ray.remote
def count(store):
    return [store.count(), os.getpid() != PARENT, "conn" in vars(store)]

@ray.remote
def make_held(n):
    return Held(n)

@ray.remote
def node_address():
    return ray.util.get_node_ip_address()

def refusal(call):
    try:
        call()
    except Exception as exc:
        cause = exc.__cause__
        return [type(exc).__name__, type(cause).__name__, str(cause), str(exc)]
    return ["no error"]

if __name__ == "__main__":
    path = sys.argv[1]
    store = make_store(path)
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=1)
    try:
        report["addresses"] = [ray.util.get_node_ip_address(),
                               ray.get(node_address.remote(), timeout=60)]
        report["ray held"] = refusal(lambda: bump.remote(Held(1), 2))
        report["ray store"] = outcome(lambda: ray.get(count.remote(store), timeout=60))
        use_omnipickle()
        report["held"] = outcome(lambda: ray.get(bump.remote(Held(1), 2), timeout=60))
        report["store"] = outcome(lambda: ray.get(count.remote(store), timeout=60))
        report["plain"] = refusal(lambda: count.remote(Plain(path)))
        report["returned, no hook"] = refusal(lambda: ray.get(make_held.remote(5), timeout=60))
    finally:
        ray.shutdown()
"""


@pytest.fixture(scope="module")
def ray_report(
    ray_env: dict[str, str | None], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("ray") / "db.sqlite"
    return child_report(_RAY_CODE, str(path), env_overrides=ray_env)


def test_ray_runs_on_the_loopback_address(ray_report: dict[str, Any]) -> None:
    assert ray_report["addresses"] == ["127.0.0.1", "127.0.0.1"]


def test_rays_own_serializer_refuses_a_lock(ray_report: dict[str, Any]) -> None:
    kind, cause, message, _ = ray_report["ray held"]
    assert (kind, cause) == ("TypeError", "TypeError")
    assert "_thread.lock" in message


def test_a_transient_connection_travels_through_rays_own_serializer(
    ray_report: dict[str, Any],
) -> None:
    assert ray_report["ray store"] == ["ok", [3, True, True]]


def test_a_lock_and_slots_travel_to_a_ray_task_through_omnipickle(
    ray_report: dict[str, Any],
) -> None:
    assert ray_report["held"] == ["ok", [3, *HELD_IN_A_WORKER]]


def test_a_transient_connection_is_reopened_in_a_ray_task_through_omnipickle(
    ray_report: dict[str, Any],
) -> None:
    assert ray_report["store"] == ["ok", [3, True, True]]


def test_a_live_connection_is_refused_through_omnipickle_naming_its_path(
    ray_report: dict[str, Any],
) -> None:
    kind, cause, message, _ = ray_report["plain"]
    assert (kind, cause) == ("TypeError", "PicklingTypeError")
    assert "sqlite3.Connection at root.conn" in message


def test_without_the_setup_hook_a_worker_returns_through_rays_own_serializer(
    ray_report: dict[str, Any],
) -> None:
    """What the hook of the recipe is for (the recipe itself checks the return with it)."""
    kind, _, _, message = ray_report["returned, no hook"]
    assert kind == "RayTaskError(TypeError)"
    assert "_thread.lock" in message


def test_the_ray_example_runs(ray_env: dict[str, str | None]) -> None:
    check_examples(PAGE, "Ray", env_overrides=ray_env)
