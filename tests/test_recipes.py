"""The recipes of docs/integrations.md for engines omnipickle does not depend on: each runs
when its package is installed (CI need not install them) and is skipped otherwise."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import threading
from pathlib import Path

import pytest

import omnipickle
from pool_children import check_examples

PAGE = Path(__file__).parent.parent / "docs" / "integrations.md"


def _needs(package: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        importlib.util.find_spec(package) is None, reason=f"{package} is not installed"
    )


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


@_needs("torch")
def test_the_pytorch_example_runs() -> None:
    check_examples(PAGE, "PyTorch checkpoints")


@_needs("ray")
def test_the_ray_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    check_examples(PAGE, "Ray")


def test_the_pickler_torch_uses_writes_a_plain_stream_without_an_envelope() -> None:
    """What the PyTorch section says: no envelope (so no checksum or signature) inside."""
    buffer = io.BytesIO()
    omnipickle.Pickler(buffer, protocol=2).dump([1, 2])
    assert pickle.loads(buffer.getvalue()) == [1, 2]
    assert omnipickle.info(buffer.getvalue()).format_version is None
