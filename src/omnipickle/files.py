"""Files: atomic writes, and telling paths from file objects.

``dump`` to a path writes a temporary file in the target's folder, flushes and fsyncs it, then
renames it over the target (``os.replace`` is atomic on POSIX and Windows), and finally fsyncs
the folder so the rename itself survives a power cut. A crash at any moment leaves the old file
or the new one; a failed dump leaves the old file untouched and removes its temporary file.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_writer", "check_binary_file", "is_path", "readable", "seekable"]

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


@contextlib.contextmanager
def atomic_writer(path: PathLike) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` is left as it was.
    """
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    prefix = f".{os.path.basename(target)}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        # Readable too: a signed payload is read back to compute its signature.
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _keep_mode(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _keep_mode(target: str, tmp: str) -> None:
    # mkstemp creates 0600 files; a replaced file keeps its mode, a new one gets the usual
    # default (0666 less the umask), as open() would have given it.
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)


def _umask() -> int:
    # os.umask() can only be read by setting it, which races with other threads; Linux
    # reports it in /proc instead.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


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
