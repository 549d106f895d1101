"""Each kind of live resource, dumped with each policy, loaded in a *fresh* interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import check_python

# kind -> (what "raise" gives, what a fresh process sees after "drop")
EXPECTED = {
    "sqlite": ("raised", "names=['saved'] raw=None"),
    "tcp": ("raised", "sock_was=None sent=1"),
    "thread": ("dumped", "worker=Thread finished-worker lock_free=True"),
    "running_thread": ("raised", "worker=None lock_free=True"),
    "file": ("dumped", "file_rest=456789"),
    "pipe": ("raised", "pipe=None n=1"),
    "subprocess": ("raised", "proc=None n=2"),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
@pytest.mark.parametrize("policy", ["raise", "drop"])
def test_resource_in_a_fresh_interpreter(kind: str, policy: str, tmp_path: Path) -> None:
    payload = tmp_path / "payload.pkl"
    dumped = check_python(
        "resources_roundtrip.py", "dump", kind, policy, str(payload), str(tmp_path)
    ).strip()
    on_raise, after_drop = EXPECTED[kind]
    if policy == "raise" and on_raise == "raised":
        assert dumped.startswith("raised cannot serialize")
        assert 'on_unpicklable="drop"' in dumped
        assert not payload.exists()
        return
    assert dumped == "dumped"
    loaded = check_python(
        "resources_roundtrip.py", "load", kind, policy, str(payload), str(tmp_path)
    ).strip()
    assert loaded == after_drop
