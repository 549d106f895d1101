"""omnipickle's own resource rules, as one table, installed from it.

Threading primitives are recreated (fresh, with their counters and flags), threads that are not
running are recreated unstarted, files opened by path are reopened (same absolute path, mode and
position), and everything else that lives in this process only (running threads, sockets,
connections, generators...) is dropped. Types of modules omnipickle does not import are named by
dotted name: matching them imports nothing.
"""

from __future__ import annotations

import functools
import io
import os
import sys
import threading
import types
import warnings
from typing import Any

from .._reconstruct import (
    install_failures,
    make_barrier,
    make_bounded_semaphore,
    make_condition,
    make_event,
    make_lock,
    make_rlock,
    make_semaphore,
    make_thread,
    reopen_file,
    restore_state,
    std_stream,
)
from ..errors import DroppedResourceWarning, UnpicklingError
from .rules import Reducer, Target, install_builtin_rules, refuse

__all__ = ["BUILTIN_RULES", "ResourceReopenError"]


class ResourceReopenError(UnpicklingError, OSError):
    """A file the payload holds cannot be reopened where the payload is loaded.

    The file is missing there, or cannot be opened (permissions, a directory in its place...).
    It is an :class:`omnipickle.UnpicklingError` and an :class:`OSError`; ``filename`` is the
    (absolute) path the payload recorded, ``mode`` the mode, ``errno`` and ``strerror`` those of
    the failed ``open``. Payloads dumped with ``on_unpicklable="drop"`` load such a file as
    ``None`` (with a :class:`DroppedResourceWarning`) instead.
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str | None = None,
        mode: str | None = None,
        errno: int | None = None,
        strerror: str | None = None,
    ) -> None:
        super().__init__(message)
        self.filename = filename
        self.mode = mode
        self.errno = errno
        self.strerror = strerror

    def __str__(self) -> str:
        # OSError's own __str__ would print "[Errno 2] ...: 'name'" instead of the message.
        return str(self.args[0]) if self.args else ""


class _Failures:
    """What ``_reconstruct`` raises and warns with (it cannot import the package's types)."""

    def reopen_failed(self, exc: OSError, name: str, mode: str) -> BaseException:
        return ResourceReopenError(
            f"cannot reopen the file {name!r} (mode {mode!r}) that the payload holds: "
            f"{exc.strerror or exc}; the file must exist where the payload is loaded, or dump "
            'with on_unpicklable="drop" to load it as None where it cannot be reopened',
            filename=name,
            mode=mode,
            errno=exc.errno,
            strerror=exc.strerror,
        )

    def reopen_dropped(self, exc: OSError, name: str, mode: str) -> None:
        warnings.warn(
            f"the file {name!r} (mode {mode!r}) cannot be reopened ({exc.strerror or exc}): "
            "it loads as None",
            DroppedResourceWarning,
            stacklevel=4,
        )


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


@functools.cache
def _thread_internals() -> frozenset[str]:
    """The attributes ``Thread.__init__`` sets (they are made afresh at load time)."""
    return frozenset(vars(threading.Thread()))


def _reduce_thread(obj: threading.Thread) -> tuple[Any, ...]:
    """A thread that is not running (never started, or finished) is recreated unstarted.

    Its target, arguments, name and daemon flag are kept (a finished thread has no target left:
    ``Thread.run`` forgets it), and so is a subclass's own state, less what its mixins leave
    out (``TransientMixin``, ``ResourceAwareMixin``, ``transient``); a running thread is
    refused.
    """
    if not getattr(obj, "_initialized", False):
        refuse(obj, "Thread.__init__ was never called on it")
    if obj.is_alive():
        refuse(
            obj,
            "it is a running thread, a live resource (a thread that was never started or has "
            "finished is recreated unstarted)",
        )
    state = obj.__getstate__()
    internals = _thread_internals()
    if isinstance(state, dict):
        state = {k: v for k, v in state.items() if k not in internals} or None
    elif isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
        state = ({k: v for k, v in state[0].items() if k not in internals}, state[1])
    args = (
        type(obj),
        getattr(obj, "_target", None),
        tuple(getattr(obj, "_args", ())),
        dict(getattr(obj, "_kwargs", None) or {}),
        obj.name,
        obj.daemon,
    )
    from .mixins import mixin_state  # a thread is rarely pickled: not imported with omnipickle

    edited = mixin_state(obj, state)
    if edited is not None:
        return (make_thread, args, edited, None, None, restore_state)
    return (make_thread, args, state)


_STD_STREAMS = ("stdin", "stdout", "stderr")


def _reduce_file(obj: Any) -> tuple[Any, ...]:
    """Reopen at load time: same absolute path, mode and position (dill loses the position).

    A closed file comes back closed, with its name and mode. A file with no path (a pipe or
    socket opened from a descriptor) or that cannot seek (a FIFO, a terminal) is refused.
    """
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
    # After the fixed four: encoding, errors, newline (text files); drop; buffering (raw files).
    more: tuple[Any, ...] = ()
    if isinstance(obj, io.TextIOWrapper):
        more = (obj.encoding, obj.errors, None)
    elif isinstance(obj, io.FileIO):
        more = (None, None, None, False, 0)
    if obj.closed:
        return (reopen_file, (name, mode, 0, True, *more))
    if not obj.seekable():
        raise TypeError(
            f"cannot pickle {type(obj).__name__} {name!r}: it cannot seek (a pipe, FIFO or "
            "terminal), so it cannot be reopened where it stood"
        )
    obj.flush()
    position = obj.tell()
    return (reopen_file, (_absolute_path(obj, name), mode, position, False, *more))


def _absolute_path(obj: Any, name: str) -> str:
    """The absolute path of the open file ``obj`` named ``name``.

    A relative name is relative to the working directory when the file was opened: that is
    the current one unless the program changed directory since; then the descriptor says
    (``/proc/self/fd`` where there is one), and failing that the current directory is used.
    """
    if os.path.isabs(name):
        return name
    path = os.path.abspath(name)
    try:
        opened = os.fstat(obj.fileno())
    except (OSError, ValueError):
        return path
    for candidate in (path, _descriptor_path(obj)):
        if candidate is None:
            continue
        try:
            if os.path.samestat(opened, os.stat(candidate)):
                return candidate
        except OSError:
            continue
    return path


def _descriptor_path(obj: Any) -> str | None:
    try:
        found = os.readlink(f"/proc/self/fd/{obj.fileno()}")
    except (OSError, ValueError):
        return None
    return found if os.path.isabs(found) else None


# (type or dotted name, action, reducer): one row per rule.
BUILTIN_RULES: tuple[tuple[Target, str, Reducer | None], ...] = (
    (type(threading.Lock()), "recreate", _reduce_lock),
    (type(threading.RLock()), "recreate", _reduce_rlock),
    (threading.Condition, "recreate", _reduce_condition),
    (threading.Semaphore, "recreate", _reduce_semaphore),
    (threading.BoundedSemaphore, "recreate", _reduce_bounded_semaphore),
    (threading.Event, "recreate", _reduce_event),
    (threading.Barrier, "recreate", _reduce_barrier),
    (threading.Thread, "recreate", _reduce_thread),
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
install_failures(_Failures())
