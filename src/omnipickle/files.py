"""Files: atomic writes, and telling paths from file objects.

``dump`` to a path writes a temporary file in the target's folder, flushes and fsyncs it, then
renames it over the target (``os.replace`` is atomic on POSIX and Windows), and finally fsyncs
the folder so the rename itself survives a power cut. A crash at any moment leaves the old file
or the new one; a failed dump leaves the old file untouched and removes its temporary file. A
writer that is killed leaves its temporary file behind; the first write into that folder by a
later process removes it (never a live writer's: each holds a lock on its own).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_write", "atomic_writer", "check_binary_file", "is_path", "readable", "seekable"]

PathLike = str | os.PathLike[str]


def is_path(file: Any) -> bool:
    """Whether ``file`` names a file (``str`` or ``os.PathLike``) rather than being one."""
    return isinstance(file, (str, os.PathLike))


def check_binary_file(file: Any, mode: str) -> None:
    """Raise ``TypeError`` unless ``file`` is a binary file object open for ``mode`` (r/w)."""
    needed = "write" if mode == "w" else "read"
    if isinstance(file, io.TextIOBase):
        raise TypeError(
            f"file must be opened in binary mode ('{mode}b'), not text mode: open(..., '{mode}b')"
        )
    if isinstance(file, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"file must be a path or a binary file object, not {type(file).__name__}; "
            f"to {needed} bytes use omnipickle.{'dumps' if mode == 'w' else 'loads'}"
        )
    if not callable(getattr(file, needed, None)):
        raise TypeError(
            f"file must be a path or a binary file object with a {needed}() method, "
            f"not {type(file).__name__}"
        )


# Temporary files end with this, so that leftovers of writers that were killed can be found.
TEMP_SUFFIX = ".omnipickle-tmp"
# A leftover is removed only when no process holds its lock and it has not changed for this
# long: a writer locks its file right after creating it, and writes to it continuously.
_STALE_AFTER = 60.0
# The folders this process has swept (bounded: a long-lived process writing to ever new folders
# forgets the oldest and may sweep one again, which is only a little work).
_SWEPT: set[str] = set()
_SWEPT_LOCK = threading.Lock()
_SWEPT_MAX = 4096


def _target(path: PathLike) -> str:
    """Where a write to ``path`` lands: through symlinks, as ``open(path, "wb")`` would."""
    target = os.fspath(path)
    if os.path.islink(target):
        return os.path.realpath(target)
    return target


def _named(exc: OSError, target: str) -> OSError:
    """``exc`` about ``target`` (not about the temporary file beside it)."""
    return type(exc)(exc.errno, exc.strerror or str(exc), target)


@contextlib.contextmanager
def atomic_writer(path: PathLike, *, durable: bool = True) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` is left as it was. A symlink
    is written through: its target is replaced and the link stays. With ``durable`` (the
    default) the file and the folder are fsynced, so the new file survives a power cut; without,
    the replacement is still atomic for every other process, but a power cut may lose it.

    Raises:
        OSError: the file cannot be written; the error names ``path``'s target.
    """
    # Readable too: a signed payload is read back to compute its signature.
    with _replacing(path, durable) as (fd, _), os.fdopen(fd, "w+b", closefd=False) as f:
        yield f


def atomic_write(path: PathLike, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` as :func:`atomic_writer` would, without a file object (for a
    payload already in memory: a few system calls fewer per file).

    Raises:
        OSError: the file cannot be written; the error names ``path``'s target.
    """
    with _replacing(path, durable) as (fd, target):
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            raise _named(exc, target) from exc


@contextlib.contextmanager
def _replacing(path: PathLike, durable: bool) -> Iterator[tuple[int, str]]:
    """A new temporary file beside ``path``'s target, open (its descriptor, and the target);
    once the body has written it, it replaces the target (see :func:`atomic_writer`). If the
    body raises, it is removed and the target is left as it was."""
    target = _target(path)
    folder = os.path.dirname(os.path.abspath(target))
    _sweep(folder)
    try:
        fd, tmp = _create_temporary(folder, os.path.basename(target))
    except OSError as exc:
        raise _named(exc, target) from exc
    try:
        _lock(fd)
        yield fd, target
        if durable:
            os.fsync(fd)
        try:
            _keep_mode(target, fd, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            raise _named(exc, target) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    if durable:
        _fsync_dir(folder)


def _lock(fd: int) -> None:
    """Hold an advisory lock on a writer's temporary file while it lives (released by the
    system when the writer dies), so that a sweep never removes a live writer's file."""
    try:
        import fcntl
    except ImportError:  # Windows: no sweeping there either
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _sweep(folder: str) -> None:
    """Remove the temporary files killed writers left in ``folder``, once per process and
    folder: listing a folder of many files on every dump would make a cache of many small
    files quadratic, and leftovers only come from processes that died before this one looked."""
    try:
        import fcntl
    except ImportError:
        return
    with _SWEPT_LOCK:
        if folder in _SWEPT:
            return
        if len(_SWEPT) >= _SWEPT_MAX:
            _SWEPT.clear()
        _SWEPT.add(folder)
    try:
        names = [n for n in os.listdir(folder) if n[:1] == "." and n.endswith(TEMP_SUFFIX)]
    except OSError:
        return  # a folder we cannot list: the write itself will say what is wrong
    now = time.time()
    for name in names:
        leftover = os.path.join(folder, name)
        try:
            fd = os.open(leftover, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if now - os.fstat(fd).st_mtime < _STALE_AFTER:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a writer holds it: alive
        else:
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        finally:
            os.close(fd)


_TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_TEMP_FLAGS |= getattr(os, "O_CLOEXEC", 0)


def _create_temporary(folder: str, base: str) -> tuple[int, str]:
    """A new file beside the target, never an existing one (``O_EXCL``), named so the sweep
    knows it. Created with mode 0666, so the kernel applies the umask, as ``open()`` does for
    a new file (no umask read: that races with other threads, or costs a read of /proc)."""
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{os.urandom(6).hex()}{TEMP_SUFFIX}")
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {base!r} in {folder!r}")


def _keep_mode(target: str, fd: int, tmp: str) -> None:
    # A replaced file keeps its mode; a new one has the mode open() gives (0666 less the
    # umask), which the temporary file (open as fd) was created with.
    try:
        # Never the setuid/setgid bits: a new file's contents were not what was set-uid.
        mode = os.stat(target).st_mode & 0o1777
    except FileNotFoundError:
        return
    if os.fstat(fd).st_mode & 0o7777 == mode:  # the usual case: no chmod
        return
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:  # Windows before Python 3.13
        os.chmod(tmp, mode)


def _fsync_dir(folder: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows: folders cannot be opened for fsync
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def readable(file: Any) -> bool:
    """Whether ``file`` says it can be read."""
    try:
        return bool(file.readable())
    except (AttributeError, OSError, ValueError):
        return False


def seekable(file: Any) -> bool:
    """Whether ``file`` can seek and tell its position."""
    try:
        return bool(file.seekable()) and isinstance(file.tell(), int)
    except (AttributeError, OSError, ValueError):
        return False
