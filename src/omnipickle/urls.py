"""URLs (``memory://``, ``file://``, ``s3://bucket/key``...) wherever a path is accepted.

A string with ``://`` in it is a URL, opened with fsspec (imported only then, and only here):
``dump``, ``load``, ``info`` and ``scan`` read and write it as they do a path, with
``storage_options`` passed to the file system (credentials, endpoint).

A write is never seen half-done: the payload goes to a temporary key beside the target
(``.NAME.<random>.omnipickle-tmp``), which is moved over the target once it is complete, and
removed if the dump fails. On an object store the move is a copy of the whole object (S3 and its
peers publish an object only once it is complete, so readers see the old one or the new one). A
``file://`` URL is written like a local path: temporary file, fsync, rename.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import IO, Any

from .files import TEMP_SUFFIX, atomic_writer

__all__ = ["check_storage_options", "is_url", "open_url", "url_writer"]


def is_url(file: Any) -> bool:
    """Whether ``file`` is a URL (a ``str`` with ``://`` in it) rather than a local path."""
    return isinstance(file, str) and "://" in file


def _file_system(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    try:
        from fsspec.core import url_to_fs  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ImportError(
            f"{url!r} is a URL, and URLs are opened with fsspec, which is not installed: "
            "pip install 'omnipickle[fsspec]' (and s3fs, gcsfs... for remote stores)"
        ) from exc
    fs, path = url_to_fs(url, **dict(storage_options or {}))
    return fs, path


def check_storage_options(file: Any, storage_options: Mapping[str, Any] | None) -> None:
    """Raise ``TypeError`` if ``storage_options`` is given for something other than a URL."""
    if storage_options is not None and not is_url(file):
        raise TypeError(
            f"storage_options applies to URLs (a str with '://'), not to {type(file).__name__} "
            f"{file!r}"
        )


@contextlib.contextmanager
def open_url(url: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[IO[bytes]]:
    """The object at ``url``, open for reading in binary mode.

    Raises:
        ImportError: fsspec (or the package of the URL's protocol) is not installed.
        FileNotFoundError: nothing is at ``url``.
    """
    fs, path = _file_system(url, storage_options)
    with fs.open(path, "rb") as f:
        yield f


@contextlib.contextmanager
def url_writer(
    url: str, storage_options: Mapping[str, Any] | None = None, *, durable: bool = True
) -> Iterator[IO[bytes]]:
    """A file to write the object at ``url`` through; it appears there whole, or not at all.

    If the body raises, the temporary key is removed and ``url`` is left as it was.

    Raises:
        ImportError: fsspec (or the package of the URL's protocol) is not installed.
    """
    fs, path = _file_system(url, storage_options)
    if "file" in _protocols(fs):
        with atomic_writer(path, durable=durable) as f:
            yield f
        return
    parent, _, base = path.rpartition("/")
    name = f".{base}.{os.urandom(8).hex()}{TEMP_SUFFIX}"
    tmp = f"{parent}/{name}" if parent else name
    try:
        with fs.open(tmp, "wb") as f:
            yield f
        fs.mv(tmp, path)
    except BaseException:
        # A failed body still closes (and so uploads) the temporary object: remove it.
        with contextlib.suppress(FileNotFoundError):
            fs.rm(tmp)
        raise


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
