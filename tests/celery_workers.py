"""A real ``celery worker`` for the tests (tests/test_kombu.py, tests/test_celery_redis.py): a
tasks module from docs/integrations.md written to a folder, and the worker and its callers run
as child processes that see omnipickle from this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import SRC
from pool_children import blocks

ROOT = Path(__file__).parent.parent
KEY = b"celery-key-0123456789"
OTHER = b"other-key-0123456789"

PAGE = ROOT / "docs" / "integrations.md"


def docs_example() -> tuple[str, str, str]:
    """The Celery section's first example: ``tasks.py`` (the filesystem broker), the caller and
    what it prints."""
    (k1, tasks), (k2, client), (k3, output) = blocks(PAGE, "Celery / kombu")[:3]
    assert (k1, k2, k3) == ("python", "python", "text")
    return tasks, client, output


def docs_redis_tasks() -> str:
    """The Celery section's ``tasks.py`` for Redis (the one block naming ``redis://``)."""
    (tasks,) = [code for _, code in blocks(PAGE, "Celery / kombu") if "redis://" in code]
    return tasks


def entry_point_site(folder: Path) -> Path:
    """A folder holding a distribution whose metadata declares pyproject's entry points, so a
    child sees them whether or not this checkout was installed since they changed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    site = folder / "site"
    dist = site / "omnipickle_entry_points-0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: omnipickle-entry-points\n")
    lines = ["[kombu.serializers]"]
    lines += [f"{k} = {v}" for k, v in project["entry-points"]["kombu.serializers"].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def worker_env(folder: Path, **variables: str) -> dict[str, str]:
    """The environment of a worker or a caller whose ``tasks.py`` is in ``folder``: this
    environment without ``OMNIPICKLE_KEY``, plus ``variables``."""
    env = dict(os.environ)
    env.pop("OMNIPICKLE_KEY", None)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(folder), str(entry_point_site(folder))])
    env.update(variables)
    return env


@contextmanager
def running_worker(folder: Path, env: dict[str, str]) -> Iterator[Path]:
    """``celery -A tasks worker --pool=solo`` in ``folder``, killed when the block ends however
    it ends; yields the path of its log (its stdout and stderr)."""
    cmd = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool=solo", "-l", "info"]
    cmd += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    log = folder / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=out)
    try:
        yield log
    finally:
        # Killed, not terminated: a warm (or cold) shutdown of this worker takes 4 s, and there
        # is nothing in flight to finish once the test has its result. --pool=solo: no children.
        worker.kill()
        worker.wait()


def run_client(
    folder: Path, env: dict[str, str], code: str, *, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as the script ``folder/client.py`` (its ``__main__``); killed after
    ``timeout`` seconds (``subprocess.TimeoutExpired``)."""
    script = folder / "client.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_line(log: Path, marker: str, *, timeout: float = 30) -> str:
    """The first line of ``log`` holding ``marker``, once one is there; an ``AssertionError``
    showing the log if none is after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")
        found = [line for line in text.splitlines() if marker in line]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no line with {marker!r} in {timeout} s:\n{text}")
        time.sleep(0.05)
