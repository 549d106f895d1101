"""omnipickle's own resource rules, as one table, installed from it.

Threading primitives are recreated (fresh, with their counters and flags), files opened by path
are reopened (same path, mode and position), and everything else that lives in this process
only (threads, sockets, connections, generators...) is dropped. Types of modules omnipickle does
not import are named by dotted name: matching them imports nothing.
"""

from __future__ import annotations

import io
import sys
import threading
import types
from typing import Any

from .._reconstruct import (
    make_barrier,
    make_bounded_semaphore,
    make_condition,
    make_event,
    make_lock,
    make_rlock,
    make_semaphore,
    reopen_file,
    std_stream,
)
from .rules import Reducer, Target, install_builtin_rules

__all__ = ["BUILTIN_RULES"]


def _reduce_lock(obj: Any) -> tuple[Any, ...]:
    return (make_lock, ())


def _reduce_rlock(obj: Any) -> tuple[Any, ...]:
    return (make_rlock, ())


def _reduce_condition(obj: threading.Condition) -> tuple[Any, ...]:
    return (make_condition, (obj._lock,))  # type: ignore[attr-defined]


def _reduce_semaphore(obj: threading.Semaphore) -> tuple[Any, ...]:
    return (make_semaphore, (obj._value,))


def _reduce_bounded_semaphore(obj: threading.BoundedSemaphore) -> tuple[Any, ...]:
    return (make_bounded_semaphore, (obj._value, obj._initial_value))  # type: ignore[attr-defined]


def _reduce_event(obj: threading.Event) -> tuple[Any, ...]:
    return (make_event, (obj.is_set(),))


def _reduce_barrier(obj: threading.Barrier) -> tuple[Any, ...]:
    return (make_barrier, (obj.parties, obj._action, obj._timeout))  # type: ignore[attr-defined]


_STD_STREAMS = ("stdin", "stdout", "stderr")


def _reduce_file(obj: Any) -> tuple[Any, ...]:
    """Reopen at load time: same path, mode and position (dill loses the position)."""
    for stream in _STD_STREAMS:
        if obj is getattr(sys, stream, None) or obj is getattr(sys, f"__{stream}__", None):
            return (std_stream, (stream,))
    name: Any = getattr(obj, "name", None)
    if not isinstance(name, str):
        raise TypeError(
            f"cannot pickle {type(obj).__name__} with no file name (name={name!r}): "
            "only files opened by path can be reopened"
        )
    mode = getattr(obj, "mode", "rb")
    if isinstance(obj, io.FileIO) and "b" not in mode:
        mode += "b"
    if obj.closed:
        return (reopen_file, (name, mode, 0, True))
    obj.flush()
    position = obj.tell()
    if isinstance(obj, io.TextIOWrapper):
        return (reopen_file, (name, mode, position, False, obj.encoding, obj.errors, None))
    return (reopen_file, (name, mode, position, False))


# (type or dotted name, action, reducer): one row per rule.
BUILTIN_RULES: tuple[tuple[Target, str, Reducer | None], ...] = (
    (type(threading.Lock()), "recreate", _reduce_lock),
    (type(threading.RLock()), "recreate", _reduce_rlock),
    (threading.Condition, "recreate", _reduce_condition),
    (threading.Semaphore, "recreate", _reduce_semaphore),
    (threading.BoundedSemaphore, "recreate", _reduce_bounded_semaphore),
    (threading.Event, "recreate", _reduce_event),
    (threading.Barrier, "recreate", _reduce_barrier),
    (io.FileIO, "reopen", _reduce_file),
    (io.BufferedReader, "reopen", _reduce_file),
    (io.BufferedWriter, "reopen", _reduce_file),
    (io.BufferedRandom, "reopen", _reduce_file),
    (io.TextIOWrapper, "reopen", _reduce_file),
    (types.GeneratorType, "drop", None),
    (types.CoroutineType, "drop", None),
    (types.AsyncGeneratorType, "drop", None),
    (types.FrameType, "drop", None),
    (types.TracebackType, "drop", None),
    (threading.Thread, "drop", None),
    ("socket.socket", "drop", None),
    ("ssl.SSLSocket", "drop", None),
    ("ssl.SSLObject", "drop", None),
    ("sqlite3.Connection", "drop", None),
    ("sqlite3.Cursor", "drop", None),
    ("sqlite3.Blob", "drop", None),
    ("subprocess.Popen", "drop", None),
    ("multiprocessing.process.BaseProcess", "drop", None),
    ("multiprocessing.connection.Connection", "drop", None),
    ("multiprocessing.pool.Pool", "drop", None),
    ("concurrent.futures._base.Executor", "drop", None),
    ("asyncio.events.AbstractEventLoop", "drop", None),
    ("asyncio.futures.Future", "drop", None),
    ("_asyncio.Future", "drop", None),
    ("_asyncio.Task", "drop", None),
    ("selectors.BaseSelector", "drop", None),
    ("select.epoll", "drop", None),
    ("select.poll", "drop", None),
    ("select.kqueue", "drop", None),
    ("select.devpoll", "drop", None),
    ("mmap.mmap", "drop", None),
    ("tempfile._TemporaryFileWrapper", "drop", None),
    ("tempfile.SpooledTemporaryFile", "drop", None),
    ("queue.SimpleQueue", "drop", None),
    ("_queue.SimpleQueue", "drop", None),
    ("_thread._local", "drop", None),
    ("_thread.LockType", "drop", None),
)

install_builtin_rules(BUILTIN_RULES)
