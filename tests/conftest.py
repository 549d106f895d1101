"""Shared fixtures: fresh interpreters, registry clean-up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"
SRC = Path(__file__).parent.parent / "src"


def run_python(
    *args: str,
    code: str | None = None,
    timeout: float = 120,
    env_overrides: dict[str, str | None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a *fresh* interpreter (a script from tests/scripts, or ``-c code``); return it.

    The child sees omnipickle from this checkout whether or not it is installed.
    ``env_overrides`` sets (or, with ``None``, removes) environment variables for the child
    (``PYTHONHASHSEED``...).
    """
    env = dict(os.environ)
    for name, value in (env_overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable]
    cmd += ["-c", code] if code is not None else [str(SCRIPTS / args[0])]
    cmd += list(args[1:] if code is None else args)
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def check_python(
    *args: str, code: str | None = None, env_overrides: dict[str, str | None] | None = None
) -> str:
    """Like :func:`run_python`, but fail the test (showing stderr) unless it exits 0."""
    proc = run_python(*args, code=code, env_overrides=env_overrides)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def restore_registries() -> Iterator[None]:
    """Put the backend and codec registries back as they were after the test."""
    from omnipickle.backends import REGISTRY as backends
    from omnipickle.codecs import REGISTRY as codecs

    saved = [(reg, reg.snapshot()) for reg in (backends, codecs)]
    try:
        yield
    finally:
        # restore() runs the registries' change hooks, which keep the fast paths' flags.
        for reg, snapshot in saved:
            reg.restore(snapshot)


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A TCP server listening on loopback (closed after the test)."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def running() -> Iterator[threading.Thread]:
    """A running thread, stopped after the test (a thread that is not running is recreated,
    so it is the kind of thread that cannot travel)."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="busy")
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join()
