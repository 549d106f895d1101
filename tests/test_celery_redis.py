"""Celery with omnipickle on Redis: the "With Redis" ``tasks.py`` of docs/integrations.md (signed
with ``OMNIPICKLE_KEY``, restricted decoding), a real ``celery worker --pool=solo`` on it, and a
real ``redis-server`` that each test starts on 127.0.0.1 as the broker and the result backend.

Skipped unless ``redis-server`` is on PATH and the ``redis`` client imports: omnipickle's CI has
no redis-server. The environment variable ``OMNIPICKLE_TEST_REDIS_SERVER`` names the server to
run instead (a path, or a name looked up on PATH); set to the empty string, these tests skip as
on a machine without one.

Last run with redis-server 7.0.15, the redis client 8.1.0, celery 5.7.0 and kombu 5.7.0.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from celery_workers import (
    KEY,
    OTHER,
    docs_example,
    docs_redis_tasks,
    run_client,
    running_worker,
    wait_for_line,
    worker_env,
)

SERVER_ENV = "OMNIPICKLE_TEST_REDIS_SERVER"

# What these tests call besides the docs' tasks, appended to the docs' tasks.py (so that the
# docs' allow=("tasks.*",) covers Guarded).
TEST_TASKS = """

import threading


class Guarded:
    def __init__(self, value):
        self.value = value
        self.lock = threading.Lock()
        self.lock.acquire()  # held when the result is written


@app.task
def guarded(value):
    return Guarded(value)


@app.task
def touch(path):
    open(path, "x").close()
    return path
"""


def redis_server() -> str | None:
    """The redis-server these tests run, or ``None``: there is none to run."""
    name = os.environ.get(SERVER_ENV, "redis-server")
    return shutil.which(name) if name else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return False
    finally:
        client.close()


def _answering(server: subprocess.Popen[bytes], port: int, *, timeout: float = 15) -> bool:
    """Whether ``server`` answers PING within ``timeout`` seconds (``False`` once it exited)."""
    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        if _ping(port):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """``redis://127.0.0.1:PORT`` of a redis-server of this test's own (no persistence, files in
    tmp_path), killed after the test."""
    binary = redis_server()
    if binary is None:
        pytest.skip("redis-server not installed")
    pytest.importorskip("redis", reason="the redis client is not installed (pip install redis)")
    pytest.importorskip("celery")
    log = tmp_path / "redis.log"
    # A free port can be taken between the probe and the server's bind: then try another.
    for _ in range(3):
        port = _free_port()
        cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        cmd += ["no", "--dir", str(tmp_path)]
        with log.open("w") as out:
            server = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=out)
        try:
            if _answering(server, port):
                yield f"redis://127.0.0.1:{port}"
                return
        finally:
            server.kill()
            server.wait()
    raise AssertionError(f"redis-server did not start:\n{log.read_text()}")


@pytest.fixture
def redis_tasks(tmp_path: Path, redis_url: str) -> tuple[Path, dict[str, str]]:
    """tmp_path with the docs' Redis tasks.py (and the tasks these tests add), and the
    environment of a worker and a caller there, with the key."""
    (tmp_path / "tasks.py").write_text(docs_redis_tasks() + TEST_TASKS)
    return tmp_path, worker_env(tmp_path, REDIS_URL=redis_url, OMNIPICKLE_KEY=KEY.decode())


def test_the_docs_caller_runs_on_a_redis_worker(redis_tasks: tuple[Path, dict[str, str]]) -> None:
    """A closure from the caller's ``__main__`` goes to the worker and runs there (42); a lambda
    a task returns comes back callable (101)."""
    folder, env = redis_tasks
    _, client, output = docs_example()
    with running_worker(folder, env) as log:
        done = run_client(folder, env, client, timeout=60)
    assert done.returncode == 0, done.stderr + log.read_text()
    assert done.stdout == output == "42\n101\n"


def test_a_returned_object_holding_a_lock_comes_back_with_a_fresh_lock(
    redis_tasks: tuple[Path, dict[str, str]],
) -> None:
    folder, env = redis_tasks
    code = (
        "import threading\nfrom tasks import Guarded, guarded\n"
        "got = guarded.delay(7).get(timeout=20)\n"
        "print(type(got) is Guarded, got.value, type(got.lock) is type(threading.Lock()))\n"
        "print(got.lock.locked(), got.lock.acquire(blocking=False), got.lock.locked())\n"
    )
    with running_worker(folder, env) as log:
        done = run_client(folder, env, code, timeout=60)
    assert done.returncode == 0, done.stderr + log.read_text()
    assert done.stdout == "True 7 True\nFalse True True\n"


# (the caller's key, what it sends, the error the worker logs, what its message says)
REFUSED = [
    pytest.param(
        OTHER.decode(),
        "touch.delay({path!r})",
        "SignatureError",
        "signature does not verify",
        id="signed-with-another-key",
    ),
    pytest.param(
        None,
        "touch.delay({path!r})",
        "SignatureError",
        "the payload is not signed",
        id="unsigned",
    ),
    pytest.param(
        KEY.decode(),
        "call.delay(shutil.copyfile, __file__, {path!r})",
        "UnsafePayloadError",
        "refused the global shutil.copyfile",
        id="signed-outside-the-allow-list",
    ),
]


@pytest.mark.parametrize(("client_key", "send", "error", "reason"), REFUSED)
def test_the_worker_refuses_a_message_runs_nothing_and_logs_why(
    redis_tasks: tuple[Path, dict[str, str]],
    client_key: str | None,
    send: str,
    error: str,
    reason: str,
) -> None:
    """The refused message would create ``refused``; a good message sent after it creates
    ``accepted``, so the worker has read the refused one by the time the result is back."""
    folder, env = redis_tasks
    refused, accepted = folder / "refused", folder / "accepted"
    bad_env = dict(env)
    if client_key is None:
        del bad_env["OMNIPICKLE_KEY"]
    else:
        bad_env["OMNIPICKLE_KEY"] = client_key
    bad = f"import shutil\nfrom tasks import call, touch\n{send.format(path=str(refused))}\n"
    good = f"from tasks import touch\nprint(touch.delay({str(accepted)!r}).get(timeout=20))\n"
    with running_worker(folder, env) as log:
        sent = run_client(folder, bad_env, bad, timeout=60)
        assert sent.returncode == 0, sent.stderr
        line = wait_for_line(log, "Can't decode message body", timeout=20)
        done = run_client(folder, env, good, timeout=60)
    assert done.returncode == 0, done.stderr + log.read_text()
    assert done.stdout == f"{accepted}\n"
    assert f"DecodeError({error}(" in line, line
    assert reason in line, line
    assert not refused.exists()


def test_redis_server_is_looked_up_on_path_or_named_by_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without redis-server
    monkeypatch.delenv(SERVER_ENV, raising=False)
    assert redis_server() is None
    fake = tmp_path / "my-redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv(SERVER_ENV, str(fake))
    assert redis_server() == str(fake)
    monkeypatch.setenv(SERVER_ENV, "")
    assert redis_server() is None


def test_without_a_redis_server_the_worker_tests_skip_saying_so() -> None:
    """What omnipickle's CI (no redis-server) sees: these tests skipped, with the reason."""
    env = {**os.environ, SERVER_ENV: ""}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", __file__]
    cmd += ["-k", "not looked_up and not saying_so"]
    done = subprocess.run(
        cmd,
        cwd=Path(__file__).parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skipped, done.stdout
    assert "\n5 skipped, 2 deselected in " in done.stdout, done.stdout
    assert all(line.endswith("redis-server not installed") for line in skipped), done.stdout
